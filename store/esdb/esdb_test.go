package esdb_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/esdb"
)

// TestAppendReadOverCompat checks the basic path end to end: esdb → EventStoreDB
// protocol → esdbcompat → embedded, and that the bytes come back unchanged.
func TestAppendReadOverCompat(t *testing.T) {
	e := newEndpoint(t, false)
	st := openStore(t, e)
	ctx := t.Context()

	recs := []store.Proposed{encoded(t, "a1", "dprk", 1), encoded(t, "a2", "dprk", 2)}
	res, err := st.Append(ctx, "party-dprk", ledger.NoStream, recs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if res.NextExpectedRevision != 1 || len(res.Records) != 2 || res.AlreadyPresent {
		t.Fatalf("Append result = %+v", res)
	}
	// What the backend returns is what the embedded store holds, byte for byte.
	for i, r := range res.Records {
		want, err := e.st.GetEvent(ctx, recs[i].EventID)
		if err != nil {
			t.Fatalf("embedded GetEvent: %v", err)
		}
		if r.Position != want.Position || r.Revision != want.Revision || !bytes.Equal(r.Data, recs[i].Data) || !bytes.Equal(r.Metadata, recs[i].Metadata) || r.ContentHash != recs[i].ContentHash {
			t.Errorf("record %d = %+v, embedded has %+v", i, r, want)
		}
	}

	// A retry stores nothing and returns the originals.
	again, err := st.Append(ctx, "party-dprk", ledger.NoStream, recs)
	if err != nil || !again.AlreadyPresent || again.Position != res.Position {
		t.Fatalf("retry = %+v, %v; want AlreadyPresent at %v", again, err, res.Position)
	}

	// A conflict carries expected and actual.
	_, err = st.Append(ctx, "party-dprk", ledger.ExactRevision(0), []store.Proposed{encoded(t, "a3", "dprk", 3)})
	var cerr *ledger.ConflictError
	if !errors.As(err, &cerr) || cerr.Actual != 1 || cerr.Expected != ledger.ExactRevision(0) || cerr.Stream != "party-dprk" {
		t.Fatalf("conflict = %v", err)
	}

	got, err := st.GetEvent(ctx, "a2")
	if err != nil || got.Revision != 1 || got.EventID != "a2" {
		t.Fatalf("GetEvent(a2) = %+v, %v", got, err)
	}
	if _, err := st.GetEvent(ctx, "nope"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("GetEvent(nope) = %v, want ErrNotFound", err)
	}
	for _, err := range st.ReadStream(ctx, "party-nobody", store.ReadStreamOptions{}) {
		if !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("ReadStream(missing) = %v, want ErrNotFound", err)
		}
	}
	var back []uint64
	for r, err := range st.ReadStream(ctx, "party-dprk", store.ReadStreamOptions{Backwards: true, FromEnd: true}) {
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, r.Revision)
	}
	if fmt.Sprint(back) != "[1 0]" {
		t.Fatalf("backwards = %v", back)
	}
	var all []string
	for r, err := range st.ReadAll(ctx, res.Records[1].Position, store.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, r.EventID)
	}
	if fmt.Sprint(all) != "[a2]" {
		t.Fatalf("ReadAll from a2's position = %v, want [a2] (from is inclusive)", all)
	}
}

// TestInvalidAppendThroughCompat: the endpoint validates like LedgerService.Append.
func TestInvalidAppendThroughCompat(t *testing.T) {
	e := newEndpoint(t, false)
	st := openStore(t, e)
	ctx := t.Context()

	bad := encoded(t, "b1", "dprk", 1)
	bad.Data = bytes.Replace(bad.Data, []byte("msmt-legitimacy"), []byte("Not A Slug"), 1)
	tests := []struct {
		name   string
		stream string
		rec    store.Proposed
	}{
		{"content hash mismatch", "party-dprk", bad},
		{"party differs from stream", "party-russia", encoded(t, "b2", "dprk", 2)},
		{"not a ledger stream", "other-dprk", encoded(t, "b3", "dprk", 3)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := st.Append(ctx, tc.stream, ledger.AnyRevision, []store.Proposed{tc.rec})
			if !errors.Is(err, ledger.ErrInvalid) {
				t.Fatalf("Append = %v, want ErrInvalid", err)
			}
		})
	}
	for r, err := range e.st.ReadAll(ctx, ledger.Position{}, store.Filter{}) {
		t.Fatalf("the embedded store holds %+v, %v after refused appends", r, err)
	}
}

// TestSubscribeSurvivesEndpointRestart stops the endpoint mid-subscription and starts
// it again: the subscription goes on with no record lost or repeated, operations fail
// with ErrUnavailable (not a hang) while it is down, and recover by themselves.
func TestSubscribeSurvivesEndpointRestart(t *testing.T) {
	e := newEndpoint(t, false)
	st := openStore(t, e)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	appendN := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			party := []string{"dprk", "russia", "msmt"}[i%3]
			rec := encoded(t, fmt.Sprintf("r%03d", i), party, i)
			// Directly to the embedded store, so appends go on while the endpoint is down.
			if _, err := e.st.Append(ctx, ledger.StreamOf(party), ledger.AnyRevision, []store.Proposed{rec}); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
	}
	appendN(0, 40)

	got := make(chan string, 200)
	errc := make(chan error, 1)
	go func() {
		for m, err := range st.Subscribe(ctx, ledger.Position{}, store.Filter{}) {
			if err != nil {
				errc <- err
				return
			}
			if m.CaughtUp {
				got <- "caught-up"
				continue
			}
			got <- m.Record.EventID
		}
	}()
	var seen []string
	wait := func(n int) {
		t.Helper()
		for len(seen) < n {
			select {
			case id := <-got:
				seen = append(seen, id)
			case err := <-errc:
				t.Fatalf("subscription ended: %v", err)
			case <-ctx.Done():
				t.Fatalf("waiting for %d messages, have %d: %v", n, len(seen), seen)
			}
		}
	}
	wait(41) // 40 records and caught-up

	e.stop()
	appendN(40, 60)
	// While the endpoint is down, operations fail with ErrUnavailable within bounds.
	start := time.Now()
	_, err := st.GetEvent(ctx, "r001")
	if !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("GetEvent while down = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("GetEvent while down took %s", d)
	}
	time.Sleep(300 * time.Millisecond)
	e.start()
	appendN(60, 80)
	wait(81)

	var want []string
	for i := range 80 {
		want = append(want, fmt.Sprintf("r%03d", i))
		if i == 39 {
			want = append(want, "caught-up")
		}
	}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Fatalf("subscription saw\n%v\nwant\n%v", seen, want)
	}
	select {
	case id := <-got:
		t.Fatalf("extra message %q", id)
	case <-time.After(200 * time.Millisecond):
	}
	// Operations recover by themselves.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := st.GetEvent(ctx, "r001")
		if err == nil && r.EventID == "r001" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetEvent after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestOpenUnreachable: Open refuses, within its bound, with a message naming the address.
func TestOpenUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	start := time.Now()
	_, err = esdb.Open(t.Context(), "esdb://"+addr+"?tls=false", &esdb.Options{Logger: quiet(t), ConnectTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Open = %v, want an error naming %s", err, addr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Open took %s with a 1s bound", d)
	}
}

// TestDeleteRisks: over a tls=false connection the insecure node is the risk reported;
// the endpoint refuses $settings, as EventStoreDB does for a non-admin user.
func TestDeleteRisks(t *testing.T) {
	st := openStore(t, newEndpoint(t, false))
	risks, err := st.DeleteRisks(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(risks) != 1 || !strings.Contains(risks[0], "tls=false") {
		t.Fatalf("risks = %q, want the insecure connection only", risks)
	}
}
