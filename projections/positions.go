package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// PositionsName is the name of the positions projection: its directory under
// <data>/views/ and its name in health and metrics.
const PositionsName = "positions"

// PositionsSchema is the version of the positions read model's key layout. A read
// model written with another version is discarded and rebuilt from the log.
// (2: a model may keep record rows for corrected records only, keyRecordsByLog;
// 3: a version that still counts stores its until in one byte, rowValue.append.)
const PositionsSchema = 3

// PartyPosition is one contribution of one record to one (party, topic): what the
// record (or a correction of it) says the party's stance is, from its valid time on.
type PartyPosition struct {
	Party, Topic string
	Alignment    ledger.Alignment
	Act          ledger.Act
	Summary      string
	Quote        string
	// OccurredAt is the contribution's valid time (after any re-dating correction).
	OccurredAt time.Time
	// EventID and Position identify the record that contributed it.
	EventID  string
	Position ledger.Position
	// Since is the log position from which this contribution counts: the record's
	// position, or the position of the correction that produced it.
	Since ledger.Position
	// SinceEventID is the event_id of that correction; "" when Since is the record's.
	SinceEventID string
	// Index is the contribution's place among its record's contributions
	// (ledger.Contributions, or ledger.Attribute of a replacement); it breaks ties
	// between contributions of one record to one (party, topic).
	Index uint32
}

// Correction is one correction of a record as the view applied it.
type Correction struct {
	EventID  string
	Position ledger.Position
	Effect   Effect
	// RedatedTo is the new valid time when Effect has EffectRedate.
	RedatedTo time.Time
	Reason    string
}

// HistoryEntry is one version of a contribution: it counts for queries at log
// positions from Contribution.Since up to (excluding) Until.
type HistoryEntry struct {
	Contribution PartyPosition
	// Until is the position of the correction that ended this version; zero while it
	// still counts. UntilEventID and UntilEffect say which correction and what it did.
	Until        ledger.Position
	UntilEventID string
	UntilEffect  Effect
	// RecordCorrections lists every correction of the record, in log order; the
	// record was corrected when it is not empty.
	RecordCorrections []Correction
}

// Query chooses the bitemporal point a read answers at.
type Query struct {
	// AsOfTime limits valid time: only contributions with OccurredAt <= AsOfTime
	// count. The zero time means no limit.
	AsOfTime time.Time
	// AsOfPosition limits transaction time: only records and corrections at
	// positions <= AsOfPosition count. The zero Position means the view's applied
	// position. A position the view has not applied yet gives a *LagError.
	AsOfPosition ledger.Position
}

// Change is a change of the current (party, topic) stance, delivered by Watch.
type Change struct {
	Party, Topic string
	// Current is the new current contribution; nil when (party, topic) has none any more.
	Current *PartyPosition
	// Applied is the view's applied position after the batch that made the change.
	Applied ledger.Position
}

// ErrWatchTooSlow ends a Watch whose consumer fell too far behind; it matches
// ledger.ErrUnavailable, so a client retries, and can re-read current positions.
var ErrWatchTooSlow = fmt.Errorf("%w: watcher fell behind the positions view", ledger.ErrUnavailable)

// Positions is the positions read model: every contribution of every record, each
// version with its valid time and the log positions it counts between, in its own
// Pebble directory. It answers current, as-of-time and as-of-position queries
// without reading the log. It is safe for concurrent use: one goroutine applies
// (the Runner), any number query.
type Positions struct {
	dir string
	fs  vfs.FS
	log *slog.Logger

	mu sync.RWMutex // guards db against Rebuild's switch-over
	db *pebble.DB

	progress *Progress
	cur      *pairCache   // used by Apply only
	recs     *recordCache // used by Apply only
	rows     *rowSet      // used by Apply only
	// batchRate is how many bytes the last plain batch Apply committed wrote per
	// byte of the records it held (about 0.66 on the synthetic mix): Apply sizes its
	// batches by it. Used by Apply only.
	batchRate float64

	// bulk is set while the model is a bulk build (see openModel); guarded by mu.
	bulk bool
	// flushed counts the bytes of memtables (and large batches) a bulk build has
	// flushed (Pebble's event listener).
	flushed *atomic.Int64
	// compactedAt is flushed when Apply last started compacting the bulk build;
	// compaction is that compaction while it runs (Apply goes on meanwhile).
	compactedAt int64
	compaction  *bulkCompaction
	// settled is set when settleBulk has run and nothing was applied since.
	settled bool

	// trusted says the records come from a store that vouches for their content
	// hashes (TrustContent): they are decoded without recomputing them.
	trusted bool
	// events is the log, where Apply looks up the records it keeps no row of
	// (LookUpRecordsIn); nil when it keeps a row of every record.
	events store.EventGetter
	// byLog is set when the model keeps rows of corrected records only
	// (keyRecordsByLog): Apply then needs events. Written by Apply and, under the
	// write lock, when the model is reopened.
	byLog bool

	// removing counts the old models being removed in the background (removeLater);
	// Add and Wait under mu.
	removing sync.WaitGroup

	wmu      sync.Mutex
	watchers map[*watcher]struct{}
}

// OpenPositions opens (or creates) the positions read model in dir. A read model
// written with another PositionsSchema is removed and started empty, so the Runner
// rebuilds it from position 0; so is one left half-switched by a crash during a
// rebuild.
func OpenPositions(dir string, log *slog.Logger) (*Positions, error) {
	return openPositions(vfs.Default, dir, log)
}

// openPositions is OpenPositions on any file system (tests use an in-memory one).
func openPositions(fs vfs.FS, dir string, log *slog.Logger) (*Positions, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var leftovers []string
	for _, d := range []string{dir, dir + rebuildSuffix} {
		leftovers = append(leftovers, d+settledSuffix, d+settledSuffix+tablesSuffix)
	}
	leftovers = append(leftovers, dir+rebuildSuffix, bulkMarker(dir+rebuildSuffix), dir+retiredSuffix, dir+rebuildSuffix+retiredSuffix)
	for _, leftover := range leftovers {
		if err := fs.RemoveAll(leftover); err != nil {
			return nil, fmt.Errorf("remove %s: %w", leftover, err)
		}
	}
	return newPositions(fs, dir, log)
}

// newPositions opens the model in dir (openModel) and wraps it.
func newPositions(fs vfs.FS, dir string, log *slog.Logger) (*Positions, error) {
	flushed := new(atomic.Int64)
	m, err := openModel(fs, dir, log, flushed)
	if err != nil {
		return nil, err
	}
	return &Positions{
		dir: dir, fs: fs, log: log, db: m.db, bulk: m.bulk, byLog: m.byLog, flushed: flushed,
		progress:  NewProgress(PositionsName, m.applied),
		cur:       newPairCache(m.applied.IsZero()),
		recs:      newRecordCache(),
		rows:      newRowSet(m.applied.IsZero()),
		batchRate: 1.5, // until a batch is measured
		watchers:  make(map[*watcher]struct{}),
	}, nil
}

const (
	rebuildSuffix = ".rebuild"
	retiredSuffix = ".retired"
)

// model is an open read model.
type model struct {
	db      *pebble.DB
	applied ledger.Position
	bulk    bool
	byLog   bool // it keeps rows of corrected records only (keyRecordsByLog)
}

// bulkMarker names the file that marks dir as a bulk build in progress.
func bulkMarker(dir string) string { return dir + ".bulk" }

// openModel opens the Pebble DB in dir, discarding it when its schema differs.
//
// A model that does not exist yet is created as a bulk build: it is about to be filled
// from position 0, so it is written without a WAL and without automatic compactions
// (flushed memtables and large batches pile up in L0, compacted every
// bulkCompactEvery bytes flushed, and the build is written out sorted once at the
// end, settleBulk, instead of in many small compactions). A marker file next to dir
// (bulkMarker) says so until endBulk has swapped the written-out model in and
// reopened it as an ordinary model; a model found with its marker was cut short by
// a crash, has lost what was not flushed, and is discarded and built again.
// flushed counts the bytes the build has flushed.
func openModel(fs vfs.FS, dir string, log *slog.Logger, flushed *atomic.Int64) (model, error) {
	if err := fs.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return model{}, err
	}
	if _, err := fs.Stat(bulkMarker(dir)); err == nil {
		log.Warn("positions view: a bulk build was cut short; building it again from the log", "dir", dir)
		if err := fs.RemoveAll(dir); err != nil {
			return model{}, err
		}
	}
	_, err := fs.Stat(dir)
	bulk := errors.Is(err, os.ErrNotExist)
	if bulk {
		if err := writeMarker(fs, bulkMarker(dir)); err != nil {
			return model{}, err
		}
	}
	// A bulk build reads little until it settles, and settling reads it once in
	// order: a smaller cache serves it as well.
	cacheSize := int64(32 << 20)
	if bulk {
		cacheSize = 16 << 20
	}
	cache := pebble.NewCache(cacheSize)
	db, err := pebble.Open(dir, modelOptions(fs, cache, log, bulk, flushed))
	cache.Unref() // the DB holds its own reference
	if err != nil {
		return model{}, fmt.Errorf("open positions view %s: %w", dir, err)
	}
	schema, applied, byLog, err := readMeta(db)
	if err != nil {
		db.Close()
		return model{}, err
	}
	switch {
	case schema == 0 && applied.IsZero():
		sync := pebble.Sync
		if bulk {
			sync = pebble.NoSync // no WAL: the build's flush makes it durable
		}
		if err := db.Set(keySchema, []byte(strconv.Itoa(PositionsSchema)), sync); err != nil {
			db.Close()
			return model{}, err
		}
	case schema != PositionsSchema:
		log.Warn("positions view has another schema version; rebuilding it from the log",
			"dir", dir, "found", schema, "want", PositionsSchema)
		db.Close()
		if err := fs.RemoveAll(dir); err != nil {
			return model{}, err
		}
		return openModel(fs, dir, log, flushed)
	}
	return model{db: db, applied: applied, bulk: bulk, byLog: byLog}, nil
}

// modelOptions are the Pebble options of a read model, or of a bulk build.
func modelOptions(fs vfs.FS, cache *pebble.Cache, log *slog.Logger, bulk bool, flushed *atomic.Int64) *pebble.Options {
	// Bloom filters keep the lookups of keys that are not there (a new pair, a
	// correction's target) from reading blocks of every table. Cache (openModel)
	// and memtable sizes bound the view's memory (a rebuild opens a second model):
	// a 64 MiB memtable applied no faster than a 16 MiB one in BenchmarkPositionsApply.
	opts := &pebble.Options{
		FS: fs, Logger: PebbleLogger{log}, Cache: cache, MemTableSize: 16 << 20,
		FormatMajorVersion: pebble.FormatNewest,
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if bulk {
		// A batch larger than about half the memtable is committed as a flushable
		// batch (sorted once, not inserted key by key): with 4 MiB, the Runner's
		// catch-up batches of 4096 records are, and little else goes through it.
		opts.MemTableSize = 4 << 20
		opts.FS = noSyncFS{fs} // nothing of a build outlives a crash (openModel)
		opts.DisableWAL = true
		opts.DisableAutomaticCompactions = true
		// L0 grows until Apply compacts it (bulkCompactEvery); it must not stall writes.
		opts.L0CompactionThreshold = 1 << 20
		opts.L0CompactionFileThreshold = 1 << 20
		opts.L0StopWritesThreshold = 1 << 20
		opts.EventListener = &pebble.EventListener{FlushEnd: func(fi pebble.FlushInfo) { flushed.Add(int64(fi.InputBytes)) }}
		// L0 tables live only until the next compaction: not compressing them saves
		// compressing at the flush and decompressing at the compaction.
		opts.Levels[0].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
		// Settling reads every L0 table once, in order: 16 KiB blocks under one
		// index block cost a quarter of the block reads of Pebble's 4 KiB (and
		// two-level indexes). Each of the settling's iterators holds a block of
		// every L0 table (16 KiB each). The build's own point
		// reads are few (record rows are looked for only when they exist: rowSet).
		opts.Levels[0].BlockSize = 16 << 10
		opts.Levels[0].IndexBlockSize = 256 << 10
		for i := 1; i < len(opts.Levels); i++ { // they would inherit L0's
			opts.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.SnappyCompression }
		}
	}
	return opts
}

// bulkCompactEvery bounds the L0 tables of a bulk build: after it has flushed that
// many bytes of memtables (and large batches) since, Apply starts compacting the
// build in the background, so lookups (corrections) stay cheap on any log.
var bulkCompactEvery int64 = 1 << 30 // a variable for tests

// bulkCompaction is a manual compaction of a bulk build, running in the background.
type bulkCompaction struct {
	done chan struct{}
	err  error
}

// maybeCompactBulk reports how the last background compaction of the bulk build
// ended, and starts another when the build has flushed bulkCompactEvery bytes
// since. The caller holds mu for reading and is the applying goroutine.
func (p *Positions) maybeCompactBulk() error {
	if c := p.compaction; c != nil {
		select {
		case <-c.done:
			p.compaction = nil
			if c.err != nil {
				return fmt.Errorf("compact bulk build: %w", c.err)
			}
		default:
			return nil
		}
	}
	if n := p.flushed.Load(); n-p.compactedAt >= bulkCompactEvery {
		p.compactedAt = n
		c := &bulkCompaction{done: make(chan struct{})}
		p.compaction = c
		db := p.db
		go func() {
			defer close(c.done)
			c.err = db.Compact(context.Background(), []byte{0}, []byte{0xff}, true)
		}()
	}
	return nil
}

// writeMarker creates an empty file at name, durably.
func writeMarker(fs vfs.FS, name string) error {
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	return syncDir(fs, filepath.Dir(name))
}

// removeMarker removes the bulk marker of dir, durably.
func removeMarker(fs vfs.FS, dir string) error {
	if err := fs.Remove(bulkMarker(dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(fs, filepath.Dir(dir))
}

// endBulk turns a bulk build into an ordinary model: written out sorted
// (settleBulk) while queries go on, it is swapped in under the write lock and
// reopened with WAL and automatic compactions.
func (p *Positions) endBulk() error {
	p.mu.RLock()
	bulk, err := p.bulk, error(nil)
	if bulk && p.db != nil && !p.settled {
		err = p.settleBulk()
	}
	p.mu.RUnlock()
	if !bulk || err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.db == nil {
		return ledger.ErrClosed // closed meanwhile
	}
	if err := p.closeDB(); err != nil {
		return err
	}
	m, err := openModel(p.fs, p.dir, p.log, p.flushed)
	if err != nil {
		return err
	}
	p.db, p.bulk, p.byLog = m.db, m.bulk, m.byLog
	return nil
}

// closeDB closes the DB; a bulk build is settled and swapped first (settleBulk,
// swapSettled), so it reopens as an ordinary model. The caller holds mu for writing.
func (p *Positions) closeDB() error {
	if p.db == nil {
		return nil
	}
	if !p.bulk {
		db := p.db
		p.db = nil
		return db.Close()
	}
	if !p.settled {
		if err := p.settleBulk(); err != nil {
			return err
		}
	}
	return p.swapSettled()
}

// CaughtUp ends the bulk build of a model filled from position 0 (see openModel):
// the Runner calls it once the model has caught up with the log.
func (p *Positions) CaughtUp() error { return p.endBulk() }

func readMeta(r pebble.Reader) (schema int, applied ledger.Position, byLog bool, err error) {
	v, closer, err := r.Get(keySchema)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return 0, applied, false, err
	default:
		schema, err = strconv.Atoi(string(v))
		closer.Close()
		if err != nil {
			schema = -1
		}
	}
	_, closer, err = r.Get(keyRecordsByLog)
	switch {
	case err == nil:
		byLog = true
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return 0, applied, false, err
	}
	applied, err = readApplied(r)
	return schema, applied, byLog, err
}

func readApplied(r pebble.Reader) (ledger.Position, error) {
	v, closer, err := r.Get(keyApplied)
	if errors.Is(err, pebble.ErrNotFound) {
		return ledger.Position{}, nil
	}
	if err != nil {
		return ledger.Position{}, err
	}
	defer closer.Close()
	if len(v) != posLen {
		return ledger.Position{}, errCorrupt
	}
	return getPos(v), nil
}

// Name returns PositionsName.
func (p *Positions) Name() string { return PositionsName }

// Applied returns the position of the last record the view has applied (its checkpoint).
func (p *Positions) Applied() ledger.Position { return p.progress.Applied() }

// Progress returns the tracker of the view's applied position (for WaitFor).
func (p *Positions) Progress() *Progress { return p.progress }

// WaitFor blocks until the view has applied pos, or ctx ends; then it returns a
// *LagError that says how far the view is.
func (p *Positions) WaitFor(ctx context.Context, pos ledger.Position) error {
	return p.progress.WaitFor(ctx, pos)
}

// Close closes the read model, once an old model being deleted in the background
// (removeLater) is gone. Watches end.
func (p *Positions) Close() error {
	p.wmu.Lock()
	for w := range p.watchers {
		w.end(ledger.ErrClosed)
	}
	p.wmu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.closeDB()
	p.removing.Wait()
	return err
}

// Apply folds records into the view. Records MUST come in log order after
// Applied(). Every Pebble batch it commits holds the view's changes for a run of
// records together with the checkpoint of the last of them, so after a crash the
// view holds exactly the records up to its checkpoint. (Usually one batch holds
// them all; a correction that needs to search a pair's versions commits what
// precedes it and gets a batch of its own.) Batches are committed without sync:
// the log is durable, and Pebble's WAL recovers a prefix of committed batches, so
// a crash at most forgets a suffix of them, which the Runner applies again from
// the recovered checkpoint.
//
// A position at or before Applied() is an error, and nothing of the call is
// applied. A record that cannot be decoded, or a failure to commit, is an error that
// may leave a prefix of the records before it applied, with its checkpoint;
// Applied() says how far.
func (p *Positions) Apply(records []store.Record) error {
	if len(records) == 0 {
		return nil
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.db == nil {
		return ledger.ErrClosed
	}
	if p.byLog && p.events == nil {
		return errors.New("positions view: the model keeps rows of corrected records only, and applying to it needs the log to look the others up (LookUpRecordsIn)")
	}
	p.settled = false
	if p.cur.full() {
		p.cur.reset()
	}
	p.recs.age()
	// A model that starts empty with the log at hand is marked, in its first
	// batch, as keeping rows of corrected records only.
	markByLog := p.events != nil && !p.byLog && p.Applied().IsZero()
	a := applier{db: p.db, log: p.log, cur: p.cur, recs: p.recs, rows: p.rows, bulk: p.bulk, trusted: p.trusted}
	if p.byLog || markByLog {
		a.events = p.events
	}
	committed := false
	defer func() {
		if !committed {
			// They may hold what the failed batch did.
			p.cur.reset()
			p.recs.reset()
		}
	}()
	if p.watching() {
		a.changed = make(map[contribKey]struct{})
	}
	last := p.Applied()
	for _, rec := range records {
		if !last.Less(rec.Position) {
			return fmt.Errorf("record %s at %s: not after the applied position %s", rec.EventID, rec.Position, last)
		}
		last = rec.Position
	}
	events := decodeAsync(records, p.trusted)
	// Records go into a plain batch: writing it costs no index, and the pair and
	// record caches answer what applying them needs to know of the batch's own
	// writes (whatever they do not hold, the batch has not written, and the model
	// answers). A large batch is committed as one sorted run rather than key by key
	// into the memtable (Pebble's flushable batches). The one exception is a
	// correction that ends a pair's current version without the pair cache knowing
	// the next one: the pair's versions must be searched, batch included, so the
	// records before it are committed first (with their checkpoint) and it is
	// applied in an indexed batch of its own.
	//
	// A batch grows by doubling; one of about the size it will reach is allocated
	// once: the bytes of the records it will hold at the rate the last batch was
	// written at (batchRate), with a tenth to spare.
	var left int // bytes of the records not yet applied
	for _, r := range records {
		left += len(r.Data) + len(r.Metadata)
	}
	var started int // left when a.b was started
	// next closes a.b, committed or empty, and starts the next batch: plain (for
	// the records left), or indexed (for one correction).
	next := func(plain bool) {
		if a.b != nil {
			a.b.Close()
		}
		if !plain {
			ib := p.db.NewIndexedBatch()
			a.b, a.r, a.plain = ib, ib, false
			return
		}
		started = left
		a.b, a.r, a.plain = p.db.NewBatchWithSize(int(float64(left)*p.batchRate*1.1)), p.db, true
	}
	next(true)
	defer func() { a.b.Close() }()
	var pending ledger.Position       // last record in a.b
	var committedUpTo ledger.Position // last record committed
	defer func() {
		if !committed && !committedUpTo.IsZero() {
			p.progress.Advance(committedUpTo) // a prefix was applied before the error
		}
	}()
	// flush commits a.b when it holds records, with the checkpoint (and, the first
	// time, the mark of a model that keeps rows of corrected records only), and goes
	// on in a batch of the kind asked for (see next).
	flush := func(plain bool) error {
		if pending.IsZero() {
			if plain != a.plain {
				next(plain) // a.b is empty
			}
			return nil
		}
		if markByLog {
			if err := a.b.Set(keyRecordsByLog, nil, nil); err != nil {
				return err
			}
		}
		if err := a.b.Set(keyApplied, putPos(nil, pending), nil); err != nil {
			return err
		}
		if n := started - left; a.plain && n >= 1<<16 {
			p.batchRate = float64(a.b.Len()) / float64(n)
		}
		if err := a.b.Commit(pebble.NoSync); err != nil {
			return fmt.Errorf("commit positions batch: %w", err)
		}
		if markByLog {
			p.byLog, markByLog = true, false
		}
		committedUpTo = pending
		pending = ledger.Position{}
		next(plain)
		return nil
	}
	for i := range records {
		ev, err := events.get(i)
		if err != nil {
			return fmt.Errorf("record %s at %s: %w", records[i].EventID, records[i].Position, err)
		}
		pos := records[i].Position
		left -= len(records[i].Data) + len(records[i].Metadata)
		c, isFix := ev.Body.(*ledger.RecordCorrected)
		if !isFix {
			if err := a.add(pos, ev); err != nil {
				return fmt.Errorf("record %s at %s: %w", records[i].EventID, pos, err)
			}
			pending = pos
			continue
		}
		err = a.correct(pos, ev, c)
		indexed := errors.Is(err, errNeedsIndex) // nothing of it was written
		if indexed {
			if err := flush(false); err != nil {
				return err
			}
			err = a.correct(pos, ev, c)
		}
		if err != nil {
			return fmt.Errorf("record %s at %s: %w", records[i].EventID, pos, err)
		}
		pending = pos
		if indexed {
			if err := flush(true); err != nil { // back to a plain batch
				return err
			}
		}
	}
	if err := flush(true); err != nil {
		return err
	}
	committed = true
	p.progress.Advance(last)
	if a.changed != nil {
		p.notify(p.db, a.changed, last)
	}
	if p.bulk {
		return p.maybeCompactBulk()
	}
	return nil
}

// applier folds records into a batch. r reads the view: the DB for a plain batch
// (plain is set; the pair and record caches know what the batch wrote), the batch
// itself for an indexed one. In a bulk build (bulk), current keys are not written:
// settling derives them from the versions (settleBulk), and until then queries
// find the current version among the versions.
type applier struct {
	db      *pebble.DB
	b       *pebble.Batch
	r       pebble.Reader
	plain   bool
	bulk    bool
	events  store.EventGetter // set when the model keeps rows of corrected records only
	trusted bool              // decode what events returns without checking hashes
	log     *slog.Logger
	changed map[contribKey]struct{} // pairs whose current stance may have changed; nil when nobody watches
	cur     *pairCache
	recs    *recordCache
	rows    *rowSet
	// Buffers for keys and values handed to the batch, which copies them.
	buf, key, ckey, cval []byte
	contribs             []ledger.Contribution // newEntry's, reused
}

// errNeedsIndex says a correction must be applied in an indexed batch (see Apply).
var errNeedsIndex = errors.New("correction needs an indexed batch")

// pairState is what the applier needs to know of a pair to add a version: whether
// the pair is indexed, the suffix of its current version (its greatest open one), if
// any, and, when known, the suffix of its second greatest open version, which becomes
// current when a correction closes the current one (without it, the pair's versions
// are searched).
type pairState struct {
	known, has bool
	suffix     [suffixLen]byte
	// nextKnown says hasNext and next describe the second greatest open version
	// (hasNext false: there is none).
	nextKnown, hasNext bool
	next               [suffixLen]byte
}

// pairCache remembers pairState for the pairs seen, so applying a record costs no
// reads. It holds at most maxCachedPairs pairs (then it starts afresh), so its memory
// is bounded by the size of the table, not of the log. Only the applying goroutine
// uses it; a batch that fails to commit resets it.
//
// Slugs are numbered (ids) and a pair is found by its two numbers: small maps of
// slugs and an integer-keyed map cost a fraction of one map keyed by both slugs.
type pairCache struct {
	ids    map[string]uint32 // party and topic slugs → numbers
	index  map[uint64]int32  // party number << 32 | topic number → states index
	states []pairState
	// complete is set while the cache holds every pair of the model (it started
	// with an empty model and was never reset): then a miss means an unknown pair,
	// with no read, which is what makes a rebuild fast.
	complete bool
	// The last party looked up (when hasLast), and its number.
	hasLast     bool
	lastParty   string
	lastPartyID uint32
}

const maxCachedPairs = 1 << 20

// newPairCache returns an empty cache; empty says the model is empty too.
func newPairCache(empty bool) *pairCache {
	return &pairCache{ids: make(map[string]uint32), index: make(map[uint64]int32), complete: empty}
}

func (c *pairCache) get(party, topic string) (pairState, bool) {
	pid, ok := c.ids[party]
	if !ok {
		return pairState{}, false
	}
	tid, ok := c.ids[topic]
	if !ok {
		return pairState{}, false
	}
	i, ok := c.index[uint64(pid)<<32|uint64(tid)]
	if !ok {
		return pairState{}, false
	}
	return c.states[i], true
}

// put records st. The cache is trimmed only between batches (Apply): within one,
// a pair written by the batch must stay known.
func (c *pairCache) put(party, topic string, st pairState) {
	p, _ := c.slot(party, topic)
	*p = st
}

// slot returns the pair's state, to read or change in place, adding a zero one
// (added) when the cache has none. The pointer is valid until the next pair is added.
func (c *pairCache) slot(party, topic string) (st *pairState, added bool) {
	if !c.hasLast || party != c.lastParty {
		// A record's contributions mostly share one party.
		c.lastParty, c.lastPartyID, c.hasLast = party, c.id(party), true
	}
	k := uint64(c.lastPartyID)<<32 | uint64(c.id(topic))
	if i, ok := c.index[k]; ok {
		return &c.states[i], false
	}
	c.index[k] = int32(len(c.states))
	c.states = append(c.states, pairState{})
	return &c.states[len(c.states)-1], true
}

func (c *pairCache) id(slug string) uint32 {
	id, ok := c.ids[slug]
	if !ok {
		id = uint32(len(c.ids))
		c.ids[slug] = id
	}
	return id
}

// full says whether the cache should start afresh before the next batch.
func (c *pairCache) full() bool { return len(c.states) > maxCachedPairs }

func (c *pairCache) reset() {
	c.hasLast = false
	clear(c.ids)
	clear(c.index)
	c.states = c.states[:0]
	c.complete = false
}

// recEntry is a stance-bearing record as the view holds it: its recordInfo (the r
// row) and the value of each of its current versions (rows[i] is the version of
// info.current[i], open, at info.occ, counting from info.from).
type recEntry struct {
	info recordInfo
	rows []rowValue
}

// recordCache keeps the records the view wrote or read recently, so that a
// correction (which usually names a recent record) finds the record and its
// versions without reading the model. It has two generations: at the start of a
// batch (age), a young one holding maxCachedRows versions becomes the old one and
// the old one is dropped, so the cache holds at most twice that many and a batch's.
// A lookup tries the young one first, where every update goes, so the old one's
// stale copies are never seen; every record a batch writes stays in the cache until
// the batch ends, so what the cache does not hold, the batch has not written. Only
// the applying goroutine uses it; a batch that fails resets it.
type recordCache struct {
	young, old map[string]*recEntry // by event_id
	youngRows  int                  // versions put in young
}

// maxCachedRows bounds the record cache by versions (rows), which is what its
// memory grows with: a veto's record has one per vote.
var maxCachedRows = 1 << 13 // a variable for tests

func newRecordCache() *recordCache {
	c := &recordCache{}
	c.reset()
	return c
}

// get returns the record with event_id id, or nil.
func (c *recordCache) get(id string) *recEntry {
	if e, ok := c.young[id]; ok {
		return e
	}
	return c.old[id]
}

// put records e as the current state of the record id.
func (c *recordCache) put(id string, e *recEntry) {
	c.young[id] = e
	c.youngRows += max(len(e.rows), 1)
}

// age drops the old generation when the young one is full (between batches only).
func (c *recordCache) age() {
	if c.youngRows >= maxCachedRows {
		c.old, c.young, c.youngRows = c.young, make(map[string]*recEntry, len(c.young)), 0
	}
}

func (c *recordCache) reset() {
	c.young, c.old, c.youngRows = make(map[string]*recEntry), make(map[string]*recEntry), 0
}

// rowSet remembers the records the view has written a row of by correcting them,
// while it knows them all (complete: it started with an empty model and has not
// overflowed), so that a correction of a record the record cache no longer holds
// goes straight to the log when the model keeps rows of corrected records only,
// instead of first looking for a row that is not there (in a bulk build, a lookup
// of an absent key reads every table's filter: ~0.5 ms). Holding more than it
// knows (a batch that failed) is harmless: the row is then looked for. Only the
// applying goroutine uses it.
type rowSet struct {
	ids      map[string]struct{}
	complete bool
}

// maxRowSet bounds the ids a rowSet holds; past it the set stops knowing.
const maxRowSet = 1 << 18

func newRowSet(empty bool) *rowSet {
	return &rowSet{ids: make(map[string]struct{}), complete: empty}
}

// may says whether the model may hold a row of the record id.
func (s *rowSet) may(id string) bool {
	if !s.complete {
		return true
	}
	_, ok := s.ids[id]
	return ok
}

// add notes that a row of the record id is written.
func (s *rowSet) add(id string) {
	if !s.complete {
		return
	}
	if len(s.ids) >= maxRowSet {
		s.reset()
		return
	}
	s.ids[id] = struct{}{}
}

// reset forgets every id; the set no longer knows.
func (s *rowSet) reset() {
	clear(s.ids)
	s.complete = false
}

// decoding is the decoding of a batch of records, on up to GOMAXPROCS goroutines, in
// chunks taken in log order, so folding the first records (one goroutine, in order)
// overlaps decoding the later ones: decoding is much of the cost of applying a
// record. Each record's content hash is recomputed unless the store vouches for
// it (trusted: see TrustContent).
type decoding struct {
	events []*ledger.Event
	errs   []error
	ready  []chan struct{} // closed when its chunk is decoded
}

const decodeChunk = 32

// decoder returns ledger.DecodeForFold (DecodeTrusted without what the fold does
// not read) for records whose store vouches for their hashes (trusted), else
// ledger.Decode, which recomputes each.
func decoder(trusted bool) func(eventType string, data, metadata []byte) (*ledger.Event, error) {
	if trusted {
		return ledger.DecodeForFold
	}
	return func(eventType string, data, metadata []byte) (*ledger.Event, error) {
		e, _, err := ledger.Decode(eventType, data, metadata)
		return e, err
	}
}

func decodeAsync(records []store.Record, trusted bool) *decoding {
	decode := decoder(trusted)
	chunks := (len(records) + decodeChunk - 1) / decodeChunk
	d := &decoding{
		events: make([]*ledger.Event, len(records)),
		errs:   make([]error, len(records)),
		ready:  make([]chan struct{}, chunks),
	}
	for c := range d.ready {
		d.ready[c] = make(chan struct{})
	}
	var next atomic.Int64
	for range min(runtime.GOMAXPROCS(0), chunks) {
		go func() {
			for c := int(next.Add(1) - 1); c < chunks; c = int(next.Add(1) - 1) {
				for i := c * decodeChunk; i < min((c+1)*decodeChunk, len(records)); i++ {
					d.events[i], d.errs[i] = decode(records[i].Type, records[i].Data, records[i].Metadata)
				}
				close(d.ready[c])
			}
		}()
	}
	return d
}

// get waits for record i to be decoded and hands it over: the decoding keeps no
// reference to it, so what the fold does not keep can go before the batch ends.
func (d *decoding) get(i int) (*ledger.Event, error) {
	<-d.ready[i/decodeChunk]
	e := d.events[i]
	d.events[i] = nil
	return e, d.errs[i]
}

// newEntry is a stance-bearing record at pos as the view holds it before any
// correction: its contributions, current from pos at its valid time.
func (a *applier) newEntry(pos ledger.Position, ev *ledger.Event) *recEntry {
	a.contribs = ledger.AppendContributions(a.contribs[:0], ev)
	contribs := a.contribs
	ri := recordInfo{
		pos: pos, party: ev.Party, parties: ledger.Speakers(ev),
		occ: ev.OccurredAt.UTC(), from: pos,
		current: make([]contribKey, len(contribs)),
	}
	rows := make([]rowValue, len(contribs))
	for i, c := range contribs {
		ri.current[i] = contribKey{c.Party, c.Stance.Topic}
		rows[i] = rowValue{
			alignment: c.Stance.Alignment, act: c.Stance.Act, eventID: ev.EventID,
			summary: c.Stance.Summary, quote: c.Stance.Quote,
		}
	}
	return &recEntry{info: ri, rows: rows}
}

// add stores a stance-bearing record and its contributions, and its row unless
// the model keeps rows of corrected records only (a.events: a correction finds
// it in the log).
func (a *applier) add(pos ledger.Position, ev *ledger.Event) error {
	// The log holds each event_id once (store.Proposed), so no lookup is needed.
	e := a.newEntry(pos, ev)
	ri := &e.info
	for i, ck := range ri.current {
		if err := a.putVersion(ck.party, ck.topic, suffix{occ: ri.occ, rec: pos, idx: uint32(i), from: pos}, &e.rows[i]); err != nil {
			return err
		}
	}
	a.recs.put(ev.EventID, e)
	if a.events != nil {
		return nil
	}
	a.key = append(append(a.key[:0], prefixRecord), ev.EventID...)
	a.buf = ri.append(a.buf[:0])
	return a.b.Set(a.key, a.buf, nil)
}

// correct applies a correction at pos to the record it names. The record's state
// after the correction is computed from its state before it:
//   - replacement_stances (non-empty) become its stances, attributed like the
//     original (ledger.Attribute), and reinstate a withdrawn record;
//   - corrected_occurred_at becomes its valid time;
//   - withdraw leaves it no stances (until a later replacement);
//   - a correction that only adds sources changes no stance but is listed.
//
// So a later correction overrides an earlier one field by field: replace then
// re-date keeps the replacement at the new time; re-date then replace keeps the new
// time; withdraw then re-date stays withdrawn. Every version that counted before is
// closed at pos, and the new versions count from pos. A correction that names no
// stance-bearing record already in the view (validation prevents it) changes nothing.
func (a *applier) correct(pos ledger.Position, ev *ledger.Event, c *ledger.RecordCorrected) error {
	rk := recordKey(c.CorrectsEventID)
	target, err := a.record(c.CorrectsEventID, pos)
	if err != nil {
		return err
	}
	if target == nil {
		a.log.Warn("positions: correction names no stance-bearing record; ignored",
			"event_id", ev.EventID, "corrects_event_id", c.CorrectsEventID, "position", pos.String())
		return nil
	}
	ri := target.info // a copy: the cached entry stays as it is
	if ri.party != ev.Party {
		a.log.Warn("positions: correction names a record of another party; ignored",
			"event_id", ev.EventID, "corrects_event_id", c.CorrectsEventID, "position", pos.String())
		return nil
	}
	fix := correction{pos: pos, eventID: ev.EventID, reason: c.Reason}
	if len(c.ReplacementStances) > 0 {
		fix.effect |= EffectReplace
	}
	if c.CorrectedOccurredAt != nil {
		fix.effect |= EffectRedate
		fix.redatedTo = c.CorrectedOccurredAt.UTC()
	}
	if c.Withdraw {
		fix.effect |= EffectWithdraw
	}
	ri.fixes = append(slices.Clip(ri.fixes), fix)
	a.rows.add(c.CorrectsEventID)
	if fix.effect == 0 {
		a.recs.put(c.CorrectsEventID, &recEntry{info: ri, rows: target.rows})
		return a.b.Set(rk, ri.append(nil), nil)
	}
	lost, search, err := a.closing(ri)
	if err != nil {
		return err
	}
	if search && a.plain {
		return errNeedsIndex
	}

	// Close the versions that counted until now, keeping their stances for a re-date.
	old := target.rows
	for i, ck := range ri.current {
		key := versionPrefix(ck.party, ck.topic)
		key = suffix{occ: ri.occ, rec: ri.pos, idx: uint32(i), from: ri.from}.append(key)
		row := old[i]
		row.until, row.untilEventID, row.untilEffect = pos, ev.EventID, fix.effect
		if err := a.b.Set(key, row.append(nil), nil); err != nil {
			return err
		}
	}

	type next struct {
		ck  contribKey
		row rowValue
	}
	var nexts []next
	switch {
	case fix.effect&EffectWithdraw != 0:
	case fix.effect&EffectReplace != 0:
		target := &ledger.Event{Party: ri.party, Body: &ledger.StatementIssued{CoSigners: ri.parties}}
		for _, con := range ledger.Attribute(target, c.ReplacementStances) {
			nexts = append(nexts, next{contribKey{con.Party, con.Stance.Topic}, rowValue{
				alignment: con.Stance.Alignment, act: con.Stance.Act,
				summary: con.Stance.Summary, quote: con.Stance.Quote,
			}})
		}
	default: // re-date only: the same stances
		for i, ck := range ri.current {
			nexts = append(nexts, next{ck, rowValue{
				alignment: old[i].alignment, act: old[i].act, summary: old[i].summary, quote: old[i].quote,
			}})
		}
	}
	if fix.effect&EffectRedate != 0 {
		ri.occ = fix.redatedTo
	}
	// A pair whose current version was just closed gets its next open version as
	// current; then the new versions compete as usual.
	for _, ck := range lost {
		if err := a.promote(ck); err != nil {
			return err
		}
	}
	ri.from = pos
	ri.current = make([]contribKey, len(nexts))
	rows := make([]rowValue, len(nexts))
	for i, n := range nexts {
		ri.current[i] = n.ck
		rows[i] = n.row
		rows[i].eventID, rows[i].sinceEventID = c.CorrectsEventID, ev.EventID
		if err := a.putVersion(n.ck.party, n.ck.topic, suffix{occ: ri.occ, rec: ri.pos, idx: uint32(i), from: pos}, &rows[i]); err != nil {
			return err
		}
	}
	a.recs.put(c.CorrectsEventID, &recEntry{info: ri, rows: rows})
	return a.b.Set(rk, ri.append(nil), nil)
}

// record returns the stance-bearing record with event_id id as the view holds it,
// for a correction at pos: from the record cache, else read from the model, or
// from the log (lookUp) when the model keeps rows of corrected records only, and
// cached; nil when the view holds no such record.
func (a *applier) record(id string, pos ledger.Position) (*recEntry, error) {
	if e := a.recs.get(id); e != nil {
		return e, nil
	}
	if a.events != nil && !a.rows.may(id) {
		return a.lookUp(id, pos) // no row: never corrected
	}
	v, closer, err := a.r.Get(recordKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		if a.events != nil {
			return a.lookUp(id, pos)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ri, err := parseRecordInfo(v)
	closer.Close()
	if err != nil {
		return nil, fmt.Errorf("record %q: %w", id, err)
	}
	rows := make([]rowValue, len(ri.current))
	for i, ck := range ri.current {
		key := suffix{occ: ri.occ, rec: ri.pos, idx: uint32(i), from: ri.from}.append(versionPrefix(ck.party, ck.topic))
		v, closer, err := a.r.Get(key)
		if err != nil {
			return nil, fmt.Errorf("version of %q for (%s, %s): %w", id, ck.party, ck.topic, err)
		}
		rows[i], err = parseRow(v)
		closer.Close()
		if err != nil {
			return nil, err
		}
	}
	e := &recEntry{info: ri, rows: rows}
	a.recs.put(id, e)
	return e, nil
}

// lookUpTimeout bounds one lookUp; past it, Apply fails with ledger.ErrUnavailable
// and the Runner tries again.
const lookUpTimeout = 30 * time.Second

// lookUp finds the record id, which the model keeps no row of, in the log: a
// record that no correction has changed (a correction writes its row), so the view
// holds it as stored (newEntry). It returns nil when the log holds no
// stance-bearing record id before pos, the correction's position (then the view
// holds none either). A failure to read the log that matches ledger.ErrUnavailable
// fails Apply with it, for the Runner to try again.
func (a *applier) lookUp(id string, pos ledger.Position) (*recEntry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookUpTimeout)
	defer cancel()
	rec, err := a.events.GetEvent(ctx, id)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return nil, nil
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%w: look up record %q in the log: %v", ledger.ErrUnavailable, id, err)
	case err != nil:
		return nil, fmt.Errorf("look up record %q in the log: %w", id, err)
	case !rec.Position.Less(pos):
		return nil, nil // recorded after the correction
	}
	ev, err := decoder(a.trusted)(rec.Type, rec.Data, rec.Metadata)
	if err != nil {
		return nil, fmt.Errorf("record %q at %s, from the log: %w", id, rec.Position, err)
	}
	if _, isFix := ev.Body.(*ledger.RecordCorrected); isFix {
		return nil, nil
	}
	e := a.newEntry(rec.Position, ev)
	a.recs.put(id, e)
	return e, nil
}

// closing works out what closing ri's current versions does to their pairs, before
// anything is written: it returns the pairs whose current version it closes (lost),
// and search, set when one of them must have its versions searched for the next
// current one (recomputeCurrent), which must see the batch's own writes: the pair
// cache does not know its second open version, or that one is closed too (the pair
// then forgets it).
func (a *applier) closing(ri recordInfo) (lost []contribKey, search bool, err error) {
	closed := make([][suffixLen]byte, len(ri.current))
	for i := range closed {
		suffix{occ: ri.occ, rec: ri.pos, idx: uint32(i), from: ri.from}.append(closed[i][:0])
	}
	for _, ck := range ri.current {
		st, err := a.state(ck.party, ck.topic)
		if err != nil {
			return nil, false, err
		}
		if st.nextKnown && st.hasNext && slices.Contains(closed, st.next) {
			st.nextKnown = false
		}
		if st.has && slices.Contains(closed, st.suffix) {
			if !slices.Contains(lost, ck) {
				lost = append(lost, ck)
			}
			search = search || !st.nextKnown
		}
	}
	return lost, search, nil
}

// putVersion writes a new version and makes it current if it beats the current one
// (a new version never ends another, so comparing suffices), keeping the pair's
// second greatest open version known when it was.
func (a *applier) putVersion(party, topic string, s suffix, row *rowValue) error {
	// The pair's state before the version is written: an indexed batch would show
	// it to state's read of the versions (in a bulk build).
	cur, err := a.state(party, topic)
	if err != nil {
		return err
	}
	a.key = s.append(append(appendPairKey(a.key[:0], prefixVersion, party, topic), 0))
	key := a.key
	a.buf = row.append(a.buf[:0])
	if err := a.b.Set(key, a.buf, nil); err != nil {
		return err
	}
	if !cur.known {
		// First version of this pair: index it.
		if err := a.b.Set(pairKey(prefixPair, party, topic), nil, nil); err != nil {
			return err
		}
		if err := a.b.Set(pairKey(prefixTopic, topic, party), nil, nil); err != nil {
			return err
		}
		*cur = pairState{known: true, nextKnown: true}
	}
	suf := key[len(key)-suffixLen:]
	if !cur.has || bytes.Compare(suf, cur.suffix[:]) > 0 {
		// The greatest open version now; the current one (the greatest until now,
		// or none) is the second.
		*cur = pairState{known: true, has: true, nextKnown: true, hasNext: cur.has, next: cur.suffix}
		copy(cur.suffix[:], suf)
		return a.writeCurrent(party, topic, cur.suffix[:], a.buf)
	}
	if cur.nextKnown && (!cur.hasNext || bytes.Compare(suf, cur.next[:]) > 0) {
		cur.hasNext = true
		copy(cur.next[:], suf)
	}
	return nil
}

// state returns what the view knows of a pair, in the pair cache, where the caller
// may change it: read from the model (the batch, when indexed) into the cache when
// the cache does not know the pair and does not know every pair: its current key,
// or in a bulk build, which has none, its versions. The pointer is valid until the
// cache next adds a pair.
func (a *applier) state(party, topic string) (*pairState, error) {
	st, added := a.cur.slot(party, topic)
	if !added || a.cur.complete {
		return st, nil
	}
	if a.bulk {
		found, _, err := a.openVersions(contribKey{party, topic})
		if err != nil {
			return nil, err // Apply fails, and resets the cache
		}
		*st = found // openVersions adds no pair: st is still valid
		return st, nil
	}
	v, closer, err := a.r.Get(pairKey(prefixCurrent, party, topic))
	switch {
	case err == nil:
		st.known, st.has = true, true
		copy(st.suffix[:], v)
		closer.Close()
	case errors.Is(err, pebble.ErrNotFound):
		_, closer, err := a.r.Get(pairKey(prefixPair, party, topic))
		switch {
		case err == nil:
			st.known = true
			closer.Close()
		case !errors.Is(err, pebble.ErrNotFound):
			return nil, err // Apply fails, and resets the cache
		}
	default:
		return nil, err
	}
	return st, nil
}

// setCurrent makes st (whose suffix names a version with the value row) the pair's
// state and current version. A nil row stores the suffix alone (see promote).
func (a *applier) setCurrent(party, topic string, st pairState, row []byte) error {
	a.cur.put(party, topic, st)
	return a.writeCurrent(party, topic, st.suffix[:], row)
}

// writeCurrent writes the pair's current key: suffix, and the version's value row
// (nil: the suffix alone). A bulk build writes none (see applier).
func (a *applier) writeCurrent(party, topic string, suffix, row []byte) error {
	if a.changed != nil {
		a.changed[contribKey{party, topic}] = struct{}{}
	}
	if a.bulk {
		return nil
	}
	a.cval = append(append(a.cval[:0], suffix...), row...)
	a.ckey = appendPairKey(a.ckey[:0], prefixCurrent, party, topic)
	return a.b.Set(a.ckey, a.cval, nil)
}

// promote finds the current version of a pair whose current one was just closed: its
// second greatest open version when the pair cache knows it, else by searching the
// pair's versions (recomputeCurrent). The known one becomes current by its suffix
// alone: reading its value could mean reading an old part of the model, which costs
// a bulk build more than the read queries then make (decodeCurrent).
func (a *applier) promote(ck contribKey) error {
	st, _ := a.cur.get(ck.party, ck.topic)
	switch {
	case !st.nextKnown:
		return a.recomputeCurrent(ck)
	case !st.hasNext:
		return a.noCurrent(ck)
	}
	return a.setCurrent(ck.party, ck.topic, pairState{known: true, has: true, suffix: st.next}, nil)
}

// recomputeCurrent finds the current stance of a pair, its greatest version that
// still counts, and the second greatest.
func (a *applier) recomputeCurrent(ck contribKey) error {
	st, row, err := a.openVersions(ck)
	if err != nil {
		return err
	}
	if !st.has {
		return a.noCurrent(ck)
	}
	return a.setCurrent(ck.party, ck.topic, st, row)
}

// openVersions searches a pair's versions (through a.r) for its greatest open
// version (the current one, whose value it returns) and its second greatest. The
// state it returns is known when the pair has any version, and knows its next.
func (a *applier) openVersions(ck contribKey) (st pairState, row []byte, err error) {
	prefix := versionPrefix(ck.party, ck.topic)
	it, err := a.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return pairState{}, nil, err
	}
	defer it.Close()
	for ok := it.Last(); ok; ok = it.Prev() {
		st.known = true
		until, err := rowUntil(it.Value())
		if err != nil {
			return pairState{}, nil, err
		}
		if !until.IsZero() { // closed
			continue
		}
		if !st.has {
			st.has = true
			copy(st.suffix[:], it.Key()[len(prefix):])
			row = bytes.Clone(it.Value())
			continue
		}
		st.hasNext = true
		copy(st.next[:], it.Key()[len(prefix):])
		break
	}
	if err := it.Error(); err != nil {
		return pairState{}, nil, err
	}
	st.nextKnown = true
	return st, row, nil
}

// noCurrent records that a pair has no version that counts any more.
func (a *applier) noCurrent(ck contribKey) error {
	if a.changed != nil {
		a.changed[ck] = struct{}{}
	}
	a.cur.put(ck.party, ck.topic, pairState{known: true, nextKnown: true})
	if a.bulk {
		return nil
	}
	return a.b.Delete(pairKey(prefixCurrent, ck.party, ck.topic), nil)
}

func recordKey(eventID string) []byte {
	return append([]byte{prefixRecord}, eventID...)
}

// prefixEnd returns the smallest key greater than every key with prefix.
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// PebbleLogger is the pebble.Logger of every read model: Pebble's informational
// chatter goes to Log at debug level, its errors (a failed flush or compaction, a
// corrupt table) at error level, and Fatalf logs and panics (Pebble's own logger
// would exit the process). A nil Log discards everything but the panic.
type PebbleLogger struct{ Log *slog.Logger }

// Infof logs the message at debug level.
func (l PebbleLogger) Infof(format string, args ...any) {
	l.logger().Debug(fmt.Sprintf(format, args...), "source", "pebble")
}

// Errorf logs the message at error level.
func (l PebbleLogger) Errorf(format string, args ...any) {
	l.logger().Error(fmt.Sprintf(format, args...), "source", "pebble")
}

// Fatalf logs the message at error level and panics with it.
func (l PebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.logger().Error(msg, "source", "pebble", "fatal", true)
	panic("pebble: " + msg)
}

func (l PebbleLogger) logger() *slog.Logger {
	if l.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Log
}

// watcher is one Watch call.
type watcher struct {
	party, topic string
	ch           chan Change
	once         sync.Once
	done         chan struct{}
	err          error
}

func (w *watcher) end(err error) {
	w.once.Do(func() { w.err = err; close(w.done) })
}

func (p *Positions) watching() bool {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return len(p.watchers) > 0
}

// notify sends each changed pair's new current stance, read through r (the model
// just committed), to the watchers that want it. A pair whose stance cannot be
// read ends those watchers with the error: sending the change without a stance
// would tell them the pair has none. The caller holds p.mu for reading.
func (p *Positions) notify(r pebble.Reader, changed map[contribKey]struct{}, applied ledger.Position) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	// Each change carries what a current query answers at applied (view.get).
	v := &view{r: r, applied: applied, current: !p.bulk}
	defer v.close()
	for ck := range changed {
		ch := Change{Party: ck.party, Topic: ck.topic, Applied: applied}
		cur, ok, err := v.get(ck.party, ck.topic, time.Time{}, applied)
		if err != nil {
			err = fmt.Errorf("positions view: read the current stance of (%s, %s) at %s: %w", ck.party, ck.topic, applied, err)
		} else if ok {
			ch.Current = &cur
		}
		for w := range p.watchers {
			if (w.party != "" && w.party != ck.party) || (w.topic != "" && w.topic != ck.topic) {
				continue
			}
			if err != nil {
				w.end(err)
				delete(p.watchers, w)
				continue
			}
			select {
			case w.ch <- ch:
			default:
				w.end(ErrWatchTooSlow)
				delete(p.watchers, w)
			}
		}
	}
}

// watchBuffer is how many changes a watcher may fall behind before it is ended
// with ErrWatchTooSlow.
const watchBuffer = 4096

// Watch yields every change of the current stance of the pairs matching party and
// topic ("" matches any) applied after it starts, in apply order, until ctx ends
// (it then yields ctx's error), the view closes (ledger.ErrClosed) or the consumer
// falls too far behind (ErrWatchTooSlow).
func (p *Positions) Watch(ctx context.Context, party, topic string) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		w := &watcher{party: party, topic: topic, ch: make(chan Change, watchBuffer), done: make(chan struct{})}
		p.wmu.Lock()
		p.watchers[w] = struct{}{}
		p.wmu.Unlock()
		defer func() {
			p.wmu.Lock()
			delete(p.watchers, w)
			p.wmu.Unlock()
		}()
		for {
			select {
			case c := <-w.ch:
				if !yield(c, nil) {
					return
				}
			case <-w.done:
				// Deliver what was queued before the end.
				for {
					select {
					case c := <-w.ch:
						if !yield(c, nil) {
							return
						}
					default:
						yield(Change{}, w.err)
						return
					}
				}
			case <-ctx.Done():
				yield(Change{}, ctx.Err())
				return
			}
		}
	}
}

// TrustContent says that the records Apply will be given come from a store that
// vouches for their content hashes (store.ContentVoucher): Apply then decodes them
// without recomputing each hash (ledger.DecodeForFold), and so will a build of the
// view (NewBuild). Without it, every record's hash is checked against its content
// (ledger.Decode), and a record that fails is an error that stops the projection
// rather than folding content the log does not vouch for. Call it before the first
// Apply.
func (p *Positions) TrustContent() { p.trusted = true }

// LookUpRecordsIn gives the view the log its records come from, and lets a model
// that starts empty keep rows only of the records that corrections changed: a
// correction of another record that the view no longer holds in memory finds it in
// the log (GetEvent; its state is then the record as stored). A million records
// then cost a million keys fewer to write, sort and settle. A model built so is
// marked (keyRecordsByLog), and applying to it without the log is an error; a model
// that has a row of every record goes on writing them. Call it before the first
// Apply.
func (p *Positions) LookUpRecordsIn(events store.EventGetter) { p.events = events }

// NewBuild opens an empty positions model in a fresh directory next to the live
// one (<dir>.rebuild), for Runner.Rebuild; it trusts content, and looks records up
// in the log (LookUpRecordsIn), as the live one does.
func (p *Positions) NewBuild() (Projection, error) {
	dir := p.dir + rebuildSuffix
	if err := p.fs.RemoveAll(dir); err != nil {
		return nil, err
	}
	b, err := newPositions(p.fs, dir, p.log)
	if err != nil {
		return nil, err
	}
	b.trusted, b.events = p.trusted, p.events
	return b, nil
}

// SwitchTo replaces the live model with build (from NewBuild) atomically for
// readers: under the write lock it closes both, renames the live directory away,
// renames the build into its place, syncs the parent directory and reopens it; the
// old one is removed in the background (removeLater). A crash part-way leaves either
// the old model, or no model (OpenPositions then starts empty and the Runner rebuilds
// from position 0).
func (p *Positions) SwitchTo(build Projection) error {
	b, ok := build.(*Positions)
	if !ok || b.dir != p.dir+rebuildSuffix {
		return fmt.Errorf("positions: SwitchTo needs a build from NewBuild")
	}
	if err := b.Close(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.closeDB(); err != nil {
		return err
	}
	retired, err := p.retire(p.dir)
	if err != nil {
		return err
	}
	if err := p.fs.Rename(b.dir, p.dir); err != nil {
		return err
	}
	if err := syncDir(p.fs, filepath.Dir(p.dir)); err != nil {
		return err
	}
	m, err := openModel(p.fs, p.dir, p.log, p.flushed)
	if err != nil {
		return err
	}
	p.db, p.bulk, p.byLog = m.db, m.bulk, m.byLog
	p.cur.reset()
	p.recs.reset()
	p.rows.reset()
	p.progress.Advance(m.applied)
	p.removeLater(retired)
	return nil
}

// retire renames the closed model in dir to dir+retiredSuffix, for removeLater,
// once an earlier one is removed. The caller holds mu for writing.
func (p *Positions) retire(dir string) (string, error) {
	p.removing.Wait()
	retired := dir + retiredSuffix
	return retired, p.fs.Rename(dir, retired)
}

// removeLater removes a retired model in the background, so that the view need not
// wait for the file system to delete a model's files (half a second for the build
// of a million records). Close waits for it; a model left behind by a crash is
// removed at the next open. The caller holds mu for writing.
func (p *Positions) removeLater(dir string) {
	p.removing.Go(func() {
		if err := p.fs.RemoveAll(dir); err != nil {
			p.log.Warn("positions view: could not remove an old model", "dir", dir, "err", err)
		}
	})
}

// DiscardBuild closes and removes a build from NewBuild.
func (p *Positions) DiscardBuild(build Projection) error {
	b, ok := build.(*Positions)
	if !ok || b.dir != p.dir+rebuildSuffix {
		return fmt.Errorf("positions: DiscardBuild needs a build from NewBuild")
	}
	b.mu.Lock()
	var err error
	if b.db != nil {
		if c := b.compaction; c != nil {
			<-c.done
		}
		err = b.db.Close() // no flush: the build is thrown away
		b.db = nil
	}
	b.mu.Unlock()
	return errors.Join(err, p.fs.RemoveAll(b.dir), p.fs.RemoveAll(b.dir+settledSuffix), removeMarker(p.fs, b.dir))
}

func syncDir(fs vfs.FS, dir string) error {
	f, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
