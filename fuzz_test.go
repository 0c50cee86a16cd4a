package ledger_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
)

// FuzzDecode feeds Decode arbitrary stored bytes. Decode must never panic, must fail
// only with a *ValidationError, and whatever decodes and validates must encode again,
// to bytes that decode to the same event and are a fixed point of Encode∘Decode.
//
// Seeds: testdata/fuzz/FuzzDecode and the samples of codec_test.go.
func FuzzDecode(f *testing.F) {
	for _, e := range samples() {
		enc, err := ledger.Encode(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "seed")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc.Type, enc.Data, enc.Metadata)
		noRecording, _ := ledger.Encode(e, time.Time{}, "")
		f.Add(noRecording.Type, noRecording.Data, noRecording.Metadata)
	}
	f.Fuzz(func(t *testing.T, typ string, data, metadata []byte) {
		e, md, err := ledger.Decode(typ, data, metadata)
		if err != nil {
			var ve *ledger.ValidationError
			if !errors.As(err, &ve) || len(ve.Violations) == 0 {
				t.Fatalf("Decode error %v (%T) is not a *ValidationError", err, err)
			}
			return
		}
		if e == nil || md == nil || e.Type().String() != typ {
			t.Fatalf("Decode returned event %v, metadata %v for type %q", e, md, typ)
		}
		if ledger.ValidateEvent(e, now) != nil {
			return
		}
		var recordedAt time.Time
		if md.RecordedAt != nil {
			recordedAt = *md.RecordedAt
		}
		enc, err := ledger.Encode(e, recordedAt, md.RecordedBy)
		if err != nil {
			t.Fatalf("a decoded, valid event does not encode: %v", err)
		}
		e2, md2, err := ledger.Decode(enc.Type, enc.Data, enc.Metadata)
		if err != nil {
			t.Fatalf("Encode output does not decode: %v\n%s\n%s", err, enc.Data, enc.Metadata)
		}
		if !sameEvent(e, e2) {
			t.Fatalf("re-encoding changed the event:\n%+v\n%+v", normalize(e), normalize(e2))
		}
		if md2.RecordedBy != md.RecordedBy || (md.RecordedAt == nil) != (md2.RecordedAt == nil) {
			t.Fatalf("re-encoding changed the recording: %+v → %+v", md, md2)
		}
		enc2, err := ledger.Encode(e2, recordedAt, md2.RecordedBy)
		if err != nil || !reflect.DeepEqual(enc, enc2) {
			t.Fatalf("Encode∘Decode is not a fixed point (%v):\n%s\n%s", err, enc.Metadata, enc2.Metadata)
		}
	})
}

// jsonEvent is the JSON Lines shape of an Event (DESIGN.md §3) read with encoding/json,
// so the root package's fuzz target needs no proto dependency. Enum values are names.
type jsonEvent struct {
	EventID         string                  `json:"event_id"`
	Party           string                  `json:"party"`
	OccurredAt      time.Time               `json:"occurred_at"`
	ReportedAt      time.Time               `json:"reported_at"`
	Sources         []ledger.Source         `json:"sources"`
	ReportPublished *ledger.ReportPublished `json:"report_published"`
	StatementIssued *ledger.StatementIssued `json:"statement_issued"`
	MandateVetoed   *ledger.MandateVetoed   `json:"mandate_vetoed"`
	RecordCorrected *ledger.RecordCorrected `json:"record_corrected"`
}

func (j *jsonEvent) event() *ledger.Event {
	e := &ledger.Event{EventID: j.EventID, Party: j.Party, OccurredAt: j.OccurredAt, ReportedAt: j.ReportedAt, Sources: j.Sources}
	switch {
	case j.ReportPublished != nil:
		e.Body = j.ReportPublished
	case j.StatementIssued != nil:
		e.Body = j.StatementIssued
	case j.MandateVetoed != nil:
		e.Body = j.MandateVetoed
	case j.RecordCorrected != nil:
		e.Body = j.RecordCorrected
	}
	return e
}

// FuzzValidate feeds ValidateEvent and ValidateAppend events made from arbitrary JSON,
// with an arbitrary number forced into the first stance's and vote's enums (JSON
// carries names only, so unknown numbers come from proto clients). Validation must
// never panic, must fail only with a *ValidationError, and a valid event must encode
// and decode back to itself.
//
// Seeds: testdata/fuzz/FuzzValidate (lines of testdata/seed.jsonl and broken variants).
func FuzzValidate(f *testing.F) {
	f.Add([]byte(`{"event_id":"e1","party":"dprk","occurred_at":"2025-06-01T00:00:00Z","sources":[{"url":"https://kcna.kp/"}],"statement_issued":{"statement_id":"s","stances":[{"topic":"msmt-legitimacy","alignment":"ALIGNMENT_OPPOSES"}]}}`), 0)
	f.Add([]byte(`{"event_id":"e2","party":"russia","occurred_at":"2024-03-28T00:00:00Z","sources":[{"url":"https://press.un.org/"}],"mandate_vetoed":{"body":"unsc","mandate":"poe","votes":[{"party":"russia","vote":"VOTE_NO"}],"vetoed_by":["russia"]}}`), 5)
	f.Fuzz(func(t *testing.T, data []byte, enum int) {
		var j jsonEvent
		if json.Unmarshal(data, &j) != nil {
			return
		}
		e := j.event()
		if enum != 0 {
			forceEnums(e, enum)
		}
		err := ledger.ValidateEvent(e, now)
		appendErr := ledger.ValidateAppend(t.Context(), e.Party, []*ledger.Event{e}, now, ledger.DefaultLimits, nil)
		for _, err := range []error{err, appendErr} {
			var ve *ledger.ValidationError
			if err != nil && (!errors.As(err, &ve) || len(ve.Violations) == 0) {
				t.Fatalf("validation error %v (%T) is not a *ValidationError", err, err)
			}
		}
		// EncodeAppend validates exactly as ValidateAppend and encodes as Encode.
		encs, encAppendErr := ledger.EncodeAppend(t.Context(), e.Party, []*ledger.Event{e}, now, "fuzz", ledger.DefaultLimits, nil)
		if !reflect.DeepEqual(encAppendErr, appendErr) {
			t.Fatalf("EncodeAppend: %v; ValidateAppend: %v", encAppendErr, appendErr)
		}
		if appendErr == nil {
			if want, _ := ledger.Encode(e, now, "fuzz"); !reflect.DeepEqual(encs, []ledger.Encoded{want}) {
				t.Fatalf("EncodeAppend encoded\n%+v\nEncode\n%+v", encs, want)
			}
		}
		if err == nil && appendErr != nil && e.Type() != ledger.TypeRecordCorrected {
			// Beyond ValidateEvent, an append of one event checks only sizes (and, for
			// corrections, the record corrected).
			if _, encErr := ledger.Encode(e, time.Time{}, ""); encErr != nil {
				t.Fatalf("ValidateEvent passed an event that does not encode: %v", encErr)
			}
		}
		if err != nil {
			return
		}
		enc, encErr := ledger.Encode(e, time.Time{}, "")
		if encErr != nil {
			t.Fatalf("valid event does not encode: %v", encErr)
		}
		back, _, decErr := ledger.Decode(enc.Type, enc.Data, enc.Metadata)
		if decErr != nil {
			t.Fatalf("valid event does not decode: %v", decErr)
		}
		if !sameEvent(e, back) {
			t.Fatalf("valid event changed in the store:\n%+v\n%+v", normalize(e), normalize(back))
		}
	})
}

func forceEnums(e *ledger.Event, n int) {
	set := func(s []ledger.Stance) {
		if len(s) > 0 {
			s[0].Alignment, s[0].Act = ledger.Alignment(n), ledger.Act(n)
		}
	}
	switch b := e.Body.(type) {
	case *ledger.ReportPublished:
		set(b.Findings)
	case *ledger.StatementIssued:
		set(b.Stances)
	case *ledger.RecordCorrected:
		set(b.ReplacementStances)
	case *ledger.MandateVetoed:
		if len(b.Votes) > 0 {
			b.Votes[0].Vote = ledger.Vote(n)
		}
	}
}
