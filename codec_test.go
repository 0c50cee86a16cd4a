package ledger_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
)

// samples returns one valid event of every record type, with times that exercise the
// encoding: nanoseconds, a zone other than UTC, reported_at, corrected_occurred_at.
func samples() map[string]*ledger.Event {
	seoul := time.FixedZone("KST", 9*60*60)
	corrected := time.Date(2025, 6, 1, 9, 0, 0, 0, seoul)
	return map[string]*ledger.Event{
		"report": report(),
		"statement": withEvent(statement("s1", func(s *ledger.StatementIssued) {
			s.CoSigners = []string{"russia"}
			s.RespondsTo = []string{"r1"}
			s.Stances[0].Quote = `"ghost group" <without> any & legitimacy`
		}), func(e *ledger.Event) {
			e.OccurredAt = time.Date(2025, 6, 1, 8, 30, 0, 123456789, seoul)
			e.ReportedAt = time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
			e.Sources = append(e.Sources, ledger.Source{URL: "https://www.nknews.org/a", Publisher: "NK News", Title: "Pyongyang slams", Language: "en"})
		}),
		"veto": veto(),
		"correction": correction("c1", "s1", func(c *ledger.RecordCorrected) {
			c.CorrectedOccurredAt = &corrected
			c.ReplacementStances = []ledger.Stance{stance("msmt-legitimacy")}
		}),
		"withdrawal": correction("c2", "s1", func(c *ledger.RecordCorrected) { c.Withdraw = true; c.AddedSources = nil }),
	}
}

// normalize returns a copy of e that compares equal with reflect.DeepEqual to any
// event with the same content: times in UTC, empty lists nil.
func normalize(e *ledger.Event) *ledger.Event {
	c := *e
	c.OccurredAt = c.OccurredAt.UTC()
	if !c.ReportedAt.IsZero() {
		c.ReportedAt = c.ReportedAt.UTC()
	}
	c.Sources = nilIfEmpty(c.Sources)
	stances := func(s []ledger.Stance) []ledger.Stance { return nilIfEmpty(s) }
	switch b := e.Body.(type) {
	case *ledger.ReportPublished:
		bb := *b
		bb.Findings, bb.Accused = stances(bb.Findings), nilIfEmpty(bb.Accused)
		c.Body = &bb
	case *ledger.StatementIssued:
		bb := *b
		bb.Stances, bb.RespondsTo, bb.CoSigners = stances(bb.Stances), nilIfEmpty(bb.RespondsTo), nilIfEmpty(bb.CoSigners)
		c.Body = &bb
	case *ledger.MandateVetoed:
		bb := *b
		bb.Votes, bb.VetoedBy = nilIfEmpty(bb.Votes), nilIfEmpty(bb.VetoedBy)
		c.Body = &bb
	case *ledger.RecordCorrected:
		bb := *b
		bb.ReplacementStances, bb.AddedSources = stances(bb.ReplacementStances), nilIfEmpty(bb.AddedSources)
		if bb.CorrectedOccurredAt != nil {
			t := bb.CorrectedOccurredAt.UTC()
			bb.CorrectedOccurredAt = &t
		}
		c.Body = &bb
	}
	return &c
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func sameEvent(a, b *ledger.Event) bool { return reflect.DeepEqual(normalize(a), normalize(b)) }

func TestEncodeDecodeRoundTrip(t *testing.T) {
	recordedAt := time.Date(2026, 1, 1, 12, 0, 0, 5, time.FixedZone("X", -3600))
	for name, e := range samples() {
		t.Run(name, func(t *testing.T) {
			if err := ledger.ValidateEvent(e, now); err != nil {
				t.Fatalf("sample invalid: %v", err)
			}
			enc, err := ledger.Encode(e, recordedAt, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if enc.Type != e.Type().String() || enc.EventID != e.EventID {
				t.Errorf("Encoded type %q id %q, want %q %q", enc.Type, enc.EventID, e.Type(), e.EventID)
			}
			got, md, err := ledger.Decode(enc.Type, enc.Data, enc.Metadata)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !sameEvent(got, e) {
				t.Errorf("round trip changed the event:\n got %+v\nwant %+v", normalize(got), normalize(e))
			}
			if got.OccurredAt.Location() != time.UTC {
				t.Errorf("decoded occurred_at in %v, want UTC", got.OccurredAt.Location())
			}
			if md.RecordedAt == nil || !md.RecordedAt.Equal(recordedAt) || md.RecordedBy != "alice" || md.ContentSHA256 != enc.ContentHash {
				t.Errorf("metadata = %+v", md)
			}
			again, err := ledger.Encode(got, *md.RecordedAt, md.RecordedBy)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again, enc) {
				t.Errorf("re-encoding differs:\n%s\n%s", again.Metadata, enc.Metadata)
			}
		})
	}
}

func TestContentHashIgnoresRecording(t *testing.T) {
	e := statement("s1")
	a, err := ledger.Encode(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "alice")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ledger.Encode(e, time.Date(2027, 5, 5, 0, 0, 0, 0, time.UTC), "bob")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ledger.Encode(e, time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if a.ContentHash != b.ContentHash || a.ContentHash != c.ContentHash {
		t.Errorf("content hash depends on recording: %s %s %s", a.ContentHash, b.ContentHash, c.ContentHash)
	}
	if string(a.Metadata) == string(b.Metadata) {
		t.Error("metadata does not record recorded_at/recorded_by")
	}
	if strings.Contains(string(c.Metadata), "recorded_") {
		t.Errorf("metadata without recording mentions it: %s", c.Metadata)
	}
	// The same instant in another zone is the same content.
	z := withEvent(statement("s1"), func(e *ledger.Event) { e.OccurredAt = e.OccurredAt.In(time.FixedZone("KST", 9*3600)) })
	d, err := ledger.Encode(z, time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.ContentHash != c.ContentHash {
		t.Error("content hash depends on the time zone of occurred_at")
	}
}

func TestContentHashChangesWithContent(t *testing.T) {
	base, err := ledger.Encode(statement("s1"), time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]*ledger.Event{
		"event_id":    statement("s2"),
		"party":       withEvent(statement("s1"), func(e *ledger.Event) { e.Party = "russia" }),
		"occurred_at": withEvent(statement("s1"), func(e *ledger.Event) { e.OccurredAt = e.OccurredAt.Add(time.Nanosecond) }),
		"reported_at": withEvent(statement("s1"), func(e *ledger.Event) { e.ReportedAt = e.OccurredAt }),
		"source url":  withEvent(statement("s1"), func(e *ledger.Event) { e.Sources[0].URL += "?x" }),
		"summary":     statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Summary += "." }),
		"alignment":   statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Alignment = ledger.AlignmentNeutral }),
		"co_signers":  statement("s1", func(s *ledger.StatementIssued) { s.CoSigners = []string{"russia"} }),
		"record type": withEvent(report(), func(e *ledger.Event) { e.EventID, e.Party = "s1", "dprk" }),
	}
	for name, e := range tests {
		t.Run(name, func(t *testing.T) {
			enc, err := ledger.Encode(e, time.Time{}, "")
			if err != nil {
				t.Fatal(err)
			}
			if enc.ContentHash == base.ContentHash {
				t.Errorf("changing %s left the content hash unchanged", name)
			}
		})
	}
}

// TestEncodeFormat pins the stored bytes: proto field names, enum names, UTC RFC 3339
// times, no HTML escaping, unset fields left out. Changing them changes every content
// hash and Merkle leaf, so this test must only change with a new SchemaVersion.
func TestEncodeFormat(t *testing.T) {
	e := &ledger.Event{
		EventID:    "dprk-2025-06-01-msmt",
		Party:      "dprk",
		OccurredAt: time.Date(2025, 6, 1, 9, 0, 0, 0, time.FixedZone("KST", 9*3600)),
		Sources:    []ledger.Source{{URL: "https://www.kcna.kp/en/a?x=1&y=2", Publisher: "KCNA", Language: "en"}},
		Body: &ledger.StatementIssued{
			StatementID: "fm-2025-06-01",
			Channel:     "KCNA",
			Stances: []ledger.Stance{
				{Topic: "msmt-report-2025-05", Alignment: ledger.AlignmentOpposes, Act: ledger.ActDeny, Quote: "fabrication"},
				{Topic: "msmt-legitimacy", Alignment: ledger.AlignmentOpposes},
			},
		},
	}
	enc, err := ledger.Encode(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "importer")
	if err != nil {
		t.Fatal(err)
	}
	const data = `{"statement_id":"fm-2025-06-01","channel":"KCNA","stances":[{"topic":"msmt-report-2025-05","alignment":"ALIGNMENT_OPPOSES","act":"ACT_DENY","quote":"fabrication"},{"topic":"msmt-legitimacy","alignment":"ALIGNMENT_OPPOSES"}]}`
	if string(enc.Data) != data {
		t.Errorf("data =\n%s\nwant\n%s", enc.Data, data)
	}
	const meta = `{"schema":1,"event_id":"dprk-2025-06-01-msmt","party":"dprk","occurred_at":"2025-06-01T00:00:00Z","sources":[{"url":"https://www.kcna.kp/en/a?x=1&y=2","publisher":"KCNA","language":"en"}],"content_sha256":"` +
		`HASH","recorded_at":"2026-01-01T00:00:00Z","recorded_by":"importer"}`
	if want := strings.Replace(meta, "HASH", enc.ContentHash, 1); string(enc.Metadata) != want {
		t.Errorf("metadata =\n%s\nwant\n%s", enc.Metadata, want)
	}
	if len(enc.ContentHash) != 64 || strings.Trim(enc.ContentHash, "0123456789abcdef") != "" {
		t.Errorf("content hash %q is not lowercase hex SHA-256", enc.ContentHash)
	}
}

// TestDecodeForFold: DecodeForFold returns what DecodeTrusted does but for what
// folding does not read, and refuses what it refuses (but the content hash, which
// neither checks).
func TestDecodeForFold(t *testing.T) {
	for name, e := range samples() {
		enc, err := ledger.Encode(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "alice")
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := ledger.DecodeTrusted(enc.Type, enc.Data, enc.Metadata)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ledger.DecodeForFold(enc.Type, enc.Data, enc.Metadata)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want.Sources = nil
		switch b := want.Body.(type) {
		case *ledger.StatementIssued:
			b.StatementID, b.Speaker, b.Channel, b.RespondsTo = "", "", "", nil
		case *ledger.ReportPublished:
			b.ReportID, b.Title, b.Accused = "", "", nil
		case *ledger.MandateVetoed:
			b.Body, b.DraftResolution, b.VetoedBy = "", "", nil
		case *ledger.RecordCorrected:
			b.AddedSources = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: DecodeForFold\n%+v\nwant\n%+v", name, got, want)
		}
	}
	good, err := ledger.Encode(statement("s1"), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ typ, data, meta string }{
		{"StatementIssued", `{"statement_id":7}`, string(good.Metadata)},
		{"StatementIssued", `{"statement_id":}`, string(good.Metadata)},
		{"StatementIssued", "{\"speaker\":\"\x01\"}", string(good.Metadata)},
		{"StatementIssued", `{"responds_to":["a",1]}`, string(good.Metadata)},
		{"StatementIssued", string(good.Data), `{"schema":1,"sources":[{"url":"a","mood":"b"}]}`},
		{"StatementIssued", string(good.Data), `{"schema":1,"recorded_at":"2026-13-01T00:00:00Z"}`},
		{"MandateVetoed", `{"vetoed_by":"russia"}`, string(good.Metadata)},
	} {
		_, _, errTrusted := ledger.DecodeTrusted(bad.typ, []byte(bad.data), []byte(bad.meta))
		_, errFold := ledger.DecodeForFold(bad.typ, []byte(bad.data), []byte(bad.meta))
		if errTrusted == nil || errFold == nil || errFold.Error() != errTrusted.Error() {
			t.Errorf("%s %s: DecodeForFold error %v, DecodeTrusted error %v; want the same error", bad.data, bad.meta, errFold, errTrusted)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := ledger.Encode(statement("s1"), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "alice")
	if err != nil {
		t.Fatal(err)
	}
	meta := func(mutate func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good.Metadata, &m); err != nil {
			t.Fatal(err)
		}
		mutate(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name       string
		typ        string
		data, meta []byte
		field      string
	}{
		{"unknown type", "StatementMade", good.Data, good.Metadata, "type"},
		{"empty type", "", good.Data, good.Metadata, "type"},
		{"body of another type", "ReportPublished", good.Data, good.Metadata, "data"},
		{"unknown field in data", "StatementIssued", []byte(`{"statement_id":"x","mood":"angry"}`), good.Metadata, "data"},
		{"unknown enum name", "StatementIssued", []byte(`{"stances":[{"topic":"t","alignment":"ALIGNMENT_MAYBE"}]}`), good.Metadata, "data"},
		{"enum as number", "StatementIssued", []byte(`{"stances":[{"topic":"t","alignment":2}]}`), good.Metadata, "data"},
		{"trailing data", "StatementIssued", append(append([]byte{}, good.Data...), "{}"...), good.Metadata, "data"},
		{"data not JSON", "StatementIssued", []byte("\x00"), good.Metadata, "data"},
		{"metadata not JSON", "StatementIssued", good.Data, []byte("nope"), "metadata"},
		{"unknown metadata field", "StatementIssued", good.Data, meta(func(m map[string]any) { m["extra"] = 1 }), "metadata"},
		{"schema version", "StatementIssued", good.Data, meta(func(m map[string]any) { m["schema"] = 2 }), "metadata.schema"},
		{"content changed under the hash", "StatementIssued", good.Data, meta(func(m map[string]any) { m["party"] = "russia" }), "metadata.content_sha256"},
		{"data changed under the hash", "StatementIssued", []byte(strings.Replace(string(good.Data), "fabrication", "fabricat1on", 1)), good.Metadata, "metadata.content_sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ledger.Decode(tt.typ, tt.data, tt.meta)
			var ve *ledger.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ledger.ErrInvalid) {
				t.Fatalf("Decode: %v, want a *ValidationError", err)
			}
			if got := ve.Violations[0].Field; got != tt.field {
				t.Errorf("field = %q, want %q (%v)", got, tt.field, err)
			}
		})
	}
	t.Run("recording may change without breaking the hash", func(t *testing.T) {
		m := meta(func(m map[string]any) { m["recorded_by"] = "mallory"; delete(m, "recorded_at") })
		if _, _, err := ledger.Decode(good.Type, good.Data, m); err != nil {
			t.Errorf("Decode: %v", err)
		}
	})
}

func TestEncodeRefusesWhatCannotBeStored(t *testing.T) {
	tests := map[string]*ledger.Event{
		"no body":         withEvent(statement("s1"), func(e *ledger.Event) { e.Body = nil }),
		"unknown enum":    statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Alignment = 42 }),
		"year after 9999": withEvent(statement("s1"), func(e *ledger.Event) { e.OccurredAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }),
	}
	for name, e := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ledger.Encode(e, time.Time{}, ""); err == nil {
				t.Error("Encode succeeded")
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	e := samples()["statement"]
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ledger.Encode(e, at, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	enc, err := ledger.Encode(samples()["statement"], time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		decode func(string, []byte, []byte) (*ledger.Event, *ledger.Metadata, error)
	}{{"checked", ledger.Decode}, {"trusted", ledger.DecodeTrusted}, {"fold", func(typ string, data, md []byte) (*ledger.Event, *ledger.Metadata, error) {
		e, err := ledger.DecodeForFold(typ, data, md)
		return e, nil, err
	}}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := bc.decode(enc.Type, enc.Data, enc.Metadata); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
