// Package e2e holds the end-to-end tests of the real binaries: TestMain builds ledgerd
// once, and each test runs it as a subprocess on a random loopback port over a
// temporary data directory, talking to it over gRPC like any other client. The crash
// test kills it with SIGKILL under load and checks that every acknowledged append
// survives exactly once.
package e2e
