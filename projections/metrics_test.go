package projections

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestLagMetric checks the lag gauge before the runner runs (head minus the
// checkpoint: the whole log) and after the projection has caught up (zero).
func TestLagMetric(t *testing.T) {
	st := openTestStore(t)
	last := appendLog(t, st, randomLog(rand.New(rand.NewPCG(3, 4)), 50))
	p := openTestPositions(t)
	reg := prometheus.NewRegistry()
	r, err := NewRunner(st, nil, &RunnerOptions{Registerer: reg}, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RegisterLag(reg, func() uint64 { return st.Stats().LastPosition }); err != nil {
		t.Fatal(err)
	}
	find := func(name string) (float64, bool) {
		t.Helper()
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == PositionsName {
					return m.GetGauge().GetValue(), true
				}
			}
		}
		return 0, false
	}
	gauge := func(name string) float64 {
		t.Helper()
		v, ok := find(name)
		if !ok {
			t.Fatalf("no %s series for positions", name)
		}
		return v
	}
	const lag, applied = "stanceledger_projection_lag_records", "stanceledger_projection_applied_commit"
	if got := gauge(lag); got != float64(last.Commit) {
		t.Errorf("lag before running = %v, want %d", got, last.Commit)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := p.WaitFor(waitCtx(t), last); err != nil {
		t.Fatal(err)
	}
	// The runner sets the gauge (creating its series) just after the view advances:
	// give it a moment.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if v, ok := find(applied); ok && v == float64(last.Commit) {
			break
		}
	}
	if got := gauge(lag); got != 0 {
		t.Errorf("lag after catching up = %v, want 0", got)
	}
	if got := gauge(applied); got != float64(last.Commit) {
		t.Errorf("applied commit gauge = %v, want %d", got, last.Commit)
	}
}
