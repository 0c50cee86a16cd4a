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

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
)

// benchEvent is a small valid statement: one stance, one source. Stored, with the
// metadata every record carries (event_id, times, content hash, recorded_by), it is
// about 440 bytes; of that, about 110 are the body.
func benchEvent(party string) *ledgerv1.Event {
	id := uuid.NewString()
	e := statement(id, party, "msmt-legitimacy", occurred)
	e.Sources[0] = &ledgerv1.Source{Url: "https://kcna.example/" + id[:8]}
	st := e.GetStatementIssued()
	st.StatementId, st.Speaker = id[:8], ""
	st.Stances[0].Summary = "Calls it a fabrication."
	return e
}

// BenchmarkAppend measures durable appends (acknowledged only after the store's sync)
// through gRPC over loopback TCP, one record per append, each client on its own
// connection and its own party, against an embedded store in b.TempDir().
func BenchmarkAppend(b *testing.B) {
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			st := openStore(b)
			ts := start(b, server.Config{Store: st, Now: time.Now})
			conns := make([]ledgerv1.LedgerServiceClient, clients)
			for i := range conns {
				conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { conn.Close() })
				conns[i] = ledgerv1.NewLedgerServiceClient(conn)
			}
			size := storedSize(b, benchEvent("bench-00"))
			stats := st.Stats()
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
			after := st.Stats()
			b.ReportMetric(float64(after.Records-stats.Records)/float64(after.Syncs-stats.Syncs), "records/sync")
			b.ReportMetric(float64(size), "stored-bytes")
		})
	}
}

// storedSize is the size of e as the store keeps it: data plus metadata.
func storedSize(b *testing.B, pe *ledgerv1.Event) int {
	e, err := wire.EventFromProto(pe)
	if err != nil {
		b.Fatal(err)
	}
	enc, err := ledger.Encode(e, time.Now(), server.Anonymous)
	if err != nil {
		b.Fatal(err)
	}
	return len(enc.Data) + len(enc.Metadata)
}

func benchAppend(b *testing.B, c ledgerv1.LedgerServiceClient, party string) {
	_, err := c.Append(b.Context(), &ledgerv1.AppendRequest{Party: party, Events: []*ledgerv1.Event{benchEvent(party)}})
	if err != nil {
		b.Error(err)
	}
}
