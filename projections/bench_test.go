package projections

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/embedded"
)

// synthetic produces a reproducible stream of records like a busy ledger's: 200
// parties, 500 topics, statements with one to three stances (a tenth with
// co-signers), reports, vetoes with 15 votes, and 5% corrections of every kind, with
// valid times spread over five years in no particular order.
type synthetic struct {
	rng  *rand.Rand
	n    int
	last map[string][]string // party → its latest stance-bearing event_ids
}

func newSynthetic(seed uint64) *synthetic {
	return &synthetic{rng: rand.New(rand.NewPCG(seed, seed)), last: map[string][]string{}}
}

func (s *synthetic) event() *ledger.Event {
	s.n++
	party := fmt.Sprintf("party-%d", s.rng.IntN(200))
	e := &ledger.Event{
		EventID:    fmt.Sprintf("ev-%d", s.n),
		Party:      party,
		OccurredAt: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(s.rng.IntN(5*365*24)) * time.Hour),
		Sources:    []ledger.Source{{URL: "https://example.org/news/" + fmt.Sprint(s.n), Publisher: "Example", Language: "en"}},
	}
	stances := func() []ledger.Stance {
		out := make([]ledger.Stance, 1+s.rng.IntN(3))
		for i := range out {
			out[i] = ledger.Stance{
				Topic:     fmt.Sprintf("topic-%d", s.rng.IntN(500)),
				Alignment: ledger.Alignment(1 + s.rng.IntN(3)), Act: ledger.ActAffirm,
				Summary: "A summary of what was said, about one line long.", Quote: "The words as reported.",
			}
		}
		return out
	}
	targets := s.last[party]
	switch k := s.rng.IntN(100); {
	case k < 5 && len(targets) > 0:
		c := &ledger.RecordCorrected{CorrectsEventID: targets[s.rng.IntN(len(targets))], Reason: "correction"}
		switch s.rng.IntN(3) {
		case 0:
			c.Withdraw = true
		case 1:
			c.ReplacementStances = stances()
		default:
			t := e.OccurredAt
			c.CorrectedOccurredAt = &t
		}
		e.Body = c
		return e
	case k < 80:
		st := &ledger.StatementIssued{StatementID: e.EventID, Speaker: "spokesperson", Channel: "press briefing", Stances: stances()}
		if s.rng.IntN(10) == 0 {
			st.CoSigners = []string{fmt.Sprintf("party-%d", s.rng.IntN(200)), fmt.Sprintf("party-%d", s.rng.IntN(200))}
		}
		e.Body = st
	case k < 95:
		e.Body = &ledger.ReportPublished{ReportID: e.EventID, Title: "A report", Findings: stances()}
	default:
		v := &ledger.MandateVetoed{Body: "unsc", Mandate: fmt.Sprintf("topic-%d", s.rng.IntN(500))}
		for i := range 15 {
			v.Votes = append(v.Votes, ledger.MemberVote{Party: fmt.Sprintf("party-%d", (s.rng.IntN(13)*15+i)%200), Vote: ledger.Vote(1 + s.rng.IntN(3))})
		}
		e.Body = v
	}
	s.last[party] = append(s.last[party], e.EventID)
	if len(s.last[party]) > 20 {
		s.last[party] = s.last[party][1:]
	}
	return e
}

// batch returns the next n records at positions after pos.
func (s *synthetic) batch(b testing.TB, pos uint64, n int) []store.Record {
	events := make([]*ledger.Event, n)
	for i := range events {
		events[i] = s.event()
	}
	recs := records(b, events)
	for i := range recs {
		recs[i].Position = ledger.Position{Commit: pos + uint64(i) + 1, Prepare: pos + uint64(i) + 1}
	}
	return recs
}

// BenchmarkPositionsApply measures the positions projection's apply rate, in
// batches of 1000 records, into a read model on disk that keeps growing over the
// run (so later batches pay for a larger model).
func BenchmarkPositionsApply(b *testing.B) {
	p, err := OpenPositions(b.TempDir()+"/views/positions", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	p.TrustContent() // as ledgerd does on the embedded store
	gen := newSynthetic(1)
	var pos uint64
	b.ReportAllocs()
	var applied int
	var took, cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		recs := gen.batch(b, pos, 1000)
		b.StartTimer()
		start, startCPU := time.Now(), cpuTime(b)
		if err := p.Apply(recs); err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
		cpu += cpuTime(b) - startCPU
		pos += uint64(len(recs))
		applied += len(recs)
	}
	b.ReportMetric(float64(applied)/took.Seconds(), "records/s")
	b.ReportMetric(float64(applied)/cpu.Seconds(), "records/cpu-s")
}

var rebuildLog = flag.String("rebuild-log", "", "directory of the log BenchmarkRebuild1M reads: filled on the first run, reused after (so a CPU profile shows the rebuild alone)")

// BenchmarkRebuild1M fills an embedded log with 1,000,000 synthetic records once,
// then measures the Runner rebuilding the positions view from position 0: log
// subscription, decoding, folding and committing, end to end.
func BenchmarkRebuild1M(b *testing.B) {
	const total = 1_000_000
	st, filled := openRebuildLog(b)
	if !filled {
		fillRebuildLog(b, st, total)
	}
	last := ledger.Position{Commit: total, Prepare: total}
	b.ReportAllocs()
	for b.Loop() {
		p, err := OpenPositions(b.TempDir()+"/views/positions", nil)
		if err != nil {
			b.Fatal(err)
		}
		p.TrustContent()      // as ledgerd does on the embedded store
		p.LookUpRecordsIn(st) // as ledgerd does
		start, startCPU := time.Now(), cpuTime(b)
		_, stop := startRunner(b, st, nil, p)
		if err := p.WaitFor(context.Background(), last); err != nil {
			b.Fatal(err)
		}
		if testing.Verbose() {
			hwm, _ := peakRSS()
			b.Logf("every record applied after %v (%v of CPU); peak RSS so far %d MiB", time.Since(start), cpuTime(b)-startCPU, hwm>>20)
		}
		// The build ends when it is an ordinary model again (settled, WAL on).
		for p.isBulk() {
			time.Sleep(time.Millisecond)
		}
		took, cpu := time.Since(start), cpuTime(b)-startCPU
		b.ReportMetric(total/took.Seconds(), "records/s")
		// CPU seconds of the whole process (reading the log included): on a machine
		// shared with other work, records per CPU-second is the comparable figure.
		b.ReportMetric(total/cpu.Seconds(), "records/cpu-s")
		if hwm, ok := peakRSS(); ok {
			// The whole process: the log (its Pebble caches) and the view.
			b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
		}
		if testing.Verbose() {
			// The build was compacted before it reopened: no compaction debt is left.
			p.mu.RLock()
			b.Logf("after the build:\n%s", p.db.Metrics())
			p.mu.RUnlock()
		}
		stop()
		p.Close()
	}
}

// openRebuildLog opens the log of BenchmarkRebuild1M: in a temporary directory, or
// in -rebuild-log, where filled says whether an earlier run completed it.
func openRebuildLog(b *testing.B) (st *embedded.Store, filled bool) {
	dir := *rebuildLog
	if dir == "" {
		return openTestStore(b), false
	}
	_, err := os.Stat(filepath.Join(dir, "filled"))
	filled = err == nil
	if !filled {
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
	}
	st, err = embedded.Open(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st, filled
}

// fillRebuildLog appends total synthetic records to st.
func fillRebuildLog(b *testing.B, st *embedded.Store, total uint64) {
	gen := newSynthetic(2)
	// Appends are per stream, and each is synced: append each party's records of a
	// window of 50,000 together (its order kept, so a correction still follows the
	// record it corrects).
	for pos := uint64(0); pos < total; pos += 50_000 {
		byParty := map[string][]store.Proposed{}
		var order []string
		for _, r := range gen.batch(b, pos, 50_000) {
			if _, ok := byParty[r.Stream]; !ok {
				order = append(order, r.Stream)
			}
			byParty[r.Stream] = append(byParty[r.Stream], store.Proposed{EventID: r.EventID, Type: r.Type, Data: r.Data, Metadata: r.Metadata, ContentHash: r.ContentHash})
		}
		for _, stream := range order {
			if _, err := st.Append(context.Background(), stream, ledger.AnyRevision, byParty[stream]); err != nil {
				b.Fatal(err)
			}
		}
	}
	if *rebuildLog != "" {
		if err := os.WriteFile(filepath.Join(*rebuildLog, "filled"), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// benchModel is a positions model of 200,000 synthetic records for query benchmarks.
func benchModel(b *testing.B) *Positions {
	p, err := OpenPositions(b.TempDir()+"/views/positions", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	gen := newSynthetic(3)
	for pos := uint64(0); pos < 200_000; pos += 1000 {
		if err := p.Apply(gen.batch(b, pos, 1000)); err != nil {
			b.Fatal(err)
		}
	}
	// Caught up: the bulk build becomes the ordinary model queries meet in ledgerd.
	if err := p.CaughtUp(); err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkPositionsQueries(b *testing.B) {
	p := benchModel(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(4, 4))
	pick := func() (string, string) {
		return fmt.Sprintf("party-%d", rng.IntN(200)), fmt.Sprintf("topic-%d", rng.IntN(500))
	}
	b.Run("GetPosition/current", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			party, topic := pick()
			if _, _, err := p.Get(ctx, party, topic, Query{}); err != nil && !isNotFound(err) {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetPosition/as-of-time-and-position", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			party, topic := pick()
			q := Query{
				AsOfTime:     time.Date(2020+rng.IntN(5), 6, 1, 0, 0, 0, 0, time.UTC),
				AsOfPosition: ledger.Position{Commit: uint64(1 + rng.IntN(200_000)), Prepare: 0},
			}
			q.AsOfPosition.Prepare = q.AsOfPosition.Commit
			if _, _, err := p.Get(ctx, party, topic, q); err != nil && !isNotFound(err) {
				b.Fatal(err)
			}
		}
	})
	b.Run("ListPositions/party/current", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			party, _ := pick()
			if _, _, _, err := p.List(ctx, ListFilter{Party: party, Limit: 100}, Query{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ListPositions/topic/as-of-time", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, topic := pick()
			q := Query{AsOfTime: time.Date(2020+rng.IntN(5), 6, 1, 0, 0, 0, 0, time.UTC)}
			if _, _, _, err := p.List(ctx, ListFilter{Topic: topic, Limit: 100}, q); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// peakRSS returns the process's peak resident set size (VmHWM) in bytes, where
// /proc says it (Linux).
func peakRSS() (int64, bool) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(status)) {
		if kb, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(kb), " kB"), 10, 64)
			return n << 10, err == nil
		}
	}
	return 0, false
}

// cpuTime is the CPU time (user + system) the process has used.
func cpuTime(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (p *Positions) isBulk() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.bulk
}
