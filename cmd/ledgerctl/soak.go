package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
)

// soakOptions are the soak command's flags.
type soakOptions struct {
	duration  time.Duration
	writers   int
	followers int
	batch     int
	every     time.Duration
	pid       int
}

func newSoakCmd() *cobra.Command {
	var o soakOptions
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Hold writers and followers against a ledger for a long time; report errors and memory",
		Long: `soak holds --writers concurrent writers (each appends --batch records at a time to its own
party, with exact expected revisions) and --followers subscribers of the whole log against the
server at --addr for --duration, and prints one line per --report-every: appends and records so
far, records/s and append latency p99 in the interval, errors so far, the slowest follower's lag in
records, and ledgerd's resident memory (VmRSS of --ledgerd-pid, Linux).

At the end every follower must have received every acknowledged record exactly once, in log
order; soak fails when any call failed or a follower missed, repeated or reordered a record.
It is a long-running load test, not part of CI. Every writer and follower has its own
connection; the server's per-principal rate limit applies to them as one principal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSoak(cmd, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.duration, "duration", 10*time.Minute, "how long to hold the load")
	f.IntVar(&o.writers, "writers", 32, "concurrent writers")
	f.IntVar(&o.followers, "followers", 4, "concurrent subscribers of the whole log")
	f.IntVar(&o.batch, "batch", 1, "records per append")
	f.DurationVar(&o.every, "report-every", 10*time.Second, "how often to print a line")
	f.IntVar(&o.pid, "ledgerd-pid", 0, "ledgerd's process id, to report its resident memory (0: not reported)")
	return cmd
}

// soakFollower tracks one subscriber.
type soakFollower struct {
	received atomic.Uint64
	last     atomic.Uint64 // commit of the last record received
	err      atomic.Pointer[error]
}

func runSoak(cmd *cobra.Command, o soakOptions, out io.Writer) error {
	if o.writers < 1 || o.followers < 0 || o.batch < 1 {
		return ledger.Invalid("--writers", "need at least one writer, a batch of at least one and no negative follower count")
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	conns := make([]*client.Client, o.writers+o.followers)
	for i := range conns {
		c, err := dial(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c
	}

	var (
		appends, records, errCount atomic.Uint64
		lastAck                    atomic.Uint64
		firstErr                   atomic.Pointer[error]
		latMu                      sync.Mutex
		latencies                  []time.Duration // every append's
		recent                     []time.Duration // since the last report
	)
	fail := func(err error) {
		errCount.Add(1)
		firstErr.CompareAndSwap(nil, &err)
	}
	// Followers start from the log's current head, so they check exactly this run's records.
	var start ledger.Position
	for r, err := range conns[0].ReadAll(ctx, ledger.Position{}, client.Filter{}) {
		if err != nil {
			return err
		}
		start = r.Position
	}
	followers := make([]*soakFollower, o.followers)
	var fwg sync.WaitGroup
	followCtx, stopFollowers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFollowers()
	for i := range followers {
		f := &soakFollower{}
		f.last.Store(start.Commit)
		followers[i] = f
		c := conns[o.writers+i]
		fwg.Go(func() {
			for m, err := range c.Subscribe(followCtx, start, client.Filter{}) {
				if err != nil {
					if followCtx.Err() == nil {
						f.err.Store(&err)
					}
					return
				}
				if m.CaughtUp || m.Record.Position.Commit == start.Commit && !start.IsZero() {
					continue
				}
				if prev := f.last.Load(); m.Record.Position.Commit <= prev {
					err := fmt.Errorf("follower got position %d after %d", m.Record.Position.Commit, prev)
					f.err.Store(&err)
					return
				}
				f.last.Store(m.Record.Position.Commit)
				f.received.Add(1)
			}
		})
	}

	// Appends are not cut at the deadline (their outcome would be unknown): each writer
	// finishes the one in flight, then stops.
	deadline := time.Now().Add(o.duration)
	var wwg sync.WaitGroup
	for w := range o.writers {
		c := conns[w]
		party := fmt.Sprintf("soak-%d-w%02d", time.Now().Unix()%100000, w)
		wwg.Go(func() {
			expected := ledger.NoStream
			for ctx.Err() == nil && time.Now().Before(deadline) {
				events := make([]*ledger.Event, o.batch)
				for i := range events {
					events[i] = soakEvent(party)
				}
				t0 := time.Now()
				res, err := c.Append(ctx, party, expected, events...)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					fail(fmt.Errorf("%s: %w", party, err))
					time.Sleep(100 * time.Millisecond)
					continue
				}
				latMu.Lock()
				latencies = append(latencies, time.Since(t0))
				recent = append(recent, time.Since(t0))
				latMu.Unlock()
				expected = ledger.ExactRevision(res.NextExpectedRevision)
				appends.Add(1)
				records.Add(uint64(len(res.Records)))
				for {
					cur := lastAck.Load()
					if res.Position.Commit <= cur || lastAck.CompareAndSwap(cur, res.Position.Commit) {
						break
					}
				}
			}
		})
	}

	fmt.Fprintf(out, "soak: %d writers (batch %d), %d followers, %s against %s\n", o.writers, o.batch, o.followers, o.duration, cmd.Flag(flagAddr).Value)
	fmt.Fprintf(out, "%8s %10s %10s %9s %9s %7s %10s %9s\n", "elapsed", "appends", "records", "rec/s", "p99", "errors", "lag(recs)", "rss(MiB)")
	begin := time.Now()
	var prevRecords uint64
	report := func() {
		latMu.Lock()
		p99 := quantile(recent, 0.99)
		recent = recent[:0]
		latMu.Unlock()
		n := records.Load()
		lag := uint64(0)
		for _, f := range followers {
			if a := lastAck.Load(); a > f.last.Load() && a-f.last.Load() > lag {
				lag = a - f.last.Load()
			}
		}
		rss := "-"
		if o.pid > 0 {
			if kb, err := vmRSS(o.pid); err == nil {
				rss = fmt.Sprintf("%.1f", float64(kb)/1024)
			}
		}
		fmt.Fprintf(out, "%8s %10d %10d %9.0f %9s %7d %10d %9s\n", time.Since(begin).Round(time.Second), appends.Load(), n,
			float64(n-prevRecords)/o.every.Seconds(), p99.Round(10*time.Microsecond), errCount.Load(), lag, rss)
		prevRecords = n
	}
	tick := time.NewTicker(o.every)
	done := make(chan struct{})
	go func() { wwg.Wait(); close(done) }()
loop:
	for {
		select {
		case <-tick.C:
			report()
		case <-done:
			break loop
		}
	}
	tick.Stop()

	// Followers must catch up with every acknowledged record.
	want := lastAck.Load()
	catchUp := time.Now().Add(30 * time.Second)
	for time.Now().Before(catchUp) {
		behind := false
		for _, f := range followers {
			behind = behind || (f.last.Load() < want && f.err.Load() == nil)
		}
		if !behind {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopFollowers()
	fwg.Wait()
	var problems []string
	for i, f := range followers {
		if e := f.err.Load(); e != nil {
			problems = append(problems, fmt.Sprintf("follower %d: %v", i, *e))
		}
		if got := f.received.Load(); got != records.Load() {
			problems = append(problems, fmt.Sprintf("follower %d received %d records, %d were acknowledged", i, got, records.Load()))
		}
	}
	if e := firstErr.Load(); e != nil {
		problems = append(problems, fmt.Sprintf("%d calls failed; the first: %v", errCount.Load(), *e))
	}
	elapsed := time.Since(begin)
	latMu.Lock()
	fmt.Fprintf(out, "soak: %d appends, %d records in %s (%.0f records/s); latency p50 %s p99 %s max %s; %d errors\n",
		appends.Load(), records.Load(), elapsed.Round(time.Second), float64(records.Load())/elapsed.Seconds(),
		quantile(latencies, 0.5).Round(10*time.Microsecond), quantile(latencies, 0.99).Round(10*time.Microsecond),
		quantile(latencies, 1).Round(10*time.Microsecond), errCount.Load())
	latMu.Unlock()
	if len(problems) > 0 {
		return errors.New("soak failed:\n  " + strings.Join(problems, "\n  "))
	}
	fmt.Fprintf(out, "soak: every follower received all %d records once, in order\n", records.Load())
	return nil
}

// soakEvent is a small valid statement of party with a fresh event_id.
func soakEvent(party string) *ledger.Event {
	return client.Statement(party, time.Now().Add(-time.Hour), ledger.StatementIssued{
		StatementID: "soak",
		Speaker:     "soak test",
		Stances:     []ledger.Stance{{Topic: "soak-topic", Alignment: ledger.AlignmentSupports, Act: ledger.ActAffirm, Summary: "a soak-test statement of about the usual size"}},
	}, ledger.Source{URL: "https://example.org/soak", Publisher: "Soak", Language: "en"})
}

// quantile returns the q-quantile of ds (q in [0,1]), or 0 when there are none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

// vmRSS reads a process's resident memory in KiB from /proc (Linux only).
func vmRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}
