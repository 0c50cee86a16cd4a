package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// Projection is a read model the Runner keeps up to date with the log.
type Projection interface {
	// Name names the projection in logs, health and metrics, e.g. "positions".
	Name() string
	// Progress tracks its checkpoint: the position of the last record it applied,
	// as saved with its read model (zero when it has applied nothing).
	Progress() *Progress
	// Apply applies records (the Runner passes at least one), which come in log
	// order right after the checkpoint, saving with every atomic commit of
	// read-model changes the checkpoint of the last record they cover, and
	// advances Progress. On error the checkpoint MUST still say exactly which
	// records are applied (none of the batch, or a prefix): the Runner stops the
	// projection and never skips a record. An error matching ledger.ErrUnavailable
	// says the projection could not read the log (e.g. to look a record up): the
	// Runner then tries again from the checkpoint, with backoff, as when its
	// subscription fails.
	Apply(records []store.Record) error
}

// CatchUpper is a Projection that is told when it has caught up with the log, e.g.
// to end a bulk build (Positions). The Runner calls CaughtUp after applying the batch
// that ends each catch-up; an error stops the projection like a failed Apply.
type CatchUpper interface {
	Projection
	CaughtUp() error
}

// Rebuildable is a Projection that can be rebuilt from position 0 next to the live
// read model and then switched to.
type Rebuildable interface {
	Projection
	// NewBuild returns an empty copy of the projection in a fresh directory.
	NewBuild() (Projection, error)
	// SwitchTo replaces the live read model with build atomically: readers see the
	// old model or the new one, never a mix. build has applied at least as far as
	// the live model. build must not be used afterwards.
	SwitchTo(build Projection) error
	// DiscardBuild closes and removes a build that will not be switched to.
	DiscardBuild(build Projection) error
}

// RunnerOptions tune a Runner. A nil *RunnerOptions means the defaults.
type RunnerOptions struct {
	// BatchSize is the most records applied in one atomic commit; default 1000.
	// A batch holds what the subscription has delivered, up to BatchSize: under
	// load batches fill up, when idle each record is applied at once.
	BatchSize int
	// CatchUpBatchSize is the most records in one batch while a projection catches
	// up with the log (until the subscription reports it has caught up); default
	// 4096, never less than BatchSize. Catching up, the log has more than enough
	// records waiting, and fewer, larger commits cost a read model less (the
	// positions view commits a large batch as a sorted run instead of record by
	// record into its memtable).
	CatchUpBatchSize int
	// RetryDelay is the first wait before resubscribing after the log's
	// subscription fails (doubling up to 30 s); default 500 ms.
	RetryDelay time.Duration
	// OnHealth, when set, is called whenever a projection starts serving (true) or
	// stops with an error (false), e.g. to set gRPC health statuses.
	OnHealth func(name string, serving bool)
	// Registerer, when set, receives the runner's metrics: per projection, the
	// applied position (commit), records applied, and failures.
	Registerer prometheus.Registerer
}

// Health is the state of one projection.
type Health struct {
	Name string
	// Serving is false when the projection has stopped with an error.
	Serving bool
	// Applied is its checkpoint.
	Applied ledger.Position
	// Err is the error it stopped with, when not Serving.
	Err error
	// Failures counts the times it stopped with an error.
	Failures uint64
	// Rebuilding is true while a rebuild runs.
	Rebuilding bool
}

// Runner feeds projections from the log: each from its own checkpoint, catching up
// then following live, in batches committed atomically with the checkpoint.
type Runner struct {
	src   store.Subscriber
	log   *slog.Logger
	opts  RunnerOptions
	list  []*state
	byNam map[string]*state

	applied  *prometheus.GaugeVec
	records  *prometheus.CounterVec
	failures *prometheus.CounterVec
}

// state is the runner's bookkeeping for one projection.
type state struct {
	p Projection

	// applyMu is held while a batch is applied; a rebuild holds it to switch over.
	applyMu sync.Mutex
	// gen counts switch-overs; a follower that sees it change resubscribes from the
	// new model's checkpoint.
	gen atomic.Uint64

	mu         sync.Mutex
	err        error
	failures   uint64
	rebuilding bool
	restart    chan struct{} // closed to wake a stopped projection after a rebuild

	rebuildMu sync.Mutex // one rebuild at a time
}

// NewRunner returns a Runner that feeds ps from src. Names must be unique.
func NewRunner(src store.Subscriber, log *slog.Logger, opts *RunnerOptions, ps ...Projection) (*Runner, error) {
	r := &Runner{src: src, log: log, byNam: make(map[string]*state)}
	if opts != nil {
		r.opts = *opts
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.opts.BatchSize <= 0 {
		r.opts.BatchSize = 1000
	}
	if r.opts.CatchUpBatchSize <= 0 {
		r.opts.CatchUpBatchSize = 4096
	}
	r.opts.CatchUpBatchSize = max(r.opts.CatchUpBatchSize, r.opts.BatchSize)
	if r.opts.RetryDelay <= 0 {
		r.opts.RetryDelay = 500 * time.Millisecond
	}
	for _, p := range ps {
		if _, dup := r.byNam[p.Name()]; dup {
			return nil, fmt.Errorf("projections: two projections named %q", p.Name())
		}
		st := &state{p: p, restart: make(chan struct{})}
		r.list = append(r.list, st)
		r.byNam[p.Name()] = st
	}
	r.applied = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stanceledger_projection_applied_commit",
		Help: "Commit number of the last log position the projection applied.",
	}, []string{"projection"})
	r.records = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stanceledger_projection_records_applied_total",
		Help: "Records the projection applied (rebuilds included).",
	}, []string{"projection"})
	r.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stanceledger_projection_failures_total",
		Help: "Times the projection stopped because a batch could not be applied.",
	}, []string{"projection"})
	if r.opts.Registerer != nil {
		for _, c := range []prometheus.Collector{r.applied, r.records, r.failures} {
			if err := r.opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("projections: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Run feeds every projection until ctx ends, then returns nil. A projection whose
// batch fails to apply stops (logged at error level, reported unhealthy, counted)
// and stays stopped until a Rebuild succeeds or the process restarts; the others
// go on. A failing subscription is retried with backoff from the checkpoint.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, st := range r.list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx, st)
		}()
	}
	wg.Wait()
	return nil
}

// errSwitched ends a follow when a rebuild switched the model under it.
var errSwitched = errors.New("read model switched")

// applyError marks an error of the projection itself (not of the log).
type applyError struct{ err error }

func (e *applyError) Error() string { return e.err.Error() }
func (e *applyError) Unwrap() error { return e.err }

func (r *Runner) loop(ctx context.Context, st *state) {
	name := st.p.Name()
	r.setHealth(st, nil)
	delay := r.opts.RetryDelay
	for ctx.Err() == nil {
		err := r.follow(ctx, st)
		var aerr *applyError
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errSwitched):
			continue
		case errors.As(err, &aerr):
			r.log.Error("projection stopped: a batch could not be applied; no record is skipped, rebuild or restart to resume",
				"projection", name, "applied", st.p.Progress().Applied().String(), "err", aerr.err)
			restart := r.setHealth(st, aerr.err)
			select {
			case <-restart:
				delay = r.opts.RetryDelay
			case <-ctx.Done():
				return
			}
		default:
			r.log.Warn("projection: log subscription failed; resubscribing",
				"projection", name, "applied", st.p.Progress().Applied().String(), "retry_in", delay, "err", err)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			delay = min(2*delay, 30*time.Second)
		}
	}
}

// setHealth records err (nil: serving) and returns the channel a rebuild closes to
// restart a stopped projection.
func (r *Runner) setHealth(st *state, err error) <-chan struct{} {
	name := st.p.Name()
	st.mu.Lock()
	st.err = err
	if err != nil {
		st.failures++
		r.failures.WithLabelValues(name).Inc()
		st.p.Progress().Fail(fmt.Errorf("%w: projection %s stopped: %v", ledger.ErrUnavailable, name, err))
	} else {
		st.p.Progress().Fail(nil)
	}
	restart := st.restart
	st.mu.Unlock()
	if r.opts.OnHealth != nil {
		r.opts.OnHealth(name, err == nil)
	}
	return restart
}

// follow subscribes from the projection's checkpoint and applies batches until an
// error or ctx's end.
func (r *Runner) follow(ctx context.Context, st *state) error {
	gen := st.gen.Load()
	from := st.p.Progress().Applied()
	return r.feed(ctx, from, func(batch []store.Record, caughtUp bool) error {
		st.applyMu.Lock()
		defer st.applyMu.Unlock()
		if st.gen.Load() != gen {
			return errSwitched
		}
		if err := applyBatch(st.p, batch); err != nil {
			return err
		}
		r.records.WithLabelValues(st.p.Name()).Add(float64(len(batch)))
		r.applied.WithLabelValues(st.p.Name()).Set(float64(st.p.Progress().Applied().Commit))
		if cu, ok := st.p.(CatchUpper); ok && caughtUp {
			if err := cu.CaughtUp(); err != nil {
				return &applyError{fmt.Errorf("after catching up: %w", err)}
			}
		}
		return nil
	})
}

// applyBatch applies batch to p. An empty batch (feed's way of saying that the
// catch-up ended) is not passed on: projections are not asked to apply nothing.
func applyBatch(p Projection, batch []store.Record) error {
	if len(batch) == 0 {
		return nil
	}
	err := p.Apply(batch)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ledger.ErrUnavailable):
		return err // the log, tried again from the checkpoint like a failed subscription
	}
	return &applyError{err}
}

// feed subscribes to the log from the record after from and calls apply with
// batches in log order; caughtUp is true for the batch that ends the catch-up (or
// with an empty batch when there was nothing to catch up). The subscription is read
// on its own goroutine, so reading the log and applying overlap.
func (r *Runner) feed(ctx context.Context, from ledger.Position, apply func(batch []store.Record, caughtUp bool) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type item struct {
		rec      store.Record
		caughtUp bool
		err      error
	}
	// Room for a batch to fill while the one before it is applied.
	items := make(chan item, max(2*r.opts.BatchSize, r.opts.CatchUpBatchSize))
	go func() {
		defer close(items)
		for msg, err := range r.src.Subscribe(ctx, from, store.Filter{}) {
			var it item
			switch {
			case err != nil:
				it.err = err
			case msg.CaughtUp:
				it.caughtUp = true
			case !from.IsZero() && msg.Record.Position == from:
				continue // the subscription's from is inclusive; that record is applied
			default:
				it.rec = msg.Record
			}
			select {
			case items <- it:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	limit := r.opts.CatchUpBatchSize // until the catch-up ends
	batch := make([]store.Record, 0, limit)
	for {
		var it item
		var ok bool
		select {
		case it, ok = <-items:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return errors.New("log subscription ended")
		}
		batch = batch[:0]
		caughtUp := false
		var stop error
		for {
			switch {
			case it.err != nil:
				stop = it.err
			case it.caughtUp:
				caughtUp = true
			default:
				batch = append(batch, it.rec)
			}
			if stop != nil || caughtUp || len(batch) == limit {
				break
			}
			more := false
			select {
			case it, more = <-items:
			default:
			}
			if !more {
				break
			}
		}
		if len(batch) > 0 || caughtUp {
			if err := apply(batch, caughtUp); err != nil {
				return err
			}
		}
		if caughtUp && limit != r.opts.BatchSize {
			// Live from here on; a smaller array lets the catch-up's records go.
			limit = r.opts.BatchSize
			batch = make([]store.Record, 0, limit)
		}
		if stop != nil {
			return stop
		}
	}
}

// Health returns the state of every projection, in the order given to NewRunner.
func (r *Runner) Health() []Health {
	out := make([]Health, 0, len(r.list))
	for _, st := range r.list {
		st.mu.Lock()
		out = append(out, Health{
			Name: st.p.Name(), Serving: st.err == nil, Applied: st.p.Progress().Applied(),
			Err: st.err, Failures: st.failures, Rebuilding: st.rebuilding,
		})
		st.mu.Unlock()
	}
	return out
}

// ErrNotRebuildable says the named projection cannot be rebuilt.
var ErrNotRebuildable = errors.New("projection cannot be rebuilt")

// Rebuild builds the named projection again from position 0 into a fresh read model
// while the live one keeps serving, then switches over atomically once the build has
// caught up with it, and returns the rebuilt model's checkpoint. A build that is a
// CatchUpper is told when it has caught up with the log, before the live model is
// held still. A projection stopped by an error resumes on the rebuilt model. When
// ctx ends first, the build is discarded and the live model stays. An unknown name
// gives an error matching ledger.ErrNotFound.
func (r *Runner) Rebuild(ctx context.Context, name string) (ledger.Position, error) {
	st, ok := r.byNam[name]
	if !ok {
		return ledger.Position{}, fmt.Errorf("%w: no projection %q", ledger.ErrNotFound, name)
	}
	rp, ok := st.p.(Rebuildable)
	if !ok {
		return ledger.Position{}, fmt.Errorf("%w: %s", ErrNotRebuildable, name)
	}
	st.rebuildMu.Lock()
	defer st.rebuildMu.Unlock()
	st.mu.Lock()
	st.rebuilding = true
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		st.rebuilding = false
		st.mu.Unlock()
	}()

	build, err := rp.NewBuild()
	if err != nil {
		return ledger.Position{}, fmt.Errorf("rebuild %s: %w", name, err)
	}
	start := time.Now()
	r.log.Info("projection rebuild started", "projection", name)
	switched := false
	defer func() {
		if !switched {
			if err := rp.DiscardBuild(build); err != nil {
				r.log.Error("projection rebuild: discard build", "projection", name, "err", err)
			}
		}
	}()

	// Catch up without holding the live model; then hold it still (the live
	// follower waits between batches) and apply up to where it stands.
	var target *ledger.Position
	errDone := errors.New("rebuild caught up")
	err = r.feed(ctx, ledger.Position{}, func(batch []store.Record, caughtUp bool) error {
		if err := applyBatch(build, batch); err != nil {
			return err
		}
		r.records.WithLabelValues(name).Add(float64(len(batch)))
		if target == nil && caughtUp {
			// The build ends its bulk phase (Positions: settles) while the live
			// model still follows the log.
			if cu, ok := build.(CatchUpper); ok {
				if err := cu.CaughtUp(); err != nil {
					return &applyError{fmt.Errorf("after catching up: %w", err)}
				}
			}
			st.applyMu.Lock()
			t := st.p.Progress().Applied()
			target = &t
		}
		if target != nil && !build.Progress().Applied().Less(*target) {
			return errDone
		}
		return nil
	})
	if target != nil {
		defer st.applyMu.Unlock()
	}
	if !errors.Is(err, errDone) {
		return ledger.Position{}, fmt.Errorf("rebuild %s: %w", name, err)
	}
	applied := build.Progress().Applied()
	if err := rp.SwitchTo(build); err != nil {
		// The live model may be closed now: stop the projection loudly.
		r.setHealth(st, fmt.Errorf("switch to rebuilt model: %w", err))
		return ledger.Position{}, fmt.Errorf("rebuild %s: %w", name, err)
	}
	switched = true
	st.gen.Add(1)
	st.mu.Lock()
	stopped := st.err != nil
	if stopped {
		close(st.restart)
		st.restart = make(chan struct{})
	}
	st.mu.Unlock()
	if stopped {
		r.setHealth(st, nil)
	}
	r.log.Info("projection rebuilt", "projection", name, "applied", applied.String(), "took", time.Since(start))
	return applied, nil
}

// WaitFor blocks until the named projection has applied pos; when ctx ends first,
// or the projection has stopped, it returns a *LagError saying how far it is. An
// unknown name gives an error matching ledger.ErrNotFound.
func (r *Runner) WaitFor(ctx context.Context, name string, pos ledger.Position) error {
	st, ok := r.byNam[name]
	if !ok {
		return fmt.Errorf("%w: no projection %q", ledger.ErrNotFound, name)
	}
	return st.p.Progress().WaitFor(ctx, pos)
}
