package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/embedded"
)

// clock is the server's fixed clock in these tests.
var clock = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// logBuffer collects the server's log output for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testServer is an in-process server on a loopback port with a client connection.
type testServer struct {
	srv    *server.Server
	addr   string
	client ledgerv1.LedgerServiceClient
	conn   *grpc.ClientConn
	logs   *logBuffer
}

// openStore opens an embedded store in a temporary directory.
func openStore(t testing.TB) *embedded.Store {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// start serves cfg (its Store, Now and Logger filled in when empty) on 127.0.0.1:0.
func start(t testing.TB, cfg server.Config) *testServer {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = openStore(t)
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return clock }
	}
	logs := new(logBuffer)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{srv: srv, addr: lis.Addr().String(), client: ledgerv1.NewLedgerServiceClient(conn), conn: conn, logs: logs}
}

var occurred = time.Date(2025, 5, 29, 9, 0, 0, 0, time.UTC)

// statement is a valid StatementIssued event of party on topic.
func statement(id, party, topic string, at time.Time) *ledgerv1.Event {
	return &ledgerv1.Event{
		EventId:    id,
		Party:      party,
		OccurredAt: timestamppb.New(at),
		Sources:    []*ledgerv1.Source{{Url: "https://kcna.example/" + id, Publisher: "KCNA", Language: "en"}},
		Body: &ledgerv1.Event_StatementIssued{StatementIssued: &ledgerv1.StatementIssued{
			StatementId: "st-" + id,
			Speaker:     "MFA spokesperson",
			Stances: []*ledgerv1.Stance{{
				Topic: topic, Alignment: ledgerv1.Alignment_ALIGNMENT_OPPOSES, Act: ledgerv1.Act_ACT_DENY,
				Summary: "Calls the report a fabrication.",
			}},
		}},
	}
}

func anyRev() *ledgerv1.ExpectedRevision {
	return &ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_Any{Any: true}}
}

func exactRev(r uint64) *ledgerv1.ExpectedRevision {
	return &ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_Exact{Exact: r}}
}

func appendOK(t *testing.T, c ledgerv1.LedgerServiceClient, party string, expected *ledgerv1.ExpectedRevision, events ...*ledgerv1.Event) *ledgerv1.AppendResponse {
	t.Helper()
	resp, err := c.Append(t.Context(), &ledgerv1.AppendRequest{Party: party, ExpectedRevision: expected, Events: events})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return resp
}

// recv drains a server stream.
func recv[T any](t *testing.T, s grpc.ServerStreamingClient[T]) ([]*T, error) {
	t.Helper()
	var out []*T
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

func readAllIDs(t *testing.T, c ledgerv1.LedgerServiceClient, req *ledgerv1.ReadAllRequest) []string {
	t.Helper()
	s, err := c.ReadAll(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := recv(t, s)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.GetEvent().GetEvent().GetEventId()
	}
	return ids
}

func TestAppendAndRead(t *testing.T) {
	ts := start(t, server.Config{})
	c := ts.client
	first := appendOK(t, c, "dprk", nil,
		statement("e1", "dprk", "msmt-report-2025-05", occurred),
		statement("e2", "dprk", "msmt-legitimacy", occurred.Add(time.Hour)))
	if first.GetAlreadyPresent() || first.GetNextExpectedRevision() != 1 || first.GetPosition().GetCommit() != 2 || len(first.GetEvents()) != 2 {
		t.Fatalf("first append = %v", first)
	}
	for i, e := range first.GetEvents() {
		if e.GetRevision() != uint64(i) || e.GetStream() != "party-dprk" || e.GetRecordedBy() != server.Anonymous ||
			!e.GetRecordedAt().AsTime().Equal(clock) || e.GetStored().GetEventType() != "StatementIssued" {
			t.Errorf("events[%d] = %v", i, e)
		}
	}
	appendOK(t, c, "russia", &ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_NoStream{NoStream: true}},
		statement("e3", "russia", "msmt-legitimacy", occurred.Add(2*time.Hour)))

	// A retry stores nothing and returns the original result.
	retry := appendOK(t, c, "dprk", exactRev(7), statement("e1", "dprk", "msmt-report-2025-05", occurred), statement("e2", "dprk", "msmt-legitimacy", occurred.Add(time.Hour)))
	if !retry.GetAlreadyPresent() || retry.GetPosition().GetCommit() != 2 || retry.GetEvents()[1].GetPosition().GetCommit() != 2 {
		t.Errorf("retry = %v, want already_present with the original positions", retry)
	}

	t.Run("ReadStream", func(t *testing.T) {
		for _, tc := range []struct {
			req  *ledgerv1.ReadStreamRequest
			want []uint64
		}{
			{&ledgerv1.ReadStreamRequest{Party: "dprk"}, []uint64{0, 1}},
			{&ledgerv1.ReadStreamRequest{Party: "dprk", Direction: ledgerv1.Direction_DIRECTION_BACKWARDS, FromEnd: true}, []uint64{1, 0}},
			{&ledgerv1.ReadStreamRequest{Party: "dprk", FromRevision: 1}, []uint64{1}},
			{&ledgerv1.ReadStreamRequest{Party: "dprk", MaxCount: 1}, []uint64{0}},
		} {
			s, err := c.ReadStream(t.Context(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := recv(t, s)
			if err != nil {
				t.Fatalf("%v: %v", tc.req, err)
			}
			var got []uint64
			for _, m := range msgs {
				got = append(got, m.GetEvent().GetRevision())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%v: revisions %v, want %v", tc.req, got, tc.want)
			}
		}
	})

	t.Run("ReadAll", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			req  *ledgerv1.ReadAllRequest
			want []string
		}{
			{"all", &ledgerv1.ReadAllRequest{}, []string{"e1", "e2", "e3"}},
			{"from", &ledgerv1.ReadAllRequest{From: &ledgerv1.Position{Commit: 2, Prepare: 2}}, []string{"e2", "e3"}},
			{"max", &ledgerv1.ReadAllRequest{MaxCount: 2}, []string{"e1", "e2"}},
			{"party", &ledgerv1.ReadAllRequest{Filter: &ledgerv1.Filter{Parties: []string{"russia"}}}, []string{"e3"}},
			{"type", &ledgerv1.ReadAllRequest{Filter: &ledgerv1.Filter{Types: []ledgerv1.RecordType{ledgerv1.RecordType_RECORD_TYPE_MANDATE_VETOED}}}, nil},
			{"since", &ledgerv1.ReadAllRequest{Filter: &ledgerv1.Filter{OccurredSince: timestamppb.New(occurred.Add(time.Hour))}}, []string{"e2", "e3"}},
			{"until", &ledgerv1.ReadAllRequest{Filter: &ledgerv1.Filter{OccurredUntil: timestamppb.New(occurred.Add(time.Hour))}}, []string{"e1"}},
			{"window and party", &ledgerv1.ReadAllRequest{Filter: &ledgerv1.Filter{
				Parties:       []string{"dprk", "russia"},
				Types:         []ledgerv1.RecordType{ledgerv1.RecordType_RECORD_TYPE_STATEMENT_ISSUED},
				OccurredSince: timestamppb.New(occurred.Add(time.Minute)),
				OccurredUntil: timestamppb.New(occurred.Add(2 * time.Hour)),
			}}, []string{"e2"}},
		} {
			if got := readAllIDs(t, c, tc.req); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
	})

	t.Run("request log", func(t *testing.T) {
		logs := ts.logs.String()
		for _, want := range []string{"method=/stanceledger.v1.LedgerService/Append code=OK", "method=/stanceledger.v1.LedgerService/ReadAll code=OK"} {
			if !strings.Contains(logs, want) {
				t.Errorf("the debug request log lacks %q:\n%s", want, logs)
			}
		}
	})

	t.Run("GetEvent", func(t *testing.T) {
		resp, err := c.GetEvent(t.Context(), &ledgerv1.GetEventRequest{EventId: "e3"})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetEvent()
		if got.GetEvent().GetParty() != "russia" || got.GetPosition().GetCommit() != 3 || got.GetEvent().GetStatementIssued().GetStances()[0].GetTopic() != "msmt-legitimacy" {
			t.Errorf("GetEvent(e3) = %v", got)
		}
	})
}

// TestPrincipalIsRecorded shows where authentication plugs in: an interceptor that puts
// a principal in the context decides recorded_by.
func TestPrincipalIsRecorded(t *testing.T) {
	auth := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(server.WithPrincipal(ctx, "writer-1"), req)
	}
	ts := start(t, server.Config{GRPCOptions: []grpc.ServerOption{grpc.ChainUnaryInterceptor(auth)}})
	resp := appendOK(t, ts.client, "dprk", nil, statement("p1", "dprk", "msmt-legitimacy", occurred))
	if got := resp.GetEvents()[0].GetRecordedBy(); got != "writer-1" {
		t.Errorf("recorded_by = %q, want writer-1", got)
	}
}

// errorInfo returns the ErrorInfo detail of err.
func errorInfo(t *testing.T, err error) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	t.Fatalf("%v carries no ErrorInfo", err)
	return nil
}

func TestErrorStatuses(t *testing.T) {
	ts := start(t, server.Config{})
	c := ts.client
	appendOK(t, c, "dprk", nil, statement("s1", "dprk", "msmt-legitimacy", occurred))

	t.Run("conflict", func(t *testing.T) {
		_, err := c.Append(t.Context(), &ledgerv1.AppendRequest{Party: "dprk", ExpectedRevision: exactRev(5),
			Events: []*ledgerv1.Event{statement("s2", "dprk", "msmt-legitimacy", occurred)}})
		if status.Code(err) != codes.Aborted {
			t.Fatalf("got %v, want Aborted", err)
		}
		info := errorInfo(t, err)
		want := map[string]string{server.MetaStream: "party-dprk", server.MetaExpected: "5", server.MetaActual: "0"}
		if info.GetReason() != server.ReasonWrongExpectedRevision || info.GetDomain() != server.ErrorDomain || fmt.Sprint(info.GetMetadata()) != fmt.Sprint(want) {
			t.Errorf("ErrorInfo = %v, want reason %s and metadata %v", info, server.ReasonWrongExpectedRevision, want)
		}
		_, err = c.Append(t.Context(), &ledgerv1.AppendRequest{Party: "usa", ExpectedRevision: &ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_StreamExists{StreamExists: true}},
			Events: []*ledgerv1.Event{statement("s3", "usa", "msmt-legitimacy", occurred)}})
		if md := errorInfo(t, err).GetMetadata(); status.Code(err) != codes.Aborted || md[server.MetaActual] != "-1" || md[server.MetaExpected] != "stream_exists" {
			t.Errorf("stream_exists on a missing stream: %v, metadata %v", err, md)
		}
	})
	t.Run("duplicate event_id", func(t *testing.T) {
		other := statement("s1", "dprk", "dprk-troops-in-russia", occurred)
		_, err := c.Append(t.Context(), &ledgerv1.AppendRequest{Party: "dprk", Events: []*ledgerv1.Event{other}})
		if status.Code(err) != codes.AlreadyExists {
			t.Fatalf("got %v, want AlreadyExists", err)
		}
		info := errorInfo(t, err)
		if info.GetReason() != server.ReasonDuplicateEventID || info.GetMetadata()[server.MetaEventID] != "s1" || info.GetMetadata()[server.MetaReason] == "" {
			t.Errorf("ErrorInfo = %v", info)
		}
	})
	t.Run("not found", func(t *testing.T) {
		_, err := c.GetEvent(t.Context(), &ledgerv1.GetEventRequest{EventId: "missing"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("GetEvent(missing): %v, want NotFound", err)
		}
		s, err := c.ReadStream(t.Context(), &ledgerv1.ReadStreamRequest{Party: "nobody"})
		if err == nil {
			_, err = recv(t, s)
		}
		if status.Code(err) != codes.NotFound {
			t.Errorf("ReadStream(nobody): %v, want NotFound", err)
		}
	})
	t.Run("invalid requests", func(t *testing.T) {
		_, err := c.GetEvent(t.Context(), &ledgerv1.GetEventRequest{})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("GetEvent(\"\"): %v, want InvalidArgument", err)
		}
		for name, req := range map[string]*ledgerv1.ReadAllRequest{
			"party":  {Filter: &ledgerv1.Filter{Parties: []string{"Not A Slug"}}},
			"type":   {Filter: &ledgerv1.Filter{Types: []ledgerv1.RecordType{ledgerv1.RecordType(42)}}},
			"window": {Filter: &ledgerv1.Filter{OccurredSince: &timestamppb.Timestamp{Seconds: 1, Nanos: -1}}},
		} {
			s, err := c.ReadAll(t.Context(), req)
			if err == nil {
				_, err = recv(t, s)
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("ReadAll with a bad %s filter: %v, want InvalidArgument", name, err)
			}
		}
		s, err := c.ReadStream(t.Context(), &ledgerv1.ReadStreamRequest{Party: "-bad"})
		if err == nil {
			_, err = recv(t, s)
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("ReadStream(-bad): %v, want InvalidArgument", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Nanosecond)
		defer cancel()
		<-ctx.Done()
		_, err := c.GetEvent(ctx, &ledgerv1.GetEventRequest{EventId: "s1"})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("expired deadline: %v, want DeadlineExceeded", err)
		}
	})
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	st, err := embedded.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := start(t, server.Config{Store: st})
	appendOK(t, ts.client, "dprk", nil, statement("u1", "dprk", "msmt-legitimacy", occurred))
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = ts.client.GetEvent(t.Context(), &ledgerv1.GetEventRequest{EventId: "u1"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetEvent on a closed store: %v, want Unavailable", err)
	}
	_, err = ts.client.Append(t.Context(), &ledgerv1.AppendRequest{Party: "dprk", Events: []*ledgerv1.Event{statement("u2", "dprk", "msmt-legitimacy", occurred)}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Append on a closed store: %v, want Unavailable", err)
	}
}

// panicStore panics on the event_id or party "panic" and otherwise delegates.
type panicStore struct{ store.Store }

func (p panicStore) GetEvent(ctx context.Context, id string) (store.Record, error) {
	if id == "panic" {
		panic("boom in GetEvent")
	}
	return p.Store.GetEvent(ctx, id)
}

func (p panicStore) ReadStream(ctx context.Context, stream string, opts store.ReadStreamOptions) iter.Seq2[store.Record, error] {
	if stream == ledger.StreamOf("panic") {
		panic("boom in ReadStream")
	}
	return p.Store.ReadStream(ctx, stream, opts)
}

func TestPanicBecomesInternalAndServingContinues(t *testing.T) {
	ts := start(t, server.Config{Store: panicStore{openStore(t)}})
	c := ts.client
	appendOK(t, c, "dprk", nil, statement("ok", "dprk", "msmt-legitimacy", occurred))
	for range 2 {
		_, err := c.GetEvent(t.Context(), &ledgerv1.GetEventRequest{EventId: "panic"})
		if status.Code(err) != codes.Internal || strings.Contains(status.Convert(err).Message(), "boom") {
			t.Errorf("panicking unary handler: %v, want Internal without the panic's text", err)
		}
		s, err := c.ReadStream(t.Context(), &ledgerv1.ReadStreamRequest{Party: "panic"})
		if err == nil {
			_, err = recv(t, s)
		}
		if status.Code(err) != codes.Internal {
			t.Errorf("panicking stream handler: %v, want Internal", err)
		}
		if _, err := c.GetEvent(t.Context(), &ledgerv1.GetEventRequest{EventId: "ok"}); err != nil {
			t.Errorf("after a panic the server must keep serving: %v", err)
		}
	}
	if logs := ts.logs.String(); !strings.Contains(logs, "boom in GetEvent") || !strings.Contains(logs, "boom in ReadStream") {
		t.Errorf("panics are not logged:\n%s", logs)
	}
}

func TestSubscribeCatchesUpThenLive(t *testing.T) {
	ts := start(t, server.Config{})
	c := ts.client
	appendOK(t, c, "dprk", nil, statement("a1", "dprk", "msmt-legitimacy", occurred))
	appendOK(t, c, "russia", nil, statement("a2", "russia", "msmt-legitimacy", occurred))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sub, err := c.Subscribe(ctx, &ledgerv1.SubscribeRequest{Filter: &ledgerv1.Filter{Parties: []string{"dprk"}}})
	if err != nil {
		t.Fatal(err)
	}
	next := func() *ledgerv1.SubscribeResponse {
		t.Helper()
		m, err := sub.Recv()
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		return m
	}
	if m := next(); m.GetEvent().GetEvent().GetEventId() != "a1" {
		t.Fatalf("first message %v, want a1", m)
	}
	m := next()
	if m.GetCaughtUp() == nil || m.GetCaughtUp().GetCommit() != 1 {
		t.Fatalf("second message %v, want caught_up at 1 (the last record the catch-up examined)", m)
	}
	appendOK(t, c, "russia", nil, statement("a3", "russia", "msmt-legitimacy", occurred))
	appendOK(t, c, "dprk", nil, statement("a4", "dprk", "msmt-legitimacy", occurred))
	if m := next(); m.GetEvent().GetEvent().GetEventId() != "a4" || m.GetEvent().GetPosition().GetCommit() != 4 {
		t.Fatalf("live message %v, want a4 at 4", m)
	}

	// Stop ends live subscriptions, so draining does not wait for them.
	stopped := make(chan struct{})
	go func() {
		sctx, scancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer scancel()
		ts.srv.Stop(sctx)
		close(stopped)
	}()
	if _, err := sub.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("subscription at Stop: %v, want Unavailable", err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Error("Stop did not return within 5s with a live subscription")
	}
}

func TestHealthAndReflection(t *testing.T) {
	ts := start(t, server.Config{})
	for _, svc := range []string{"", server.LedgerServiceName} {
		resp, err := healthpb.NewHealthClient(ts.conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v %v", svc, resp, err)
		}
	}
	rs, err := reflectionpb.NewServerReflectionClient(ts.conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), server.LedgerServiceName) {
		t.Errorf("reflection lists %v, want %s among them", names, server.LedgerServiceName)
	}
	rs.CloseSend()
}

func TestNewRequiresStore(t *testing.T) {
	if _, err := server.New(server.Config{}); err == nil {
		t.Error("New without a store succeeded")
	}
}

// notVouching hides the embedded store's store.ContentVoucher, as a backend that
// others can write to (EventStoreDB) has none.
type notVouching struct{ store.Store }

// A stored record whose content hash does not match its content is refused on reads
// (Internal) unless the store vouches for its hashes: the embedded store does (the
// ledger is its only writer), so its records are read without the recheck.
func TestReadsRecheckContentUnlessTheStoreVouches(t *testing.T) {
	st := openStore(t)
	e, err := wire.EventFromProto(statement("vouched-1", "dprk", "msmt-legitimacy", occurred))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := ledger.Encode(e, clock, "writer")
	if err != nil {
		t.Fatal(err)
	}
	// Another hash in the metadata than the content's: a record no ledger writes.
	md := bytes.Replace(enc.Metadata, []byte(enc.ContentHash), []byte(strings.Repeat("0", len(enc.ContentHash))), 1)
	if _, err := st.Append(t.Context(), ledger.StreamOf("dprk"), ledger.AnyRevision, []store.Proposed{{
		EventID: enc.EventID, Type: enc.Type, Data: enc.Data, Metadata: md, ContentHash: enc.ContentHash,
	}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		st   store.Store
		want codes.Code
	}{{"vouching", st, codes.OK}, {"not vouching", notVouching{st}, codes.Internal}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := start(t, server.Config{Store: tc.st})
			stream, err := ts.client.ReadAll(t.Context(), &ledgerv1.ReadAllRequest{})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if status.Code(err) != tc.want {
				t.Fatalf("ReadAll: %v; want %v", err, tc.want)
			}
			if err == nil && resp.GetEvent().GetEvent().GetEventId() != "vouched-1" {
				t.Errorf("ReadAll sent %v", resp)
			}
		})
	}
}
