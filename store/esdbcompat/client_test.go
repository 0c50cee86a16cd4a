package esdbcompat_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/embedded"
	"github.com/stanceledger/ledger/store/esdbcompat"
)

// serve starts the endpoint over a fresh embedded store and returns the store and a
// client made with EventStore-Client-Go alone, as any EventStoreDB program would.
func serve(t *testing.T) (*embedded.Store, *esdbclient.Client) {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	esdbcompat.New(st, nil).Register(g)
	go func() { _ = g.Serve(lis) }()
	cfg, err := esdbclient.ParseConnectionString("esdb://" + lis.Addr().String() + "?tls=false")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdbclient.NoopLogging()
	c, err := esdbclient.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		g.Stop()
		st.Close()
	})
	return st, c
}

var epoch = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// eventData is a valid ledger record as an EventStoreDB program writes it: the bytes
// of ledger.Encode, the record type as event type, the UUIDv5 of the event_id.
func eventData(t *testing.T, id, party string, i int) esdbclient.EventData {
	t.Helper()
	e := &ledger.Event{
		EventID: id, Party: party, OccurredAt: epoch.Add(time.Duration(i) * time.Hour),
		Sources: []ledger.Source{{URL: "https://example.org/" + id, Publisher: "KCNA", Language: "en"}},
		Body: &ledger.StatementIssued{StatementID: "st-" + id, Speaker: "spokesperson", Stances: []ledger.Stance{{
			Topic: "msmt-legitimacy", Alignment: ledger.AlignmentOpposes, Act: ledger.ActDeny,
		}}},
	}
	enc, err := ledger.Encode(e, epoch, "esdb-program")
	if err != nil {
		t.Fatal(err)
	}
	return esdbclient.EventData{
		EventID: uuid.UUID(store.EventUUID(id)), EventType: enc.Type, ContentType: esdbclient.ContentTypeJson,
		Data: enc.Data, Metadata: enc.Metadata,
	}
}

func readAll(t *testing.T, rs *esdbclient.ReadStream, err error) []*esdbclient.RecordedEvent {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []*esdbclient.RecordedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.OriginalEvent())
	}
}

// code is the client's error code of err, or -1 for nil and foreign errors.
func code(err error) esdbclient.ErrorCode {
	var ee *esdbclient.Error
	if errors.As(err, &ee) {
		return ee.Code()
	}
	return -1
}

func ids(evs []*esdbclient.RecordedEvent) string {
	var s []string
	for _, e := range evs {
		s = append(s, fmt.Sprintf("%s@%d", e.StreamID, e.EventNumber))
	}
	return strings.Join(s, " ")
}

// TestClientProgram appends, reads and subscribes to $all with EventStore-Client-Go
// only, and sees the same records, byte for byte, as a replay of the store.
func TestClientProgram(t *testing.T) {
	st, c := serve(t)
	ctx := t.Context()

	// Append.
	wr, err := c.AppendToStream(ctx, "party-dprk", esdbclient.AppendToStreamOptions{ExpectedRevision: esdbclient.NoStream{}},
		eventData(t, "e1", "dprk", 1), eventData(t, "e2", "dprk", 2))
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if wr.NextExpectedVersion != 1 || wr.CommitPosition != 2 {
		t.Fatalf("write result = %+v", wr)
	}
	if _, err := c.AppendToStream(ctx, "party-russia", esdbclient.AppendToStreamOptions{}, eventData(t, "e3", "russia", 3)); err != nil {
		t.Fatalf("append: %v", err)
	}
	_, err = c.AppendToStream(ctx, "party-dprk", esdbclient.AppendToStreamOptions{ExpectedRevision: esdbclient.Revision(0)}, eventData(t, "e4", "dprk", 4))
	if code(err) != esdbclient.ErrorCodeWrongExpectedVersion {
		t.Fatalf("append at a stale revision = %v, want WrongExpectedVersion", err)
	}

	// The records as the store replays them.
	var replay []store.Record
	for r, err := range st.ReadAll(ctx, ledger.Position{}, store.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		replay = append(replay, r)
	}
	same := func(t *testing.T, what string, got []*esdbclient.RecordedEvent, want []store.Record) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %s, want %d records", what, ids(got), len(want))
		}
		for i, g := range got {
			w := want[i]
			if g.StreamID != w.Stream || g.EventNumber != w.Revision || g.Position.Commit != w.Position.Commit ||
				g.EventType != w.Type || !bytes.Equal(g.Data, w.Data) || !bytes.Equal(g.UserMetadata, w.Metadata) ||
				g.EventID != uuid.UUID(store.EventUUID(w.EventID)) || g.ContentType != "application/json" || !g.CreatedDate.Equal(epoch) {
				t.Errorf("%s[%d] = %+v, store has %+v", what, i, g, w)
			}
		}
	}

	t.Run("read $all forwards", func(t *testing.T) {
		rs, err := c.ReadAll(ctx, esdbclient.ReadAllOptions{}, 100)
		same(t, "$all", readAll(t, rs, err), replay)
	})
	t.Run("read $all backwards", func(t *testing.T) {
		rs, err := c.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: esdbclient.Backwards, From: esdbclient.End{}}, 2)
		same(t, "$all backwards", readAll(t, rs, err), []store.Record{replay[2], replay[1]})
	})
	t.Run("read stream", func(t *testing.T) {
		rs, err := c.ReadStream(ctx, "party-dprk", esdbclient.ReadStreamOptions{From: esdbclient.Revision(1)}, 10)
		same(t, "party-dprk from 1", readAll(t, rs, err), replay[1:2])
		rs, err = c.ReadStream(ctx, "party-dprk", esdbclient.ReadStreamOptions{Direction: esdbclient.Backwards, From: esdbclient.End{}}, 1)
		same(t, "party-dprk last", readAll(t, rs, err), replay[1:2])
	})
	t.Run("read missing stream", func(t *testing.T) {
		rs, err := c.ReadStream(ctx, "party-usa", esdbclient.ReadStreamOptions{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		_, err = rs.Recv()
		if code(err) != esdbclient.ErrorCodeResourceNotFound {
			t.Fatalf("Recv = %v, want ResourceNotFound", err)
		}
	})

	t.Run("subscribe to $all", func(t *testing.T) {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		sub, err := c.SubscribeToAll(sctx, esdbclient.SubscribeToAllOptions{
			From:   esdbclient.Start{},
			Filter: &esdbclient.SubscriptionFilter{Type: esdbclient.StreamFilterType, Prefixes: []string{"party-"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		var got []*esdbclient.RecordedEvent
		caughtUp := false
		for len(got) < 4 {
			ev := sub.Recv()
			switch {
			case ev.SubscriptionDropped != nil:
				t.Fatalf("dropped: %v", ev.SubscriptionDropped.Error)
			case ev.CaughtUp != nil:
				if caughtUp || len(got) != 3 {
					t.Fatalf("caught up after %d events (again: %v)", len(got), caughtUp)
				}
				caughtUp = true
				// Live: an append after catching up arrives too.
				if _, err := c.AppendToStream(ctx, "party-msmt", esdbclient.AppendToStreamOptions{}, eventData(t, "e5", "msmt", 5)); err != nil {
					t.Fatal(err)
				}
			case ev.EventAppeared != nil:
				got = append(got, ev.EventAppeared.OriginalEvent())
			}
		}
		r, err := st.GetEvent(ctx, "e5")
		if err != nil {
			t.Fatal(err)
		}
		same(t, "subscription", got, append(replay[:3:3], r))
	})
}

// TestFilterCheckpoints: an event-type filter passes only that type, and checkpoints
// come every max-search-window × multiplier scanned records.
func TestFilterCheckpoints(t *testing.T) {
	_, c := serve(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for i := range 10 {
		if _, err := c.AppendToStream(ctx, "party-dprk", esdbclient.AppendToStreamOptions{}, eventData(t, fmt.Sprintf("f%d", i), "dprk", i)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name        string
		filter      esdbclient.SubscriptionFilter
		wantEvents  int
		checkpoints []uint64
	}{
		{"type matches", esdbclient.SubscriptionFilter{Type: esdbclient.EventFilterType, Prefixes: []string{"Statement"}}, 10, []uint64{4, 8, 10}},
		{"type does not match", esdbclient.SubscriptionFilter{Type: esdbclient.EventFilterType, Regex: "^Report"}, 0, []uint64{4, 8, 10}},
		{"stream prefix", esdbclient.SubscriptionFilter{Type: esdbclient.StreamFilterType, Prefixes: []string{"party-r"}}, 0, []uint64{4, 8, 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := c.SubscribeToAll(ctx, esdbclient.SubscribeToAllOptions{From: esdbclient.Start{}, Filter: &tc.filter, MaxSearchWindow: 2, CheckpointInterval: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			events := 0
			var cps []uint64
			for done := false; !done; {
				ev := sub.Recv()
				switch {
				case ev.SubscriptionDropped != nil:
					t.Fatal(ev.SubscriptionDropped.Error)
				case ev.EventAppeared != nil:
					events++
				case ev.CheckPointReached != nil:
					cps = append(cps, ev.CheckPointReached.Commit)
				case ev.CaughtUp != nil:
					done = true
				}
			}
			if events != tc.wantEvents || fmt.Sprint(cps) != fmt.Sprint(tc.checkpoints) {
				t.Fatalf("events %d checkpoints %v, want %d and %v", events, cps, tc.wantEvents, tc.checkpoints)
			}
		})
	}
}

// TestRefusals: deletes are refused, and so is anything that is not a valid record;
// nothing is stored then.
func TestRefusals(t *testing.T) {
	st, c := serve(t)
	ctx := t.Context()
	if _, err := c.AppendToStream(ctx, "party-dprk", esdbclient.AppendToStreamOptions{}, eventData(t, "x1", "dprk", 1)); err != nil {
		t.Fatal(err)
	}
	_, err := c.DeleteStream(ctx, "party-dprk", esdbclient.DeleteStreamOptions{})
	if code(err) != esdbclient.ErrorCodeAccessDenied {
		t.Errorf("DeleteStream = %v, want AccessDenied", err)
	}
	_, err = c.TombstoneStream(ctx, "party-dprk", esdbclient.TombstoneStreamOptions{})
	if code(err) != esdbclient.ErrorCodeAccessDenied {
		t.Errorf("TombstoneStream = %v, want AccessDenied", err)
	}

	good := eventData(t, "x2", "dprk", 2)
	tests := []struct {
		name   string
		stream string
		ev     esdbclient.EventData
	}{
		{"not JSON", "party-dprk", esdbclient.EventData{EventID: good.EventID, EventType: good.EventType, ContentType: esdbclient.ContentTypeBinary, Data: good.Data, Metadata: good.Metadata}},
		{"unknown type", "party-dprk", esdbclient.EventData{EventID: good.EventID, EventType: "Whatever", ContentType: esdbclient.ContentTypeJson, Data: good.Data, Metadata: good.Metadata}},
		{"random id", "party-dprk", esdbclient.EventData{EventID: uuid.New(), EventType: good.EventType, ContentType: esdbclient.ContentTypeJson, Data: good.Data, Metadata: good.Metadata}},
		{"foreign stream", "orders-1", good},
		{"wrong party", "party-russia", good},
		{"tampered data", "party-dprk", esdbclient.EventData{EventID: good.EventID, EventType: good.EventType, ContentType: esdbclient.ContentTypeJson, Data: bytes.Replace(good.Data, []byte("spokesperson"), []byte("someone"), 1), Metadata: good.Metadata}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.AppendToStream(ctx, tc.stream, esdbclient.AppendToStreamOptions{}, tc.ev)
			if err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
				t.Fatalf("append = %v, want InvalidArgument", err)
			}
		})
	}
	n := 0
	for _, err := range st.ReadAll(ctx, ledger.Position{}, store.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("store holds %d records, want 1", n)
	}
	v, err := c.GetServerVersion()
	if err != nil || v.Major != 24 {
		t.Fatalf("server version = %+v, %v", v, err)
	}
}

// TestSubscribeToStream: a stream subscription from the start, from a revision (after
// it, as in EventStoreDB) and from the end, each catching up and then going live.
func TestSubscribeToStream(t *testing.T) {
	_, c := serve(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := c.AppendToStream(ctx, "party-dprk", esdbclient.AppendToStreamOptions{}, eventData(t, fmt.Sprintf("s%d", i), "dprk", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.AppendToStream(ctx, "party-russia", esdbclient.AppendToStreamOptions{}, eventData(t, fmt.Sprintf("o%d", i), "russia", i)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		from esdbclient.StreamPosition
		// Revisions before CaughtUp, then the live one; each subtest appends one more
		// record to party-dprk, so the stream grows from subtest to subtest.
		want string
	}{
		{"start", esdbclient.Start{}, "0 1 2 | 3"},
		{"after revision 1", esdbclient.Revision(1), "2 3 | 4"},
		{"end", esdbclient.End{}, "| 5"},
	}
	live := 3
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := c.SubscribeToStream(ctx, "party-dprk", esdbclient.SubscribeToStreamOptions{From: tc.from})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			var got []string
			for !strings.Contains(strings.Join(got, " "), "|") || got[len(got)-1] == "|" {
				ev := sub.Recv()
				switch {
				case ev.SubscriptionDropped != nil:
					t.Fatal(ev.SubscriptionDropped.Error)
				case ev.CaughtUp != nil:
					got = append(got, "|")
					// The live record: appended to dprk after another stream's record.
					if _, err := c.AppendToStream(ctx, "party-russia", esdbclient.AppendToStreamOptions{}, eventData(t, fmt.Sprintf("o%d", live), "russia", live)); err != nil {
						t.Fatal(err)
					}
					if _, err := c.AppendToStream(ctx, "party-dprk", esdbclient.AppendToStreamOptions{}, eventData(t, fmt.Sprintf("s%d", live), "dprk", live)); err != nil {
						t.Fatal(err)
					}
					live++
				case ev.EventAppeared != nil:
					e := ev.EventAppeared.OriginalEvent()
					if e.StreamID != "party-dprk" {
						t.Fatalf("event of %s in a party-dprk subscription", e.StreamID)
					}
					got = append(got, strconv.FormatUint(e.EventNumber, 10))
				}
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Fatalf("got %q, want %q", g, tc.want)
			}
		})
	}
}
