package ledger

import (
	"reflect"
	"testing"
	"time"
)

// FuzzJSONAgreement checks what unmarshalStrict promises: for any bytes, it agrees
// with encoding/json alone (unmarshalV1) on whether they decode, and on the value.
func FuzzJSONAgreement(f *testing.F) {
	for _, e := range []*Event{
		{EventID: "e1", Party: "p", OccurredAt: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC),
			Sources: []Source{{URL: "https://example.org/a", Publisher: "Example", Language: "en"}},
			Body:    &StatementIssued{StatementID: "s", Stances: []Stance{{Topic: "t", Alignment: AlignmentOpposes, Act: ActAffirm, Summary: "s", Quote: "q"}}, CoSigners: []string{"q"}}},
		{EventID: "e2", Party: "p", OccurredAt: time.Date(2025, 6, 1, 0, 0, 0, 1, time.UTC),
			Body: &RecordCorrected{CorrectsEventID: "e1", Withdraw: true, Reason: "r"}},
		{EventID: "e3", Party: "p", OccurredAt: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC),
			Body: &MandateVetoed{Body: "unsc", Mandate: "m", Votes: []MemberVote{{Party: "a", Vote: VoteNo}}, VetoedBy: []string{"a"}}},
	} {
		enc, err := Encode(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "seed")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc.Data)
		f.Add(enc.Metadata)
	}
	f.Add([]byte(`{"Party":"x","party":"y"}`))
	f.Add([]byte(`{"stances":[{"topic":"a","alignment":"ALIGNMENT_SUPPORTS"}],"stances":[{}]}`))
	f.Add([]byte("{\"reason\":\"\xff\"}"))
	f.Add([]byte(`{"occurred_at":"2025-06-01T00:00:00.000Z","corrected_occurred_at":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		agree[Metadata](t, b)
		agree[StatementIssued](t, b)
		agree[ReportPublished](t, b)
		agree[MandateVetoed](t, b)
		agree[RecordCorrected](t, b)
	})
}

func agree[T any](t *testing.T, b []byte) {
	var got, want T
	errGot, errWant := unmarshalStrict(b, &got), unmarshalV1(b, &want)
	if (errGot == nil) != (errWant == nil) {
		t.Fatalf("%T from %q: unmarshalStrict error %v, encoding/json error %v", want, b, errGot, errWant)
	}
	if errGot == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%T from %q:\nunmarshalStrict %+v\nencoding/json   %+v", want, b, got, want)
	}
}
