package embedded_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// benchRecord is a 300-byte record (data + metadata) with event_id id.
func benchRecord(id string) store.Proposed {
	meta := fmt.Appendf(nil, `{"schema":1,"event_id":%q,"party":"bench","occurred_at":"2024-03-28T15:04:05Z"}`, id)
	data := make([]byte, 300-len(meta))
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	data[0], data[len(data)-1] = '"', '"'
	return store.Proposed{EventID: id, Type: "StatementIssued", Data: data, Metadata: meta, ContentHash: id}
}

// BenchmarkAppend measures durable appends (each synced before it returns) of
// 300-byte records by concurrent appenders, each to its own stream. One op is one
// append of batch records.
func BenchmarkAppend(b *testing.B) {
	for _, appenders := range []int{1, 32} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("appenders=%d/batch=%d", appenders, batch), func(b *testing.B) {
				benchAppend(b, appenders, batch)
			})
		}
	}
}

func benchAppend(b *testing.B, appenders, batch int) {
	s := open(b, b.TempDir(), nil)
	var seq atomic.Uint64
	proposals := func() []store.Proposed {
		n := seq.Add(1)
		ps := make([]store.Proposed, batch)
		for i := range ps {
			ps[i] = benchRecord(fmt.Sprintf("e-%d-%d", n, i))
		}
		return ps
	}
	work := make(chan []store.Proposed, appenders)
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for a := range appenders {
		stream := fmt.Sprintf("party-bench-%d", a)
		wg.Go(func() {
			for ps := range work {
				if _, err := s.Append(b.Context(), stream, ledger.AnyRevision, ps); err != nil {
					failed.Store(&err)
				}
			}
		})
	}
	syncs := s.Stats().Syncs
	b.ReportAllocs()
	for b.Loop() {
		work <- proposals()
	}
	close(work)
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.N)/float64(s.Stats().Syncs-syncs), "appends/sync")
}

// BenchmarkReadAll measures reading the whole log of 300-byte records in order.
func BenchmarkReadAll(b *testing.B) {
	const records = 100_000
	s := open(b, b.TempDir(), nil)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range records / 8 / 100 {
				ps := make([]store.Proposed, 100)
				for k := range ps {
					ps[k] = benchRecord(fmt.Sprintf("r-%d-%d-%d", w, i, k))
				}
				if _, err := s.Append(b.Context(), fmt.Sprintf("party-r%d", w), ledger.AnyRevision, ps); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, err := range s.ReadAll(b.Context(), ledger.Position{}, store.Filter{}) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != records {
			b.Fatalf("read %d records, want %d", n, records)
		}
	}
	b.ReportMetric(float64(b.N*records)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkFdatasync is the disk's floor for one durable append: write 300 bytes
// into a preallocated file (as Pebble's recycled WAL does) and fdatasync it. It reports
// the median sync latency.
func BenchmarkFdatasync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	rec := make([]byte, 300)
	var lat []time.Duration
	off := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := f.WriteAt(rec, off); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		off = (off + int64(len(rec))) % (size - int64(len(rec)))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "syncs/s")
}
