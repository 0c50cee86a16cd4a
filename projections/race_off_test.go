//go:build !race

package projections

// raceEnabled reports whether the tests run under the race detector.
const raceEnabled = false
