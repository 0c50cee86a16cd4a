package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// PositionsName is the name of the positions projection: its directory under
// <data>/views/ and its name in health and metrics.
const PositionsName = "positions"

// PositionsSchema is the version of the positions read model's key layout. A read
// model written with another version is discarded and rebuilt from the log.
const PositionsSchema = 1

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
	cur      *pairCache // used by Apply only

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
	for _, leftover := range []string{dir + rebuildSuffix, dir + retiredSuffix} {
		if err := fs.RemoveAll(leftover); err != nil {
			return nil, fmt.Errorf("remove %s: %w", leftover, err)
		}
	}
	db, applied, err := openModel(fs, dir, log)
	if err != nil {
		return nil, err
	}
	return &Positions{
		dir: dir, fs: fs, log: log, db: db,
		progress: NewProgress(PositionsName, applied),
		cur:      newPairCache(applied.IsZero()),
		watchers: make(map[*watcher]struct{}),
	}, nil
}

const (
	rebuildSuffix = ".rebuild"
	retiredSuffix = ".retired"
)

// openModel opens the Pebble DB in dir, discarding it when its schema differs.
func openModel(fs vfs.FS, dir string, log *slog.Logger) (*pebble.DB, ledger.Position, error) {
	if err := fs.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, ledger.Position{}, err
	}
	// Bloom filters keep the lookups of keys that are not there (a new pair, a
	// correction's target) from reading blocks of every table. Cache and memtable
	// sizes bound the view's memory (a rebuild opens a second model): a 64 MiB
	// memtable applied no faster than a 16 MiB one in BenchmarkPositionsApply.
	cache := pebble.NewCache(32 << 20)
	defer cache.Unref()
	opts := &pebble.Options{FS: fs, Logger: QuietPebbleLogger{}, Cache: cache, MemTableSize: 16 << 20}
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, ledger.Position{}, fmt.Errorf("open positions view %s: %w", dir, err)
	}
	schema, applied, err := readMeta(db)
	if err != nil {
		db.Close()
		return nil, ledger.Position{}, err
	}
	switch {
	case schema == 0 && applied.IsZero():
		if err := db.Set(keySchema, []byte(strconv.Itoa(PositionsSchema)), pebble.Sync); err != nil {
			db.Close()
			return nil, ledger.Position{}, err
		}
		return db, applied, nil
	case schema != PositionsSchema:
		log.Warn("positions view has another schema version; rebuilding it from the log",
			"dir", dir, "found", schema, "want", PositionsSchema)
		db.Close()
		if err := fs.RemoveAll(dir); err != nil {
			return nil, ledger.Position{}, err
		}
		return openModel(fs, dir, log)
	}
	return db, applied, nil
}

func readMeta(r pebble.Reader) (schema int, applied ledger.Position, err error) {
	v, closer, err := r.Get(keySchema)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return 0, applied, err
	default:
		schema, err = strconv.Atoi(string(v))
		closer.Close()
		if err != nil {
			schema = -1
		}
	}
	applied, err = readApplied(r)
	return schema, applied, err
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

// Close closes the read model. Watches end.
func (p *Positions) Close() error {
	p.wmu.Lock()
	for w := range p.watchers {
		w.end(ledger.ErrClosed)
	}
	p.wmu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.db == nil {
		return nil
	}
	err := p.db.Close()
	p.db = nil
	return err
}

// Apply folds records into the view. Records MUST come in log order after
// Applied(). Every Pebble batch it commits holds the view's changes for a run of
// records together with the checkpoint of the last of them, so after a crash the
// view holds exactly the records up to its checkpoint. (New records go in one batch;
// each correction commits what precedes it and then gets a batch of its own, since
// it reads what came before.) Batches are committed without sync: the log is
// durable, and Pebble's WAL recovers a prefix of committed batches, so a crash at
// most forgets a suffix of them, which the Runner applies again from the recovered
// checkpoint.
//
// A record that cannot be decoded, or a position at or before Applied(), is an
// error, and nothing of the call is applied. A failure to commit may leave a prefix
// of the records applied, with its checkpoint; Applied() says how far.
func (p *Positions) Apply(records []store.Record) error {
	if len(records) == 0 {
		return nil
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.db == nil {
		return ledger.ErrClosed
	}
	if len(p.cur.m) > maxCachedPairs {
		p.cur.reset()
	}
	a := applier{db: p.db, log: p.log, cur: p.cur}
	committed := false
	defer func() {
		if !committed {
			p.cur.reset() // it may hold what the failed batch did
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
	events, err := decodeAll(records)
	if err != nil {
		return err
	}
	// New records go into a plain batch: writing it costs no index, and the pair
	// cache answers what applying them needs to know. A correction reads what came
	// before it, so the records before it are committed first (with their
	// checkpoint), and it is applied in an indexed batch of its own.
	a.b, a.r = p.db.NewBatch(), p.db
	defer func() { a.b.Close() }()
	var pending ledger.Position // last record in a.b
	flush := func() error {
		if pending.IsZero() {
			return nil
		}
		if err := a.b.Set(keyApplied, putPos(nil, pending), nil); err != nil {
			return err
		}
		if err := a.b.Commit(pebble.NoSync); err != nil {
			return fmt.Errorf("commit positions batch: %w", err)
		}
		p.progress.Advance(pending)
		pending = ledger.Position{}
		a.b.Close()
		a.b, a.r = p.db.NewBatch(), p.db
		return nil
	}
	for i, ev := range events {
		pos := records[i].Position
		c, isFix := ev.Body.(*ledger.RecordCorrected)
		if !isFix {
			if err := a.add(pos, ev); err != nil {
				return fmt.Errorf("record %s at %s: %w", records[i].EventID, pos, err)
			}
			pending = pos
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		ib := p.db.NewIndexedBatch()
		a.b.Close()
		a.b, a.r = ib, ib
		if err := a.correct(pos, ev, c); err != nil {
			return fmt.Errorf("record %s at %s: %w", records[i].EventID, pos, err)
		}
		pending = pos
		if err := flush(); err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	committed = true
	p.progress.Advance(last)
	if a.changed != nil {
		p.notify(p.db, a.changed, last)
	}
	return nil
}

// applier folds records into a batch. r reads what the view holds before the
// batch's writes: the DB for a plain batch of new records (whose effects the pair
// cache knows), the batch itself for an indexed one.
type applier struct {
	db      *pebble.DB
	b       *pebble.Batch
	r       pebble.Reader
	log     *slog.Logger
	changed map[contribKey]struct{} // pairs whose current stance may have changed; nil when nobody watches
	cur     *pairCache
	buf     []byte
}

// pairState is what the applier needs to know of a pair to add a version: whether
// the pair is indexed, and the suffix of its current version, if any.
type pairState struct {
	known, has bool
	suffix     [suffixLen]byte
}

// pairCache remembers pairState for the pairs seen, so applying a record costs no
// reads. It holds at most maxCachedPairs pairs (then it starts afresh), so its memory
// is bounded by the size of the table, not of the log. Only the applying goroutine
// uses it; a batch that fails to commit resets it.
type pairCache struct {
	m map[string]pairState
	// complete is set while the cache holds every pair of the model (it started
	// with an empty model and was never reset): then a miss means an unknown pair,
	// with no read, which is what makes a rebuild fast.
	complete bool
}

const maxCachedPairs = 1 << 20

// newPairCache returns an empty cache; empty says the model is empty too.
func newPairCache(empty bool) *pairCache {
	return &pairCache{m: make(map[string]pairState), complete: empty}
}

func (c *pairCache) get(party, topic string) (pairState, bool) {
	st, ok := c.m[party+"\x00"+topic]
	return st, ok
}

// put records st. The cache is trimmed only between batches (Apply): within one,
// a pair written by the batch must stay known.
func (c *pairCache) put(party, topic string, st pairState) {
	c.m[party+"\x00"+topic] = st
}

func (c *pairCache) reset() {
	clear(c.m)
	c.complete = false
}

// decodeAll decodes records on up to GOMAXPROCS goroutines: decoding (JSON and the
// content hash check) is most of the cost of applying a record, and the records of a
// batch are independent until they are folded, in order, by one goroutine. The log
// checked each record's content hash when it was appended, so it is not recomputed.
func decodeAll(records []store.Record) ([]*ledger.Event, error) {
	events := make([]*ledger.Event, len(records))
	errs := make([]error, len(records))
	workers := min(runtime.GOMAXPROCS(0), 1+len(records)/64)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(records); i += workers {
				events[i], _, errs[i] = ledger.DecodeTrusted(records[i].Type, records[i].Data, records[i].Metadata)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("record %s at %s: %w", records[i].EventID, records[i].Position, err)
		}
	}
	return events, nil
}

// add stores a stance-bearing record and its contributions.
func (a *applier) add(pos ledger.Position, ev *ledger.Event) error {
	// The log holds each event_id once (store.Proposed), so no lookup is needed.
	rk := recordKey(ev.EventID)
	contribs := ledger.Contributions(ev)
	ri := recordInfo{
		pos: pos, party: ev.Party, parties: attributedParties(ev),
		occ: ev.OccurredAt.UTC(), from: pos,
		current: make([]contribKey, len(contribs)),
	}
	for i, c := range contribs {
		ri.current[i] = contribKey{c.Party, c.Stance.Topic}
		row := rowValue{
			alignment: c.Stance.Alignment, act: c.Stance.Act, eventID: ev.EventID,
			summary: c.Stance.Summary, quote: c.Stance.Quote,
		}
		if err := a.putVersion(c.Party, c.Stance.Topic, suffix{occ: ri.occ, rec: pos, idx: uint32(i), from: pos}, &row, true); err != nil {
			return err
		}
	}
	return a.b.Set(rk, ri.append(nil), nil)
}

// attributedParties returns the parties e's stances count for (ledger.Attribute):
// the ones a replacement of its stances goes to.
func attributedParties(e *ledger.Event) []string {
	var parties []string
	for _, c := range ledger.Attribute(e, []ledger.Stance{{}}) {
		parties = append(parties, c.Party)
	}
	return parties
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
	v, closer, err := a.r.Get(rk)
	if errors.Is(err, pebble.ErrNotFound) {
		a.log.Warn("positions: correction names no stance-bearing record; ignored",
			"event_id", ev.EventID, "corrects_event_id", c.CorrectsEventID, "position", pos.String())
		return nil
	}
	if err != nil {
		return err
	}
	ri, err := parseRecordInfo(v)
	closer.Close()
	if err != nil {
		return fmt.Errorf("record %q: %w", c.CorrectsEventID, err)
	}
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
	ri.fixes = append(ri.fixes, fix)
	if fix.effect == 0 {
		return a.b.Set(rk, ri.append(nil), nil)
	}

	// Close the versions that counted until now, keeping their stances for a re-date.
	old := make([]rowValue, len(ri.current))
	for i, ck := range ri.current {
		key := versionPrefix(ck.party, ck.topic)
		key = suffix{occ: ri.occ, rec: ri.pos, idx: uint32(i), from: ri.from}.append(key)
		v, closer, err := a.r.Get(key)
		if err != nil {
			return fmt.Errorf("version of %q for (%s, %s): %w", c.CorrectsEventID, ck.party, ck.topic, err)
		}
		row, err := parseRow(v)
		closer.Close()
		if err != nil {
			return err
		}
		old[i] = row
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
	oldOcc := ri.occ
	if fix.effect&EffectRedate != 0 {
		ri.occ = fix.redatedTo
	}
	// A pair whose current version was just closed needs its current stance found
	// again among its versions; elsewhere the new versions compete as usual.
	rescan := map[contribKey]bool{}
	for i, ck := range ri.current {
		st, err := a.current(ck.party, ck.topic)
		if err != nil {
			return err
		}
		closed := suffix{occ: oldOcc, rec: ri.pos, idx: uint32(i), from: ri.from}.append(nil)
		if st.has && bytes.Equal(st.suffix[:], closed) {
			rescan[ck] = true
		}
	}
	ri.from = pos
	ri.current = make([]contribKey, len(nexts))
	for i, n := range nexts {
		ri.current[i] = n.ck
		n.row.eventID, n.row.sinceEventID = c.CorrectsEventID, ev.EventID
		if err := a.putVersion(n.ck.party, n.ck.topic, suffix{occ: ri.occ, rec: ri.pos, idx: uint32(i), from: pos}, &n.row, !rescan[n.ck]); err != nil {
			return err
		}
	}
	for ck := range rescan {
		if err := a.recomputeCurrent(ck); err != nil {
			return err
		}
	}
	return a.b.Set(rk, ri.append(nil), nil)
}

// putVersion writes a new version and, when fast is set, makes it current if it
// beats the current one (a new record never ends another, so comparing suffices);
// otherwise the caller recomputes the current stance.
func (a *applier) putVersion(party, topic string, s suffix, row *rowValue, fast bool) error {
	key := s.append(versionPrefix(party, topic))
	a.buf = row.append(a.buf[:0])
	if err := a.b.Set(key, a.buf, nil); err != nil {
		return err
	}
	cur, err := a.current(party, topic)
	if err != nil {
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
		a.cur.put(party, topic, pairState{known: true})
	}
	if !fast || cur.has && bytes.Compare(key[len(key)-suffixLen:], cur.suffix[:]) <= 0 {
		return nil
	}
	return a.setCurrent(party, topic, key[len(key)-suffixLen:], a.buf)
}

// current returns what the view knows of a pair: from the cache, else from the batch.
func (a *applier) current(party, topic string) (pairState, error) {
	if st, ok := a.cur.get(party, topic); ok || a.cur.complete {
		return st, nil
	}
	var st pairState
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
			return st, err
		}
	default:
		return st, err
	}
	a.cur.put(party, topic, st)
	return st, nil
}

func (a *applier) setCurrent(party, topic string, suf, row []byte) error {
	v := make([]byte, 0, len(suf)+len(row))
	v = append(append(v, suf...), row...)
	if a.changed != nil {
		a.changed[contribKey{party, topic}] = struct{}{}
	}
	st := pairState{known: true, has: true}
	copy(st.suffix[:], suf)
	a.cur.put(party, topic, st)
	return a.b.Set(pairKey(prefixCurrent, party, topic), v, nil)
}

// recomputeCurrent finds the current stance of a pair: its greatest version that
// still counts.
func (a *applier) recomputeCurrent(ck contribKey) error {
	prefix := versionPrefix(ck.party, ck.topic)
	it, err := a.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.Last(); ok; ok = it.Prev() {
		v := it.Value()
		if !getPos(v).IsZero() { // closed
			continue
		}
		return a.setCurrent(ck.party, ck.topic, it.Key()[len(prefix):], v)
	}
	if err := it.Error(); err != nil {
		return err
	}
	if a.changed != nil {
		a.changed[ck] = struct{}{}
	}
	a.cur.put(ck.party, ck.topic, pairState{known: true})
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

// QuietPebbleLogger is the pebble.Logger of every read model: it keeps Pebble's
// informational chatter out of the server's log, and panics on Fatalf (Pebble's own
// logger would exit the process).
type QuietPebbleLogger struct{}

// Infof discards the message.
func (QuietPebbleLogger) Infof(string, ...any) {}

// Errorf discards the message.
func (QuietPebbleLogger) Errorf(string, ...any) {}

// Fatalf panics with the message.
func (QuietPebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
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

// notify sends each changed pair's new current stance to the watchers that want it.
// The caller holds p.mu for reading.
func (p *Positions) notify(db *pebble.DB, changed map[contribKey]struct{}, applied ledger.Position) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	for ck := range changed {
		ch := Change{Party: ck.party, Topic: ck.topic, Applied: applied}
		if cur, ok, err := getCurrent(db, ck.party, ck.topic); err == nil && ok {
			ch.Current = &cur
		}
		for w := range p.watchers {
			if (w.party != "" && w.party != ck.party) || (w.topic != "" && w.topic != ck.topic) {
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

// NewBuild opens an empty positions model in a fresh directory next to the live
// one (<dir>.rebuild), for Runner.Rebuild.
func (p *Positions) NewBuild() (Projection, error) {
	dir := p.dir + rebuildSuffix
	if err := p.fs.RemoveAll(dir); err != nil {
		return nil, err
	}
	db, applied, err := openModel(p.fs, dir, p.log)
	if err != nil {
		return nil, err
	}
	return &Positions{
		dir: dir, fs: p.fs, log: p.log, db: db,
		progress: NewProgress(PositionsName, applied),
		cur:      newPairCache(applied.IsZero()),
		watchers: make(map[*watcher]struct{}),
	}, nil
}

// SwitchTo replaces the live model with build (from NewBuild) atomically for
// readers: under the write lock it closes both, renames the live directory away,
// renames the build into its place, syncs the parent directory, reopens it and
// removes the old one. A crash part-way leaves either the old model, or no model
// (OpenPositions then starts empty and the Runner rebuilds from position 0).
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
	if p.db != nil {
		if err := p.db.Close(); err != nil {
			return err
		}
		p.db = nil
	}
	retired := p.dir + retiredSuffix
	if err := p.fs.Rename(p.dir, retired); err != nil {
		return err
	}
	if err := p.fs.Rename(b.dir, p.dir); err != nil {
		return err
	}
	if err := syncDir(p.fs, filepath.Dir(p.dir)); err != nil {
		return err
	}
	db, applied, err := openModel(p.fs, p.dir, p.log)
	if err != nil {
		return err
	}
	p.db = db
	p.cur.reset()
	p.progress.Advance(applied)
	return p.fs.RemoveAll(retired)
}

// DiscardBuild closes and removes a build from NewBuild.
func (p *Positions) DiscardBuild(build Projection) error {
	b, ok := build.(*Positions)
	if !ok || b.dir != p.dir+rebuildSuffix {
		return fmt.Errorf("positions: DiscardBuild needs a build from NewBuild")
	}
	err := b.Close()
	return errors.Join(err, p.fs.RemoveAll(b.dir))
}

func syncDir(fs vfs.FS, dir string) error {
	f, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
