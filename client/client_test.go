package client_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store/embedded"
)

// testServer is a real ledger server on the embedded store, on a random loopback port.
type testServer struct {
	addr  string
	store *embedded.Store
	srv   *server.Server
	done  chan error
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), &embedded.Options{MemTableSize: 4 << 20, CacheSize: 8 << 20})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	ts := &testServer{store: st}
	ts.serve(t, "127.0.0.1:0")
	return ts
}

// serve starts a server on ts.store listening on addr.
func (ts *testServer) serve(t *testing.T, addr string) {
	t.Helper()
	srv, err := server.New(server.Config{Store: ts.store})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ts.addr, ts.srv, ts.done = lis.Addr().String(), srv, make(chan error, 1)
	go func() { ts.done <- srv.Serve(lis) }()
	t.Cleanup(ts.stop)
}

// stop stops the server and waits for Serve to return. Calling it twice is harmless.
func (ts *testServer) stop() {
	if ts.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ts.srv.Stop(ctx)
	<-ts.done
	ts.srv = nil
}

func dial(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var when = time.Date(2025, 6, 1, 9, 30, 0, 0, time.UTC)

func src(name string) ledger.Source {
	return ledger.Source{URL: "https://example.org/" + name, Publisher: "Example", Language: "en"}
}

func statement(party, topic string) *ledger.Event {
	return client.Statement(party, when, ledger.StatementIssued{
		StatementID: "st-" + topic,
		Speaker:     "Foreign Ministry",
		Stances:     []ledger.Stance{{Topic: topic, Alignment: ledger.AlignmentOpposes, Act: ledger.ActDeny, Quote: "a fabrication"}},
	}, src(topic))
}

func TestAppendThenRead(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts.addr)
	ctx := t.Context()

	first := statement("dprk", "msmt-report-2025-05")
	first.ReportedAt = when.Add(24 * time.Hour)
	second := statement("dprk", "msmt-legitimacy")
	res, err := c.Append(ctx, "dprk", ledger.NoStream, first, second)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if res.AlreadyPresent || res.NextExpectedRevision != 1 || len(res.Records) != 2 || res.Position != res.Records[1].Position {
		t.Fatalf("Append result = %+v; want revision 1, two records, not already present", res)
	}
	for i, r := range res.Records {
		if r.Revision != uint64(i) || r.Stream != "party-dprk" || r.Stored.Type != "StatementIssued" ||
			len(r.Stored.Data) == 0 || len(r.Stored.Metadata) == 0 || r.RecordedAt.IsZero() || r.RecordedBy == "" {
			t.Errorf("Records[%d] = %+v; want revision %d in party-dprk with stored bytes and recorded_at/by", i, r, i)
		}
	}

	got, err := c.GetEvent(ctx, first.EventID)
	if err != nil {
		t.Fatalf("GetEvent: %v", err)
	}
	if got.Position != res.Records[0].Position || !sameEvent(got.Event, first) {
		t.Errorf("GetEvent = %+v (event %+v); want the first appended event at %v", got, got.Event, res.Records[0].Position)
	}
	if !slices.Equal(got.Stored.Data, res.Records[0].Stored.Data) || !slices.Equal(got.Stored.Metadata, res.Records[0].Stored.Metadata) {
		t.Errorf("GetEvent stored bytes differ from the append's")
	}

	var ids []string
	for r, err := range c.ReadStream(ctx, "dprk", client.ReadStreamOptions{Backwards: true, FromEnd: true}) {
		if err != nil {
			t.Fatalf("ReadStream: %v", err)
		}
		ids = append(ids, r.Event.EventID)
	}
	if want := []string{second.EventID, first.EventID}; !slices.Equal(ids, want) {
		t.Errorf("ReadStream backwards = %v; want %v", ids, want)
	}
}

func sameEvent(a, b *ledger.Event) bool {
	return a.EventID == b.EventID && a.Party == b.Party && a.OccurredAt.Equal(b.OccurredAt) &&
		a.ReportedAt.Equal(b.ReportedAt) && slices.Equal(a.Sources, b.Sources) && a.Type() == b.Type()
}

func TestReadAllFilters(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts.addr)
	ctx := t.Context()
	early := statement("russia", "msmt-legitimacy")
	early.OccurredAt = when.AddDate(-1, 0, 0)
	events := map[string][]*ledger.Event{
		"dprk":   {statement("dprk", "msmt-report-2025-05")},
		"russia": {early, statement("russia", "poe-mandate")},
		"msmt": {client.Report("msmt", when, ledger.ReportPublished{
			ReportID: "r1", Title: "First report", Accused: []string{"dprk", "russia"},
		}, src("report"))},
	}
	for _, party := range []string{"dprk", "russia", "msmt"} {
		if _, err := c.Append(ctx, party, ledger.AnyRevision, events[party]...); err != nil {
			t.Fatalf("Append %s: %v", party, err)
		}
	}
	tests := []struct {
		name   string
		from   ledger.Position
		filter client.Filter
		want   []*ledger.Event
	}{
		{"all", ledger.Position{}, client.Filter{}, []*ledger.Event{events["dprk"][0], early, events["russia"][1], events["msmt"][0]}},
		{"from position 3", ledger.Position{Commit: 3, Prepare: 3}, client.Filter{}, []*ledger.Event{events["russia"][1], events["msmt"][0]}},
		{"party", ledger.Position{}, client.Filter{Parties: []string{"russia"}}, []*ledger.Event{early, events["russia"][1]}},
		{"type", ledger.Position{}, client.Filter{Types: []ledger.RecordType{ledger.TypeReportPublished}}, []*ledger.Event{events["msmt"][0]}},
		{"since", ledger.Position{}, client.Filter{Parties: []string{"russia"}, Since: when.AddDate(0, -1, 0)}, []*ledger.Event{events["russia"][1]}},
		{"until", ledger.Position{}, client.Filter{Until: when}, []*ledger.Event{early}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for r, err := range c.ReadAll(t.Context(), tt.from, tt.filter) {
				if err != nil {
					t.Fatalf("ReadAll: %v", err)
				}
				got = append(got, r.Event.EventID)
			}
			var want []string
			for _, e := range tt.want {
				want = append(want, e.EventID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("ReadAll = %v; want %v", got, want)
			}
		})
	}

	// Stopping early ends the call without an error.
	n := 0
	for _, err := range c.ReadAll(ctx, ledger.Position{}, client.Filter{}) {
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		if n++; n == 2 {
			break
		}
	}
}

func TestAppendRetryIsIdempotent(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts.addr)
	e := statement("dprk", "msmt-report-2025-05")
	first, err := c.Append(t.Context(), "dprk", ledger.NoStream, e)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	// The same event again, even with an expectation the stream no longer meets, is
	// answered with the original result.
	again, err := c.Append(t.Context(), "dprk", ledger.NoStream, e)
	if err != nil {
		t.Fatalf("Append again: %v", err)
	}
	if !again.AlreadyPresent || again.Position != first.Position || again.NextExpectedRevision != first.NextExpectedRevision {
		t.Errorf("retry = %+v; want AlreadyPresent at %v", again, first.Position)
	}
}

func TestErrorsMapBack(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts.addr)
	ctx := t.Context()
	stored := statement("dprk", "msmt-report-2025-05")
	if _, err := c.Append(ctx, "dprk", ledger.AnyRevision, stored); err != nil {
		t.Fatalf("Append: %v", err)
	}
	changed := *stored
	changed.Sources = []ledger.Source{src("other")}
	bad := statement("dprk", "Not A Slug")

	tests := []struct {
		name  string
		call  func() error
		code  codes.Code
		check func(t *testing.T, err error)
	}{
		{"invalid", func() error {
			_, err := c.Append(ctx, "dprk", ledger.AnyRevision, bad)
			return err
		}, codes.InvalidArgument, func(t *testing.T, err error) {
			var v *ledger.ValidationError
			if !errors.As(err, &v) || !errors.Is(err, ledger.ErrInvalid) {
				t.Fatalf("err = %v; want a *ledger.ValidationError", err)
			}
			want := ledger.FieldViolation{Field: "events[0].statement_issued.stances[0].topic", Description: "must be a slug (^[a-z0-9][a-z0-9-]{0,62}$)"}
			if !slices.Contains(v.Violations, want) {
				t.Errorf("violations = %+v; want %+v among them", v.Violations, want)
			}
		}},
		{"conflict", func() error {
			_, err := c.Append(ctx, "dprk", ledger.NoStream, statement("dprk", "msmt-legitimacy"))
			return err
		}, codes.Aborted, func(t *testing.T, err error) {
			var ce *ledger.ConflictError
			if !errors.As(err, &ce) || !errors.Is(err, ledger.ErrRevisionConflict) {
				t.Fatalf("err = %v; want a *ledger.ConflictError", err)
			}
			if ce.Stream != "party-dprk" || !ce.Expected.IsNoStream() || ce.Actual != 0 {
				t.Errorf("conflict = %+v; want party-dprk, expected no_stream, actual 0", ce)
			}
		}},
		{"conflict on a missing stream", func() error {
			_, err := c.Append(ctx, "russia", ledger.ExactRevision(4), statement("russia", "msmt-legitimacy"))
			return err
		}, codes.Aborted, func(t *testing.T, err error) {
			var ce *ledger.ConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v; want a *ledger.ConflictError", err)
			}
			if rev, ok := ce.Expected.Exact(); !ok || rev != 4 || ce.Actual != ledger.NoRevision {
				t.Errorf("conflict = %+v; want expected 4, actual NoRevision", ce)
			}
		}},
		{"duplicate", func() error {
			_, err := c.Append(ctx, "dprk", ledger.AnyRevision, &changed)
			return err
		}, codes.AlreadyExists, func(t *testing.T, err error) {
			var de *ledger.DuplicateEventError
			if !errors.As(err, &de) || !errors.Is(err, ledger.ErrDuplicateEvent) {
				t.Fatalf("err = %v; want a *ledger.DuplicateEventError", err)
			}
			if de.EventID != stored.EventID || de.Reason == "" {
				t.Errorf("duplicate = %+v; want event_id %q with a reason", de, stored.EventID)
			}
		}},
		{"event not found", func() error {
			_, err := c.GetEvent(ctx, "no-such-event")
			return err
		}, codes.NotFound, func(t *testing.T, err error) {
			if !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("err = %v; want ledger.ErrNotFound", err)
			}
		}},
		{"stream not found", func() error {
			for _, err := range c.ReadStream(ctx, "nobody", client.ReadStreamOptions{}) {
				return err
			}
			return nil
		}, codes.NotFound, func(t *testing.T, err error) {
			if !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("err = %v; want ledger.ErrNotFound", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if got := status.Code(err); got != tt.code {
				t.Fatalf("code = %v (err %v); want %v", got, err, tt.code)
			}
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Code != tt.code {
				t.Fatalf("err = %#v; want a *client.Error with code %v", err, tt.code)
			}
			tt.check(t, err)
		})
	}

	// Nothing of the refused appends was stored.
	n := 0
	for _, err := range c.ReadAll(ctx, ledger.Position{}, client.Filter{}) {
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("log holds %d records; want 1", n)
	}
}

func TestSubscribeCatchesUpThenFollows(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts.addr)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	before := []*ledger.Event{statement("dprk", "a"), statement("dprk", "b")}
	if _, err := c.Append(ctx, "dprk", ledger.AnyRevision, before...); err != nil {
		t.Fatalf("Append: %v", err)
	}
	live := statement("russia", "c")
	var got []string
	caughtUp := false
	for m, err := range c.Subscribe(ctx, ledger.Position{}, client.Filter{}) {
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		if m.CaughtUp {
			if caughtUp || len(got) != 2 {
				t.Fatalf("caught up after %v (again: %v); want once, after the 2 stored records", got, caughtUp)
			}
			caughtUp = true
			if _, err := c.Append(ctx, "russia", ledger.AnyRevision, live); err != nil {
				t.Fatalf("Append live: %v", err)
			}
			continue
		}
		got = append(got, m.Record.Event.EventID)
		if len(got) == 3 {
			break
		}
	}
	if want := []string{before[0].EventID, before[1].EventID, live.EventID}; !slices.Equal(got, want) {
		t.Errorf("subscription = %v; want %v", got, want)
	}

	// Ending the context ends the subscription with the context's error.
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	var last error
	for m, err := range c.Subscribe(ctx2, ledger.Position{}, client.Filter{}) {
		if err != nil {
			last = err
			break
		}
		if m.CaughtUp {
			cancel2()
		}
	}
	if !errors.Is(last, context.Canceled) {
		t.Errorf("after cancel: err = %v; want context.Canceled", last)
	}
}

func TestDialUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = client.Dial(ctx, addr)
	if !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("Dial to a closed port: err = %v; want ledger.ErrUnavailable", err)
	}
}

func TestAppendRetriesWhileServerRestarts(t *testing.T) {
	ts := startServer(t)
	e := statement("dprk", "msmt-report-2025-05")

	noRetry := dial(t, ts.addr)
	retry := dial(t, ts.addr, client.WithAppendRetry(client.RetryPolicy{
		MaxAttempts: 50, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	}))
	addr := ts.addr
	ts.stop()

	if _, err := noRetry.Append(t.Context(), "dprk", ledger.AnyRevision, e); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("Append without retry while the server is down: err = %v; want ledger.ErrUnavailable", err)
	}
	type result struct {
		res client.AppendResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := retry.Append(t.Context(), "dprk", ledger.AnyRevision, e)
		done <- result{res, err}
	}()
	time.Sleep(200 * time.Millisecond) // a few attempts fail meanwhile
	ts.serve(t, addr)
	r := <-done
	res, err := r.res, r.err
	if err != nil {
		t.Fatalf("Append with retry across a restart: %v", err)
	}
	if res.AlreadyPresent || len(res.Records) != 1 || res.Records[0].Event.EventID != e.EventID {
		t.Errorf("Append = %+v; want the event stored once", res)
	}
}
