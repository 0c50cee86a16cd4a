package e2e

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// esdbNode starts a ledgerd on the embedded store that also serves EventStoreDB's
// protocol (--esdb-compat-listen), and returns it and the esdb:// connection string
// another ledgerd uses as its --store. It stands in for an EventStoreDB node.
func esdbNode(t *testing.T) (*ledgerd, string) {
	t.Helper()
	node := startLedgerd(t, t.TempDir(), "--esdb-compat-listen", "127.0.0.1:0")
	if node.compatAddr == "" {
		t.Fatal("ledgerd printed no esdb-compat address")
	}
	return node, "esdb://" + node.compatAddr + "?tls=false"
}

// TestCrashKill9ESDB is TestCrashKill9 with --store esdb:// against the compatible
// endpoint: appends through the EventStoreDB backend survive kill -9 the same way.
func TestCrashKill9ESDB(t *testing.T) {
	_, url := esdbNode(t)
	runCrashKill9(t, "--store", url)
}

// TestLedgerdOnESDBSeesTheSameLog: records appended through a ledgerd on --store esdb://
// are the node's records, in the same order, with the same bytes.
func TestLedgerdOnESDBSeesTheSameLog(t *testing.T) {
	node, url := esdbNode(t)
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
