package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// The reference model: DESIGN.md §1 folded naively over a log prefix, written
// without looking at the read model's layout. Every query of the view must agree.

type refRecord struct {
	ev     *ledger.Event
	occ    time.Time
	stance []ledger.Contribution // nil when withdrawn
	pos    ledger.Position
	since  ledger.Position
	sinceE string
}

// refFold returns the table at valid time t (zero: no limit) after the first n
// events of log (positions 1..n).
func refFold(log []*ledger.Event, n int, t time.Time) map[[2]string]PartyPosition {
	recs := map[string]*refRecord{}
	var order []*refRecord
	for i, e := range log[:n] {
		pos := ledger.Position{Commit: uint64(i + 1), Prepare: uint64(i + 1)}
		c, isFix := e.Body.(*ledger.RecordCorrected)
		if !isFix {
			r := &refRecord{ev: e, occ: e.OccurredAt, stance: ledger.Contributions(e), pos: pos, since: pos}
			recs[e.EventID] = r
			order = append(order, r)
			continue
		}
		r := recs[c.CorrectsEventID]
		if r == nil || r.ev.Party != e.Party {
			continue
		}
		changed := false
		if len(c.ReplacementStances) > 0 {
			r.stance, changed = ledger.Attribute(r.ev, c.ReplacementStances), true
		}
		if c.CorrectedOccurredAt != nil {
			r.occ, changed = *c.CorrectedOccurredAt, true
		}
		if c.Withdraw {
			r.stance, changed = nil, true
		}
		if changed {
			r.since, r.sinceE = pos, e.EventID
		}
	}
	out := map[[2]string]PartyPosition{}
	for _, r := range order {
		if !t.IsZero() && r.occ.After(t) {
			continue
		}
		for i, c := range r.stance {
			k := [2]string{c.Party, c.Stance.Topic}
			best, ok := out[k]
			if ok && (best.OccurredAt.After(r.occ) || best.OccurredAt.Equal(r.occ) && (r.pos.Less(best.Position) || r.pos == best.Position && uint32(i) < best.Index)) {
				continue
			}
			out[k] = PartyPosition{
				Party: c.Party, Topic: c.Stance.Topic, Alignment: c.Stance.Alignment, Act: c.Stance.Act,
				Summary: c.Stance.Summary, Quote: c.Stance.Quote, OccurredAt: r.occ.UTC(),
				EventID: r.ev.EventID, Position: r.pos, Since: r.since, SinceEventID: r.sinceE, Index: uint32(i),
			}
		}
	}
	return out
}

var (
	refParties = []string{"dprk", "russia", "china", "usa"}
	refTopics  = []string{"msmt-legitimacy", "poe-mandate", "sanctions"}
	refBase    = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
)

// randomLog returns n events: statements (with co-signers), reports, vetoes, and
// corrections of every kind, several per record, with valid times out of
// recording order and many ties.
func randomLog(rng *rand.Rand, n int) []*ledger.Event {
	var log []*ledger.Event
	day := func() time.Time { return refBase.Add(time.Duration(rng.IntN(12)) * 24 * time.Hour) }
	stances := func() []ledger.Stance {
		var out []ledger.Stance
		for _, t := range refTopics {
			if rng.IntN(2) == 0 {
				out = append(out, ledger.Stance{
					Topic: t, Alignment: ledger.Alignment(1 + rng.IntN(3)), Act: ledger.Act(rng.IntN(11)),
					Summary: fmt.Sprintf("s%d", rng.IntN(100)), Quote: "q\t\"x\"\n",
				})
			}
		}
		if len(out) == 0 {
			out = append(out, ledger.Stance{Topic: refTopics[rng.IntN(len(refTopics))], Alignment: ledger.AlignmentOpposes})
		}
		return out
	}
	for i := range n {
		party := refParties[rng.IntN(len(refParties))]
		e := &ledger.Event{EventID: fmt.Sprintf("e%d", i), Party: party, OccurredAt: day()}
		var targets []*ledger.Event
		for _, t := range log {
			if _, fix := t.Body.(*ledger.RecordCorrected); !fix && t.Party == party {
				targets = append(targets, t)
			}
		}
		switch k := rng.IntN(10); {
		case k < 4 && len(targets) > 0:
			c := &ledger.RecordCorrected{Reason: "r"}
			// Recent records are corrected again and again.
			c.CorrectsEventID = targets[len(targets)-1-rng.IntN(min(len(targets), 3))].EventID
			switch rng.IntN(8) {
			case 0:
				c.Withdraw = true
			case 1:
				c.ReplacementStances = stances()
			case 2:
				t := day()
				c.CorrectedOccurredAt = &t
			case 3:
				t := day()
				c.ReplacementStances, c.CorrectedOccurredAt = stances(), &t
			case 4:
				t := day()
				c.Withdraw, c.CorrectedOccurredAt = true, &t
			case 5:
				c.AddedSources = []ledger.Source{{URL: "https://example.org"}}
			case 6: // names a record of another party: ignored
				c.CorrectsEventID = log[rng.IntN(len(log))].EventID
				c.Withdraw = true
			default: // names nothing, or a record recorded after it: ignored
				c.CorrectsEventID = "missing"
				if rng.IntN(2) == 0 {
					c.CorrectsEventID = fmt.Sprintf("e%d", i+1+rng.IntN(3))
				}
				c.Withdraw = true
			}
			e.Body = c
		case k < 7:
			s := &ledger.StatementIssued{StatementID: e.EventID, Stances: stances()}
			for _, p := range refParties {
				if rng.IntN(4) == 0 {
					s.CoSigners = append(s.CoSigners, p)
				}
			}
			e.Body = s
		case k < 8:
			e.Body = &ledger.ReportPublished{ReportID: e.EventID, Findings: stances()}
		default:
			v := &ledger.MandateVetoed{Body: "unsc", Mandate: refTopics[rng.IntN(len(refTopics))]}
			for _, p := range refParties {
				if rng.IntN(3) > 0 {
					v.Votes = append(v.Votes, ledger.MemberVote{Party: p, Vote: ledger.Vote(1 + rng.IntN(3))})
				}
			}
			e.Body = v
		}
		log = append(log, e)
	}
	return log
}

// records encodes events as the store would return them, at positions 1..n.
func records(t testing.TB, log []*ledger.Event) []store.Record {
	t.Helper()
	out := make([]store.Record, len(log))
	for i, e := range log {
		enc, err := ledger.Encode(e, refBase, "test")
		if err != nil {
			t.Fatal(err)
		}
		out[i] = store.Record{
			Stream: ledger.StreamOf(e.Party), Position: ledger.Position{Commit: uint64(i + 1), Prepare: uint64(i + 1)},
			EventID: enc.EventID, Type: enc.Type, Data: enc.Data, Metadata: enc.Metadata, ContentHash: enc.ContentHash,
		}
	}
	return out
}

// logEvents is a test's whole log as the store.EventGetter a view looks records up
// in (Positions.LookUpRecordsIn), later records included, as a live log has them.
type logEvents map[string]store.Record

func eventsOf(recs []store.Record) logEvents {
	l := make(logEvents, len(recs))
	for _, r := range recs {
		l[r.EventID] = r
	}
	return l
}

func (l logEvents) GetEvent(_ context.Context, id string) (store.Record, error) {
	if r, ok := l[id]; ok {
		return r, nil
	}
	return store.Record{}, fmt.Errorf("event %q: %w", id, ledger.ErrNotFound)
}

func sortedRows(m map[[2]string]PartyPosition) []PartyPosition {
	rows := make([]PartyPosition, 0, len(m))
	for _, r := range m {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b PartyPosition) int {
		if a.Party != b.Party {
			return cmp.Compare(a.Party, b.Party)
		}
		return cmp.Compare(a.Topic, b.Topic)
	})
	return rows
}

func TestPositionsMatchReferenceFold(t *testing.T) {
	logs, size := 2000, 40
	switch {
	case testing.Short() && raceEnabled:
		logs = 100
	case testing.Short(), raceEnabled:
		logs = 250
	}
	// A record cache of a few versions ages often, so corrections also find their
	// record in the old generation and in the model.
	defer func(n int) { maxCachedRows = n }(maxCachedRows)
	maxCachedRows = 8
	ctx := t.Context()
	for seed := range logs {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		log := randomLog(rng, 1+rng.IntN(size))
		recs := records(t, log)
		p := openTestPositions(t)
		if seed%4 >= 2 {
			// Rows of corrected records only: the others are looked up in the log
			// when the record cache has lost them.
			p.LookUpRecordsIn(eventsOf(recs))
		}

		// Apply in random batches; after each, the current table (fast path) must
		// equal the fold of the prefix.
		for n := 0; n < len(recs); {
			k := min(len(recs)-n, 1+rng.IntN(8))
			if err := p.Apply(recs[n : n+k]); err != nil {
				t.Fatalf("seed %d: apply: %v", seed, err)
			}
			n += k
			got, _, _, err := p.List(ctx, ListFilter{}, Query{})
			if err != nil {
				t.Fatal(err)
			}
			if want := sortedRows(refFold(log, n, time.Time{})); !slices.Equal(got, want) {
				t.Fatalf("seed %d: current after %d records:\n got %+v\nwant %+v", seed, n, got, want)
			}
			// Odd seeds also lose the pair cache, the record cache or both now and then
			// (as after a restart, or when they overflow) and end the bulk build
			// part-way, so the view is checked on what it must read back as well as on
			// what it remembers.
			if seed%2 == 1 {
				switch rng.IntN(6) {
				case 0:
					p.cur.reset()
				case 2:
					p.recs.reset()
				case 3:
					p.cur.reset()
					p.recs.reset()
				case 1:
					if err := p.CaughtUp(); err != nil {
						t.Fatalf("seed %d: %v", seed, err)
					}
				}
			}
		}

		// Log positions P (every one in short logs, a sample in long ones, always
		// the last), each with no valid-time limit and a few valid times on and
		// between the days used; Get for every pair at some of them.
		for n := 1; n <= len(log); n++ {
			if len(log) > 12 && n < len(log) && rng.IntN(len(log)) >= 12 {
				continue
			}
			at := ledger.Position{Commit: uint64(n), Prepare: uint64(n)}
			times := []time.Time{{}}
			for range 4 {
				d := time.Duration(rng.IntN(14)-1) * 24 * time.Hour
				times = append(times, refBase.Add(d), refBase.Add(d+time.Hour))
			}
			for i, tt := range times {
				want := refFold(log, n, tt)
				q := Query{AsOfTime: tt, AsOfPosition: at}
				snap, err := p.Snapshot(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if rows := sortedRows(want); !slices.Equal(snap.Rows, rows) || snap.Digest != Digest(rows) || snap.AsOfPosition != at {
					t.Fatalf("seed %d: snapshot at (%v, %d):\n got %+v\nwant %+v", seed, tt, n, snap.Rows, rows)
				}
				if i > 2 {
					continue
				}
				for _, party := range refParties {
					for _, topic := range refTopics {
						got, _, err := p.Get(ctx, party, topic, q)
						w, ok := want[[2]string{party, topic}]
						switch {
						case !ok && !isNotFound(err):
							t.Fatalf("seed %d: Get(%s, %s) at (%v, %d) = %+v, %v; want not found", seed, party, topic, tt, n, got, err)
						case ok && (err != nil || got != w):
							t.Fatalf("seed %d: Get(%s, %s) at (%v, %d) = %+v, %v; want %+v", seed, party, topic, tt, n, got, err, w)
						}
					}
				}
			}
		}
		// Filters and paging over the final table.
		checkListFilters(t, p, sortedRows(refFold(log, len(log), time.Time{})))
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func checkListFilters(t *testing.T, p *Positions, all []PartyPosition) {
	t.Helper()
	ctx := t.Context()
	for _, party := range append(refParties, "") {
		for _, topic := range append(refTopics, "") {
			var want []PartyPosition
			for _, r := range all {
				if (party == "" || r.Party == party) && (topic == "" || r.Topic == topic) {
					want = append(want, r)
				}
			}
			// Page through two at a time.
			var got []PartyPosition
			f := ListFilter{Party: party, Topic: topic, Limit: 2}
			for {
				page, _, more, err := p.List(ctx, f, Query{})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, page...)
				if !more {
					break
				}
				last := page[len(page)-1]
				f.AfterParty, f.AfterTopic = last.Party, last.Topic
			}
			if !slices.Equal(got, want) {
				t.Fatalf("List(party %q, topic %q):\n got %+v\nwant %+v", party, topic, got, want)
			}
		}
	}
}

func openTestPositions(t testing.TB) *Positions {
	t.Helper()
	p, err := openPositions(vfs.NewMem(), "/data/views/positions", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func isNotFound(err error) bool { return errors.Is(err, ledger.ErrNotFound) }

// TestWatchMatchesReferenceFold checks the changes the view sends its watchers, in
// a bulk build (no current keys: the current stance is found among the versions)
// and after it has settled: each names the current stance of its pair after the
// batch that made it, as the reference fold has it. (A watcher is registered as
// Watch does; Apply sends a batch's changes before it returns.)
func TestWatchMatchesReferenceFold(t *testing.T) {
	for seed := range 20 {
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		log := randomLog(rng, 40)
		recs := records(t, log)
		p := openTestPositions(t)
		w := &watcher{ch: make(chan Change, watchBuffer), done: make(chan struct{})}
		p.wmu.Lock()
		p.watchers[w] = struct{}{}
		p.wmu.Unlock()

		settleAfter := 1 + rng.IntN(len(recs)/2) // then CaughtUp ends the bulk build
		var bulk, settled int
		for n := 0; n < len(recs); {
			k := min(len(recs)-n, 1+rng.IntN(8))
			wasBulk := p.bulk
			if err := p.Apply(recs[n : n+k]); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			n += k
			want := refFold(log, n, time.Time{})
			for len(w.ch) > 0 {
				ch := <-w.ch
				if ch.Applied.Commit != uint64(n) {
					t.Fatalf("seed %d: a change after %d records says applied %s", seed, n, ch.Applied)
				}
				cur, ok := want[[2]string{ch.Party, ch.Topic}]
				switch {
				case !ok && ch.Current != nil:
					t.Fatalf("seed %d: after %d records (%s, %s) changed to %+v; want no stance", seed, n, ch.Party, ch.Topic, *ch.Current)
				case ok && (ch.Current == nil || *ch.Current != cur):
					t.Fatalf("seed %d: after %d records (%s, %s) changed to %+v; want %+v", seed, n, ch.Party, ch.Topic, ch.Current, cur)
				}
				if wasBulk {
					bulk++
				} else {
					settled++
				}
			}
			if n >= settleAfter && p.bulk {
				if err := p.CaughtUp(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if bulk == 0 || settled == 0 {
			t.Errorf("seed %d: %d changes in the bulk build, %d after it; want some of each", seed, bulk, settled)
		}
	}
}

// failingReader is a pebble.Reader whose every read fails with err.
type failingReader struct{ err error }

func (f failingReader) Get([]byte) ([]byte, io.Closer, error) { return nil, nil, f.err }
func (f failingReader) NewIter(*pebble.IterOptions) (*pebble.Iterator, error) {
	return nil, f.err
}
func (f failingReader) NewIterWithContext(context.Context, *pebble.IterOptions) (*pebble.Iterator, error) {
	return nil, f.err
}
func (f failingReader) Close() error { return nil }

// TestWatchEndsOnReadError checks that a change whose current stance cannot be
// read ends the watchers of that pair with the error, rather than reaching them as
// a change to no stance, and leaves the other watchers be.
func TestWatchEndsOnReadError(t *testing.T) {
	p := openTestPositions(t)
	mine := &watcher{party: "kp", ch: make(chan Change, watchBuffer), done: make(chan struct{})}
	other := &watcher{party: "ru", ch: make(chan Change, watchBuffer), done: make(chan struct{})}
	p.wmu.Lock()
	p.watchers[mine], p.watchers[other] = struct{}{}, struct{}{}
	p.wmu.Unlock()

	boom := errors.New("disk on fire")
	p.mu.RLock()
	p.notify(failingReader{boom}, map[contribKey]struct{}{{"kp", "msmt"}: {}}, ledger.Position{Commit: 7, Prepare: 7})
	p.mu.RUnlock()

	select {
	case <-mine.done:
	default:
		t.Fatal("the watcher of the unreadable pair was not ended")
	}
	if !errors.Is(mine.err, boom) || !strings.Contains(mine.err.Error(), "(kp, msmt)") {
		t.Errorf("watcher ended with %v; want the read error, naming the pair", mine.err)
	}
	if len(mine.ch) != 0 {
		t.Errorf("the watcher was also sent %+v", <-mine.ch)
	}
	select {
	case <-other.done:
		t.Fatalf("a watcher of another party was ended: %v", other.err)
	default:
	}
	p.wmu.Lock()
	_, stillMine := p.watchers[mine]
	_, stillOther := p.watchers[other]
	p.wmu.Unlock()
	if stillMine || !stillOther {
		t.Errorf("registered after the error: ended watcher %v, other watcher %v; want false, true", stillMine, stillOther)
	}
}
