package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// TestESDBClientProgramOnLedgerd: a program using only EventStore-Client-Go appends
// to, reads, and subscribes to $all on `ledgerd --esdb-compat-listen`, and sees the
// same records, byte for byte and in the same order, as a replay of the ledger
// (LedgerService.ReadAll, what `ledgerctl replay` prints).
func TestESDBClientProgramOnLedgerd(t *testing.T) {
	node := startLedgerd(t, t.TempDir(), "--esdb-compat-listen", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// Some records through the ledger's own API, some through the EventStoreDB protocol.
	if _, err := node.client().Append(ctx, newBatch("usa", 2).request(nil)); err != nil {
		t.Fatal(err)
	}
	cfg, err := esdbclient.ParseConnectionString("esdb://" + node.compatAddr + "?tls=false")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdbclient.NoopLogging()
	c, err := esdbclient.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var events []esdbclient.EventData
	for i, id := range []string{"esdb-program-1", "esdb-program-2"} {
		e := &ledger.Event{
			EventID: id, Party: "dprk", OccurredAt: time.Date(2025, 6, i+1, 0, 0, 0, 0, time.UTC),
			Sources: []ledger.Source{{URL: "https://example.org/" + id, Publisher: "KCNA", Language: "ko"}},
			Body: &ledger.StatementIssued{StatementID: id, Speaker: "spokesperson", Stances: []ledger.Stance{{
				Topic: "msmt-report-2025-05", Alignment: ledger.AlignmentOpposes, Act: ledger.ActDeny,
			}}},
		}
		enc, err := ledger.Encode(e, time.Now(), "esdb-program")
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, esdbclient.EventData{EventID: uuid.UUID(store.EventUUID(id)), EventType: enc.Type,
			ContentType: esdbclient.ContentTypeJson, Data: enc.Data, Metadata: enc.Metadata})
	}
	if _, err := c.AppendToStream(ctx, "party-dprk", esdbclient.AppendToStreamOptions{ExpectedRevision: esdbclient.NoStream{}}, events...); err != nil {
		t.Fatalf("append with EventStore-Client-Go: %v", err)
	}

	replay := readAll(t, ctx, node.client())
	if len(replay) != 4 {
		t.Fatalf("replay has %d records, want 4", len(replay))
	}
	same := func(what string, got []*esdbclient.RecordedEvent) {
		t.Helper()
		if len(got) != len(replay) {
			t.Fatalf("%s: %d records, replay has %d", what, len(got), len(replay))
		}
		for i, g := range got {
			r := replay[i]
			if g.StreamID != r.GetStream() || g.EventNumber != r.GetRevision() || g.Position.Commit != r.GetPosition().GetCommit() ||
				g.EventType != r.GetStored().GetEventType() || !bytes.Equal(g.Data, r.GetStored().GetData()) ||
				!bytes.Equal(g.UserMetadata, r.GetStored().GetMetadata()) || g.EventID != uuid.UUID(store.EventUUID(r.GetEvent().GetEventId())) {
				t.Errorf("%s[%d] = %s@%d, replay has %s@%d (%s)", what, i, g.StreamID, g.EventNumber, r.GetStream(), r.GetRevision(), r.GetEvent().GetEventId())
			}
		}
	}

	rs, err := c.ReadAll(ctx, esdbclient.ReadAllOptions{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var read []*esdbclient.RecordedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		read = append(read, ev.OriginalEvent())
	}
	rs.Close()
	same("read $all", read)

	sub, err := c.SubscribeToAll(ctx, esdbclient.SubscribeToAllOptions{From: esdbclient.Start{},
		Filter: &esdbclient.SubscriptionFilter{Type: esdbclient.StreamFilterType, Prefixes: []string{"party-"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var subscribed []*esdbclient.RecordedEvent
	for done := false; !done; {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			t.Fatal(ev.SubscriptionDropped.Error)
		case ev.EventAppeared != nil:
			subscribed = append(subscribed, ev.EventAppeared.OriginalEvent())
		case ev.CaughtUp != nil:
			done = true
		}
	}
	same("subscription to $all", subscribed)
}
