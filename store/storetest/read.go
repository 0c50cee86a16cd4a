package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// testBytesExact: every read returns the bytes given to Append, unchanged, even after
// the caller reuses its buffers; the records decode with ledger.Decode.
func testBytesExact(t *testing.T, e *env) {
	s := e.stream("bytes")
	var recs []store.Proposed
	for i, typ := range []ledger.RecordType{ledger.TypeReportPublished, ledger.TypeStatementIssued, ledger.TypeMandateVetoed, ledger.TypeRecordCorrected} {
		recs = append(recs, proposed(t, e.event(t, e.party("bytes"), e.id(fmt.Sprintf("bytes-%d", i)), typ, "bytes"), recordedAt))
	}
	want := make([]store.Proposed, len(recs))
	for i, p := range recs {
		want[i] = p
		want[i].Data, want[i].Metadata = bytes.Clone(p.Data), bytes.Clone(p.Metadata)
	}
	res := e.mustAppend(t, s, ledger.NoStream, recs...)
	// The caller owns its buffers again once Append returns.
	for _, p := range recs {
		clear(p.Data)
		clear(p.Metadata)
	}
	ctx := ctxWait(t)
	reads := map[string][]store.Record{
		"ReadStream": e.readStream(t, s),
		"ReadAll":    collect(t, e.s.ReadAll(ctx, res.Records[0].Position, store.Filter{Streams: []string{s}})),
	}
	for _, p := range want {
		r, err := e.s.GetEvent(ctx, p.EventID)
		if err != nil {
			t.Fatalf("GetEvent(%q): %v", p.EventID, err)
		}
		reads["GetEvent"] = append(reads["GetEvent"], r)
	}
	sub := subscribe(t, e.s, res.Records[0].Position, store.Filter{Streams: []string{s}})
	reads["Subscribe"] = sub.records(t, len(want))
	for how, got := range reads {
		if len(got) != len(want) {
			t.Fatalf("%s returned %d records, want %d", how, len(got), len(want))
		}
		for i, p := range want {
			checkRecord(t, fmt.Sprintf("%s record %d", how, i), got[i], s, uint64(i), p)
			if _, _, err := ledger.Decode(got[i].Type, got[i].Data, got[i].Metadata); err != nil {
				t.Errorf("%s record %d does not decode: %v", how, i, err)
			}
		}
	}
}

// testPositionsIncrease: appends to several streams, one after the other, get
// strictly increasing positions, and ReadAll returns them in that order.
func testPositionsIncrease(t *testing.T, e *env) {
	var appended []store.Record
	var streams []string
	for i := range 9 {
		name := fmt.Sprintf("p%d", i%3)
		if i < 3 {
			streams = append(streams, e.stream(name))
		}
		res := e.mustAppend(t, e.stream(name), ledger.AnyRevision, e.recs(t, name, 1+i%2)...)
		appended = append(appended, res.Records...)
	}
	checkIncreasing(t, "append results", appended)
	log := collect(t, e.s.ReadAll(ctxWait(t), appended[0].Position, store.Filter{Streams: streams}))
	if len(log) != len(appended) {
		t.Fatalf("ReadAll returned %d records, want %d", len(log), len(appended))
	}
	for i := range log {
		sameRecord(t, fmt.Sprintf("log record %d", i), log[i], appended[i])
	}
}

// testReadStream: ReadStream options.
func testReadStream(t *testing.T, e *env) {
	s := e.stream("rs")
	res := e.mustAppend(t, s, ledger.NoStream, e.recs(t, "rs", 5)...)
	stored := res.Records
	tests := []struct {
		name string
		opts store.ReadStreamOptions
		want []uint64
	}{
		{"forwards", store.ReadStreamOptions{}, []uint64{0, 1, 2, 3, 4}},
		{"forwards from", store.ReadStreamOptions{From: 2}, []uint64{2, 3, 4}},
		{"forwards from last", store.ReadStreamOptions{From: 4}, []uint64{4}},
		{"forwards from past the end", store.ReadStreamOptions{From: 5}, nil},
		{"forwards max", store.ReadStreamOptions{Max: 2}, []uint64{0, 1}},
		{"forwards from max", store.ReadStreamOptions{From: 1, Max: 3}, []uint64{1, 2, 3}},
		{"forwards max beyond", store.ReadStreamOptions{From: 3, Max: 10}, []uint64{3, 4}},
		{"forwards from end", store.ReadStreamOptions{FromEnd: true}, []uint64{4}},
		{"backwards from end", store.ReadStreamOptions{Backwards: true, FromEnd: true}, []uint64{4, 3, 2, 1, 0}},
		{"backwards from end max", store.ReadStreamOptions{Backwards: true, FromEnd: true, Max: 2}, []uint64{4, 3}},
		{"backwards from", store.ReadStreamOptions{Backwards: true, From: 2}, []uint64{2, 1, 0}},
		{"backwards from first", store.ReadStreamOptions{Backwards: true, From: 0}, []uint64{0}},
		{"backwards from max", store.ReadStreamOptions{Backwards: true, From: 3, Max: 2}, []uint64{3, 2}},
		{"from end ignores from", store.ReadStreamOptions{Backwards: true, FromEnd: true, From: 1, Max: 1}, []uint64{4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := collect(t, e.s.ReadStream(ctxWait(t), s, tc.opts))
			var revs []uint64
			for _, r := range got {
				revs = append(revs, r.Revision)
			}
			if !slices.Equal(revs, tc.want) {
				t.Fatalf("revisions %v, want %v", revs, tc.want)
			}
			for i, r := range got {
				sameRecord(t, fmt.Sprintf("record %d", i), r, stored[r.Revision])
			}
		})
	}
}

// testReadStreamMissing: a missing stream yields exactly one ErrNotFound, in every
// direction.
func testReadStreamMissing(t *testing.T, e *env) {
	// A neighbouring stream with a longer name exists, so a prefix scan would be wrong.
	e.mustAppend(t, e.stream("missing-not"), ledger.NoStream, e.recs(t, "missing-not", 1)...)
	for _, opts := range []store.ReadStreamOptions{{}, {Backwards: true, FromEnd: true}, {From: 3}} {
		var items int
		var errs []error
		for r, err := range e.s.ReadStream(ctxWait(t), e.stream("missing"), opts) {
			items++
			if err != nil {
				errs = append(errs, err)
			} else {
				t.Errorf("%+v: yielded record %s", opts, describe(r))
			}
		}
		if items != 1 || len(errs) != 1 || !errors.Is(errs[0], ledger.ErrNotFound) {
			t.Errorf("%+v: %d items, errors %v; want exactly one ErrNotFound", opts, items, errs)
		}
	}
}

// testReadStreamStopEarly: breaking out of a read is safe and the store stays usable.
func testReadStreamStopEarly(t *testing.T, e *env) {
	s := e.stream("early")
	e.mustAppend(t, s, ledger.NoStream, e.recs(t, "early", 3)...)
	for r, err := range e.s.ReadStream(ctxWait(t), s, store.ReadStreamOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Revision != 0 {
			t.Fatalf("first record has revision %d", r.Revision)
		}
		break
	}
	for r, err := range e.s.ReadAll(ctxWait(t), ledger.Position{}, store.Filter{Streams: []string{s}}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Revision != 0 {
			t.Fatalf("first record has revision %d", r.Revision)
		}
		break
	}
	e.mustAppend(t, s, ledger.ExactRevision(2), e.recs(t, "early", 1)...)
	if n := e.streamLen(t, s); n != 4 {
		t.Fatalf("stream holds %d records, want 4", n)
	}
}

// testReadAll: ReadAll from a position (inclusive) with filters by stream and type.
func testReadAll(t *testing.T, e *env) {
	types := []ledger.RecordType{ledger.TypeReportPublished, ledger.TypeStatementIssued, ledger.TypeMandateVetoed, ledger.TypeRecordCorrected}
	var all []store.Record
	var streams []string
	for i := range 12 {
		name := fmt.Sprintf("ra%d", i%3)
		if i < 3 {
			streams = append(streams, e.stream(name))
		}
		p := proposed(t, e.event(t, e.party(name), e.id(fmt.Sprintf("ra-%d", i)), types[i%4], fmt.Sprintf("n%d", i)), recordedAt)
		all = append(all, e.mustAppend(t, e.stream(name), ledger.AnyRevision, p).Records...)
	}
	where := func(keep func(store.Record) bool) []store.Record {
		var out []store.Record
		for _, r := range all {
			if keep(r) {
				out = append(out, r)
			}
		}
		return out
	}
	tests := []struct {
		name   string
		from   ledger.Position
		filter store.Filter
		want   []store.Record
	}{
		{"from the first", all[0].Position, store.Filter{Streams: streams}, all},
		{"from zero", ledger.Position{}, store.Filter{Streams: streams}, all},
		{"from the middle, inclusive", all[5].Position, store.Filter{Streams: streams}, all[5:]},
		{"from the last", all[11].Position, store.Filter{Streams: streams}, all[11:]},
		{"one stream", all[0].Position, store.Filter{Streams: streams[1:2]}, where(func(r store.Record) bool { return r.Stream == streams[1] })},
		{"two streams from the middle", all[4].Position, store.Filter{Streams: []string{streams[0], streams[2]}},
			where(func(r store.Record) bool { return r.Position.Compare(all[4].Position) >= 0 && r.Stream != streams[1] })},
		{"one type", all[0].Position, store.Filter{Streams: streams, Types: []string{"MandateVetoed"}},
			where(func(r store.Record) bool { return r.Type == "MandateVetoed" })},
		{"two types", all[0].Position, store.Filter{Streams: streams, Types: []string{"ReportPublished", "RecordCorrected"}},
			where(func(r store.Record) bool { return r.Type == "ReportPublished" || r.Type == "RecordCorrected" })},
		{"stream and type", all[0].Position, store.Filter{Streams: streams[:1], Types: []string{"ReportPublished"}},
			where(func(r store.Record) bool { return r.Stream == streams[0] && r.Type == "ReportPublished" })},
		{"no such stream", all[0].Position, store.Filter{Streams: []string{e.stream("nobody")}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := collect(t, e.s.ReadAll(ctxWait(t), tc.from, tc.filter))
			if !slices.Equal(ids(got), ids(tc.want)) {
				t.Fatalf("event_ids\n got %v\nwant %v", ids(got), ids(tc.want))
			}
			for i := range got {
				sameRecord(t, fmt.Sprintf("record %d", i), got[i], tc.want[i])
			}
		})
	}
	// Unfiltered, from the first record: every record is a ledger record, ours appear
	// in order, positions grow.
	got := collect(t, e.s.ReadAll(ctxWait(t), all[0].Position, store.Filter{}))
	checkIncreasing(t, "unfiltered ReadAll", got)
	var ours []store.Record
	for _, r := range got {
		if slices.Contains(streams, r.Stream) {
			ours = append(ours, r)
		}
	}
	if !slices.Equal(ids(ours), ids(all)) {
		t.Errorf("unfiltered ReadAll: our records\n got %v\nwant %v", ids(ours), ids(all))
	}
}

// testReadAllOnlyLedgerStreams: records of streams that are not "party-…" are stored
// but never yielded by ReadAll or Subscribe.
func testReadAllOnlyLedgerStreams(t *testing.T, e *env) {
	other := "audit-" + e.party("x")
	prefixOnly := "partyx-" + e.party("y")
	first := e.mustAppend(t, e.stream("x"), ledger.NoStream, e.recs(t, "x", 1)...)
	for _, s := range []string{other, prefixOnly} {
		res := e.mustAppend(t, s, ledger.NoStream, e.recs(t, "x", 1)...)
		// They are stored: readable by stream and event_id.
		if n := e.streamLen(t, s); n != 1 {
			t.Errorf("stream %s holds %d records, want 1", s, n)
		}
		if _, err := e.s.GetEvent(ctxWait(t), res.Records[0].EventID); err != nil {
			t.Errorf("GetEvent of a record in %s: %v", s, err)
		}
	}
	last := e.mustAppend(t, e.stream("x"), ledger.StreamExists, e.recs(t, "x", 1)...)
	want := []string{first.Records[0].EventID, last.Records[0].EventID}

	var gotIDs []string
	for r, err := range e.s.ReadAll(ctxWait(t), first.Position, store.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ledger.PartyOf(r.Stream); !ok {
			t.Errorf("ReadAll yielded a record of %q", r.Stream)
		}
		if strings.HasPrefix(r.EventID, e.prefix) {
			gotIDs = append(gotIDs, r.EventID)
		}
	}
	if !slices.Equal(gotIDs, want) {
		t.Errorf("ReadAll: our records %v, want %v", gotIDs, want)
	}
	for _, f := range []store.Filter{{}, {Streams: []string{other, prefixOnly, e.stream("x")}}} {
		sub := subscribe(t, e.s, first.Position, f)
		var subIDs []string
		for len(subIDs) < 2 {
			m := sub.next(t)
			if m.CaughtUp {
				continue
			}
			if _, ok := ledger.PartyOf(m.Record.Stream); !ok {
				t.Errorf("Subscribe yielded a record of %q", m.Record.Stream)
			}
			if strings.HasPrefix(m.Record.EventID, e.prefix) {
				subIDs = append(subIDs, m.Record.EventID)
			}
		}
		sub.stop(t)
		if !slices.Equal(subIDs, want) {
			t.Errorf("Subscribe(%v): our records %v, want %v", f.Streams, subIDs, want)
		}
	}
}

// testGetEvent: GetEvent finds a stored record by event_id, or ErrNotFound.
func testGetEvent(t *testing.T, e *env) {
	res := e.mustAppend(t, e.stream("get"), ledger.NoStream, e.recs(t, "get", 3)...)
	for _, r := range res.Records {
		got, err := e.s.GetEvent(ctxWait(t), r.EventID)
		if err != nil {
			t.Fatalf("GetEvent(%q): %v", r.EventID, err)
		}
		sameRecord(t, "GetEvent", got, r)
	}
	for _, id := range []string{e.id("never-stored"), res.Records[0].EventID + "x", res.Records[0].EventID[:len(res.Records[0].EventID)-1]} {
		if _, err := e.s.GetEvent(ctxWait(t), id); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("GetEvent(%q): err = %v, want ErrNotFound", id, err)
		}
	}
}
