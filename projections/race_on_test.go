//go:build race

package projections

// raceEnabled: the race detector slows the reference-model test about tenfold, so it
// runs fewer logs under it (the full count runs without -race).
const raceEnabled = true
