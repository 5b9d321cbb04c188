//go:build race

package webhooks_test

// raceEnabled: the race detector slows the soak about tenfold; make ci runs
// the full soak once more without it.
const raceEnabled = true
