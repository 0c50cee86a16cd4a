package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// esdbNode starts a ledgerd on the embedded store that also serves EventStoreDB's
// protocol (--esdb-compat-listen), and returns it and the esdb:// connection string
// another ledgerd uses as its --store. It stands in for an EventStoreDB node.
func esdbNode(t *testing.T, data string, extra ...string) (*ledgerd, string) {
	t.Helper()
	node := startLedgerd(t, data, append([]string{"--esdb-compat-listen", "127.0.0.1:0"}, extra...)...)
	if node.compatAddr == "" {
		t.Fatal("ledgerd printed no esdb-compat address")
	}
	return node, "esdb://" + node.compatAddr + "?tls=false"
}

// TestCrashKill9ESDB is TestCrashKill9 with --store esdb:// against the compatible
// endpoint: appends through the EventStoreDB backend survive kill -9 the same way.
func TestCrashKill9ESDB(t *testing.T) {
	_, url := esdbNode(t, t.TempDir())
	runCrashKill9(t, "--store", url)
}

// TestLedgerdOnESDBSeesTheSameLog: records appended through a ledgerd on --store esdb://
// are the node's records, in the same order, with the same bytes.
func TestLedgerdOnESDBSeesTheSameLog(t *testing.T) {
	node, url := esdbNode(t, t.TempDir())
	p := startLedgerd(t, t.TempDir(), "--store", url)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b := newBatch("esdb-e2e", 3)
	resp, err := p.client().Append(ctx, b.request(nil))
	if err != nil {
		t.Fatalf("append through --store esdb://: %v", err)
	}
	if _, err := p.client().Append(ctx, b.request(nil)); err != nil {
		t.Fatalf("retry through --store esdb://: %v", err)
	}
	via := readAll(t, ctx, p.client())
	direct := readAll(t, ctx, node.client())
	if len(via) != 3 || len(direct) != 3 {
		t.Fatalf("%d records through esdb, %d on the node, want 3 (append answered %v)", len(via), len(direct), resp)
	}
	for i := range via {
		if !proto.Equal(via[i], direct[i]) {
			t.Errorf("record %d differs:\nvia esdb %v\nnode     %v", i, via[i], direct[i])
		}
	}
	p.stop()
}

// TestFollowSurvivesESDBRestart: a Subscribe (what `ledgerctl replay --follow` uses) on
// a ledgerd with --store esdb:// goes on with no record lost or repeated while its
// EventStoreDB (here a ledgerd serving --esdb-compat-listen) is killed and started
// again on the same data and address; appends fail while it is down and work after.
// Its projections go on too: its Merkle tree ends equal to the node's, record for record.
func TestFollowSurvivesESDBRestart(t *testing.T) {
	nodeData := t.TempDir()
	fast := []string{"--checkpoint-interval", "100ms"}
	node, url := esdbNode(t, nodeData, fast...)
	p := startLedgerd(t, t.TempDir(), append([]string{"--store", url}, fast...)...)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	var want []string
	appendBatch := func(c ledgerv1.LedgerServiceClient) {
		t.Helper()
		b := newBatch("follow", 2)
		if _, err := c.Append(ctx, b.request(nil)); err != nil {
			t.Fatalf("append: %v", err)
		}
		want = append(want, b.ids...)
	}
	appendBatch(p.client())
	appendBatch(p.client())

	sub, err := p.client().Subscribe(ctx, &ledgerv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		got      []string
		last     *ledgerv1.Position
		caughtUp int
	)
	recv := func(n int) {
		t.Helper()
		for len(got) < n {
			m, err := sub.Recv()
			if err != nil {
				t.Fatalf("Subscribe after %d records: %v", len(got), err)
			}
			if m.GetCaughtUp() != nil {
				caughtUp++
				continue
			}
			got = append(got, m.GetEvent().GetEvent().GetEventId())
			last = m.GetEvent().GetPosition()
		}
	}
	recv(4)

	node.kill()
	// While EventStoreDB is away, appends fail with Unavailable rather than hang.
	actx, acancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = p.client().Append(actx, newBatch("follow", 1).request(nil))
	acancel()
	if status.Code(err) != codes.Unavailable {
		t.Errorf("append while EventStoreDB is down: %v, want Unavailable", err)
	}
	node = startLedgerd(t, nodeData, append([]string{"--esdb-compat-listen", node.compatAddr}, fast...)...)
	appendBatch(node.client()) // straight to the node
	// The follower's store reconnects by itself; its appends work again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b := newBatch("follow", 2)
		_, err := p.client().Append(ctx, b.request(nil))
		if err == nil {
			want = append(want, b.ids...)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("append after EventStoreDB came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	recv(len(want))
	if strings.Join(got, ",") != strings.Join(want, ",") || caughtUp != 1 {
		t.Fatalf("followed %v (caught up %d times), want %v once caught up", got, caughtUp, want)
	}

	checkpoint := func(l *ledgerd) *ledgerv1.Checkpoint {
		t.Helper()
		resp, err := ledgerv1.NewIntegrityServiceClient(l.conn).GetCheckpoint(ctx, &ledgerv1.GetCheckpointRequest{Covering: last})
		if err != nil {
			t.Fatalf("GetCheckpoint: %v", err)
		}
		return resp.GetCheckpoint()
	}
	mine, theirs := checkpoint(p), checkpoint(node)
	if mine.GetSize() != uint64(len(want)) || theirs.GetSize() != mine.GetSize() || !bytes.Equal(mine.GetRootHash(), theirs.GetRootHash()) {
		t.Fatalf("checkpoints: over esdb size %d root %x, on the node size %d root %x; want %d records and equal roots",
			mine.GetSize(), mine.GetRootHash(), theirs.GetSize(), theirs.GetRootHash(), len(want))
	}
}
