package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
)

// now is the server clock of every validation test.
var now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var errLookupDown = errors.New("lookup store down")

// lookup knows a few stored records and fails for one id.
func lookup(_ context.Context, id string) (string, ledger.RecordType, bool, error) {
	switch id {
	case "stored-dprk-statement":
		return "dprk", ledger.TypeStatementIssued, true, nil
	case "stored-dprk-correction":
		return "dprk", ledger.TypeRecordCorrected, true, nil
	case "stored-russia-statement":
		return "russia", ledger.TypeStatementIssued, true, nil
	case "lookup-fails":
		return "", 0, false, errLookupDown
	}
	return "", 0, false, nil
}

func event(party, id string, body ledger.Body) *ledger.Event {
	return &ledger.Event{
		EventID:    id,
		Party:      party,
		OccurredAt: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC),
		Sources:    []ledger.Source{{URL: "https://www.kcna.kp/en/article/1", Publisher: "KCNA", Language: "en"}},
		Body:       body,
	}
}

func stance(topic string) ledger.Stance {
	return ledger.Stance{Topic: topic, Alignment: ledger.AlignmentOpposes, Act: ledger.ActDeny, Summary: "Called the report a fabrication.", Quote: "fabrication"}
}

func statement(id string, mutate ...func(*ledger.StatementIssued)) *ledger.Event {
	b := &ledger.StatementIssued{StatementID: "kcna-statement", Speaker: "Foreign Ministry", Channel: "KCNA", Stances: []ledger.Stance{stance("msmt-report-2025-05")}}
	for _, m := range mutate {
		m(b)
	}
	return event("dprk", id, b)
}

func report(mutate ...func(*ledger.ReportPublished)) *ledger.Event {
	b := &ledger.ReportPublished{
		ReportID: "msmt-2025-05", Title: "First report",
		Findings: []ledger.Stance{{Topic: "dprk-troops-in-russia", Alignment: ledger.AlignmentSupports, Act: ledger.ActAccuse}},
		Accused:  []string{"dprk", "russia"},
	}
	for _, m := range mutate {
		m(b)
	}
	return event("msmt", "r1", b)
}

func veto(mutate ...func(*ledger.MandateVetoed)) *ledger.Event {
	b := &ledger.MandateVetoed{
		Body: "unsc", Mandate: "poe-mandate-renewal-2024", DraftResolution: "S/2024/255",
		Votes: []ledger.MemberVote{
			{Party: "usa", Vote: ledger.VoteYes}, {Party: "russia", Vote: ledger.VoteNo},
			{Party: "china", Vote: ledger.VoteAbstain}, {Party: "japan", Vote: ledger.VoteYes},
		},
		VetoedBy: []string{"russia"},
	}
	for _, m := range mutate {
		m(b)
	}
	return event("russia", "v1", b)
}

func correction(id, target string, mutate ...func(*ledger.RecordCorrected)) *ledger.Event {
	b := &ledger.RecordCorrected{CorrectsEventID: target, Reason: "KCNA ran it a day later", AddedSources: []ledger.Source{{URL: "https://www.nknews.org/x"}}}
	for _, m := range mutate {
		m(b)
	}
	return event("dprk", id, b)
}

func withEvent(e *ledger.Event, mutate func(*ledger.Event)) *ledger.Event {
	mutate(e)
	return e
}

func fields(err error) []string {
	var ve *ledger.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	out := make([]string, len(ve.Violations))
	for i, v := range ve.Violations {
		out[i] = v.Field
	}
	return out
}

func TestValidateAppend(t *testing.T) {
	at := func(d time.Time) func(*ledger.Event) { return func(e *ledger.Event) { e.OccurredAt = d } }
	ptr := func(t time.Time) *time.Time { return &t }
	tests := []struct {
		name   string
		party  string
		events []*ledger.Event
		limits ledger.Limits
		want   []string // exact field paths, in order; nil means valid
	}{
		{name: "valid report", party: "msmt", events: []*ledger.Event{report()}},
		{name: "valid statement", party: "dprk", events: []*ledger.Event{statement("s1")}},
		{name: "valid veto", party: "russia", events: []*ledger.Event{veto()}},
		{name: "valid correction of a stored record", party: "dprk", events: []*ledger.Event{correction("c1", "stored-dprk-statement")}},
		{name: "valid correction of an earlier record in the append", party: "dprk",
			events: []*ledger.Event{statement("s1"), correction("c1", "s1", func(c *ledger.RecordCorrected) {
				c.AddedSources = nil
				c.ReplacementStances = []ledger.Stance{stance("msmt-legitimacy")}
			})}},
		{name: "report with accused only", party: "msmt", events: []*ledger.Event{report(func(r *ledger.ReportPublished) { r.Findings = nil })}},
		{name: "multi-line summary", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Summary = "line one\nline two\ttab" })}},
		{name: "occurred_at within 24h ahead", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), at(now.Add(23*time.Hour)))}},

		{name: "request party not a slug", party: "DPRK", events: []*ledger.Event{statement("s1")}, want: []string{"party"}},
		{name: "no events", party: "dprk", want: []string{"events"}},
		{name: "too many events", party: "dprk", limits: ledger.Limits{MaxEvents: 2},
			events: []*ledger.Event{statement("s1"), statement("s2"), statement("s3")}, want: []string{"events"}},
		{name: "nil event", party: "dprk", events: []*ledger.Event{nil}, want: []string{"events[0]"}},
		{name: "event party not a slug", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), func(e *ledger.Event) { e.Party = "North Korea" })},
			want: []string{"events[0].party"}},
		{name: "event party differs from request", party: "dprk", events: []*ledger.Event{veto()}, want: []string{"events[0].party"}},
		{name: "event_id missing", party: "dprk", events: []*ledger.Event{statement("")}, want: []string{"events[0].event_id"}},
		{name: "event_id too long", party: "dprk", events: []*ledger.Event{statement(strings.Repeat("é", 129))}, want: []string{"events[0].event_id"}},
		{name: "event_id of 128 characters", party: "dprk", events: []*ledger.Event{statement(strings.Repeat("é", 128))}},
		{name: "event_id invalid UTF-8", party: "dprk", events: []*ledger.Event{statement("a\xffb")}, want: []string{"events[0].event_id"}},
		{name: "event_id control character", party: "dprk", events: []*ledger.Event{statement("a\x00b")}, want: []string{"events[0].event_id"}},
		{name: "event_id twice in one append", party: "dprk", events: []*ledger.Event{statement("s1"), statement("s2"), statement("s1")},
			want: []string{"events[2].event_id"}},
		{name: "occurred_at missing", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), at(time.Time{}))}, want: []string{"events[0].occurred_at"}},
		{name: "occurred_at more than 24h ahead", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), at(now.Add(25*time.Hour)))},
			want: []string{"events[0].occurred_at"}},
		{name: "occurred_at before 1900", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), at(time.Date(1899, 12, 31, 0, 0, 0, 0, time.UTC)))},
			want: []string{"events[0].occurred_at"}},
		{name: "reported_at out of range", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), func(e *ledger.Event) { e.ReportedAt = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) })},
			want: []string{"events[0].reported_at"}},
		{name: "no sources", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), func(e *ledger.Event) { e.Sources = nil })}, want: []string{"events[0].sources"}},
		{name: "too many sources", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), func(e *ledger.Event) {
			e.Sources = slices.Repeat(e.Sources, 65)
		})}, want: []string{"events[0].sources"}},
		{name: "source url missing", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), func(e *ledger.Event) { e.Sources[0].URL = "" })},
			want: []string{"events[0].sources[0].url"}},
		{name: "source url relative", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), func(e *ledger.Event) { e.Sources[0].URL = "/en/article/1" })},
			want: []string{"events[0].sources[0].url"}},
		{name: "source url not http", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), func(e *ledger.Event) { e.Sources[0].URL = "javascript:alert(1)" })},
			want: []string{"events[0].sources[0].url"}},
		{name: "source language not a tag", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), func(e *ledger.Event) { e.Sources[0].Language = "English!" })},
			want: []string{"events[0].sources[0].language"}},
		{name: "source title with a newline", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), func(e *ledger.Event) { e.Sources[0].Title = "a\nb" })},
			want: []string{"events[0].sources[0].title"}},
		{name: "body missing", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), func(e *ledger.Event) { e.Body = nil })}, want: []string{"events[0].body"}},
		{name: "body a nil pointer", party: "dprk", events: []*ledger.Event{withEvent(statement("s1"), func(e *ledger.Event) { e.Body = (*ledger.StatementIssued)(nil) })},
			want: []string{"events[0].body"}},

		{name: "statement_id missing", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.StatementID = "" })},
			want: []string{"events[0].statement_issued.statement_id"}},
		{name: "statement without stances", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances = nil })},
			want: []string{"events[0].statement_issued.stances"}},
		{name: "too many stances", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) {
			s.Stances = make([]ledger.Stance, 257)
		})}, want: []string{"events[0].statement_issued.stances"}},
		{name: "topic not a slug", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Topic = "MSMT report" })},
			want: []string{"events[0].statement_issued.stances[0].topic"}},
		{name: "topic missing", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Topic = "" })},
			want: []string{"events[0].statement_issued.stances[0].topic"}},
		{name: "topic of 64 characters", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Topic = strings.Repeat("a", 64) })},
			want: []string{"events[0].statement_issued.stances[0].topic"}},
		{name: "duplicate topic", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) {
			s.Stances = append(s.Stances, stance("msmt-legitimacy"), stance("msmt-report-2025-05"))
		})}, want: []string{"events[0].statement_issued.stances[2].topic"}},
		{name: "alignment unspecified", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Alignment = ledger.AlignmentUnspecified })},
			want: []string{"events[0].statement_issued.stances[0].alignment"}},
		{name: "alignment abstains outside a vote", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Alignment = ledger.AlignmentAbstains })},
			want: []string{"events[0].statement_issued.stances[0].alignment"}},
		{name: "alignment unknown number", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Alignment = 99 })},
			want: []string{"events[0].statement_issued.stances[0].alignment"}},
		{name: "act unknown number", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Act = 12 })},
			want: []string{"events[0].statement_issued.stances[0].act"}},
		{name: "act negative", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Act = -1 })},
			want: []string{"events[0].statement_issued.stances[0].act"}},
		{name: "summary invalid UTF-8", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Summary = "\xc3\x28" })},
			want: []string{"events[0].statement_issued.stances[0].summary"}},
		{name: "quote too long", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Quote = strings.Repeat("x", 8<<10+1) })},
			want: []string{"events[0].statement_issued.stances[0].quote"}},
		{name: "speaker with a control character", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Speaker = "Kim\x07" })},
			want: []string{"events[0].statement_issued.speaker"}},
		{name: "channel too long", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.Channel = strings.Repeat("k", 1025) })},
			want: []string{"events[0].statement_issued.channel"}},
		{name: "co-signer is the party", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.CoSigners = []string{"dprk"} })},
			want: []string{"events[0].statement_issued.co_signers[0]"}},
		{name: "co-signer twice", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.CoSigners = []string{"russia", "russia"} })},
			want: []string{"events[0].statement_issued.co_signers[1]"}},
		{name: "co-signer not a slug", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.CoSigners = []string{"russia", "-x"} })},
			want: []string{"events[0].statement_issued.co_signers[1]"}},
		{name: "too many co-signers", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.CoSigners = make([]string, 257) })},
			want: []string{"events[0].statement_issued.co_signers"}},
		{name: "responds_to empty id", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.RespondsTo = []string{"r1", ""} })},
			want: []string{"events[0].statement_issued.responds_to[1]"}},
		{name: "responds_to twice", party: "dprk", events: []*ledger.Event{statement("s1", func(s *ledger.StatementIssued) { s.RespondsTo = []string{"r1", "r1"} })},
			want: []string{"events[0].statement_issued.responds_to[1]"}},

		{name: "report_id too long", party: "msmt", events: []*ledger.Event{report(func(r *ledger.ReportPublished) { r.ReportID = strings.Repeat("r", 129) })},
			want: []string{"events[0].report_published.report_id"}},
		{name: "report title missing", party: "msmt", events: []*ledger.Event{report(func(r *ledger.ReportPublished) { r.Title = "" })},
			want: []string{"events[0].report_published.title"}},
		{name: "report with neither findings nor accused", party: "msmt", events: []*ledger.Event{report(func(r *ledger.ReportPublished) { r.Findings, r.Accused = nil, nil })},
			want: []string{"events[0].report_published.findings"}},
		{name: "report finding abstains", party: "msmt", events: []*ledger.Event{report(func(r *ledger.ReportPublished) { r.Findings[0].Alignment = ledger.AlignmentAbstains })},
			want: []string{"events[0].report_published.findings[0].alignment"}},
		{name: "report accused twice", party: "msmt", events: []*ledger.Event{report(func(r *ledger.ReportPublished) { r.Accused = []string{"dprk", "dprk"} })},
			want: []string{"events[0].report_published.accused[1]"}},

		{name: "veto without votes", party: "russia", events: []*ledger.Event{veto(func(m *ledger.MandateVetoed) { m.Votes = nil })},
			want: []string{"events[0].mandate_vetoed.votes"}},
		{name: "veto by a party that abstained", party: "russia", events: []*ledger.Event{veto(func(m *ledger.MandateVetoed) { m.VetoedBy = []string{"russia", "china"} })},
			want: []string{"events[0].mandate_vetoed.vetoed_by[1]"}},
		{name: "veto by a party that did not vote", party: "russia", events: []*ledger.Event{veto(func(m *ledger.MandateVetoed) { m.VetoedBy = []string{"russia", "uk"} })},
			want: []string{"events[0].mandate_vetoed.vetoed_by[1]"}},
		{name: "veto without vetoed_by", party: "russia", events: []*ledger.Event{veto(func(m *ledger.MandateVetoed) { m.VetoedBy = nil })},
			want: []string{"events[0].mandate_vetoed.vetoed_by"}},
		{name: "veto recorded by a party that did not veto", party: "usa", events: []*ledger.Event{withEvent(veto(), func(e *ledger.Event) { e.Party = "usa" })},
			want: []string{"events[0].mandate_vetoed.vetoed_by"}},
		{name: "vote unspecified", party: "russia", events: []*ledger.Event{veto(func(m *ledger.MandateVetoed) { m.Votes[3].Vote = ledger.VoteUnspecified })},
			want: []string{"events[0].mandate_vetoed.votes[3].vote"}},
		{name: "vote unknown number", party: "russia", events: []*ledger.Event{veto(func(m *ledger.MandateVetoed) { m.Votes[0].Vote = 7 })},
			want: []string{"events[0].mandate_vetoed.votes[0].vote"}},
		{name: "voter twice", party: "russia", events: []*ledger.Event{veto(func(m *ledger.MandateVetoed) { m.Votes[2].Party = "usa" })},
			want: []string{"events[0].mandate_vetoed.votes[2].party"}},
		{name: "veto body not a slug", party: "russia", events: []*ledger.Event{veto(func(m *ledger.MandateVetoed) { m.Body = "UNSC" })},
			want: []string{"events[0].mandate_vetoed.body"}},
		{name: "veto mandate missing", party: "russia", events: []*ledger.Event{veto(func(m *ledger.MandateVetoed) { m.Mandate = "" })},
			want: []string{"events[0].mandate_vetoed.mandate"}},

		{name: "correction that changes nothing", party: "dprk", events: []*ledger.Event{correction("c1", "stored-dprk-statement", func(c *ledger.RecordCorrected) { c.AddedSources = nil })},
			want: []string{"events[0].record_corrected"}},
		{name: "correction withdraws and replaces", party: "dprk", events: []*ledger.Event{correction("c1", "stored-dprk-statement", func(c *ledger.RecordCorrected) {
			c.Withdraw = true
			c.ReplacementStances = []ledger.Stance{stance("msmt-legitimacy")}
		})}, want: []string{"events[0].record_corrected.replacement_stances"}},
		{name: "correction without reason", party: "dprk", events: []*ledger.Event{correction("c1", "stored-dprk-statement", func(c *ledger.RecordCorrected) { c.Reason = "" })},
			want: []string{"events[0].record_corrected.reason"}},
		{name: "correction of an unknown record", party: "dprk", events: []*ledger.Event{correction("c1", "nowhere")},
			want: []string{"events[0].record_corrected.corrects_event_id"}},
		{name: "correction of another party's record", party: "dprk", events: []*ledger.Event{correction("c1", "stored-russia-statement")},
			want: []string{"events[0].record_corrected.corrects_event_id"}},
		{name: "correction of a stored correction", party: "dprk", events: []*ledger.Event{correction("c1", "stored-dprk-correction")},
			want: []string{"events[0].record_corrected.corrects_event_id"}},
		{name: "correction of a correction earlier in the append", party: "dprk",
			events: []*ledger.Event{correction("c1", "stored-dprk-statement"), correction("c2", "c1")},
			want:   []string{"events[1].record_corrected.corrects_event_id"}},
		{name: "correction of a later record in the append", party: "dprk",
			events: []*ledger.Event{correction("c1", "s1"), statement("s1")},
			want:   []string{"events[0].record_corrected.corrects_event_id"}},
		{name: "correction of itself", party: "dprk", events: []*ledger.Event{correction("c1", "c1")},
			want: []string{"events[0].record_corrected.corrects_event_id"}},
		{name: "corrected_occurred_at in the future", party: "dprk", events: []*ledger.Event{correction("c1", "stored-dprk-statement", func(c *ledger.RecordCorrected) {
			c.CorrectedOccurredAt = ptr(now.Add(48 * time.Hour))
		})}, want: []string{"events[0].record_corrected.corrected_occurred_at"}},
		{name: "added source without url", party: "dprk", events: []*ledger.Event{correction("c1", "stored-dprk-statement", func(c *ledger.RecordCorrected) {
			c.AddedSources[0].URL = ""
		})}, want: []string{"events[0].record_corrected.added_sources[0].url"}},
		{name: "replacement stance abstains", party: "dprk", events: []*ledger.Event{correction("c1", "stored-dprk-statement", func(c *ledger.RecordCorrected) {
			c.ReplacementStances = []ledger.Stance{{Topic: "msmt-legitimacy", Alignment: ledger.AlignmentAbstains}}
		})}, want: []string{"events[0].record_corrected.replacement_stances[0].alignment"}},

		{name: "event over the size limit", party: "dprk", limits: ledger.Limits{MaxEventBytes: 300},
			events: []*ledger.Event{statement("s1")}, want: []string{"events[0]"}},
		{name: "append over the size limit", party: "dprk", limits: ledger.Limits{MaxAppendBytes: 1000},
			events: []*ledger.Event{statement("s1"), statement("s2"), statement("s3")}, want: []string{"events"}},
		{name: "every violation of every event", party: "dprk", events: []*ledger.Event{
			withEvent(statement("s1"), func(e *ledger.Event) { e.Party = "russia"; e.Sources = nil }),
			statement("s2"),
			statement("s3", func(s *ledger.StatementIssued) { s.Stances[0].Topic = "Bad Topic" }),
			statement("s4", func(s *ledger.StatementIssued) { s.Stances[0].Topic = "x_y" }),
		}, want: []string{"events[0].sources", "events[0].party", "events[2].statement_issued.stances[0].topic", "events[3].statement_issued.stances[0].topic"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ledger.ValidateAppend(t.Context(), tt.party, tt.events, now, tt.limits, lookup)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ValidateAppend: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ledger.ErrInvalid) {
				t.Fatalf("ValidateAppend: %v, want an error matching ErrInvalid", err)
			}
			if got := fields(err); !slices.Equal(got, tt.want) {
				t.Errorf("fields = %q, want %q\nerror: %v", got, tt.want, err)
			}
		})
	}
}

func TestValidateAppendMessage(t *testing.T) {
	events := []*ledger.Event{statement("s0"), statement("s1"), statement("s2"),
		statement("s3", func(s *ledger.StatementIssued) { s.Stances[0].Topic = "Not A Slug" })}
	err := ledger.ValidateAppend(t.Context(), "dprk", events, now, ledger.DefaultLimits, lookup)
	const want = "events[3].statement_issued.stances[0].topic: must be a slug"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %v, want it to begin %q", err, want)
	}
}

func TestValidateAppendCapsViolations(t *testing.T) {
	var events []*ledger.Event
	for i := range 150 {
		events = append(events, statement(fmt.Sprint(i), func(s *ledger.StatementIssued) { s.Stances[0].Topic = "BAD" }))
	}
	err := ledger.ValidateAppend(t.Context(), "dprk", events, now, ledger.DefaultLimits, lookup)
	got := fields(err)
	if len(got) != ledger.MaxViolations+1 {
		t.Fatalf("%d violations, want %d", len(got), ledger.MaxViolations+1)
	}
	if got[0] != "events[0].statement_issued.stances[0].topic" || got[ledger.MaxViolations-1] != "events[99].statement_issued.stances[0].topic" || got[ledger.MaxViolations] != "" {
		t.Errorf("violations = %q…%q", got[:2], got[len(got)-2:])
	}
}

func TestValidateAppendLookup(t *testing.T) {
	t.Run("lookup failure is returned, not a violation", func(t *testing.T) {
		err := ledger.ValidateAppend(t.Context(), "dprk", []*ledger.Event{correction("c1", "lookup-fails")}, now, ledger.DefaultLimits, lookup)
		if !errors.Is(err, errLookupDown) || errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("error = %v, want the lookup's error and not ErrInvalid", err)
		}
	})
	t.Run("nil lookup finds nothing", func(t *testing.T) {
		err := ledger.ValidateAppend(t.Context(), "dprk", []*ledger.Event{correction("c1", "stored-dprk-statement")}, now, ledger.DefaultLimits, nil)
		if got := fields(err); !slices.Equal(got, []string{"events[0].record_corrected.corrects_event_id"}) {
			t.Errorf("fields = %q (%v)", got, err)
		}
	})
	t.Run("the append's own records are resolved without lookup", func(t *testing.T) {
		calls := 0
		count := func(ctx context.Context, id string) (string, ledger.RecordType, bool, error) {
			calls++
			return lookup(ctx, id)
		}
		err := ledger.ValidateAppend(t.Context(), "dprk", []*ledger.Event{statement("s1"), correction("c1", "s1")}, now, ledger.DefaultLimits, count)
		if err != nil || calls != 0 {
			t.Errorf("error = %v, lookups = %d; want nil and 0", err, calls)
		}
	})
}

func TestValidateEvent(t *testing.T) {
	tests := []struct {
		name string
		e    *ledger.Event
		want []string
	}{
		{name: "valid", e: statement("s1")},
		{name: "nil", e: nil, want: []string{""}},
		{name: "paths are relative to the event", e: statement("s1", func(s *ledger.StatementIssued) { s.Stances[0].Topic = "?" }),
			want: []string{"statement_issued.stances[0].topic"}},
		{name: "several fields", e: withEvent(veto(func(m *ledger.MandateVetoed) { m.Votes[1].Vote = ledger.VoteYes }), func(e *ledger.Event) { e.EventID = "" }),
			want: []string{"event_id", "mandate_vetoed.vetoed_by[0]"}},
		{name: "correction target is not resolved", e: correction("c1", "nowhere")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ledger.ValidateEvent(tt.e, now)
			if got := fields(err); !slices.Equal(got, tt.want) {
				t.Errorf("fields = %q, want %q (error %v)", got, tt.want, err)
			}
			var ve *ledger.ValidationError
			if (err != nil) != errors.As(err, &ve) {
				t.Errorf("error %T is not a *ValidationError", err)
			}
		})
	}
}

func TestIsSlug(t *testing.T) {
	for s, want := range map[string]bool{
		"dprk": true, "republic-of-korea": true, "0": true, strings.Repeat("a", 63): true,
		"": false, "-a": false, "A": false, "a_b": false, "a b": false, strings.Repeat("a", 64): false, "é": false,
	} {
		if got := ledger.IsSlug(s); got != want {
			t.Errorf("IsSlug(%q) = %v, want %v", s, got, want)
		}
	}
}

func BenchmarkValidateAppend(b *testing.B) {
	events := make([]*ledger.Event, 100)
	for i := range events {
		events[i] = statement(fmt.Sprint(i), func(s *ledger.StatementIssued) { s.CoSigners = []string{"russia"} })
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := ledger.ValidateAppend(b.Context(), "dprk", events, now, ledger.DefaultLimits, lookup); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEncodeAppendMeasuresAsValidateAppend: EncodeAppend encodes each event once, for
// the store, and still measures the sizes ValidateAppend measures (the stored bytes
// without recorded_at and recorded_by): at a limit one byte under an event's size both
// refuse it with the same error, at its size both accept it; and what EncodeAppend
// returns is what Encode gives.
func TestEncodeAppendMeasuresAsValidateAppend(t *testing.T) {
	for name, e := range samples() {
		if e.Type() == ledger.TypeRecordCorrected {
			continue // its target is another event
		}
		t.Run(name, func(t *testing.T) {
			enc, err := ledger.Encode(e, time.Time{}, "")
			if err != nil {
				t.Fatal(err)
			}
			size := len(enc.Data) + len(enc.Metadata)
			for _, limit := range []int{size - 1, size} {
				limits := ledger.Limits{MaxEventBytes: limit}
				want := ledger.ValidateAppend(t.Context(), e.Party, []*ledger.Event{e}, now, limits, nil)
				got, err := ledger.EncodeAppend(t.Context(), e.Party, []*ledger.Event{e}, now, `a "principal" <&>`, limits, nil)
				if !reflect.DeepEqual(err, want) {
					t.Fatalf("limit %d: EncodeAppend: %v; ValidateAppend: %v", limit, err, want)
				}
				if (want == nil) != (limit == size) {
					t.Fatalf("limit %d, size %d: ValidateAppend: %v", limit, size, want)
				}
				if want != nil {
					continue
				}
				stored, err := ledger.Encode(e, now, `a "principal" <&>`)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, []ledger.Encoded{stored}) {
					t.Errorf("EncodeAppend = %+v, Encode = %+v", got, stored)
				}
			}
		})
	}
}
