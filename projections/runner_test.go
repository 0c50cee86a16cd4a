package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/embedded"
)

func openTestStore(t testing.TB) *embedded.Store {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// appendLog appends events one append each, so positions are 1..n in order.
func appendLog(t testing.TB, st store.Appender, events []*ledger.Event) ledger.Position {
	t.Helper()
	var last ledger.Position
	for _, r := range records(t, events) {
		res, err := st.Append(context.Background(), r.Stream, ledger.AnyRevision, []store.Proposed{{
			EventID: r.EventID, Type: r.Type, Data: r.Data, Metadata: r.Metadata, ContentHash: r.ContentHash,
		}})
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position
	}
	return last
}

// startRunner runs a runner over ps until the test ends or stop is called.
func startRunner(t testing.TB, src store.Subscriber, opts *RunnerOptions, ps ...Projection) (*Runner, func()) {
	t.Helper()
	r, err := NewRunner(src, nil, opts, ps...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return r, stop
}

func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// table returns the current list and snapshot digest of p.
func table(t testing.TB, p *Positions) ([]PartyPosition, string) {
	t.Helper()
	snap, err := p.Snapshot(t.Context(), Query{})
	if err != nil {
		t.Fatal(err)
	}
	list, _, _, err := p.List(t.Context(), ListFilter{}, Query{})
	if err != nil {
		t.Fatal(err)
	}
	return list, snap.Digest
}

// A runner that dies without a clean shutdown (its unsynced writes lost at a random
// point) and restarts ends with the same table and digest as a clean build, and
// never applies a record twice or skips one (Apply refuses positions at or before
// its checkpoint, and the table would differ).
func TestRunnerCrashAndRestartEqualsCleanBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	st := openTestStore(t)
	events := randomLog(rng, 600)
	last := appendLog(t, st, events[:400])

	clean := openTestPositions(t)
	_, stopClean := startRunner(t, st, nil, clean)

	// The live view looks records up in the log, as ledgerd's does; the clean one
	// keeps a row of every record.
	fs := vfs.NewCrashableMem()
	live, err := openPositions(fs, "/data/views/positions", nil)
	if err != nil {
		t.Fatal(err)
	}
	live.LookUpRecordsIn(st)
	_, stop := startRunner(t, st, &RunnerOptions{BatchSize: 7}, live)

	// Crash at a few points while records keep arriving: as kill -9 does (the
	// operating system keeps every write) and as power loss does (unsynced
	// writes partly lost).
	var crashed []*vfs.MemFS
	go func() { appendLog(t, st, events[400:]) }()
	for i, keep := range []int{100, 100, 100, 50, 0} {
		threshold := uint64(100 * (i + 1))
		if err := live.WaitFor(waitCtx(t), ledger.Position{Commit: threshold, Prepare: threshold}); err != nil {
			t.Fatal(err)
		}
		crashed = append(crashed, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: keep, RNG: rand.New(rand.NewPCG(rng.Uint64(), 0))}))
	}
	last = ledger.Position{Commit: 600, Prepare: 600}
	if err := clean.WaitFor(waitCtx(t), last); err != nil {
		t.Fatal(err)
	}
	stopClean()
	wantList, wantDigest := table(t, clean)
	stop()
	live.Close()

	for i, cfs := range crashed {
		p, err := openPositions(cfs, "/data/views/positions", nil)
		if err != nil {
			t.Fatalf("crash %d: reopen: %v", i, err)
		}
		p.LookUpRecordsIn(st)
		before := p.Applied()
		t.Logf("crash %d: the view recovered at %s", i, before)
		_, stop := startRunner(t, st, nil, p)
		if err := p.WaitFor(waitCtx(t), last); err != nil {
			t.Fatalf("crash %d (resumed from %s): %v", i, before, err)
		}
		stop()
		gotList, gotDigest := table(t, p)
		if !slices.Equal(gotList, wantList) || gotDigest != wantDigest {
			t.Fatalf("crash %d (resumed from %s): table differs from a clean build", i, before)
		}
		p.Close()
	}
}

func TestRunnerRebuildSwitchesOverWhileServing(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	st := openTestStore(t)
	events := randomLog(rng, 300)
	appendLog(t, st, events[:200])
	dir := t.TempDir() + "/views/positions"
	p, err := OpenPositions(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.LookUpRecordsIn(st) // and so does the build
	var mu sync.Mutex
	var health []bool
	r, _ := startRunner(t, st, &RunnerOptions{OnHealth: func(name string, serving bool) {
		mu.Lock()
		health = append(health, serving)
		mu.Unlock()
	}}, p)
	if err := p.WaitFor(waitCtx(t), ledger.Position{Commit: 200, Prepare: 200}); err != nil {
		t.Fatal(err)
	}
	wantBefore, _ := table(t, p)

	// Appends and queries go on during the rebuild.
	done := make(chan struct{})
	go func() {
		defer close(done)
		appendLog(t, st, events[200:])
	}()
	stopQueries := make(chan struct{})
	queryErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stopQueries:
				queryErr <- nil
				return
			default:
			}
			if _, _, _, err := p.List(t.Context(), ListFilter{}, Query{}); err != nil {
				queryErr <- err
				return
			}
		}
	}()
	applied, err := r.Rebuild(waitCtx(t), PositionsName)
	if err != nil {
		t.Fatal(err)
	}
	if applied.Commit < 200 {
		t.Fatalf("rebuilt view applied %s, want at least 200", applied)
	}
	<-done
	close(stopQueries)
	if err := <-queryErr; err != nil {
		t.Fatalf("query during rebuild: %v", err)
	}
	if err := r.WaitFor(waitCtx(t), PositionsName, ledger.Position{Commit: 300, Prepare: 300}); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitFor(t.Context(), "nope", ledger.Position{}); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("WaitFor(nope) = %v", err)
	}
	got, digest := table(t, p)
	clean := openTestPositions(t)
	recs := records(t, events)
	if err := clean.Apply(recs); err != nil {
		t.Fatal(err)
	}
	want, wantDigest := table(t, clean)
	if !slices.Equal(got, want) || digest != wantDigest {
		t.Fatal("table after rebuild differs from a clean build")
	}
	if len(wantBefore) == 0 {
		t.Fatal("empty table before rebuild")
	}
	mu.Lock()
	defer mu.Unlock()
	if slices.Contains(health, false) {
		t.Fatalf("health went NOT_SERVING during a good rebuild: %v", health)
	}
	if h := r.Health(); len(h) != 1 || !h[0].Serving || h[0].Rebuilding || h[0].Applied.Commit != 300 {
		t.Fatalf("Health() = %+v", h)
	}
}

// currentKeys counts the current keys of p, and those of them that hold their
// version's suffix alone (applier.promote).
func currentKeys(t *testing.T, p *Positions) (all, suffixOnly int) {
	t.Helper()
	p.mu.RLock()
	defer p.mu.RUnlock()
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixCurrent}, UpperBound: []byte{prefixCurrent + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		all++
		if len(it.Value()) == suffixLen {
			suffixOnly++
		}
	}
	return all, suffixOnly
}

// failing applies records until it meets the poisoned position, then fails.
type failing struct {
	progress *Progress
	poison   uint64
	pause    time.Duration // the first Apply waits this long
	mu       sync.Mutex
	applied  []uint64
	sizes    []int // of the batches applied
}

func (f *failing) Name() string        { return "failing" }
func (f *failing) Progress() *Progress { return f.progress }
func (f *failing) Apply(recs []store.Record) error {
	time.Sleep(f.pause)
	f.pause = 0
	for _, r := range recs {
		if r.Position.Commit == f.poison {
			return errors.New("poisoned record")
		}
	}
	f.mu.Lock()
	for _, r := range recs {
		f.applied = append(f.applied, r.Position.Commit)
	}
	f.sizes = append(f.sizes, len(recs))
	f.mu.Unlock()
	f.progress.Advance(recs[len(recs)-1].Position)
	return nil
}

// catchUpCounter is a failing projection that is told when it has caught up.
type catchUpCounter struct {
	failing
	caughtUp chan struct{}
	empty    atomic.Int32 // Apply calls without records
}

func (c *catchUpCounter) Apply(recs []store.Record) error {
	if len(recs) == 0 {
		c.empty.Add(1)
		return nil
	}
	return c.failing.Apply(recs)
}

func (c *catchUpCounter) CaughtUp() error {
	select {
	case c.caughtUp <- struct{}{}:
	default:
	}
	return nil
}

// With nothing to catch up (an empty log, or a checkpoint at its head), the Runner
// tells a CatchUpper so, without asking any projection to apply no records.
func TestRunnerCaughtUpWithNothingToApply(t *testing.T) {
	st := openTestStore(t)
	c := &catchUpCounter{failing: failing{progress: NewProgress("failing", ledger.Position{})}, caughtUp: make(chan struct{}, 1)}
	startRunner(t, st, nil, c)
	select {
	case <-c.caughtUp:
	case <-waitCtx(t).Done():
		t.Fatal("not told it caught up")
	}
	if n := c.empty.Load(); n != 0 {
		t.Errorf("Apply called %d times without records", n)
	}
}

// Catching up, the Runner applies batches of up to CatchUpBatchSize records (the
// log has them waiting: the first Apply pauses while the subscription queues them);
// live, of up to BatchSize.
func TestRunnerCatchUpBatches(t *testing.T) {
	st := openTestStore(t)
	events := randomLog(rand.New(rand.NewPCG(8, 9)), 530)
	appendLog(t, st, events[:500])
	f := &failing{progress: NewProgress("failing", ledger.Position{}), pause: 200 * time.Millisecond}
	startRunner(t, st, &RunnerOptions{BatchSize: 3, CatchUpBatchSize: 200}, f)
	if err := f.progress.WaitFor(waitCtx(t), ledger.Position{Commit: 500, Prepare: 500}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	catchUp := slices.Clone(f.sizes)
	f.mu.Unlock()
	if m := slices.Max(catchUp); m <= 3 || m > 200 {
		t.Fatalf("catch-up batches %v: want some larger than BatchSize (3), none larger than CatchUpBatchSize (200)", catchUp)
	}
	last := appendLog(t, st, events[500:])
	if err := f.progress.WaitFor(waitCtx(t), last); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// The catch-up may have ended after the first 500; every batch after 500 is live.
	var live []int
	n := 0
	for _, size := range f.sizes {
		if n >= 500 {
			live = append(live, size)
		}
		n += size
	}
	if len(live) == 0 || slices.Max(live) > 3 {
		t.Fatalf("live batches %v: want none larger than BatchSize (3)", live)
	}
	for i, c := range f.applied {
		if c != uint64(i+1) {
			t.Fatalf("applied %v: a record was skipped or repeated", f.applied)
		}
	}
}

func TestRunnerStopsLoudlyAndNeverSkips(t *testing.T) {
	st := openTestStore(t)
	appendLog(t, st, randomLog(rand.New(rand.NewPCG(5, 6)), 50))
	f := &failing{progress: NewProgress("failing", ledger.Position{}), poison: 30}
	healthy := openTestPositions(t)
	unhealthy := make(chan string, 10)
	r, _ := startRunner(t, st, &RunnerOptions{BatchSize: 4, OnHealth: func(name string, serving bool) {
		if !serving {
			unhealthy <- name
		}
	}}, f, healthy)

	select {
	case name := <-unhealthy:
		if name != "failing" {
			t.Fatalf("unhealthy %q", name)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no health report")
	}
	// The other projection goes on.
	if err := healthy.WaitFor(waitCtx(t), ledger.Position{Commit: 50, Prepare: 50}); err != nil {
		t.Fatal(err)
	}
	// Readers waiting for the stopped projection fail at once, saying how far it is.
	err := f.progress.WaitFor(waitCtx(t), ledger.Position{Commit: 50, Prepare: 50})
	var lag *LagError
	if !errors.As(err, &lag) || !errors.Is(err, ledger.ErrUnavailable) || lag.Applied.Commit >= 30 {
		t.Fatalf("WaitFor on a stopped projection = %v", err)
	}
	f.mu.Lock()
	for i, c := range f.applied {
		if c != uint64(i+1) {
			t.Fatalf("applied %v: a record was skipped or repeated", f.applied)
		}
	}
	f.mu.Unlock()
	var h Health
	for _, x := range r.Health() {
		if x.Name == "failing" {
			h = x
		}
	}
	if h.Serving || h.Failures != 1 || h.Err == nil {
		t.Fatalf("Health = %+v", h)
	}
	if _, err := r.Rebuild(t.Context(), "failing"); !errors.Is(err, ErrNotRebuildable) {
		t.Fatalf("Rebuild(failing) = %v", err)
	}
	if _, err := r.Rebuild(t.Context(), "nope"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Rebuild(nope) = %v", err)
	}
}

func TestWaitForSaysHowFar(t *testing.T) {
	p := NewProgress("positions", ledger.Position{Commit: 3, Prepare: 3})
	if err := p.WaitFor(t.Context(), ledger.Position{Commit: 2, Prepare: 2}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err := p.WaitFor(ctx, ledger.Position{Commit: 9, Prepare: 9})
	var lag *LagError
	if !errors.As(err, &lag) || !errors.Is(err, context.DeadlineExceeded) || lag.Applied.Commit != 3 || lag.Want.Commit != 9 {
		t.Fatalf("WaitFor = %v", err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		p.Advance(ledger.Position{Commit: 9, Prepare: 9})
	}()
	if err := p.WaitFor(waitCtx(t), ledger.Position{Commit: 9, Prepare: 9}); err != nil {
		t.Fatal(err)
	}
}

func TestSchemaChangeRebuildsFromScratch(t *testing.T) {
	fs := vfs.NewMem()
	p, err := openPositions(fs, "/v/positions", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(records(t, randomLog(rand.New(rand.NewPCG(8, 9)), 20))); err != nil {
		t.Fatal(err)
	}
	if err := p.db.Set(keySchema, []byte("0"), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p, err = openPositions(fs, "/v/positions", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !p.Applied().IsZero() {
		t.Fatalf("applied %s after a schema change, want 0 (rebuild)", p.Applied())
	}
	if list, _, _, _ := p.List(t.Context(), ListFilter{}, Query{}); len(list) != 0 {
		t.Fatalf("stale rows after a schema change: %v", list)
	}
}

// A bulk build syncs none of its files, since a crash discards it whatever they
// hold (TestBulkBuild); the model it settles into is synced before it is swapped in.
func TestBulkBuildSyncsOnlyWhatItSettles(t *testing.T) {
	fs := &syncCounter{FS: vfs.NewMem(), syncs: map[string]int{}}
	const dir = "/data/views/positions"
	p, err := openPositions(fs, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	recs := records(t, randomLog(rand.New(rand.NewPCG(7, 8)), 200))
	for i := 0; i < len(recs); i += 50 {
		if err := p.Apply(recs[i : i+50]); err != nil {
			t.Fatal(err)
		}
		if err := p.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if n := fs.count(dir + "/"); n != 0 {
		t.Errorf("the bulk build synced its files and directory %d times; want none", n)
	}
	if err := p.CaughtUp(); err != nil {
		t.Fatal(err)
	}
	if n := fs.count(dir + settledSuffix + tablesSuffix + "/"); n == 0 {
		t.Error("the settled tables were not synced")
	}
	if n := fs.count(dir + "/"); n == 0 {
		t.Error("the model, reopened after settling, syncs nothing")
	}
}

// syncCounter counts the syncs of the files created and the directories opened
// on it, by path.
type syncCounter struct {
	vfs.FS
	mu    sync.Mutex
	syncs map[string]int
}

func (fs *syncCounter) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil {
		return nil, err
	}
	return &countedFile{File: f, fs: fs, name: name}, nil
}

func (fs *syncCounter) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	if err != nil {
		return nil, err
	}
	return &countedFile{File: f, fs: fs, name: name + "/"}, nil
}

// count returns the syncs of files (and directories, named with a trailing
// slash) whose path starts with prefix.
func (fs *syncCounter) count(prefix string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for name, k := range fs.syncs {
		if strings.HasPrefix(name, prefix) {
			n += k
		}
	}
	return n
}

type countedFile struct {
	vfs.File
	fs   *syncCounter
	name string
}

func (f *countedFile) counted() {
	f.fs.mu.Lock()
	f.fs.syncs[f.name]++
	f.fs.mu.Unlock()
}

func (f *countedFile) Sync() error     { f.counted(); return f.File.Sync() }
func (f *countedFile) SyncData() error { f.counted(); return f.File.SyncData() }
func (f *countedFile) SyncTo(n int64) (bool, error) {
	f.counted()
	return f.File.SyncTo(n)
}

// A model filled from position 0 is a bulk build (no WAL, no automatic compactions)
// until it has caught up: a crash before then discards it (its marker says so), and
// after CaughtUp it is an ordinary model that survives a crash (kill -9: the
// operating system keeps every write) with every record.
func TestBulkBuild(t *testing.T) {
	fs := vfs.NewCrashableMem()
	const dir = "/data/views/positions"
	p, err := openPositions(fs, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := fs.Stat(bulkMarker(dir)); !p.bulk || err != nil {
		t.Fatalf("a new model: bulk %v, marker %v; want a bulk build with its marker", p.bulk, err)
	}
	// Flush after every batch and compact after every flush, as a large build does.
	defer func(every int64) { bulkCompactEvery = every }(bulkCompactEvery)
	bulkCompactEvery = 1
	recs := records(t, randomLog(rand.New(rand.NewPCG(5, 6)), 300))
	for i := 0; i < len(recs); i += 25 {
		if err := p.Apply(recs[i : i+25]); err != nil {
			t.Fatal(err)
		}
		if err := p.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if p.compactedAt == 0 {
		t.Fatal("the bulk build was never compacted")
	}
	last := recs[len(recs)-1].Position

	// It answers like a model built in one go.
	plain, err := openPositions(vfs.NewMem(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Apply(recs); err != nil {
		t.Fatal(err)
	}
	plainList, plainDigest := table(t, plain)
	if gotList, gotDigest := table(t, p); !slices.Equal(gotList, plainList) || gotDigest != plainDigest {
		t.Fatal("the flushed and compacted bulk build differs from a model built in one batch")
	}

	crashed, err := openPositions(fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 1))}), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !crashed.Applied().IsZero() || !crashed.bulk {
		t.Errorf("a bulk build cut short reopened at %s (bulk %v); want it discarded and built again", crashed.Applied(), crashed.bulk)
	}
	crashed.Close()

	// A bulk build writes no current keys; settling derives them from the versions.
	if n, _ := currentKeys(t, p); n != 0 {
		t.Fatalf("the bulk build holds %d current keys; want none", n)
	}

	// Settled (written out to <dir>.settled) but not yet swapped in: a crash now
	// discards both, and leaves nothing of the settled copy behind.
	p.mu.RLock()
	err = p.settleBulk()
	p.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	for i, keep := range []int{0, 100} {
		cfs := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: keep, RNG: rand.New(rand.NewPCG(3, uint64(i)))})
		crashed, err := openPositions(cfs, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !crashed.Applied().IsZero() || !crashed.bulk {
			t.Errorf("a bulk build settled but not swapped reopened at %s (bulk %v); want it built again", crashed.Applied(), crashed.bulk)
		}
		for _, leftover := range []string{dir + settledSuffix, dir + settledSuffix + tablesSuffix} {
			if _, err := cfs.Stat(leftover); err == nil {
				t.Errorf("%s left behind after a crash", leftover)
			}
		}
		crashed.Close()
	}

	if err := p.CaughtUp(); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(bulkMarker(dir)); p.bulk || err == nil {
		t.Fatalf("after CaughtUp: bulk %v, marker %v; want an ordinary model", p.bulk, err)
	}
	p.mu.Lock()
	p.removing.Wait() // the build, retired and deleted in the background
	p.mu.Unlock()
	for _, leftover := range []string{dir + settledSuffix, dir + settledSuffix + tablesSuffix, dir + retiredSuffix} {
		if _, err := fs.Stat(leftover); err == nil {
			t.Errorf("%s left behind after CaughtUp", leftover)
		}
	}
	wantList, wantDigest := table(t, p)
	if len(wantList) == 0 {
		t.Fatal("empty table")
	}
	if !slices.Equal(wantList, plainList) || wantDigest != plainDigest {
		t.Fatal("the settled model differs from a model built in one batch")
	}
	// Settled, it holds every key in the bottom level, nothing to compact.
	if m := p.db.Metrics(); m.Levels[0].TablesCount != 0 || m.Compact.EstimatedDebt != 0 {
		t.Errorf("settled model: %d tables in L0, compaction debt %d; want none", m.Levels[0].TablesCount, m.Compact.EstimatedDebt)
	}
	if all, suffixOnly := currentKeys(t, p); all != len(wantList) || suffixOnly != 0 {
		t.Errorf("settled model: %d current keys, %d of them a suffix alone; want %d, each with its value", all, suffixOnly, len(wantList))
	}
	// A crash before the background deletion ended leaves retired models: the next
	// open deletes them.
	cfs := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(2, 2))})
	retired := []string{dir + retiredSuffix, dir + rebuildSuffix + retiredSuffix}
	for _, d := range retired {
		if err := cfs.MkdirAll(filepath.Join(d, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	reopened, err := openPositions(cfs, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	for _, d := range retired {
		if _, err := cfs.Stat(d); err == nil {
			t.Errorf("%s left behind at open", d)
		}
	}
	gotList, gotDigest := table(t, reopened)
	if reopened.Applied() != last || reopened.bulk || !slices.Equal(gotList, wantList) || gotDigest != wantDigest {
		t.Fatalf("after CaughtUp and a crash: applied %s (want %s), bulk %v, same table %v",
			reopened.Applied(), last, reopened.bulk, slices.Equal(gotList, wantList) && gotDigest == wantDigest)
	}
}

// TestApplyChecksContentUnlessTrusted checks that the view recomputes each record's
// content hash unless told its store vouches for them (TrustContent): a record whose
// metadata names another hash than its content's is refused, and nothing of it is
// applied, by a view that checks; a trusting view (and its builds) folds it.
func TestApplyChecksContentUnlessTrusted(t *testing.T) {
	e := &ledger.Event{EventID: "forged", Party: "dprk", OccurredAt: refBase,
		Body: &ledger.StatementIssued{StatementID: "s", Stances: []ledger.Stance{{Topic: "msmt-legitimacy", Alignment: ledger.AlignmentOpposes}}}}
	recs := records(t, []*ledger.Event{e})
	recs[0].Metadata = bytes.Replace(recs[0].Metadata, []byte(recs[0].ContentHash), []byte(strings.Repeat("0", len(recs[0].ContentHash))), 1)

	checking, err := OpenPositions(filepath.Join(t.TempDir(), "positions"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer checking.Close()
	if err := checking.Apply(recs); !errors.Is(err, ledger.ErrInvalid) || !strings.Contains(err.Error(), "content_sha256") {
		t.Errorf("Apply of a record with a wrong content hash: %v; want ErrInvalid about content_sha256", err)
	}
	if !checking.Applied().IsZero() {
		t.Errorf("the checking view applied up to %s", checking.Applied())
	}

	trusting, err := OpenPositions(filepath.Join(t.TempDir(), "positions"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer trusting.Close()
	trusting.TrustContent()
	build, err := trusting.NewBuild()
	if err != nil {
		t.Fatal(err)
	}
	defer build.(*Positions).Close()
	for _, p := range []*Positions{trusting, build.(*Positions)} {
		if err := p.Apply(recs); err != nil {
			t.Fatalf("Apply in a trusting view: %v", err)
		}
		if _, _, err := p.Get(t.Context(), "dprk", "msmt-legitimacy", Query{}); err != nil {
			t.Errorf("the trusting view holds no stance: %v", err)
		}
	}
}

// recordRows counts the record rows (r keys) of p.
func recordRows(t *testing.T, p *Positions) int {
	t.Helper()
	p.mu.RLock()
	defer p.mu.RUnlock()
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRecord}, UpperBound: []byte{prefixRecord + 1}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		t.Fatal(err)
	}
	return n
}

// flakyEvents fails the first failures lookups as an unreachable store would.
type flakyEvents struct {
	store.EventGetter
	failures atomic.Int64
}

func (f *flakyEvents) GetEvent(ctx context.Context, id string) (store.Record, error) {
	if f.failures.Add(-1) >= 0 {
		return store.Record{}, fmt.Errorf("%w: connection refused", ledger.ErrUnavailable)
	}
	return f.EventGetter.GetEvent(ctx, id)
}

// TestRecordsLookedUpInTheLog runs a view that keeps rows of corrected records only
// over the embedded store, with a record cache so small that corrections keep
// looking their records up in the log, and through lookups that fail for a while
// (the Runner tries again from the checkpoint): it ends with the reference fold's
// table and a row of each record a correction changed, and nothing else. Reopened
// without the log, it refuses to apply.
func TestRecordsLookedUpInTheLog(t *testing.T) {
	defer func(n int) { maxCachedRows = n }(maxCachedRows)
	maxCachedRows = 8
	rng := rand.New(rand.NewPCG(5, 6))
	st := openTestStore(t)
	events := randomLog(rng, 500)
	last := appendLog(t, st, events)

	// The records an applied correction changes: earlier, of the same party, not
	// a correction.
	changed := map[string]bool{}
	byID := map[string]*ledger.Event{}
	for _, e := range events {
		if c, ok := e.Body.(*ledger.RecordCorrected); ok {
			if target := byID[c.CorrectsEventID]; target != nil && target.Party == e.Party {
				if _, fix := target.Body.(*ledger.RecordCorrected); !fix {
					changed[target.EventID] = true
				}
			}
		}
		byID[e.EventID] = e
	}

	dir := filepath.Join(t.TempDir(), "positions")
	p, err := OpenPositions(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	flaky := &flakyEvents{EventGetter: st}
	flaky.failures.Store(3)
	p.LookUpRecordsIn(flaky)
	var mu sync.Mutex
	var health []bool
	_, stop := startRunner(t, st, &RunnerOptions{BatchSize: 16, CatchUpBatchSize: 16, RetryDelay: time.Millisecond,
		OnHealth: func(_ string, serving bool) {
			mu.Lock()
			health = append(health, serving)
			mu.Unlock()
		}}, p)
	if err := p.WaitFor(waitCtx(t), last); err != nil {
		t.Fatal(err)
	}
	stop()
	if flaky.failures.Load() >= 0 {
		t.Fatal("the log never failed a lookup: the test tests nothing")
	}
	mu.Lock()
	if slices.Contains(health, false) {
		t.Errorf("health went NOT_SERVING over lookups that failed for a while: %v", health)
	}
	mu.Unlock()
	got, _, _, err := p.List(t.Context(), ListFilter{}, Query{})
	if err != nil {
		t.Fatal(err)
	}
	if want := sortedRows(refFold(events, len(events), time.Time{})); !slices.Equal(got, want) {
		t.Fatalf("table:\n got %+v\nwant %+v", got, want)
	}
	if n := recordRows(t, p); n != len(changed) || n == 0 {
		t.Errorf("%d record rows; want one per record a correction changed, %d", n, len(changed))
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	p, err = OpenPositions(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	before := p.Applied()
	more := records(t, append(slices.Clone(events), &ledger.Event{EventID: "later", Party: "dprk", OccurredAt: refBase,
		Body: &ledger.StatementIssued{StatementID: "later", Stances: []ledger.Stance{{Topic: "sanctions", Alignment: ledger.AlignmentSupports}}}}))
	err = p.Apply(more[len(events):])
	if err == nil || !strings.Contains(err.Error(), "LookUpRecordsIn") || p.Applied() != before {
		t.Fatalf("Apply without the log = %v, applied %s (was %s); want an error naming LookUpRecordsIn, nothing applied", err, p.Applied(), before)
	}
}
