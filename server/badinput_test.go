package server_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
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

// rawFrame carries a request's wire bytes as they are, so that tests can send what no
// well-behaved client would.
type rawFrame struct{ b []byte }

// rawCodec sends and receives rawFrames unchanged.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawFrame).b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawFrame).b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// field appends one field of wire type typ to b: v is a []byte for BytesType, a uint64
// for the varint and fixed types, and nil for groups.
func field(b []byte, num protowire.Number, typ protowire.Type, v any) []byte {
	b = protowire.AppendTag(b, num, typ)
	switch typ {
	case protowire.BytesType:
		return protowire.AppendBytes(b, v.([]byte))
	case protowire.VarintType:
		return protowire.AppendVarint(b, v.(uint64))
	case protowire.Fixed64Type:
		return protowire.AppendFixed64(b, v.(uint64))
	}
	return b
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMalformedRequests sends requests as raw wire bytes: invalid UTF-8, truncated and
// mistyped fields, deep nesting, huge repeated fields, unknown enum numbers, timestamps
// out of range and oversized messages. Each is answered InvalidArgument or
// ResourceExhausted (never Internal, which gRPC itself answers for a request that does
// not unmarshal), and the log is unchanged.
func TestMalformedRequests(t *testing.T) {
	ts := start(t, server.Config{})
	appendOK(t, ts.client, "dprk", nil, statement("m0", "dprk", "msmt-legitimacy", occurred))

	validEvent := func() *ledgerv1.Event { return statement("m1", "dprk", "msmt-legitimacy", occurred) }
	validAppend := func() *ledgerv1.AppendRequest {
		return &ledgerv1.AppendRequest{Party: "dprk", Events: []*ledgerv1.Event{validEvent()}}
	}
	// withQuote marshals a valid append whose quote is q, then swaps q's bytes for bad.
	swapped := func(q, bad string) []byte {
		r := validAppend()
		r.Events[0].GetStatementIssued().Stances[0].Quote = q
		b := marshal(t, r)
		return bytes.Replace(b, []byte(q), []byte(bad), 1)
	}
	eventWith := func(edit func(e *ledgerv1.Event)) []byte {
		r := validAppend()
		edit(r.Events[0])
		return marshal(t, r)
	}
	repeatedEvents := func(n int, each []byte) []byte {
		b := field(nil, 1, protowire.BytesType, []byte("dprk"))
		for range n {
			b = field(b, 3, protowire.BytesType, each)
		}
		return b
	}
	deep := func(n int) []byte {
		b := marshal(t, validAppend())
		for range n {
			b = protowire.AppendTag(b, 99, protowire.StartGroupType)
		}
		for range n {
			b = protowire.AppendTag(b, 99, protowire.EndGroupType)
		}
		return b
	}
	valid := marshal(t, validAppend())
	const (
		appendM    = "/stanceledger.v1.LedgerService/Append"
		getM       = "/stanceledger.v1.LedgerService/GetEvent"
		readM      = "/stanceledger.v1.LedgerService/ReadStream"
		readAllM   = "/stanceledger.v1.LedgerService/ReadAll"
		subscribeM = "/stanceledger.v1.LedgerService/Subscribe"
	)
	filter := func(f *ledgerv1.Filter) []byte { return marshal(t, &ledgerv1.ReadAllRequest{Filter: f}) }
	for _, tc := range []struct {
		name   string
		method string
		body   []byte
		want   codes.Code
	}{
		{"invalid UTF-8 in party", appendM, field(nil, 1, protowire.BytesType, []byte("dp\xffrk")), codes.InvalidArgument},
		{"invalid UTF-8 in a quote", appendM, swapped("QQQQ", "Q\xc3\x28Q"), codes.InvalidArgument},
		{"invalid UTF-8 in event_id", appendM, bytes.Replace(valid, []byte("m1"), []byte("\xffm"), 1), codes.InvalidArgument},
		{"truncated message", appendM, valid[:len(valid)-3], codes.InvalidArgument},
		{"length past the end", appendM, append(field(nil, 1, protowire.BytesType, []byte("dprk")), 0x1a, 0xe8, 0x07, 1, 2, 3), codes.InvalidArgument},
		{"unknown field claiming a terabyte", appendM, append(protowire.AppendTag(nil, 1000, protowire.BytesType), protowire.AppendVarint(nil, 1<<40)...), codes.InvalidArgument},
		{"party as a varint", appendM, append(field(nil, 1, protowire.VarintType, uint64(5)), valid[6:]...), codes.InvalidArgument},
		{"events as fixed64", appendM, field(field(nil, 1, protowire.BytesType, []byte("dprk")), 3, protowire.Fixed64Type, uint64(7)), codes.InvalidArgument},
		{"event that is not a message", appendM, field(field(nil, 1, protowire.BytesType, []byte("dprk")), 3, protowire.BytesType, []byte{0xff, 0xff, 0xff}), codes.InvalidArgument},
		{"groups nested 20,000 deep", appendM, deep(20000), codes.InvalidArgument},
		{"1,001 events", appendM, repeatedEvents(1001, marshal(t, validEvent())), codes.ResourceExhausted},
		{"100,000 empty events", appendM, repeatedEvents(100000, nil), codes.ResourceExhausted},
		{"10,000 sources", appendM, eventWith(func(e *ledgerv1.Event) {
			for range 10000 {
				e.Sources = append(e.Sources, e.Sources[0])
			}
		}), codes.InvalidArgument},
		{"10,000 stances", appendM, eventWith(func(e *ledgerv1.Event) {
			s := e.GetStatementIssued()
			for range 10000 {
				s.Stances = append(s.Stances, s.Stances[0])
			}
		}), codes.InvalidArgument},
		{"6 MiB request", appendM, field(field(nil, 1, protowire.BytesType, []byte("dprk")), 50, protowire.BytesType, make([]byte, 6<<20)), codes.ResourceExhausted},
		{"occurred_at in year 10000", appendM, eventWith(func(e *ledgerv1.Event) { e.OccurredAt = &timestamppb.Timestamp{Seconds: 253402300800} }), codes.InvalidArgument},
		{"occurred_at before year 1", appendM, eventWith(func(e *ledgerv1.Event) { e.OccurredAt = &timestamppb.Timestamp{Seconds: -62135596801} }), codes.InvalidArgument},
		{"reported_at nanos over a second", appendM, eventWith(func(e *ledgerv1.Event) { e.ReportedAt = &timestamppb.Timestamp{Seconds: 1, Nanos: 1e9} }), codes.InvalidArgument},
		{"unknown alignment -1", appendM, eventWith(func(e *ledgerv1.Event) { e.GetStatementIssued().Stances[0].Alignment = -1 }), codes.InvalidArgument},
		{"unknown expected revision kind", appendM, append(valid, field(nil, 2, protowire.BytesType, field(nil, 9, protowire.VarintType, uint64(1)))...), codes.InvalidArgument},
		{"GetEvent without event_id", getM, nil, codes.InvalidArgument},
		{"GetEvent invalid UTF-8", getM, field(nil, 1, protowire.BytesType, []byte{0xc0, 0x80}), codes.InvalidArgument},
		{"ReadStream without party", readM, nil, codes.InvalidArgument},
		{"ReadStream unknown direction", readM, marshal(t, &ledgerv1.ReadStreamRequest{Party: "dprk", Direction: 99}), codes.InvalidArgument},
		{"ReadStream invalid UTF-8 party", readM, field(nil, 1, protowire.BytesType, []byte("dprk\xff")), codes.InvalidArgument},
		{"ReadAll unknown record type", readAllM, filter(&ledgerv1.Filter{Types: []ledgerv1.RecordType{99}}), codes.InvalidArgument},
		{"ReadAll negative record type", readAllM, filter(&ledgerv1.Filter{Types: []ledgerv1.RecordType{-7}}), codes.InvalidArgument},
		{"ReadAll occurred_since out of range", readAllM, filter(&ledgerv1.Filter{OccurredSince: &timestamppb.Timestamp{Seconds: 1 << 50}}), codes.InvalidArgument},
		{"ReadAll party not a slug", readAllM, filter(&ledgerv1.Filter{Parties: []string{"North Korea"}}), codes.InvalidArgument},
		{"Subscribe invalid UTF-8 party", subscribeM, field(nil, 2, protowire.BytesType, field(nil, 1, protowire.BytesType, []byte{0xed, 0xa0, 0x80})), codes.InvalidArgument},
		{"Subscribe occurred_until nanos negative", subscribeM, marshal(t, &ledgerv1.SubscribeRequest{Filter: &ledgerv1.Filter{OccurredUntil: &timestamppb.Timestamp{Nanos: -1}}}), codes.InvalidArgument},
		{"Subscribe truncated", subscribeM, []byte{0x12, 0x05, 0x0a}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := readAllIDs(t, ts.client, &ledgerv1.ReadAllRequest{})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var err error
			if tc.method == appendM || tc.method == getM {
				err = ts.conn.Invoke(ctx, tc.method, &rawFrame{tc.body}, &rawFrame{}, grpc.ForceCodecV2(rawCodec{}))
			} else {
				var s grpc.ClientStream
				s, err = ts.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, tc.method, grpc.ForceCodecV2(rawCodec{}))
				if err == nil {
					if err = s.SendMsg(&rawFrame{tc.body}); err == nil {
						s.CloseSend()
						err = s.RecvMsg(&rawFrame{})
					}
				}
			}
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if after := readAllIDs(t, ts.client, &ledgerv1.ReadAllRequest{}); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("the log changed: %v → %v", before, after)
			}
		})
	}
	if !strings.Contains(ts.logs.String(), "grpc call") || strings.Contains(ts.logs.String(), "handler panicked") {
		t.Errorf("unexpected log: %.2000s", ts.logs.String())
	}
}
