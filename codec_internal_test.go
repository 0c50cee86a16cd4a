package ledger

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// FuzzJSONAgreement checks what unmarshalStrict promises: for any bytes, it agrees
// with encoding/json alone (unmarshalV1) on whether they decode, and on the value;
// what unmarshalFast promises: what it reads, encoding/json reads to the same value;
// and what appendMetadata promises, on every metadata decoded.
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
	f.Add([]byte(`{"reason":"a \"b\" \\ \/ \b\f\n\r\t \u00e9 \u2028 \ud83d\ude00","withdraw":true}`))
	f.Add([]byte(` { "schema" : 1 , "occurred_at" : "2025-06-01T00:00:00.123456789Z" , "sources" : [ ] } `))
	f.Fuzz(func(t *testing.T, b []byte) {
		agree[Metadata](t, b)
		agree[StatementIssued](t, b)
		agree[ReportPublished](t, b)
		agree[MandateVetoed](t, b)
		agree[RecordCorrected](t, b)
	})
}

func agree[T any](t *testing.T, b []byte) {
	var got, want, fast T
	errGot, errWant := unmarshalStrict(b, &got), unmarshalV1(b, &want)
	if (errGot == nil) != (errWant == nil) {
		t.Fatalf("%T from %q: unmarshalStrict error %v, encoding/json error %v", want, b, errGot, errWant)
	}
	if errGot == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%T from %q:\nunmarshalStrict %+v\nencoding/json   %+v", want, b, got, want)
	}
	// What the fast path reads, it reads as encoding/json does.
	if unmarshalFast(b, &fast) && (errWant != nil || !reflect.DeepEqual(fast, want)) {
		t.Fatalf("%T from %q:\nunmarshalFast %+v\nencoding/json %+v (error %v)", want, b, fast, want, errWant)
	}
	// What the lean path (DecodeForFold) reads, the fast path reads too, to the
	// same value but for what folding does not read.
	var lean, full T
	if unmarshalLean(b, &lean) {
		if !unmarshalFast(b, &full) {
			t.Fatalf("%T from %q: unmarshalLean reads it, unmarshalFast does not", want, b)
		}
		leaveOut(&full)
		if !reflect.DeepEqual(lean, full) {
			t.Fatalf("%T from %q:\nunmarshalLean %+v\nunmarshalFast, left out %+v", want, b, lean, full)
		}
	}
	// And metadata it decodes, appendMetadata writes as marshal does.
	if md, ok := any(&want).(*Metadata); ok && errWant == nil {
		agreeMetadata(t, md)
	}
}

// TestFastPathReadsEncode: the fast path reads everything Encode writes (or decoding
// a log would not be faster), escapes, fractions of seconds and every body included.
func TestFastPathReadsEncode(t *testing.T) {
	at := time.Date(2025, 6, 1, 12, 30, 0, 123456000, time.UTC)
	redated := at.Add(-time.Hour)
	st := []Stance{{Topic: "t", Alignment: AlignmentOpposes, Act: ActDeny, Summary: "said \"no\" \\ twice\n\tagain \u2028 é 😀 <&>", Quote: "\x01"}}
	src := []Source{{URL: "https://example.org/a?b=c&d", Publisher: "Example", Title: "T", Language: "en"}}
	for _, e := range []*Event{
		{EventID: "e1", Party: "p", OccurredAt: at, ReportedAt: at, Sources: src,
			Body: &StatementIssued{StatementID: "s", Speaker: "sp", Channel: "c", Stances: st, RespondsTo: []string{"e0"}, CoSigners: []string{"q"}}},
		{EventID: "e2", Party: "p", OccurredAt: at, Body: &ReportPublished{ReportID: "r", Title: "T", Findings: st, Accused: []string{"x"}}},
		{EventID: "e3", Party: "p", OccurredAt: at, Body: &MandateVetoed{Body: "unsc", Mandate: "m", DraftResolution: "d", Votes: []MemberVote{{Party: "a", Vote: VoteNo}}, VetoedBy: []string{"a"}}},
		{EventID: "e4", Party: "p", OccurredAt: at, Body: &RecordCorrected{CorrectsEventID: "e1", Reason: "r", Withdraw: true, ReplacementStances: st, CorrectedOccurredAt: &redated, AddedSources: src}},
	} {
		enc, err := Encode(e, at, "writer")
		if err != nil {
			t.Fatal(err)
		}
		typ, _ := ParseRecordType(enc.Type)
		body, md := newBody(typ), new(Metadata)
		if !unmarshalFast(enc.Data, body) || !unmarshalFast(enc.Metadata, md) {
			t.Errorf("the fast path does not read what Encode writes:\n%s\n%s", enc.Data, enc.Metadata)
			continue
		}
		if !unmarshalLean(enc.Data, newBody(typ)) || !unmarshalLean(enc.Metadata, new(Metadata)) {
			t.Errorf("the lean path does not read what Encode writes:\n%s\n%s", enc.Data, enc.Metadata)
		}
		want, wantMD, err := decodeStrict(enc.Type, enc.Data, enc.Metadata)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(body, want) || !reflect.DeepEqual(md, wantMD) {
			t.Errorf("the fast path read\n%+v %+v\nunmarshalStrict\n%+v %+v", body, md, want, wantMD)
		}
	}
}

// decodeStrict decodes a record's body and metadata with unmarshalStrict alone.
func decodeStrict(eventType string, data, metadata []byte) (Body, *Metadata, error) {
	typ, _ := ParseRecordType(eventType)
	body, md := newBody(typ), new(Metadata)
	return body, md, errors.Join(unmarshalStrict(data, body), unmarshalStrict(metadata, md))
}

// FuzzMetadataJSON checks appendMetadata: what it writes is what marshal writes.
func FuzzMetadataJSON(f *testing.F) {
	f.Add(1, "e1", "dprk", "https://kcna.kp/a?b=c&d", "KCNA", "", "ko", "ab12", "writer", int64(1748736000), uint32(5), true, false)
	f.Add(-7, "\"quoted\" \\ \n\t\b\f\x01\x7f", "\u2028\u2029é😀\xff", "<&>", "", "t", "", "", "", int64(-62135596800), uint32(999999999), false, true)
	f.Add(0, "", "", "", "", "", "", "", "", int64(253402300800), uint32(0), true, true)
	f.Fuzz(func(t *testing.T, schema int, id, party, url, publisher, title, language, sha, by string, sec int64, nsec uint32, reported, recorded bool) {
		at := time.Unix(sec, int64(nsec%1e9)).UTC()
		md := Metadata{Schema: schema, EventID: id, Party: party, OccurredAt: at, ContentSHA256: sha, RecordedBy: by}
		if url+publisher+title+language != "" {
			md.Sources = []Source{{URL: url, Publisher: publisher, Title: title, Language: language}, {Title: title}}
		}
		if reported {
			later := at.Add(time.Hour)
			md.ReportedAt = &later
		}
		if recorded {
			md.RecordedAt = &at
		}
		agreeMetadata(t, &md)
		local := md
		local.OccurredAt = at.In(time.FixedZone("X", 3600))
		agreeMetadata(t, &local)
	})
}

// agreeMetadata fails when appendMetadata writes md other than marshal does.
func agreeMetadata(t *testing.T, md *Metadata) {
	t.Helper()
	want, err := marshal(md)
	got, ok := appendMetadata(nil, md)
	if ok && (err != nil || string(got) != string(want)) {
		t.Fatalf("appendMetadata(%+v):\n%s\nmarshal (error %v):\n%s", md, got, err, want)
	}
}
