package server_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
)

// benchEvent is a valid statement whose stored form is about 300 bytes of data plus metadata.
func benchEvent(party string) *ledgerv1.Event {
	id := uuid.NewString()
	e := statement(id, party, "msmt-legitimacy", occurred)
	e.Sources[0].Url = "https://example.org/s/" + id[:8]
	return e
}

// BenchmarkAppend measures durable appends (acknowledged only after the store's sync)
// through gRPC over loopback TCP, one record per append, each client on its own
// connection and its own party, against an embedded store in b.TempDir().
func BenchmarkAppend(b *testing.B) {
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			ts := start(b, server.Config{Now: time.Now})
			conns := make([]ledgerv1.LedgerServiceClient, clients)
			for i := range conns {
				conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { conn.Close() })
				conns[i] = ledgerv1.NewLedgerServiceClient(conn)
			}
			size := proto.Size(benchEvent("bench-00"))
			b.ReportAllocs()
			b.ResetTimer()
			if clients == 1 {
				for b.Loop() {
					benchAppend(b, conns[0], "bench-00")
				}
			} else {
				var next atomic.Int64
				// RunParallel starts parallelism × GOMAXPROCS goroutines.
				procs := runtime.GOMAXPROCS(0)
				b.SetParallelism((clients + procs - 1) / procs)
				b.RunParallel(func(pb *testing.PB) {
					i := int(next.Add(1)-1) % clients
					party := fmt.Sprintf("bench-%02d", i)
					for pb.Next() {
						benchAppend(b, conns[i], party)
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(size), "event-bytes")
		})
	}
}

func benchAppend(b *testing.B, c ledgerv1.LedgerServiceClient, party string) {
	_, err := c.Append(b.Context(), &ledgerv1.AppendRequest{Party: party, Events: []*ledgerv1.Event{benchEvent(party)}})
	if err != nil {
		b.Error(err)
	}
}
