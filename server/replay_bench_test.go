package server_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store"
)

// BenchmarkReadAll measures replay: ReadAll of a whole log of 10,000 records over
// gRPC on loopback TCP to one client that decodes and drops each record. One op is
// one record; allocations are per record, client and server together.
func BenchmarkReadAll(b *testing.B) {
	const records = 10_000
	st := openStore(b)
	now := time.Now()
	for i := range records / 100 {
		ps := make([]store.Proposed, 100)
		for j := range ps {
			e, err := wire.EventFromProto(benchEvent(fmt.Sprintf("replay-%02d", i%32)))
			if err != nil {
				b.Fatal(err)
			}
			enc, err := ledger.Encode(e, now, server.Anonymous)
			if err != nil {
				b.Fatal(err)
			}
			ps[j] = store.Proposed{EventID: enc.EventID, Type: enc.Type, Data: enc.Data, Metadata: enc.Metadata, ContentHash: enc.ContentHash}
		}
		if _, err := st.Append(b.Context(), ledger.StreamOf(fmt.Sprintf("replay-%02d", i%32)), ledger.AnyRevision, ps); err != nil {
			b.Fatal(err)
		}
	}
	ts := start(b, server.Config{Store: st})
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	lc := ledgerv1.NewLedgerServiceClient(conn)
	b.ReportAllocs()
	var m ledgerv1.ReadAllResponse
	var stream ledgerv1.LedgerService_ReadAllClient
	for b.Loop() {
		if stream == nil {
			if stream, err = lc.ReadAll(b.Context(), &ledgerv1.ReadAllRequest{}); err != nil {
				b.Fatal(err)
			}
		}
		err := stream.RecvMsg(&m)
		if err == io.EOF {
			stream = nil // the log ended: read it again from the start
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
