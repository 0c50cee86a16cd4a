package esdb_test

import (
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/embedded"
	"github.com/stanceledger/ledger/store/esdb"
	"github.com/stanceledger/ledger/store/esdbcompat"
)

// quiet discards logs unless the test runs verbose.
func quiet(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// endpoint is an esdbcompat server over an embedded store, on a fixed loopback
// address chosen at first start, so it can be stopped and started again.
type endpoint struct {
	t    testing.TB
	st   *embedded.Store
	addr string
	srv  *grpc.Server
	// trust makes the endpoint store appends unvalidated (esdbcompat.Options.TrustAppends).
	trust bool
}

// newEndpoint opens an embedded store in a temporary directory and serves it.
func newEndpoint(t testing.TB, trust bool) *endpoint {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatalf("embedded.Open: %v", err)
	}
	e := &endpoint{t: t, st: st, addr: "127.0.0.1:0", trust: trust}
	e.start()
	t.Cleanup(func() {
		e.stop()
		if err := st.Close(); err != nil {
			t.Errorf("embedded Close: %v", err)
		}
	})
	return e
}

func (e *endpoint) start() {
	e.t.Helper()
	var (
		lis net.Listener
		err error
	)
	// After a stop the port may take a moment to be free again.
	for range 50 {
		if lis, err = net.Listen("tcp", e.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatalf("listen %s: %v", e.addr, err)
	}
	e.addr = lis.Addr().String()
	e.srv = grpc.NewServer()
	esdbcompat.New(e.st, &esdbcompat.Options{Logger: quiet(e.t), TrustAppends: e.trust}).Register(e.srv)
	go func() { _ = e.srv.Serve(lis) }()
}

func (e *endpoint) stop() {
	if e.srv != nil {
		e.srv.Stop()
		e.srv = nil
	}
}

func (e *endpoint) url() string { return "esdb://" + e.addr + "?tls=false" }

// openStore opens store/esdb against e with short timeouts.
func openStore(t testing.TB, e *endpoint) *esdb.Store {
	t.Helper()
	ctx := t.Context()
	st, err := esdb.Open(ctx, e.url(), &esdb.Options{
		Logger:         quiet(t),
		ConnectTimeout: 5 * time.Second,
		OpTimeout:      2 * time.Second,
		MinBackoff:     20 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("esdb.Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

var epoch = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// statement is a valid ledger event of party.
func statement(id, party string, i int) *ledger.Event {
	return &ledger.Event{
		EventID:    id,
		Party:      party,
		OccurredAt: epoch.Add(time.Duration(i) * time.Hour),
		Sources:    []ledger.Source{{URL: "https://example.org/" + id, Publisher: "KCNA", Language: "en"}},
		Body: &ledger.StatementIssued{
			StatementID: "st-" + id,
			Speaker:     "spokesperson",
			Stances: []ledger.Stance{{
				Topic: "msmt-legitimacy", Alignment: ledger.AlignmentOpposes, Act: ledger.ActDeny,
				Summary: fmt.Sprintf("statement %d", i),
			}},
		},
	}
}

// encoded is statement(...) in its stored bytes.
func encoded(t testing.TB, id, party string, i int) store.Proposed {
	t.Helper()
	e := statement(id, party, i)
	if err := ledger.ValidateAppend(t.Context(), party, []*ledger.Event{e}, epoch.Add(1000*time.Hour), ledger.DefaultLimits, nil); err != nil {
		t.Fatalf("test event invalid: %v", err)
	}
	enc, err := ledger.Encode(e, epoch.Add(time.Duration(i)*time.Minute), "test")
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return store.Proposed{EventID: enc.EventID, Type: enc.Type, Data: enc.Data, Metadata: enc.Metadata, ContentHash: enc.ContentHash}
}
