// Package ledger holds Stance Ledger's domain: the record types, their validation, the
// byte encoding the ledger stores, the rules that fold records into stances, and the
// sentinel and typed errors every other package returns.
//
// It imports the standard library only. Proto types stop at the server and client
// packages; conversion lives in internal/wire.
package ledger
