package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
)

// wantLimit fails unless err is ResourceExhausted whose ErrorInfo names limit = value.
func wantLimit(t *testing.T, err error, limit, value string) {
	t.Helper()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	info := errorInfo(t, err)
	if info.GetReason() != server.ReasonLimitExceeded || info.GetMetadata()[server.MetaLimit] != limit || info.GetMetadata()[server.MetaLimitValue] != value {
		t.Fatalf("ErrorInfo %v, want %s %s=%s", info, server.ReasonLimitExceeded, limit, value)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, limit) || !strings.Contains(msg, value) {
		t.Errorf("message %q does not name %s and %s", msg, limit, value)
	}
}

func TestCallsPerConnection(t *testing.T) {
	ts := start(t, server.Config{Traffic: server.TrafficLimits{MaxStreamsPerConn: 3}})
	appendOK(t, ts.client, "dprk", nil, statement("c1", "dprk", "msmt-legitimacy", occurred))
	var cancels []func()
	for range 3 {
		ctx, cancel := contextWithCancel(t)
		cancels = append(cancels, cancel)
		s, err := ts.client.Subscribe(ctx, &ledgerv1.SubscribeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	_, err := ts.client.GetEvent(t.Context(), &ledgerv1.GetEventRequest{EventId: "c1"})
	wantLimit(t, err, server.LimitMaxStreamsPerConn, "3")
	s, err := ts.client.Subscribe(t.Context(), &ledgerv1.SubscribeRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	wantLimit(t, err, server.LimitMaxStreamsPerConn, "3")

	cancels[0]()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := ts.client.GetEvent(t.Context(), &ledgerv1.GetEventRequest{EventId: "c1"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a call after one stream ended: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range cancels[1:] {
		c()
	}
}

func TestRatePerPrincipal(t *testing.T) {
	ts := start(t, server.Config{Traffic: server.TrafficLimits{RatePerSecond: 0.01, RateBurst: 3}})
	for i := range 3 {
		if _, err := ts.client.GetEvent(t.Context(), &ledgerv1.GetEventRequest{EventId: "none"}); status.Code(err) != codes.NotFound {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := ts.client.GetEvent(t.Context(), &ledgerv1.GetEventRequest{EventId: "none"})
	wantLimit(t, err, server.LimitRatePerPrincipal, "0")
}

func TestRequestSizeLimit(t *testing.T) {
	ts := start(t, server.Config{Traffic: server.TrafficLimits{MaxRequestBytes: 32 << 10}})
	e := statement("big", "dprk", "msmt-legitimacy", occurred)
	e.GetStatementIssued().Stances[0].Quote = strings.Repeat("q", 40<<10)
	_, err := ts.client.Append(t.Context(), &ledgerv1.AppendRequest{Party: "dprk", Events: []*ledgerv1.Event{e}})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), fmt.Sprint(32<<10)) {
		t.Fatalf("got %v, want ResourceExhausted naming %d", err, 32<<10)
	}
	if ids := readAllIDs(t, ts.client, &ledgerv1.ReadAllRequest{}); len(ids) != 0 {
		t.Errorf("the log holds %v", ids)
	}
}

// TestSlowConsumerIsCutAndResumes subscribes, stops reading while the server has far
// more to send than the transport buffers, and checks that the server ends the stream
// with ResourceExhausted naming the limit; the consumer then resumes from the last
// position it received and gets every record exactly once.
func TestSlowConsumerIsCutAndResumes(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ts := start(t, server.Config{Traffic: server.TrafficLimits{SlowConsumerTimeout: timeout}})
	const n = 60 // × ~24 KiB: 1.4 MiB, far beyond the HTTP/2 windows (64 KiB each way by default)
	quote := strings.Repeat("q", 8000)
	var batch []*ledgerv1.Event
	for i := range n {
		e := statement(fmt.Sprintf("slow-%03d", i), "dprk", "msmt-legitimacy", occurred)
		st := e.GetStatementIssued()
		st.Stances[0].Quote = quote
		for _, topic := range []string{"topic-b", "topic-c"} {
			st.Stances = append(st.Stances, &ledgerv1.Stance{Topic: topic, Alignment: ledgerv1.Alignment_ALIGNMENT_OPPOSES, Quote: quote})
		}
		if batch = append(batch, e); len(batch) == 10 {
			appendOK(t, ts.client, "dprk", nil, batch...)
			batch = nil
		}
	}
	seen := map[string]int{}
	var last *ledgerv1.Position
	s, err := ts.client.Subscribe(t.Context(), &ledgerv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	seen[m.GetEvent().GetEvent().GetEventId()]++
	last = m.GetEvent().GetPosition()
	time.Sleep(6 * timeout) // a stuck consumer
	for {
		m, err := s.Recv()
		if err != nil {
			wantLimit(t, err, server.LimitSlowConsumerTimeout, fmt.Sprint(timeout.Milliseconds()))
			break
		}
		if m.GetCaughtUp() != nil {
			t.Fatal("caught up: the server never found the consumer slow")
		}
		seen[m.GetEvent().GetEvent().GetEventId()]++
		last = m.GetEvent().GetPosition()
	}
	if len(seen) >= n {
		t.Fatalf("received all %d records before the cut", len(seen))
	}
	// Resume: from is inclusive, so the record at last comes again and is skipped.
	s, err = ts.client.Subscribe(t.Context(), &ledgerv1.SubscribeRequest{From: last})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetCaughtUp() != nil {
			break
		}
		if proto := m.GetEvent().GetPosition(); proto.GetCommit() == last.GetCommit() {
			continue
		}
		seen[m.GetEvent().GetEvent().GetEventId()]++
	}
	for i := range n {
		if id := fmt.Sprintf("slow-%03d", i); seen[id] != 1 {
			t.Errorf("%s received %d times", id, seen[id])
		}
	}
}

func contextWithCancel(t *testing.T) (ctx context.Context, cancel func()) {
	return context.WithCancel(t.Context())
}
