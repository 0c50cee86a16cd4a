package wire_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/store"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ts(s string) *timestamppb.Timestamp {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return timestamppb.New(t)
}

func sources() []*ledgerv1.Source {
	return []*ledgerv1.Source{{Url: "https://www.kcna.kp/en/a", Publisher: "KCNA", Title: "Press statement", Language: "en"}}
}

// protoEvents returns one valid event of every record type, every field set.
func protoEvents() map[string]*ledgerv1.Event {
	stances := func() []*ledgerv1.Stance {
		return []*ledgerv1.Stance{
			{Topic: "msmt-report-2025-05", Alignment: ledgerv1.Alignment_ALIGNMENT_OPPOSES, Act: ledgerv1.Act_ACT_DENY, Summary: "Called it a fabrication.", Quote: "fabrication"},
			{Topic: "msmt-legitimacy", Alignment: ledgerv1.Alignment_ALIGNMENT_OPPOSES},
		}
	}
	return map[string]*ledgerv1.Event{
		"report": {EventId: "r1", Party: "msmt", OccurredAt: ts("2025-05-29T00:00:00Z"), Sources: sources(),
			Body: &ledgerv1.Event_ReportPublished{ReportPublished: &ledgerv1.ReportPublished{
				ReportId: "msmt-report-2025-05", Title: "First report",
				Findings: []*ledgerv1.Stance{{Topic: "dprk-troops-in-russia", Alignment: ledgerv1.Alignment_ALIGNMENT_SUPPORTS, Act: ledgerv1.Act_ACT_ACCUSE}},
				Accused:  []string{"dprk", "russia"},
			}}},
		"statement": {EventId: "s1", Party: "dprk", OccurredAt: ts("2025-06-01T08:30:00.123456789Z"), ReportedAt: ts("2025-06-02T00:00:00Z"), Sources: sources(),
			Body: &ledgerv1.Event_StatementIssued{StatementIssued: &ledgerv1.StatementIssued{
				StatementId: "fm-1", Speaker: "Foreign Ministry", Channel: "KCNA", Stances: stances(),
				RespondsTo: []string{"r1"}, CoSigners: []string{"russia"},
			}}},
		"veto": {EventId: "v1", Party: "russia", OccurredAt: ts("2024-03-28T00:00:00Z"), Sources: sources(),
			Body: &ledgerv1.Event_MandateVetoed{MandateVetoed: &ledgerv1.MandateVetoed{
				Body: "unsc", Mandate: "poe-mandate-renewal-2024", DraftResolution: "S/2024/255",
				Votes: []*ledgerv1.MemberVote{
					{Party: "russia", Vote: ledgerv1.Vote_VOTE_NO}, {Party: "china", Vote: ledgerv1.Vote_VOTE_ABSTAIN}, {Party: "usa", Vote: ledgerv1.Vote_VOTE_YES},
				},
				VetoedBy: []string{"russia"},
			}}},
		"correction": {EventId: "c1", Party: "dprk", OccurredAt: ts("2025-06-03T00:00:00Z"), Sources: sources(),
			Body: &ledgerv1.Event_RecordCorrected{RecordCorrected: &ledgerv1.RecordCorrected{
				CorrectsEventId: "s1", Reason: "wrong date", ReplacementStances: stances(),
				CorrectedOccurredAt: ts("2025-05-31T00:00:00Z"), AddedSources: sources(),
			}}},
		"withdrawal": {EventId: "c2", Party: "dprk", OccurredAt: ts("2025-06-03T00:00:00Z"), Sources: sources(),
			Body: &ledgerv1.Event_RecordCorrected{RecordCorrected: &ledgerv1.RecordCorrected{CorrectsEventId: "s1", Reason: "never said", Withdraw: true}}},
	}
}

func TestEventRoundTrip(t *testing.T) {
	for name, pe := range protoEvents() {
		t.Run(name, func(t *testing.T) {
			e, err := wire.EventFromProto(pe)
			if err != nil {
				t.Fatalf("EventFromProto: %v", err)
			}
			if err := ledger.ValidateEvent(e, now); err != nil {
				t.Fatalf("sample invalid: %v", err)
			}
			if got := wire.EventToProto(e); !proto.Equal(got, pe) {
				t.Errorf("round trip:\n got %v\nwant %v", got, pe)
			}
		})
	}
	if wire.EventToProto(nil) != nil {
		t.Error("EventToProto(nil) != nil")
	}
}

func violationFields(t *testing.T, err error) []string {
	t.Helper()
	var ve *ledger.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ledger.ValidationError", err, err)
	}
	var out []string
	for _, v := range ve.Violations {
		out = append(out, v.Field)
	}
	return out
}

func TestEventFromProtoRefuses(t *testing.T) {
	base := func(mutate func(*ledgerv1.Event)) *ledgerv1.Event {
		pe := protoEvents()["statement"]
		mutate(pe)
		return pe
	}
	tests := []struct {
		name string
		pe   *ledgerv1.Event
		want []string
	}{
		{"nil event", nil, []string{""}},
		{"no body", base(func(pe *ledgerv1.Event) { pe.Body = nil }), []string{"body"}},
		{"body set to a nil message", base(func(pe *ledgerv1.Event) { pe.Body = &ledgerv1.Event_StatementIssued{} }), []string{"body"}},
		{"occurred_at nanos out of range", base(func(pe *ledgerv1.Event) { pe.OccurredAt = &timestamppb.Timestamp{Seconds: 1, Nanos: 1e9} }), []string{"occurred_at"}},
		{"occurred_at after year 9999", base(func(pe *ledgerv1.Event) { pe.OccurredAt = &timestamppb.Timestamp{Seconds: 253402300800} }), []string{"occurred_at"}},
		{"reported_at before year 1", base(func(pe *ledgerv1.Event) { pe.ReportedAt = &timestamppb.Timestamp{Seconds: -62135596801} }), []string{"reported_at"}},
		{"reported_at at time.Time's zero", base(func(pe *ledgerv1.Event) { pe.ReportedAt = &timestamppb.Timestamp{Seconds: -62135596800} }), []string{"reported_at"}},
		{"corrected_occurred_at invalid", func() *ledgerv1.Event {
			pe := protoEvents()["correction"]
			pe.GetRecordCorrected().CorrectedOccurredAt = &timestamppb.Timestamp{Nanos: -1}
			return pe
		}(), []string{"record_corrected.corrected_occurred_at"}},
		{"every problem at once", base(func(pe *ledgerv1.Event) {
			pe.OccurredAt = &timestamppb.Timestamp{Nanos: -5}
			pe.ReportedAt = &timestamppb.Timestamp{Seconds: 1 << 62}
			pe.Body = nil
		}), []string{"occurred_at", "reported_at", "body"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := wire.EventFromProto(tt.pe)
			if e != nil || !errors.Is(err, ledger.ErrInvalid) {
				t.Fatalf("EventFromProto = %v, %v; want nil and an error matching ErrInvalid", e, err)
			}
			if got := violationFields(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("fields = %q, want %q (%v)", got, tt.want, err)
			}
		})
	}
}

// TestUnknownEnumsReachValidation checks that enum numbers the ledger does not know
// survive conversion, so validation names the field instead of conversion guessing.
func TestUnknownEnumsReachValidation(t *testing.T) {
	pe := protoEvents()["statement"]
	pe.GetStatementIssued().Stances[1].Alignment = 42
	pe.GetStatementIssued().Stances[0].Act = 99
	e, err := wire.EventFromProto(pe)
	if err != nil {
		t.Fatal(err)
	}
	got := violationFields(t, ledger.ValidateEvent(e, now))
	want := []string{"statement_issued.stances[0].act", "statement_issued.stances[1].alignment"}
	if !slices.Equal(got, want) {
		t.Errorf("fields = %q, want %q", got, want)
	}
	if back := wire.EventToProto(e); !proto.Equal(back, pe) {
		t.Error("unknown enum numbers changed in the round trip")
	}

	veto := protoEvents()["veto"]
	veto.GetMandateVetoed().Votes[2].Vote = 7
	e, err = wire.EventFromProto(veto)
	if err != nil {
		t.Fatal(err)
	}
	if got := violationFields(t, ledger.ValidateEvent(e, now)); !slices.Equal(got, []string{"mandate_vetoed.votes[2].vote"}) {
		t.Errorf("fields = %q", got)
	}
}

func TestExpectedRevision(t *testing.T) {
	for _, e := range []ledger.ExpectedRevision{ledger.AnyRevision, ledger.NoStream, ledger.StreamExists, ledger.ExactRevision(0), ledger.ExactRevision(1 << 40)} {
		got, err := wire.ExpectedFromProto(wire.ExpectedToProto(e))
		if err != nil || got != e {
			t.Errorf("round trip of %v = %v, %v", e, got, err)
		}
	}
	if got, err := wire.ExpectedFromProto(nil); err != nil || !got.IsAny() {
		t.Errorf("ExpectedFromProto(nil) = %v, %v; want any", got, err)
	}
	refused := map[string]*ledgerv1.ExpectedRevision{
		// Present without a kind (or with one this server does not know): not "any".
		"expected_revision":               {},
		"expected_revision.any":           {Kind: &ledgerv1.ExpectedRevision_Any{}},
		"expected_revision.no_stream":     {Kind: &ledgerv1.ExpectedRevision_NoStream{}},
		"expected_revision.stream_exists": {Kind: &ledgerv1.ExpectedRevision_StreamExists{}},
	}
	for field, x := range refused {
		_, err := wire.ExpectedFromProto(x)
		if got := violationFields(t, err); !slices.Equal(got, []string{field}) {
			t.Errorf("ExpectedFromProto(%v) fields = %q, want %q", x, got, field)
		}
	}
}

func TestPosition(t *testing.T) {
	p := ledger.Position{Commit: 7, Prepare: 9}
	if got := wire.PositionFromProto(wire.PositionToProto(p)); got != p {
		t.Errorf("round trip = %v", got)
	}
	if got := wire.PositionFromProto(nil); !got.IsZero() {
		t.Errorf("PositionFromProto(nil) = %v", got)
	}
}

func TestRecordType(t *testing.T) {
	for _, rt := range []ledger.RecordType{ledger.TypeReportPublished, ledger.TypeStatementIssued, ledger.TypeMandateVetoed, ledger.TypeRecordCorrected} {
		pt := wire.RecordTypeToProto(rt)
		if got, ok := wire.RecordTypeFromProto(pt); !ok || got != rt {
			t.Errorf("round trip of %v = %v, %v", rt, got, ok)
		}
	}
	// The enums must name the same types: a renumbering on either side breaks filters.
	names := map[ledgerv1.RecordType]string{
		ledgerv1.RecordType_RECORD_TYPE_REPORT_PUBLISHED: "ReportPublished",
		ledgerv1.RecordType_RECORD_TYPE_STATEMENT_ISSUED: "StatementIssued",
		ledgerv1.RecordType_RECORD_TYPE_MANDATE_VETOED:   "MandateVetoed",
		ledgerv1.RecordType_RECORD_TYPE_RECORD_CORRECTED: "RecordCorrected",
	}
	for pt, name := range names {
		if got, _ := wire.RecordTypeFromProto(pt); got.String() != name {
			t.Errorf("%v → %q, want %q", pt, got, name)
		}
	}
	for _, pt := range []ledgerv1.RecordType{ledgerv1.RecordType_RECORD_TYPE_UNSPECIFIED, 5, -1} {
		if _, ok := wire.RecordTypeFromProto(pt); ok {
			t.Errorf("RecordTypeFromProto(%v) accepted", pt)
		}
	}
}

// TestEnumsMatch checks that every ledger enum value has the proto name of the same
// number, since conversion copies numbers.
func TestEnumsMatch(t *testing.T) {
	for n, name := range ledgerv1.Alignment_name {
		if got := ledger.Alignment(n).String(); got != name {
			t.Errorf("Alignment %d: ledger %q, proto %q", n, got, name)
		}
	}
	for n, name := range ledgerv1.Act_name {
		if got := ledger.Act(n).String(); got != name {
			t.Errorf("Act %d: ledger %q, proto %q", n, got, name)
		}
	}
	for n, name := range ledgerv1.Vote_name {
		if got := ledger.Vote(n).String(); got != name {
			t.Errorf("Vote %d: ledger %q, proto %q", n, got, name)
		}
	}
}

func storedRecord(t *testing.T, pe *ledgerv1.Event) (store.Record, *ledger.Event) {
	t.Helper()
	e, err := wire.EventFromProto(pe)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := ledger.Encode(e, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), "importer")
	if err != nil {
		t.Fatal(err)
	}
	return store.Record{
		Stream: ledger.StreamOf(e.Party), Revision: 3, Position: ledger.Position{Commit: 10, Prepare: 10},
		EventID: enc.EventID, Type: enc.Type, Data: enc.Data, Metadata: enc.Metadata, ContentHash: enc.ContentHash,
	}, e
}

func TestRecordToProto(t *testing.T) {
	for name, pe := range protoEvents() {
		t.Run(name, func(t *testing.T) {
			r, _ := storedRecord(t, pe)
			got, err := wire.RecordToProto(r)
			if err != nil {
				t.Fatal(err)
			}
			want := &ledgerv1.RecordedEvent{
				Event: pe, Revision: 3, Position: &ledgerv1.Position{Commit: 10, Prepare: 10},
				RecordedAt: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)), RecordedBy: "importer",
				Stream: r.Stream, Stored: &ledgerv1.StoredRecord{EventType: r.Type, Data: r.Data, Metadata: r.Metadata},
			}
			if !proto.Equal(got, want) {
				t.Errorf("RecordToProto:\n got %v\nwant %v", got, want)
			}
			back, err := wire.RecordFromProto(got)
			if err != nil {
				t.Fatal(err)
			}
			if !recordsEqual(back, r) {
				t.Errorf("RecordFromProto = %+v, want %+v", back, r)
			}
		})
	}
}

func recordsEqual(a, b store.Record) bool {
	return a.Stream == b.Stream && a.Revision == b.Revision && a.Position == b.Position && a.EventID == b.EventID &&
		a.Type == b.Type && string(a.Data) == string(b.Data) && string(a.Metadata) == string(b.Metadata) && a.ContentHash == b.ContentHash
}

func TestRecordCorruption(t *testing.T) {
	good, _ := storedRecord(t, protoEvents()["statement"])
	tests := map[string]func(*store.Record){
		"data changed":       func(r *store.Record) { r.Data = append([]byte{}, r.Data[:len(r.Data)-1]...) },
		"unknown type":       func(r *store.Record) { r.Type = "Gossip" },
		"metadata truncated": func(r *store.Record) { r.Metadata = r.Metadata[:10] },
		"another event_id":   func(r *store.Record) { r.EventID = "someone-else" },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			r := good
			mutate(&r)
			_, err := wire.RecordToProto(r)
			if err == nil || errors.Is(err, ledger.ErrInvalid) {
				t.Errorf("RecordToProto = %v; want an error that does not match ErrInvalid", err)
			}
			_, err = wire.VouchedRecordToProto(r)
			if err == nil || errors.Is(err, ledger.ErrInvalid) {
				t.Errorf("VouchedRecordToProto = %v; want an error that does not match ErrInvalid", err)
			}
		})
	}
	// A record that decodes but whose content hash does not match: refused, unless
	// its store vouches for it (and then decoded without the recheck).
	t.Run("content hash", func(t *testing.T) {
		r := good
		i := bytes.Index(r.Metadata, []byte(`"content_sha256":"`)) + len(`"content_sha256":"`)
		r.Metadata = bytes.Clone(r.Metadata)
		r.Metadata[i] ^= 1 // another hex digit
		if _, err := wire.RecordToProto(r); err == nil || errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("RecordToProto = %v; want an error that does not match ErrInvalid", err)
		}
		want, err := wire.RecordToProto(good)
		if err != nil {
			t.Fatal(err)
		}
		got, err := wire.VouchedRecordToProto(r)
		if err != nil || !proto.Equal(got.GetEvent(), want.GetEvent()) {
			t.Errorf("VouchedRecordToProto = %v, %v; want the event decoded", got, err)
		}
	})
	t.Run("RecordFromProto", func(t *testing.T) {
		pe, err := wire.RecordToProto(good)
		if err != nil {
			t.Fatal(err)
		}
		noStored := proto.Clone(pe).(*ledgerv1.RecordedEvent)
		noStored.Stored = nil
		otherID := proto.Clone(pe).(*ledgerv1.RecordedEvent)
		otherID.Event.EventId = "someone-else"
		badBytes := proto.Clone(pe).(*ledgerv1.RecordedEvent)
		badBytes.Stored.Data = []byte("{")
		for _, x := range []*ledgerv1.RecordedEvent{nil, noStored, otherID, badBytes} {
			if _, err := wire.RecordFromProto(x); err == nil || errors.Is(err, ledger.ErrInvalid) {
				t.Errorf("RecordFromProto = %v; want an error that does not match ErrInvalid", err)
			}
		}
	})
}

// TestStoredDataIsProtoJSON checks the promise of docs/architecture.md: the stored data
// of a record is the body in protojson form (proto field names, enum names), so
// protojson reads it, strictly, into the body's message.
func TestStoredDataIsProtoJSON(t *testing.T) {
	for name, pe := range protoEvents() {
		t.Run(name, func(t *testing.T) {
			r, _ := storedRecord(t, pe)
			var body, want proto.Message
			switch b := pe.GetBody().(type) {
			case *ledgerv1.Event_ReportPublished:
				body, want = new(ledgerv1.ReportPublished), b.ReportPublished
			case *ledgerv1.Event_StatementIssued:
				body, want = new(ledgerv1.StatementIssued), b.StatementIssued
			case *ledgerv1.Event_MandateVetoed:
				body, want = new(ledgerv1.MandateVetoed), b.MandateVetoed
			case *ledgerv1.Event_RecordCorrected:
				body, want = new(ledgerv1.RecordCorrected), b.RecordCorrected
			}
			if err := protojson.Unmarshal(r.Data, body); err != nil {
				t.Fatalf("protojson cannot read stored data %s: %v", r.Data, err)
			}
			if !proto.Equal(body, want) {
				t.Errorf("protojson read\n%v\nwant\n%v", body, want)
			}
		})
	}
}

// TestSeed reads testdata/seed.jsonl as `ledgerctl import` does (protojson Event per
// line, proto field names) and validates every line as an append of its own, with
// corrections resolved against earlier lines, as of 2026-01-01.
func TestSeed(t *testing.T) {
	f, err := os.Open("../../testdata/seed.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type stored struct {
		party string
		typ   ledger.RecordType
	}
	seen := map[string]stored{}
	lookup := func(_ context.Context, id string) (string, ledger.RecordType, bool, error) {
		s, ok := seen[id]
		return s.party, s.typ, ok, nil
	}
	types := map[ledger.RecordType]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	line := 0
	for sc.Scan() {
		line++
		pe := new(ledgerv1.Event)
		if err := (protojson.UnmarshalOptions{}).Unmarshal(sc.Bytes(), pe); err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		e, err := wire.EventFromProto(pe)
		if err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		if err := ledger.ValidateAppend(t.Context(), e.Party, []*ledger.Event{e}, now, ledger.DefaultLimits, lookup); err != nil {
			t.Errorf("line %d (%s): %v", line, e.EventID, err)
		}
		if _, dup := seen[e.EventID]; dup {
			t.Errorf("line %d: event_id %q used twice", line, e.EventID)
		}
		for _, id := range responds(e) {
			if _, ok := seen[id]; !ok {
				t.Errorf("line %d: responds_to %q, which is not an earlier line", line, id)
			}
		}
		seen[e.EventID] = stored{e.Party, e.Type()}
		types[e.Type()]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if line < 12 {
		t.Errorf("%d records, want at least 12", line)
	}
	for _, rt := range []ledger.RecordType{ledger.TypeReportPublished, ledger.TypeStatementIssued, ledger.TypeMandateVetoed, ledger.TypeRecordCorrected} {
		if types[rt] == 0 {
			t.Errorf("no %s record", rt)
		}
	}
}

func responds(e *ledger.Event) []string {
	if s, ok := e.Body.(*ledger.StatementIssued); ok {
		return s.RespondsTo
	}
	return nil
}
