package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// testExpectedRevision: each expected revision against a missing stream and a stream
// of two records; a conflict is a *ledger.ConflictError with the right expected and
// actual revisions, and stores nothing.
func testExpectedRevision(t *testing.T, e *env) {
	tests := []struct {
		name     string
		existing int // records in the stream before the append
		expected ledger.ExpectedRevision
		ok       bool
	}{
		{"any/missing", 0, ledger.AnyRevision, true},
		{"any/exists", 2, ledger.AnyRevision, true},
		{"no_stream/missing", 0, ledger.NoStream, true},
		{"no_stream/exists", 2, ledger.NoStream, false},
		{"stream_exists/missing", 0, ledger.StreamExists, false},
		{"stream_exists/exists", 2, ledger.StreamExists, true},
		{"exact/match", 2, ledger.ExactRevision(1), true},
		{"exact/behind", 2, ledger.ExactRevision(0), false},
		{"exact/ahead", 2, ledger.ExactRevision(2), false},
		{"exact/missing", 0, ledger.ExactRevision(0), false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream := fmt.Sprintf("s%d", i)
			s := e.stream(stream)
			if tc.existing > 0 {
				e.mustAppend(t, s, ledger.NoStream, e.recs(t, stream, tc.existing)...)
			}
			actual := int64(tc.existing) - 1
			recs := e.recs(t, stream, 2)
			res, err := e.s.Append(ctxWait(t), s, tc.expected, recs)
			if !tc.ok {
				checkConflict(t, err, s, tc.expected, actual)
				if n := e.streamLen(t, s); n != tc.existing {
					t.Errorf("stream holds %d records after a conflict, want %d", n, tc.existing)
				}
				e.checkNotStored(t, recs...)
				return
			}
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if want := uint64(tc.existing + 1); res.NextExpectedRevision != want {
				t.Errorf("NextExpectedRevision = %d, want %d", res.NextExpectedRevision, want)
			}
			got := e.readStream(t, s)
			if len(got) != tc.existing+2 {
				t.Fatalf("stream holds %d records, want %d", len(got), tc.existing+2)
			}
			for k, p := range recs {
				checkRecord(t, fmt.Sprintf("record %d", k), got[tc.existing+k], s, uint64(tc.existing+k), p)
			}
		})
	}
}

// testAppendResult: the result describes exactly the stored records.
func testAppendResult(t *testing.T, e *env) {
	s := e.stream("a")
	first := e.recs(t, "a", 3)
	res := e.mustAppend(t, s, ledger.NoStream, first...)
	second := e.recs(t, "a", 2)
	res2 := e.mustAppend(t, s, ledger.ExactRevision(res.NextExpectedRevision), second...)

	for _, c := range []struct {
		name string
		res  store.AppendResult
		in   []store.Proposed
		rev0 uint64
	}{{"first", res, first, 0}, {"second", res2, second, 3}} {
		if c.res.AlreadyPresent {
			t.Errorf("%s: AlreadyPresent on a new append", c.name)
		}
		if len(c.res.Records) != len(c.in) {
			t.Fatalf("%s: %d records in result, want %d", c.name, len(c.res.Records), len(c.in))
		}
		for i, p := range c.in {
			checkRecord(t, fmt.Sprintf("%s: result record %d", c.name, i), c.res.Records[i], s, c.rev0+uint64(i), p)
		}
		last := c.res.Records[len(c.res.Records)-1]
		if c.res.NextExpectedRevision != last.Revision || c.res.Position != last.Position {
			t.Errorf("%s: NextExpectedRevision=%d Position=%v, want the last record's %d %v", c.name, c.res.NextExpectedRevision, c.res.Position, last.Revision, last.Position)
		}
		if c.res.Position.IsZero() {
			t.Errorf("%s: zero position", c.name)
		}
	}
	all := append(slices.Clone(res.Records), res2.Records...)
	checkIncreasing(t, "result positions", all)
	stored := e.readStream(t, s)
	if len(stored) != len(all) {
		t.Fatalf("stream holds %d records, want %d", len(stored), len(all))
	}
	for i := range all {
		sameRecord(t, fmt.Sprintf("stored record %d", i), stored[i], all[i])
	}
}

// testEmptyAppend: an empty append is invalid and creates nothing.
func testEmptyAppend(t *testing.T, e *env) {
	for _, tc := range []struct {
		name    string
		records []store.Proposed
	}{{"nil", nil}, {"empty", []store.Proposed{}}} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.stream(tc.name)
			_, err := e.s.Append(ctxWait(t), s, ledger.AnyRevision, tc.records)
			if !errors.Is(err, ledger.ErrInvalid) {
				t.Fatalf("Append of no records: err = %v, want ErrInvalid", err)
			}
			if _, err := collectErr(e.s.ReadStream(ctxWait(t), s, store.ReadStreamOptions{})); !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("ReadStream after an empty append: err = %v, want ErrNotFound", err)
			}
		})
	}
}

// testAtomicFailure: an append that fails for any reason stores none of its records,
// not even those before the offending one.
func testAtomicFailure(t *testing.T, e *env) {
	tests := []struct {
		name string
		// build returns the append and checks its error; seed is the stream's one record.
		build func(t *testing.T, name string, seed store.Proposed) (ledger.ExpectedRevision, []store.Proposed, func(*testing.T, error))
	}{
		{"conflict", func(t *testing.T, name string, _ store.Proposed) (ledger.ExpectedRevision, []store.Proposed, func(*testing.T, error)) {
			return ledger.ExactRevision(5), e.recs(t, name, 3), func(t *testing.T, err error) {
				checkConflict(t, err, e.stream(name), ledger.ExactRevision(5), 0)
			}
		}},
		{"repeated id last", func(t *testing.T, name string, _ store.Proposed) (ledger.ExpectedRevision, []store.Proposed, func(*testing.T, error)) {
			rs := e.recs(t, name, 3)
			rs = append(rs, rs[0])
			return ledger.AnyRevision, rs, func(t *testing.T, err error) { checkDuplicate(t, err, rs[0].EventID) }
		}},
		{"stored id last", func(t *testing.T, name string, seed store.Proposed) (ledger.ExpectedRevision, []store.Proposed, func(*testing.T, error)) {
			return ledger.AnyRevision, append(e.recs(t, name, 3), seed), func(t *testing.T, err error) { checkDuplicate(t, err, seed.EventID) }
		}},
		{"stored id with other content last", func(t *testing.T, name string, seed store.Proposed) (ledger.ExpectedRevision, []store.Proposed, func(*testing.T, error)) {
			other := proposed(t, e.event(t, e.party(name), seed.EventID, ledger.TypeReportPublished, "other"), recordedAt)
			return ledger.AnyRevision, append(e.recs(t, name, 3), other), func(t *testing.T, err error) { checkDuplicate(t, err, seed.EventID) }
		}},
		{"id of another stream last", func(t *testing.T, name string, _ store.Proposed) (ledger.ExpectedRevision, []store.Proposed, func(*testing.T, error)) {
			elsewhere := e.recs(t, name+"-other", 1)[0]
			e.mustAppend(t, e.stream(name+"-other"), ledger.NoStream, elsewhere)
			return ledger.AnyRevision, append(e.recs(t, name, 3), elsewhere), func(t *testing.T, err error) { checkDuplicate(t, err, elsewhere.EventID) }
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("f%d", i)
			s := e.stream(name)
			seed := e.recs(t, name, 1)[0]
			seedRes := e.mustAppend(t, s, ledger.NoStream, seed)
			expected, recs, check := tc.build(t, name, seed)
			_, err := e.s.Append(ctxWait(t), s, expected, recs)
			check(t, err)
			stored := e.readStream(t, s)
			if len(stored) != 1 {
				t.Fatalf("stream holds %v after a failed append, want only the seed", ids(stored))
			}
			sameRecord(t, "seed", stored[0], seedRes.Records[0])
			e.checkNotStored(t, recs[:3]...)
			// The stream still takes the next append at revision 1.
			e.mustAppend(t, s, ledger.ExactRevision(0), e.recs(t, name, 1)...)
		})
	}
}

// testAtomicConsecutive: the records of one append are consecutive in their stream
// and in the global log, even when other appends run at the same time.
func testAtomicConsecutive(t *testing.T, e *env) {
	const writers, appends, size = 4, 8, 3
	start := e.mustAppend(t, e.stream("start"), ledger.NoStream, e.recs(t, "start", 1)...).Position
	streams := []string{e.stream("start")}
	var wg sync.WaitGroup
	results := make([][]store.AppendResult, writers)
	errs := make([]error, writers)
	for w := range writers {
		name := fmt.Sprintf("w%d", w)
		streams = append(streams, e.stream(name))
		wg.Go(func() {
			for range appends {
				res, err := e.s.Append(ctxWait(t), e.stream(name), ledger.AnyRevision, e.recs(t, name, size))
				if err != nil {
					errs[w] = err
					return
				}
				results[w] = append(results[w], res)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	log := collect(t, e.s.ReadAll(ctxWait(t), start, store.Filter{Streams: streams}))
	if len(log) != 1+writers*appends*size {
		t.Fatalf("ReadAll returned %d records, want %d", len(log), 1+writers*appends*size)
	}
	checkIncreasing(t, "ReadAll", log)
	index := make(map[string]int, len(log))
	for i, r := range log {
		index[r.EventID] = i
	}
	for w := range writers {
		for k, res := range results[w] {
			i0, ok := index[res.Records[0].EventID]
			if !ok {
				t.Fatalf("writer %d append %d: %s not in the log", w, k, res.Records[0].EventID)
			}
			for j, r := range res.Records {
				if i0+j >= len(log) {
					t.Fatalf("writer %d append %d: log ends inside the append", w, k)
				}
				sameRecord(t, fmt.Sprintf("writer %d append %d record %d", w, k, j), log[i0+j], r)
				if j > 0 && r.Revision != res.Records[j-1].Revision+1 {
					t.Errorf("writer %d append %d: revisions %d then %d", w, k, res.Records[j-1].Revision, r.Revision)
				}
			}
		}
	}
}

// testConcurrentExactRevision: appenders race for each revision of one stream with
// the same exact expectation; exactly one wins each round and every loser gets a
// *ledger.ConflictError naming the winner's revision.
func testConcurrentExactRevision(t *testing.T, e *env) {
	const racers, rounds = 8, 12
	s := e.stream("race")
	var winners []store.AppendResult
	for round := range rounds {
		expected := ledger.NoStream
		if round > 0 {
			expected = ledger.ExactRevision(uint64(2*round - 1))
		}
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			won   []store.AppendResult
			lost  []error
			ready = make(chan struct{})
		)
		for r := range racers {
			recs := e.recs(t, fmt.Sprintf("race-%d", r), 2)
			wg.Go(func() {
				<-ready
				res, err := e.s.Append(ctxWait(t), s, expected, recs)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					lost = append(lost, err)
				} else {
					won = append(won, res)
				}
			})
		}
		close(ready)
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("round %d: %d appends won revision %d, want exactly 1 (errors: %v)", round, len(won), 2*round, lost)
		}
		for _, err := range lost {
			checkConflict(t, err, s, expected, int64(2*round+1))
		}
		if got := won[0].Records[0].Revision; got != uint64(2*round) {
			t.Fatalf("round %d: winner stored at revision %d, want %d", round, got, 2*round)
		}
		winners = append(winners, won[0])
		// The next round expects the last revision of this one.
		if won[0].NextExpectedRevision != uint64(2*round+1) {
			t.Fatalf("round %d: NextExpectedRevision = %d, want %d", round, won[0].NextExpectedRevision, 2*round+1)
		}
	}
	stored := e.readStream(t, s)
	var want []store.Record
	for _, w := range winners {
		want = append(want, w.Records...)
	}
	if len(stored) != len(want) {
		t.Fatalf("stream holds %d records, want %d", len(stored), len(want))
	}
	for i := range want {
		sameRecord(t, fmt.Sprintf("revision %d", i), stored[i], want[i])
	}
}

// testConcurrentAnyRevision: appenders that do not check revisions all succeed,
// nothing is lost, and revisions stay dense in the stream.
func testConcurrentAnyRevision(t *testing.T, e *env) {
	const writers, appends = 8, 6
	s := e.stream("any")
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  = map[uint64]store.Record{}
		errs []error
	)
	for w := range writers {
		wg.Go(func() {
			for range appends {
				res, err := e.s.Append(ctxWait(t), s, ledger.AnyRevision, e.recs(t, fmt.Sprintf("any-%d", w), 2))
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, r := range res.Records {
					if _, dup := got[r.Revision]; dup {
						errs = append(errs, fmt.Errorf("revision %d returned twice", r.Revision))
					}
					got[r.Revision] = r
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	stored := e.readStream(t, s)
	if len(stored) != writers*appends*2 || len(got) != len(stored) {
		t.Fatalf("stream holds %d records, results name %d, want %d", len(stored), len(got), writers*appends*2)
	}
	for i, r := range stored {
		if r.Revision != uint64(i) {
			t.Fatalf("record %d has revision %d", i, r.Revision)
		}
		sameRecord(t, fmt.Sprintf("revision %d", i), r, got[r.Revision])
	}
	checkIncreasing(t, "stream positions", stored)
}

// testIdempotency: retries of stored event_ids.
func testIdempotency(t *testing.T, e *env) {
	retryAt := recordedAt.Add(time.Hour) // a retry is re-encoded later: other metadata bytes, same content hash
	tests := []struct {
		name string
		// retry builds the second append from the first one's records (a, b, c, stored
		// at revisions 0..2 of stream, then d at 3). want names the indexes into the
		// original records an AlreadyPresent result must return; wantDup the event_id a
		// DuplicateEventError must name.
		retry   func(t *testing.T, name string, orig []store.Proposed) (stream string, expected ledger.ExpectedRevision, recs []store.Proposed)
		want    []int
		wantDup func(orig []store.Proposed, recs []store.Proposed) string
	}{
		{
			name: "same expected revision",
			retry: func(t *testing.T, name string, orig []store.Proposed) (string, ledger.ExpectedRevision, []store.Proposed) {
				return e.stream(name), ledger.NoStream, orig[:3]
			},
			want: []int{0, 1, 2},
		},
		{
			name: "stale exact revision and new metadata bytes",
			retry: func(t *testing.T, name string, orig []store.Proposed) (string, ledger.ExpectedRevision, []store.Proposed) {
				var rs []store.Proposed
				for _, p := range orig[:3] {
					ev, _, err := ledger.Decode(p.Type, p.Data, p.Metadata)
					if err != nil {
						t.Fatal(err)
					}
					rs = append(rs, proposed(t, ev, retryAt))
				}
				return e.stream(name), ledger.ExactRevision(7), rs
			},
			want: []int{0, 1, 2},
		},
		{
			name: "subset",
			retry: func(t *testing.T, name string, orig []store.Proposed) (string, ledger.ExpectedRevision, []store.Proposed) {
				return e.stream(name), ledger.NoStream, []store.Proposed{orig[2], orig[1]}
			},
			want: []int{2, 1},
		},
		{
			name: "across two appends",
			retry: func(t *testing.T, name string, orig []store.Proposed) (string, ledger.ExpectedRevision, []store.Proposed) {
				return e.stream(name), ledger.StreamExists, []store.Proposed{orig[2], orig[3]}
			},
			want: []int{2, 3},
		},
		{
			name: "other content",
			retry: func(t *testing.T, name string, orig []store.Proposed) (string, ledger.ExpectedRevision, []store.Proposed) {
				other := proposed(t, e.event(t, e.party(name), orig[1].EventID, ledger.TypeStatementIssued, "changed"), recordedAt)
				return e.stream(name), ledger.AnyRevision, []store.Proposed{orig[0], other, orig[2]}
			},
			wantDup: func(orig, _ []store.Proposed) string { return orig[1].EventID },
		},
		{
			name: "other stream",
			retry: func(t *testing.T, name string, orig []store.Proposed) (string, ledger.ExpectedRevision, []store.Proposed) {
				return e.stream(name + "-elsewhere"), ledger.AnyRevision, orig[:1]
			},
			wantDup: func(orig, _ []store.Proposed) string { return orig[0].EventID },
		},
		{
			name: "partial overlap",
			retry: func(t *testing.T, name string, orig []store.Proposed) (string, ledger.ExpectedRevision, []store.Proposed) {
				return e.stream(name), ledger.AnyRevision, append(e.recs(t, name, 1), orig[0])
			},
			wantDup: func(orig, _ []store.Proposed) string { return orig[0].EventID },
		},
		{
			name: "same new id twice",
			retry: func(t *testing.T, name string, orig []store.Proposed) (string, ledger.ExpectedRevision, []store.Proposed) {
				n := e.recs(t, name, 1)[0]
				return e.stream(name), ledger.AnyRevision, []store.Proposed{n, n}
			},
			wantDup: func(_, recs []store.Proposed) string { return recs[0].EventID },
		},
		{
			name: "same stored id twice",
			retry: func(t *testing.T, name string, orig []store.Proposed) (string, ledger.ExpectedRevision, []store.Proposed) {
				return e.stream(name), ledger.AnyRevision, []store.Proposed{orig[0], orig[0]}
			},
			wantDup: func(orig, _ []store.Proposed) string { return orig[0].EventID },
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("i%d", i)
			s := e.stream(name)
			orig := e.recs(t, name, 4)
			first := e.mustAppend(t, s, ledger.NoStream, orig[:3]...)
			second := e.mustAppend(t, s, ledger.ExactRevision(2), orig[3])
			stored := append(slices.Clone(first.Records), second.Records...)
			before := e.readStream(t, s)

			stream, expected, recs := tc.retry(t, name, orig)
			res, err := e.s.Append(ctxWait(t), stream, expected, recs)
			if tc.wantDup != nil {
				checkDuplicate(t, err, tc.wantDup(orig, recs))
				if stream != s && e.streamLen(t, stream) != 0 {
					t.Errorf("the refused append created %s", stream)
				}
			} else {
				if err != nil {
					t.Fatalf("retry: %v", err)
				}
				if !res.AlreadyPresent {
					t.Errorf("retry: AlreadyPresent = false")
				}
				if len(res.Records) != len(tc.want) {
					t.Fatalf("retry returned %d records, want %d", len(res.Records), len(tc.want))
				}
				for k, j := range tc.want {
					sameRecord(t, fmt.Sprintf("retry record %d", k), res.Records[k], stored[j])
				}
				last := res.Records[len(res.Records)-1]
				if res.NextExpectedRevision != last.Revision || res.Position != last.Position {
					t.Errorf("retry: NextExpectedRevision=%d Position=%v, want the last record's %d %v", res.NextExpectedRevision, res.Position, last.Revision, last.Position)
				}
			}
			after := e.readStream(t, s)
			if len(after) != len(before) {
				t.Fatalf("stream holds %d records after the retry, want %d", len(after), len(before))
			}
			for k := range before {
				sameRecord(t, fmt.Sprintf("record %d after the retry", k), after[k], before[k])
			}
			for _, p := range recs {
				if slices.Contains(proposedIDs(orig), p.EventID) {
					continue
				}
				e.checkNotStored(t, p)
			}
		})
	}
}

// testConcurrentRetries: the same append sent by several clients at once is stored
// once; every caller gets the same records.
func testConcurrentRetries(t *testing.T, e *env) {
	const clients = 8
	s := e.stream("retry")
	recs := e.recs(t, "retry", 3)
	results := make([]store.AppendResult, clients)
	errs := make([]error, clients)
	ready := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			<-ready
			results[c], errs[c] = e.s.Append(ctxWait(t), s, ledger.AnyRevision, recs)
		})
	}
	close(ready)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	fresh := 0
	for _, r := range results {
		if !r.AlreadyPresent {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d of %d identical appends stored records, want 1", fresh, clients)
	}
	stored := e.readStream(t, s)
	if len(stored) != len(recs) {
		t.Fatalf("stream holds %d records, want %d", len(stored), len(recs))
	}
	for c, r := range results {
		for i := range stored {
			sameRecord(t, fmt.Sprintf("client %d record %d", c, i), r.Records[i], stored[i])
		}
	}
}
