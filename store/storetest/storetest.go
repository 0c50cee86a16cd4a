// Package storetest is the conformance suite every store.Store backend runs:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { … })
//	}
//
// It checks every guarantee written in the doc comments of package store, with records
// built as the server builds them (ledger.Encode of valid events). It assumes only what
// the contract says: positions grow in log order, but need not be dense or start
// anywhere in particular, and other records may already be in the log (every subtest
// uses streams and event_ids of its own, unique to the run), so one EventStoreDB
// server can serve every subtest.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// Wait bounds every wait for a backend: one call, or the next message of a
// subscription. It is generous so slow backends pass, and bounded so a broken one
// fails instead of hanging.
const Wait = 30 * time.Second

// Run runs the suite. open is called once per subtest and returns a store ready for
// use; it must register its own cleanup with t.Cleanup, and that cleanup must accept
// a store the suite has already closed (the Close subtest closes its store).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		run  func(*testing.T, *env)
	}{
		{"ExpectedRevision", testExpectedRevision},
		{"AppendResult", testAppendResult},
		{"EmptyAppend", testEmptyAppend},
		{"AtomicFailure", testAtomicFailure},
		{"AtomicConsecutive", testAtomicConsecutive},
		{"ConcurrentExactRevision", testConcurrentExactRevision},
		{"ConcurrentAnyRevision", testConcurrentAnyRevision},
		{"Idempotency", testIdempotency},
		{"ConcurrentRetries", testConcurrentRetries},
		{"BytesExact", testBytesExact},
		{"PositionsIncrease", testPositionsIncrease},
		{"ReadStream", testReadStream},
		{"ReadStreamMissing", testReadStreamMissing},
		{"ReadStreamStopEarly", testReadStreamStopEarly},
		{"ReadAll", testReadAll},
		{"ReadAllOnlyLedgerStreams", testReadAllOnlyLedgerStreams},
		{"GetEvent", testGetEvent},
		{"Subscribe", testSubscribe},
		{"SubscribeFilter", testSubscribeFilter},
		{"SubscribeWhileAppending", testSubscribeWhileAppending},
		{"SubscribeCancel", testSubscribeCancel},
		{"Close", testClose},
	}
	token := newToken(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			tc.run(t, &env{s: s, prefix: token + "-" + strings.ToLower(tc.name)})
		})
	}
}

func newToken(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "st" + hex.EncodeToString(b[:])
}

// env builds names and records unique to one subtest.
type env struct {
	s      store.Store
	prefix string
	mu     sync.Mutex
	n      int
}

// party returns a party slug unique to the subtest.
func (e *env) party(name string) string {
	p := e.prefix + "-" + name
	if len(p) > 63 {
		p = p[:63]
	}
	return p
}

// stream returns the ledger stream of party(name).
func (e *env) stream(name string) string { return ledger.StreamOf(e.party(name)) }

// id returns an event_id unique to the subtest.
func (e *env) id(name string) string { return e.prefix + "/" + name }

var recordedAt = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// event builds a valid event of type typ for party, as a client would send it.
func (e *env) event(t *testing.T, party, id string, typ ledger.RecordType, note string) *ledger.Event {
	t.Helper()
	ev := &ledger.Event{
		EventID:    id,
		Party:      party,
		OccurredAt: time.Date(2024, 3, 28, 15, 4, 5, 123456789, time.UTC),
		ReportedAt: time.Date(2024, 3, 29, 8, 0, 0, 0, time.UTC),
		Sources: []ledger.Source{{
			URL:       "https://example.org/news/" + strings.ReplaceAll(id, "/", "-"),
			Publisher: "Storetest Wire",
			Title:     "UN panel mandate: " + note,
			Language:  "en",
		}},
	}
	stance := ledger.Stance{
		Topic:     "un-panel-of-experts",
		Alignment: ledger.AlignmentOpposes,
		Act:       ledger.ActReject,
		Summary:   "Rejects the panel's findings as \"biased\" <and> politicised & " + note,
		Quote:     "«Нам нечего скрывать» — 우리는 숨길 것이 없다",
	}
	switch typ {
	case ledger.TypeReportPublished:
		ev.Body = &ledger.ReportPublished{ReportID: "report-" + note, Title: "Report " + note, Findings: []ledger.Stance{stance}, Accused: []string{"dprk"}}
	case ledger.TypeStatementIssued:
		ev.Body = &ledger.StatementIssued{StatementID: "statement-" + note, Speaker: "Spokesperson", Channel: "press-briefing", Stances: []ledger.Stance{stance}}
	case ledger.TypeMandateVetoed:
		ev.Body = &ledger.MandateVetoed{
			Body:            "unsc",
			Mandate:         "un-panel-of-experts",
			DraftResolution: "S/2024/255",
			Votes:           []ledger.MemberVote{{Party: party, Vote: ledger.VoteNo}, {Party: "usa", Vote: ledger.VoteYes}, {Party: "china", Vote: ledger.VoteAbstain}},
			VetoedBy:        []string{party},
		}
	case ledger.TypeRecordCorrected:
		ev.Body = &ledger.RecordCorrected{CorrectsEventID: id + "-original", Reason: "misattributed quote " + note, Withdraw: true}
	default:
		t.Fatalf("storetest: no body for record type %v", typ)
	}
	if err := ledger.ValidateEvent(ev, recordedAt); err != nil {
		t.Fatalf("storetest: built an invalid event: %v", err)
	}
	return ev
}

// proposed encodes ev as the server does, recorded at at.
func proposed(t *testing.T, ev *ledger.Event, at time.Time) store.Proposed {
	t.Helper()
	enc, err := ledger.Encode(ev, at, "storetest")
	if err != nil {
		t.Fatalf("storetest: encode: %v", err)
	}
	return store.Proposed{EventID: enc.EventID, Type: enc.Type, Data: enc.Data, Metadata: enc.Metadata, ContentHash: enc.ContentHash}
}

// rec builds a proposed StatementIssued record for party(name) with event_id id(idName).
func (e *env) rec(t *testing.T, name, idName string) store.Proposed {
	t.Helper()
	return proposed(t, e.event(t, e.party(name), e.id(idName), ledger.TypeStatementIssued, idName), recordedAt)
}

// recs builds n records for party(name) with fresh event_ids.
func (e *env) recs(t *testing.T, name string, n int) []store.Proposed {
	t.Helper()
	out := make([]store.Proposed, n)
	for i := range out {
		e.mu.Lock()
		e.n++
		k := e.n
		e.mu.Unlock()
		out[i] = e.rec(t, name, fmt.Sprintf("%s-%d", name, k))
	}
	return out
}

func ctxWait(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), Wait)
	t.Cleanup(cancel)
	return ctx
}

// mustAppend appends and fails the test on error.
func (e *env) mustAppend(t *testing.T, stream string, expected ledger.ExpectedRevision, records ...store.Proposed) store.AppendResult {
	t.Helper()
	res, err := e.s.Append(ctxWait(t), stream, expected, records)
	if err != nil {
		t.Fatalf("Append(%s, %v, %d records): %v", stream, expected, len(records), err)
	}
	return res
}

// collect drains seq, failing the test on error.
func collect(t *testing.T, seq iter.Seq2[store.Record, error]) []store.Record {
	t.Helper()
	out, err := collectErr(seq)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func collectErr(seq iter.Seq2[store.Record, error]) ([]store.Record, error) {
	var out []store.Record
	for r, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// readStream reads stream forwards, failing the test on error.
func (e *env) readStream(t *testing.T, stream string) []store.Record {
	t.Helper()
	return collect(t, e.s.ReadStream(ctxWait(t), stream, store.ReadStreamOptions{}))
}

// streamLen returns the number of records in stream, 0 when it does not exist.
func (e *env) streamLen(t *testing.T, stream string) int {
	t.Helper()
	recs, err := collectErr(e.s.ReadStream(ctxWait(t), stream, store.ReadStreamOptions{}))
	if errors.Is(err, ledger.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatalf("ReadStream(%s): %v", stream, err)
	}
	return len(recs)
}

// checkRecord fails unless got is the record stored from p at stream/rev.
func checkRecord(t *testing.T, what string, got store.Record, stream string, rev uint64, p store.Proposed) {
	t.Helper()
	if got.Stream != stream || got.Revision != rev || got.EventID != p.EventID || got.Type != p.Type || got.ContentHash != p.ContentHash {
		t.Errorf("%s: got %s@%d id=%q type=%q hash=%q, want %s@%d id=%q type=%q hash=%q", what,
			got.Stream, got.Revision, got.EventID, got.Type, got.ContentHash, stream, rev, p.EventID, p.Type, p.ContentHash)
	}
	if !bytes.Equal(got.Data, p.Data) {
		t.Errorf("%s: data\n got %q\nwant %q", what, got.Data, p.Data)
	}
	if !bytes.Equal(got.Metadata, p.Metadata) {
		t.Errorf("%s: metadata\n got %q\nwant %q", what, got.Metadata, p.Metadata)
	}
}

// sameRecord fails unless got and want are the same stored record.
func sameRecord(t *testing.T, what string, got, want store.Record) {
	t.Helper()
	if got.Stream != want.Stream || got.Revision != want.Revision || got.Position != want.Position ||
		got.EventID != want.EventID || got.Type != want.Type || got.ContentHash != want.ContentHash ||
		!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Metadata, want.Metadata) {
		t.Errorf("%s:\n got %s\nwant %s", what, describe(got), describe(want))
	}
}

func describe(r store.Record) string {
	return fmt.Sprintf("%s@%d pos=%v id=%q type=%q hash=%.12s data=%dB meta=%dB", r.Stream, r.Revision, r.Position, r.EventID, r.Type, r.ContentHash, len(r.Data), len(r.Metadata))
}

func ids(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.EventID
	}
	return out
}

func proposedIDs(ps []store.Proposed) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.EventID
	}
	return out
}

// checkIncreasing fails unless positions grow strictly along recs.
func checkIncreasing(t *testing.T, what string, recs []store.Record) {
	t.Helper()
	for i := 1; i < len(recs); i++ {
		if !recs[i-1].Position.Less(recs[i].Position) {
			t.Errorf("%s: position %v (%s) does not follow %v (%s)", what, recs[i].Position, recs[i].EventID, recs[i-1].Position, recs[i-1].EventID)
		}
	}
}

// checkNotStored fails if any of ps can be found by event_id.
func (e *env) checkNotStored(t *testing.T, ps ...store.Proposed) {
	t.Helper()
	for _, p := range ps {
		if _, err := e.s.GetEvent(ctxWait(t), p.EventID); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("GetEvent(%q) after a failed append: err = %v, want ErrNotFound", p.EventID, err)
		}
	}
}

// checkConflict fails unless err is a *ledger.ConflictError for stream with the given
// expected and actual revisions.
func checkConflict(t *testing.T, err error, stream string, expected ledger.ExpectedRevision, actual int64) {
	t.Helper()
	var ce *ledger.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v (%T), want *ledger.ConflictError", err, err)
	}
	if !errors.Is(err, ledger.ErrRevisionConflict) {
		t.Errorf("errors.Is(%v, ErrRevisionConflict) = false", err)
	}
	if ce.Stream != stream || ce.Expected != expected || ce.Actual != actual {
		t.Errorf("conflict = {Stream:%s Expected:%v Actual:%d}, want {Stream:%s Expected:%v Actual:%d}", ce.Stream, ce.Expected, ce.Actual, stream, expected, actual)
	}
}

// checkDuplicate fails unless err is a *ledger.DuplicateEventError naming eventID.
func checkDuplicate(t *testing.T, err error, eventID string) {
	t.Helper()
	var de *ledger.DuplicateEventError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v (%T), want *ledger.DuplicateEventError", err, err)
	}
	if !errors.Is(err, ledger.ErrDuplicateEvent) {
		t.Errorf("errors.Is(%v, ErrDuplicateEvent) = false", err)
	}
	if de.EventID != eventID {
		t.Errorf("DuplicateEventError.EventID = %q, want %q", de.EventID, eventID)
	}
}
