package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// benchOptions are the bench command's flags.
type benchOptions struct {
	duration   time.Duration
	clients    []int
	batches    []int
	size       int
	json       bool
	spawn      bool
	ledgerd    string
	dataDir    string
	metricsURL string
	maxRecords uint64
	// ledgerdArgs are more flags for a spawned ledgerd.
	ledgerdArgs []string
}

func newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the ledger next to this machine's limits, in one run",
		Long: `bench measures a ledgerd (--addr, or a fresh one with --spawn) next to the machine's own
limits, in one run, and prints each ledger figure with its ceiling as a ratio:

floors (the ceilings)
  health    gRPC health Check (overall status) rate and latency, at 1 client and at each
            --clients count (so always at 1 and 32), each client on its own connection
  fdatasync 256-byte writes each followed by fdatasync, appended to a growing file and
            overwriting preallocated space, on a temporary file in the data directory
            (--spawn: ledgerd's; else --data-dir; else the system temporary directory)
  stream    gRPC server streaming without the ledger: a grpc-go server inside ledgerctl
            sends one stored record (as ReadAll sends it) over and over on loopback TCP
            to one client that decodes and drops each message
ledger
  append    durable appends for every --clients × --batch (records per Append), each
            client on its own connection and party: records/s, latency p50/p99/p99.9,
            the positions view's largest lag during the load and its catch-up time after
            (and then the integrity view's, from its lag metric, when metrics are known)
  replay    ReadAll of the whole log to one client that decodes and drops each record
  rebuild   AdminService.RebuildProjection of "positions" (and "integrity" when it can be
            rebuilt) from position 0: records/s until it has applied the log head
  memory    ledgerd's peak RSS (--spawn: VmHWM in /proc; else process_resident_memory_bytes
            sampled from --metrics-url, when given)

With --spawn, ledgerd runs without its per-principal rate limit (the bench is one
principal standing for many clients); against --addr, the server's limits apply.

Each append phase and each floor runs for --duration (floors for a quarter of it, at
least 250ms); an append phase also stops after --max-records records.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addr, err := cmd.Flags().GetString(flagAddr)
			if err != nil {
				return err
			}
			rep, err := runBench(cmd.Context(), o, addr, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rep.Command = "ledgerctl " + strings.Join(os.Args[1:], " ")
			if o.json {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printBench(cmd.OutOrStdout(), rep)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long each append phase runs (floors run a quarter of it)")
	f.IntSliceVar(&o.clients, "clients", []int{1, 8, 32}, "concurrent clients of the append phases (each on its own connection)")
	f.IntSliceVar(&o.batches, "batch", []int{1, 100}, "records per Append of the append phases")
	f.IntVar(&o.size, "size", 300, "stored bytes per record (data + metadata), reached by padding a stance summary")
	f.BoolVar(&o.json, "json", false, "print one JSON object with every figure")
	f.BoolVar(&o.spawn, "spawn", false, "start a fresh ledgerd on a temporary data directory (and 127.0.0.1:0) instead of using --addr; it is stopped and removed afterwards")
	f.StringVar(&o.ledgerd, "ledgerd", "", "with --spawn: the ledgerd binary (default: next to ledgerctl, else on PATH)")
	f.StringVar(&o.dataDir, "data-dir", "", "without --spawn: a directory on ledgerd's data filesystem for the fdatasync floor (default: the system temporary directory)")
	f.StringVar(&o.metricsURL, "metrics-url", "", "without --spawn: ledgerd's /metrics URL, to sample its resident memory")
	f.Uint64Var(&o.maxRecords, "max-records", 1_000_000, "stop an append phase after this many records (0: no limit)")
	f.StringArrayVar(&o.ledgerdArgs, "ledgerd-arg", nil, "with --spawn: one more flag for ledgerd, e.g. --ledgerd-arg=--log-level=debug (repeatable)")
	return cmd
}

// benchReport is everything one bench run measured. Its JSON names are read by
// scripts outside the repository: keep them.
type benchReport struct {
	Command  string         `json:"command"`
	Machine  machineInfo    `json:"machine"`
	Settings benchSettings  `json:"settings"`
	Floors   benchFloors    `json:"floors"`
	Append   []appendResult `json:"append"`
	// Replay: ReadAll of the whole log to one client.
	ReplayRecordsPerS float64 `json:"replay_records_per_s"`
	ReplayRecords     uint64  `json:"replay_records"`
	// Rebuild of the positions projection from position 0.
	RebuildRecordsPerS float64 `json:"rebuild_records_per_s"`
	RebuildRecords     uint64  `json:"rebuild_records"`
	// IntegrityRebuildRecordsPerS is null when the integrity projection cannot be rebuilt.
	IntegrityRebuildRecordsPerS *float64 `json:"integrity_rebuild_records_per_s"`
	IntegrityRebuildNote        string   `json:"integrity_rebuild_note,omitempty"`
	// LogRecords is the log's head position at the end (records, in the embedded store).
	LogRecords uint64 `json:"log_records"`
	// PeakRSSBytes is ledgerd's peak resident memory; 0 when it could not be read.
	PeakRSSBytes        uint64        `json:"peak_rss_bytes"`
	PeakRSSSource       string        `json:"peak_rss_source"`
	RSSAfterAppendBytes uint64        `json:"rss_after_append_bytes"`
	RSSAfterReplayBytes uint64        `json:"rss_after_replay_bytes"`
	Targets             []benchTarget `json:"targets"`
}

type machineInfo struct {
	CPUs   int    `json:"cpus"`
	CPU    string `json:"cpu"`
	OS     string `json:"os"`
	Arch   string `json:"arch"`
	Kernel string `json:"kernel,omitempty"`
	Go     string `json:"go"`
	// LoadAvgStart and LoadAvgEnd are /proc/loadavg's 1-minute load when the run
	// started and ended: other work on the machine skews every figure.
	LoadAvgStart float64 `json:"load_avg_start"`
	LoadAvgEnd   float64 `json:"load_avg_end"`
}

type benchSettings struct {
	Duration       string `json:"duration"`
	Size           int    `json:"size"`
	RecordBytes    int    `json:"record_bytes"`
	Spawn          bool   `json:"spawn"`
	Addr           string `json:"addr"`
	MaxRecords     uint64 `json:"max_records"`
	ServerCPUShare string `json:"server_cpu_share"`
	// LedgerdArgs are the spawned ledgerd's flags.
	LedgerdArgs []string `json:"ledgerd_args,omitempty"`
}

// benchFloors are the machine's ceilings, measured in the same run.
type benchFloors struct {
	HealthC1P50us          float64        `json:"health_c1_p50_us"`
	HealthC1RPS            float64        `json:"health_c1_rps"`
	HealthC32P50us         float64        `json:"health_c32_p50_us"`
	HealthC32RPS           float64        `json:"health_c32_rps"`
	Health                 []healthResult `json:"health"`
	FdatasyncP50us         float64        `json:"fdatasync_p50_us"`
	FdatasyncPerS          float64        `json:"fdatasync_per_s"`
	FdatasyncPreallocP50us float64        `json:"fdatasync_prealloc_p50_us"`
	FdatasyncPreallocPerS  float64        `json:"fdatasync_prealloc_per_s"`
	FdatasyncDir           string         `json:"fdatasync_dir"`
	FdatasyncDirWhy        string         `json:"fdatasync_dir_why"`
	StreamFloorMsgsPerS    float64        `json:"stream_floor_msgs_per_s"`
	StreamFloorDefinition  string         `json:"stream_floor_definition"`
}

type healthResult struct {
	Clients int     `json:"clients"`
	RPS     float64 `json:"rps"`
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
}

// appendResult is one append phase. The lag figures are -1 when the server has no
// PositionService.
type appendResult struct {
	Clients     int     `json:"clients"`
	Batch       int     `json:"batch"`
	RecordsPerS float64 `json:"records_per_s"`
	AppendsPerS float64 `json:"appends_per_s"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	P999us      float64 `json:"p999_us"`
	Records     uint64  `json:"records"`
	Errors      uint64  `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	// HealthRPS is the health Check rate at the same number of clients; RatioToHealth
	// is RecordsPerS over it.
	HealthRPS     float64 `json:"health_rps"`
	RatioToHealth float64 `json:"ratio_to_health"`
	LagMaxRecords int64   `json:"projection_lag_max_records"`
	CatchUpMS     float64 `json:"projection_catch_up_ms"`
	// IntegrityCatchUpMS is how long after the load (and the positions catch-up) the
	// integrity view's lag metric read 0; -1 without a metrics endpoint.
	IntegrityCatchUpMS float64 `json:"integrity_catch_up_ms"`
}

// benchTarget is one target of issue 7 judged on this run.
type benchTarget struct {
	// ID is stable, for scripts: append_c32_rate, append_c32_p99, catch_up,
	// append_c1_p50, append_c8_b100_rate, replay, rebuild, peak_rss, replay_rss.
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Ceiling float64 `json:"ceiling"`
	Ratio   float64 `json:"ratio"`
	Want    string  `json:"want"`
	Holds   bool    `json:"holds"`
}

const streamFloorDefinition = "grpc-go server in ledgerctl streaming one stored record (a ReadAllResponse as ledgerd sends it) repeatedly over loopback TCP to one client that decodes and drops each message"

// runBench runs every measurement and returns the report. Progress goes to progress.
func runBench(ctx context.Context, o benchOptions, addr string, progress io.Writer) (*benchReport, error) {
	if o.duration <= 0 || o.size <= 0 || len(o.clients) == 0 || len(o.batches) == 0 {
		return nil, errors.New("bench: --duration, --size, --clients and --batch must be positive")
	}
	for _, n := range slices.Concat(o.clients, o.batches) {
		if n <= 0 {
			return nil, fmt.Errorf("bench: --clients and --batch must be positive, not %d", n)
		}
	}
	say := func(format string, args ...any) { fmt.Fprintf(progress, "bench: "+format+"\n", args...) }
	floorDur := max(o.duration/4, 250*time.Millisecond)
	rep := &benchReport{Machine: machine(), Settings: benchSettings{
		Duration: o.duration.String(), Size: o.size, Spawn: o.spawn, MaxRecords: o.maxRecords,
		ServerCPUShare: "ledgerd and ledgerctl share this machine's CPUs",
	}}

	var sp *spawned
	metricsURL := o.metricsURL
	if o.spawn {
		bin, err := findLedgerd(o.ledgerd)
		if err != nil {
			return nil, err
		}
		if sp, err = spawnLedgerd(ctx, bin, o.ledgerdArgs); err != nil {
			return nil, err
		}
		defer sp.stop()
		addr, metricsURL = sp.addr, sp.metricsURL
		say("spawned %s at %s, data %s", bin, addr, sp.data)
		rep.Settings.LedgerdArgs = sp.cmd.Args[1:]
	}
	rep.Settings.Addr = addr
	rss := func(field string) uint64 {
		if sp != nil {
			return procStatus(sp.cmd.Process.Pid, field)
		}
		if metricsURL != "" {
			v, _ := scrapeMetric(ctx, metricsURL, "process_resident_memory_bytes")
			return uint64(v)
		}
		return 0
	}
	var rssSeen uint64
	sampleRSS := func() uint64 {
		v := rss("VmRSS")
		rssSeen = max(rssSeen, v)
		return v
	}

	conns := &benchConns{addr: addr}
	defer conns.close()
	factory, err := newEventFactory(o.size)
	if err != nil {
		return nil, err
	}
	rep.Settings.RecordBytes = factory.stored

	// Floors: health at 1 client and every --clients count (always 32 too).
	levels := slices.Sorted(slices.Values(slices.Compact(slices.Sorted(slices.Values(append([]int{1, 32}, o.clients...))))))
	for _, c := range levels {
		cs, err := conns.get(c)
		if err != nil {
			return nil, err
		}
		say("health Check, %d clients, %s", c, floorDur)
		l := healthFloor(ctx, cs, floorDur)
		if l.ops == 0 {
			return nil, fmt.Errorf("bench: health Check against %s: %v", addr, l.firstEr)
		}
		h := healthResult{Clients: c, RPS: l.opsPerSecond(), P50us: l.quantile(0.5), P99us: l.quantile(0.99)}
		rep.Floors.Health = append(rep.Floors.Health, h)
		switch c {
		case 1:
			rep.Floors.HealthC1P50us, rep.Floors.HealthC1RPS = h.P50us, h.RPS
		case 32:
			rep.Floors.HealthC32P50us, rep.Floors.HealthC32RPS = h.P50us, h.RPS
		}
	}
	dir, why, err := fsyncDir(func() string {
		if sp != nil {
			return sp.data
		}
		return ""
	}(), o.dataDir)
	if err != nil {
		return nil, err
	}
	rep.Floors.FdatasyncDir, rep.Floors.FdatasyncDirWhy = dir, why
	say("fdatasync in %s (%s), %s each", dir, why, floorDur)
	l, err := fsyncFloor(ctx, dir, floorDur, false)
	if err != nil {
		return nil, err
	}
	rep.Floors.FdatasyncP50us, rep.Floors.FdatasyncPerS = l.quantile(0.5), l.opsPerSecond()
	if l, err = fsyncFloor(ctx, dir, floorDur, true); err != nil {
		return nil, err
	}
	rep.Floors.FdatasyncPreallocP50us, rep.Floors.FdatasyncPreallocPerS = l.quantile(0.5), l.opsPerSecond()

	// Appends, with the positions view's lag.
	first, err := conns.get(1)
	if err != nil {
		return nil, err
	}
	probe := &lagProbe{pc: ledgerv1.NewPositionServiceClient(first[0])}
	if _, err := probe.applied(ctx); err != nil {
		say("no positions view to watch (%v): lag not measured", err)
		probe = nil
	}
	for _, c := range o.clients {
		for _, b := range o.batches {
			cs, err := conns.get(c)
			if err != nil {
				return nil, err
			}
			say("append, %d clients × %d records, %s", c, b, o.duration)
			res, err := appendPhase(ctx, cs, factory, probe, c, b, o.duration, o.maxRecords)
			if err != nil {
				return nil, err
			}
			res.IntegrityCatchUpMS = -1
			if metricsURL != "" {
				if took, err := metricCatchUp(ctx, metricsURL, `stanceledger_projection_lag_records{projection="integrity"}`); err == nil {
					res.IntegrityCatchUpMS = float64(took) / float64(time.Millisecond)
				}
			}
			if res.HealthRPS = healthRate(rep, c); res.HealthRPS > 0 {
				res.RatioToHealth = res.RecordsPerS / res.HealthRPS
			}
			rep.Append = append(rep.Append, res)
			sampleRSS()
		}
	}
	rep.RSSAfterAppendBytes = sampleRSS()

	// Stream floor, with a record of this log; then replay of the whole log.
	lc := ledgerv1.NewLedgerServiceClient(first[0])
	one, err := lc.ReadAll(ctx, &ledgerv1.ReadAllRequest{MaxCount: 1})
	if err != nil {
		return nil, err
	}
	rec, err := one.Recv()
	if err != nil {
		return nil, fmt.Errorf("bench: read one record for the stream floor: %w", err)
	}
	say("stream floor, %s", floorDur)
	if l, err = streamFloor(ctx, rec, floorDur); err != nil {
		return nil, fmt.Errorf("bench: stream floor: %w", err)
	}
	rep.Floors.StreamFloorMsgsPerS, rep.Floors.StreamFloorDefinition = l.perSecond(), streamFloorDefinition
	say("replay of the whole log")
	if l, err = drain(ctx, lc, 24*time.Hour); err != nil {
		return nil, fmt.Errorf("bench: replay: %w", err)
	}
	rep.ReplayRecordsPerS, rep.ReplayRecords = l.perSecond(), l.units
	rep.RSSAfterReplayBytes = sampleRSS()

	say("rebuild positions from position 0")
	n, took, err := rebuild(ctx, first[0], "positions")
	if err != nil {
		return nil, fmt.Errorf("bench: rebuild positions: %w", err)
	}
	rep.RebuildRecords, rep.RebuildRecordsPerS = n, float64(n)/took.Seconds()
	if n, took, err := rebuild(ctx, first[0], "integrity"); err != nil {
		rep.IntegrityRebuildNote = "not measured: " + err.Error()
	} else {
		v := float64(n) / took.Seconds()
		rep.IntegrityRebuildRecordsPerS = &v
	}
	sampleRSS()

	rep.LogRecords = rep.ReplayRecords
	if probe != nil {
		rep.LogRecords = max(rep.LogRecords, probe.head.Load())
	}
	rep.Machine.LoadAvgEnd = loadAvg()
	if sp != nil {
		rep.PeakRSSBytes, rep.PeakRSSSource = rss("VmHWM"), "VmHWM of the spawned ledgerd"
	} else if metricsURL != "" {
		rep.PeakRSSBytes, rep.PeakRSSSource = rssSeen, "largest process_resident_memory_bytes sampled after each phase"
	} else {
		rep.PeakRSSSource = "not measured: no --spawn and no --metrics-url"
	}
	rep.Targets = judge(rep)
	return rep, nil
}

// phase returns the append phase with clients and batch, if it ran.
func (r *benchReport) phase(clients, batch int) (appendResult, bool) {
	for _, a := range r.Append {
		if a.Clients == clients && a.Batch == batch {
			return a, true
		}
	}
	return appendResult{}, false
}

// judge checks the targets of issue 7 against this run's own ceilings.
func judge(r *benchReport) []benchTarget {
	var ts []benchTarget
	ratio := func(v, c float64) float64 {
		if c == 0 {
			return 0
		}
		return v / c
	}
	f := r.Floors
	if a, ok := r.phase(32, 1); ok {
		ts = append(ts, benchTarget{ID: "append_c32_rate", Name: "append 32 clients × 1: records/s vs health Check 32 clients",
			Value: a.RecordsPerS, Ceiling: f.HealthC32RPS, Ratio: ratio(a.RecordsPerS, f.HealthC32RPS), Want: "ratio ≥ 0.5",
			Holds: ratio(a.RecordsPerS, f.HealthC32RPS) >= 0.5})
		ts = append(ts, benchTarget{ID: "append_c32_p99", Name: "append 32 clients × 1: p99 µs vs 10 ms",
			Value: a.P99us, Ceiling: 10000, Ratio: ratio(a.P99us, 10000), Want: "ratio ≤ 1", Holds: a.P99us <= 10000})
		if a.CatchUpMS >= 0 {
			ts = append(ts, benchTarget{ID: "catch_up", Name: "positions catch-up ms after the 32-client load vs 1 s",
				Value: a.CatchUpMS, Ceiling: 1000, Ratio: ratio(a.CatchUpMS, 1000), Want: "ratio ≤ 1", Holds: a.CatchUpMS <= 1000})
		}
	}
	if a, ok := r.phase(1, 1); ok {
		c := f.HealthC1P50us + 1.5*f.FdatasyncP50us
		ts = append(ts, benchTarget{ID: "append_c1_p50", Name: "append 1 client × 1: p50 µs vs health p50 + 1.5 × fdatasync p50",
			Value: a.P50us, Ceiling: c, Ratio: ratio(a.P50us, c), Want: "ratio ≤ 1", Holds: a.P50us <= c})
	}
	if a, ok := r.phase(8, 100); ok {
		ts = append(ts, benchTarget{ID: "append_c8_b100_rate", Name: "append 8 clients × 100: records/s vs 150k",
			Value: a.RecordsPerS, Ceiling: 150000, Ratio: ratio(a.RecordsPerS, 150000), Want: "ratio ≥ 1", Holds: a.RecordsPerS >= 150000})
	}
	ts = append(ts, benchTarget{ID: "replay", Name: "replay records/s vs stream floor msgs/s",
		Value: r.ReplayRecordsPerS, Ceiling: f.StreamFloorMsgsPerS, Ratio: ratio(r.ReplayRecordsPerS, f.StreamFloorMsgsPerS),
		Want: "ratio ≥ 0.5", Holds: ratio(r.ReplayRecordsPerS, f.StreamFloorMsgsPerS) >= 0.5})
	ts = append(ts, benchTarget{ID: "rebuild", Name: "positions rebuild records/s vs 150k",
		Value: r.RebuildRecordsPerS, Ceiling: 150000, Ratio: ratio(r.RebuildRecordsPerS, 150000), Want: "ratio ≥ 1",
		Holds: r.RebuildRecordsPerS >= 150000})
	if r.PeakRSSBytes > 0 {
		ts = append(ts, benchTarget{ID: "peak_rss", Name: fmt.Sprintf("ledgerd peak RSS MiB vs 256 MiB (log of %d records)", r.LogRecords),
			Value: float64(r.PeakRSSBytes) / (1 << 20), Ceiling: 256, Ratio: ratio(float64(r.PeakRSSBytes), 256<<20),
			Want: "ratio ≤ 1", Holds: r.PeakRSSBytes <= 256<<20})
	}
	if r.RSSAfterAppendBytes > 0 && r.RSSAfterReplayBytes > 0 {
		ts = append(ts, benchTarget{ID: "replay_rss", Name: "ledgerd RSS MiB after replay vs before it",
			Value: float64(r.RSSAfterReplayBytes) / (1 << 20), Ceiling: float64(r.RSSAfterAppendBytes) / (1 << 20),
			Ratio: ratio(float64(r.RSSAfterReplayBytes), float64(r.RSSAfterAppendBytes)), Want: "ratio ≤ 1.1 (replay does not grow it)",
			Holds: float64(r.RSSAfterReplayBytes) <= 1.1*float64(r.RSSAfterAppendBytes)})
	}
	return ts
}

// printBench writes the report as tables.
func printBench(w io.Writer, r *benchReport) error {
	m := r.Machine
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s/%s, %s, load average %.1f at start, %.1f at end\n",
		m.CPUs, m.CPU, m.OS, m.Arch, m.Go, m.LoadAvgStart, m.LoadAvgEnd)
	fmt.Fprintf(w, "ledgerd %s, records of %d stored bytes, %s per phase\n\n", r.Settings.Addr, r.Settings.RecordBytes, r.Settings.Duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "floor\trate/s\tp50 µs\tp99 µs\t")
	for _, h := range r.Floors.Health {
		fmt.Fprintf(tw, "health Check, %d clients\t%.0f\t%.0f\t%.0f\t\n", h.Clients, h.RPS, h.P50us, h.P99us)
	}
	fmt.Fprintf(tw, "fdatasync, growing file\t%.0f\t%.0f\t\t\n", r.Floors.FdatasyncPerS, r.Floors.FdatasyncP50us)
	fmt.Fprintf(tw, "fdatasync, preallocated\t%.0f\t%.0f\t\t\n", r.Floors.FdatasyncPreallocPerS, r.Floors.FdatasyncPreallocP50us)
	fmt.Fprintf(tw, "gRPC stream floor (msgs)\t%.0f\t\t\t\n", r.Floors.StreamFloorMsgsPerS)
	tw.Flush()
	fmt.Fprintf(w, "fdatasync in %s (%s)\n\n", r.Floors.FdatasyncDir, r.Floors.FdatasyncDirWhy)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "append\trecords/s\tp50 µs\tp99 µs\tp99.9 µs\t× health rate\tlag max\tcatch-up ms\tintegrity catch-up ms\terrors\t")
	for _, a := range r.Append {
		ratio := "-"
		if a.HealthRPS > 0 {
			ratio = fmt.Sprintf("%.2f", a.RatioToHealth)
		}
		fmt.Fprintf(tw, "%d clients × %d\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%d\t%.0f\t%.0f\t%d\t\n",
			a.Clients, a.Batch, a.RecordsPerS, a.P50us, a.P99us, a.P999us, ratio, a.LagMaxRecords, a.CatchUpMS, a.IntegrityCatchUpMS, a.Errors)
	}
	tw.Flush()
	for _, a := range r.Append {
		if a.FirstError != "" {
			fmt.Fprintf(w, "%d clients × %d: first error: %s\n", a.Clients, a.Batch, a.FirstError)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "replay: %.0f records/s over %d records (%.2f × stream floor)\n", r.ReplayRecordsPerS, r.ReplayRecords,
		r.ReplayRecordsPerS/max(r.Floors.StreamFloorMsgsPerS, 1))
	fmt.Fprintf(w, "positions rebuild: %.0f records/s over %d records\n", r.RebuildRecordsPerS, r.RebuildRecords)
	if r.IntegrityRebuildRecordsPerS != nil {
		fmt.Fprintf(w, "integrity rebuild: %.0f records/s\n", *r.IntegrityRebuildRecordsPerS)
	} else {
		fmt.Fprintf(w, "integrity rebuild: %s\n", r.IntegrityRebuildNote)
	}
	fmt.Fprintf(w, "ledgerd peak RSS: %.1f MiB (%s); after appends %.1f MiB, after replay %.1f MiB\n\n",
		float64(r.PeakRSSBytes)/(1<<20), r.PeakRSSSource, float64(r.RSSAfterAppendBytes)/(1<<20), float64(r.RSSAfterReplayBytes)/(1<<20))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tvalue\tceiling\tratio\twant\t")
	for _, t := range r.Targets {
		mark := "holds"
		if !t.Holds {
			mark = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%s\t%s\n", t.Name, t.Value, t.Ceiling, t.Ratio, t.Want, mark)
	}
	return tw.Flush()
}

// healthRate is the health Check rate at clients concurrency, 0 when not measured.
func healthRate(r *benchReport, clients int) float64 {
	for _, h := range r.Floors.Health {
		if h.Clients == clients {
			return h.RPS
		}
	}
	return 0
}

// machine names this machine.
func machine() machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.LoadAvgStart = loadAvg()
	return m
}

// loadAvg returns the 1-minute load average, 0 when unknown.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// metricCatchUp polls series on url until it reads 0 (within a minute) and returns
// how long that took.
func metricCatchUp(ctx context.Context, url, series string) (time.Duration, error) {
	start := time.Now()
	for time.Since(start) < time.Minute {
		v, err := scrapeMetric(ctx, url, series)
		if err != nil {
			return 0, err
		}
		if v == 0 {
			return time.Since(start), nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s did not reach 0 within a minute", series)
}

// scrapeMetric reads one series (name, with its labels as exposed when it has any) from a Prometheus text endpoint.
func scrapeMetric(ctx context.Context, url, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", url, name)
}
