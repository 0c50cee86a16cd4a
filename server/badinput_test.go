package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledger "github.com/stanceledger/ledger"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
)

func veto(id string, votes map[string]ledgerv1.Vote, vetoedBy ...string) *ledgerv1.Event {
	e := statement(id, "russia", "unused", occurred)
	mv := &ledgerv1.MandateVetoed{Body: "unsc", Mandate: "poe-mandate-renewal-2024", DraftResolution: "S/2024/255", VetoedBy: vetoedBy}
	for _, p := range []string{"russia", "usa", "china"} {
		if v, ok := votes[p]; ok {
			mv.Votes = append(mv.Votes, &ledgerv1.MemberVote{Party: p, Vote: v})
		}
	}
	e.Body = &ledgerv1.Event_MandateVetoed{MandateVetoed: mv}
	return e
}

func correction(id, party, corrects string) *ledgerv1.Event {
	e := statement(id, party, "unused", occurred)
	e.Body = &ledgerv1.Event_RecordCorrected{RecordCorrected: &ledgerv1.RecordCorrected{
		CorrectsEventId: corrects, Reason: "mistranslated", Withdraw: true,
	}}
	return e
}

// TestBadInputIsRefused sends every kind of bad input validation knows about. Each is
// refused with InvalidArgument whose BadRequest names the field, and the log is unchanged.
func TestBadInputIsRefused(t *testing.T) {
	limits := ledger.Limits{MaxEventBytes: 4 << 10, MaxEvents: 5, MaxAppendBytes: 8 << 10}
	ts := start(t, server.Config{Limits: limits})
	c := ts.client
	appendOK(t, c, "russia", nil, statement("r1", "russia", "msmt-legitimacy", occurred))
	appendOK(t, c, "russia", nil, correction("r2", "russia", "r1"))
	appendOK(t, c, "dprk", nil, statement("d1", "dprk", "msmt-legitimacy", occurred))

	valid := func() *ledgerv1.AppendRequest {
		return &ledgerv1.AppendRequest{Party: "dprk", Events: []*ledgerv1.Event{statement("new", "dprk", "msmt-report-2025-05", occurred)}}
	}
	stance := func(r *ledgerv1.AppendRequest) *ledgerv1.Stance {
		return r.Events[0].GetStatementIssued().Stances[0]
	}
	many := func(n int) []*ledgerv1.Event {
		out := make([]*ledgerv1.Event, n)
		for i := range out {
			out[i] = statement("many-"+string(rune('a'+i)), "dprk", "msmt-legitimacy", occurred)
			out[i].GetStatementIssued().Stances[0].Summary = strings.Repeat("s", 2500)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		edit func(r *ledgerv1.AppendRequest)
		// field is the violated field, or "limit NAME" for a limit (ResourceExhausted).
		field string
	}{
		{"party not a slug", func(r *ledgerv1.AppendRequest) { r.Party = "DPRK" }, "party"},
		{"no events", func(r *ledgerv1.AppendRequest) { r.Events = nil }, "events"},
		{"empty event", func(r *ledgerv1.AppendRequest) { r.Events = append(r.Events, &ledgerv1.Event{}) }, "events[1].body"},
		{"event of another party", func(r *ledgerv1.AppendRequest) { r.Events[0].Party = "russia" }, "events[0].party"},
		{"event party not a slug", func(r *ledgerv1.AppendRequest) { r.Events[0].Party = "North Korea" }, "events[0].party"},
		{"no event_id", func(r *ledgerv1.AppendRequest) { r.Events[0].EventId = "" }, "events[0].event_id"},
		{"event_id too long", func(r *ledgerv1.AppendRequest) { r.Events[0].EventId = strings.Repeat("x", 129) }, "events[0].event_id"},
		{"event_id twice", func(r *ledgerv1.AppendRequest) {
			r.Events = append(r.Events, statement("new", "dprk", "msmt-legitimacy", occurred))
		}, "events[1].event_id"},
		{"no occurred_at", func(r *ledgerv1.AppendRequest) { r.Events[0].OccurredAt = nil }, "events[0].occurred_at"},
		{"occurred_at in the future", func(r *ledgerv1.AppendRequest) {
			r.Events[0].OccurredAt = timestamppb.New(clock.Add(25 * time.Hour))
		}, "events[0].occurred_at"},
		{"occurred_at out of range", func(r *ledgerv1.AppendRequest) {
			r.Events[0].OccurredAt = &timestamppb.Timestamp{Seconds: 1, Nanos: -5}
		}, "events[0].occurred_at"},
		{"no sources", func(r *ledgerv1.AppendRequest) { r.Events[0].Sources = nil }, "events[0].sources"},
		{"source url not a url", func(r *ledgerv1.AppendRequest) { r.Events[0].Sources[0].Url = "kcna" }, "events[0].sources[0].url"},
		{"no body", func(r *ledgerv1.AppendRequest) { r.Events[0].Body = nil }, "events[0].body"},
		{"no stances", func(r *ledgerv1.AppendRequest) { r.Events[0].GetStatementIssued().Stances = nil }, "events[0].statement_issued.stances"},
		{"topic not a slug", func(r *ledgerv1.AppendRequest) { stance(r).Topic = "MSMT report" }, "events[0].statement_issued.stances[0].topic"},
		{"no alignment", func(r *ledgerv1.AppendRequest) { stance(r).Alignment = 0 }, "events[0].statement_issued.stances[0].alignment"},
		{"unknown alignment", func(r *ledgerv1.AppendRequest) { stance(r).Alignment = 99 }, "events[0].statement_issued.stances[0].alignment"},
		{"abstains outside a vote", func(r *ledgerv1.AppendRequest) {
			stance(r).Alignment = ledgerv1.Alignment_ALIGNMENT_ABSTAINS
		}, "events[0].statement_issued.stances[0].alignment"},
		{"unknown act", func(r *ledgerv1.AppendRequest) { stance(r).Act = 99 }, "events[0].statement_issued.stances[0].act"},
		{"report without findings", func(r *ledgerv1.AppendRequest) {
			r.Events[0].Body = &ledgerv1.Event_ReportPublished{ReportPublished: &ledgerv1.ReportPublished{ReportId: "r", Title: "t"}}
		}, "events[0].report_published.findings"},
		{"vetoed_by voted yes", func(r *ledgerv1.AppendRequest) {
			r.Party = "russia"
			r.Events[0] = veto("v1", map[string]ledgerv1.Vote{"russia": ledgerv1.Vote_VOTE_YES, "usa": ledgerv1.Vote_VOTE_YES}, "russia")
		}, "events[0].mandate_vetoed.vetoed_by[0]"},
		{"unknown vote", func(r *ledgerv1.AppendRequest) {
			r.Party = "russia"
			r.Events[0] = veto("v1", map[string]ledgerv1.Vote{"russia": ledgerv1.Vote_VOTE_NO, "usa": 7}, "russia")
		}, "events[0].mandate_vetoed.votes[1].vote"},
		{"correction of nothing", func(r *ledgerv1.AppendRequest) { r.Events[0] = correction("c1", "dprk", "no-such-event") },
			"events[0].record_corrected.corrects_event_id"},
		{"correction of another party's record", func(r *ledgerv1.AppendRequest) { r.Events[0] = correction("c1", "dprk", "r1") },
			"events[0].record_corrected.corrects_event_id"},
		{"correction of a correction", func(r *ledgerv1.AppendRequest) {
			r.Party = "russia"
			r.Events[0] = correction("c1", "russia", "r2")
		}, "events[0].record_corrected.corrects_event_id"},
		{"too many events", func(r *ledgerv1.AppendRequest) {
			for i := range 5 {
				r.Events = append(r.Events, statement("n"+string(rune('a'+i)), "dprk", "msmt-legitimacy", occurred))
			}
		}, "limit " + server.LimitMaxEventsPerAppend},
		{"event too large", func(r *ledgerv1.AppendRequest) { stance(r).Quote = strings.Repeat("q", 5000) }, "events[0]"},
		{"append too large", func(r *ledgerv1.AppendRequest) { r.Events = many(4) }, "events"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := readAllIDs(t, c, &ledgerv1.ReadAllRequest{})
			req := valid()
			tc.edit(req)
			_, err := c.Append(t.Context(), proto.Clone(req).(*ledgerv1.AppendRequest))
			if strings.HasPrefix(tc.field, "limit ") {
				// A limit, not a field: the ErrorInfo names it and its value.
				info := errorInfo(t, err)
				if status.Code(err) != codes.ResourceExhausted || info.GetMetadata()[server.MetaLimit] != server.LimitMaxEventsPerAppend || info.GetMetadata()[server.MetaLimitValue] != "5" {
					t.Fatalf("got %v (%v), want ResourceExhausted naming %s = 5", err, info, server.LimitMaxEventsPerAppend)
				}
				if after := readAllIDs(t, c, &ledgerv1.ReadAllRequest{}); strings.Join(after, ",") != strings.Join(before, ",") {
					t.Errorf("the log changed: %v → %v", before, after)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			var fields []string
			for _, d := range status.Convert(err).Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						fields = append(fields, v.GetField())
						if v.GetDescription() == "" {
							t.Errorf("violation of %s has no description", v.GetField())
						}
					}
				}
			}
			found := false
			for _, f := range fields {
				found = found || f == tc.field
			}
			if !found {
				t.Errorf("violations name %q, want %q among them (message %q)", fields, tc.field, status.Convert(err).Message())
			}
			if !strings.Contains(status.Convert(err).Message(), tc.field) {
				t.Errorf("message %q does not name %s", status.Convert(err).Message(), tc.field)
			}
			if after := readAllIDs(t, c, &ledgerv1.ReadAllRequest{}); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("the log changed: %v → %v", before, after)
			}
		})
	}
	// The valid request itself goes through, so the cases above fail for their edit only.
	appendOK(t, c, "dprk", nil, valid().Events...)
}

// TestOversizeAppendIsRefusedByValidation sends an append just over the default 4 MiB
// limit. The transport lets it through (its limit is a little higher), so validation
// refuses it with InvalidArgument naming the limit, not the transport with
// ResourceExhausted.
func TestOversizeAppendIsRefusedByValidation(t *testing.T) {
	ts := start(t, server.Config{})
	quote := strings.Repeat("q", 7<<10)
	var events []*ledgerv1.Event
	for i := range 90 { // 90 events × 7 stances × 7 KiB ≈ 4.4 MiB
		e := statement(fmt.Sprintf("big-%02d", i), "dprk", "topic-0", occurred)
		st := e.GetStatementIssued()
		st.Stances = nil
		for j := range 7 {
			st.Stances = append(st.Stances, &ledgerv1.Stance{
				Topic: fmt.Sprintf("topic-%d", j), Alignment: ledgerv1.Alignment_ALIGNMENT_OPPOSES, Quote: quote,
			})
		}
		events = append(events, e)
	}
	req := &ledgerv1.AppendRequest{Party: "dprk", Events: events}
	if n := proto.Size(req); n <= ledger.DefaultLimits.MaxAppendBytes {
		t.Fatalf("request is only %d bytes; the test needs more than the limit", n)
	}
	_, err := ts.client.Append(t.Context(), req)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "per append") {
		t.Fatalf("got %v, want InvalidArgument naming the per-append limit", err)
	}
	if ids := readAllIDs(t, ts.client, &ledgerv1.ReadAllRequest{}); len(ids) != 0 {
		t.Errorf("the log holds %d records after a refused append", len(ids))
	}
}
