package esdb_test

import (
	"fmt"
	"testing"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// BenchmarkAppendOverCompat measures an append through store/esdb over the wire
// protocol to esdbcompat and the embedded store: index reads, the append, the
// read-back and the index writes (docs/eventstoredb.md, "Index streams").
func BenchmarkAppendOverCompat(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			e := newEndpoint(b, false)
			st := openStore(b, e)
			k := 0
			b.ReportAllocs()
			for b.Loop() {
				recs := make([]store.Proposed, n)
				for i := range recs {
					k++
					recs[i] = encoded(b, fmt.Sprintf("bench-%d", k), "dprk", k%1000)
				}
				if _, err := st.Append(b.Context(), "party-dprk", ledger.AnyRevision, recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkGetEventOverCompat measures GetEvent: the index entry, then the record.
func BenchmarkGetEventOverCompat(b *testing.B) {
	e := newEndpoint(b, false)
	st := openStore(b, e)
	if _, err := st.Append(b.Context(), "party-dprk", ledger.AnyRevision, []store.Proposed{encoded(b, "get-1", "dprk", 1)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.GetEvent(b.Context(), "get-1"); err != nil {
			b.Fatal(err)
		}
	}
}
