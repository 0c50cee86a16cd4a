package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchSpawnJSON runs "bench --spawn --duration 1s --json" against a ledgerd built
// for the test and checks that the JSON object has every figure scripts read, with
// sane values.
func TestBenchSpawnJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ledgerd and runs a benchmark")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build ledgerd")
	}
	bin := filepath.Join(t.TempDir(), "ledgerd")
	if out, err := exec.CommandContext(t.Context(), gobin, "build", "-o", bin, "github.com/stanceledger/ledger/cmd/ledgerd").CombinedOutput(); err != nil {
		t.Fatalf("build ledgerd: %v\n%s", err, out)
	}
	var stdout, stderr bytes.Buffer
	root := newRootCmd()
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs([]string{"bench", "--spawn", "--ledgerd", bin, "--duration", "1s", "--json", "--max-records", "20000"})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	var rep struct {
		Floors map[string]any   `json:"floors"`
		Append []map[string]any `json:"append"`
		Rest   map[string]any   `json:"-"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
	}
	var top map[string]any
	json.Unmarshal(stdout.Bytes(), &top)

	positive := func(where string, m map[string]any, key string) float64 {
		t.Helper()
		v, ok := m[key].(float64)
		if !ok || !(v > 0) {
			t.Errorf("%s %s = %v, want a positive number", where, key, m[key])
		}
		return v
	}
	for _, k := range []string{"health_c1_p50_us", "health_c32_rps", "fdatasync_p50_us", "stream_floor_msgs_per_s"} {
		positive("floors", rep.Floors, k)
	}
	want := map[[2]float64]bool{{1, 1}: true, {1, 100}: true, {8, 1}: true, {8, 100}: true, {32, 1}: true, {32, 100}: true}
	var appended float64
	for _, a := range rep.Append {
		key := [2]float64{a["clients"].(float64), a["batch"].(float64)}
		if !want[key] {
			t.Errorf("unexpected or repeated append phase %v", key)
		}
		delete(want, key)
		p50 := positive("append", a, "p50_us")
		if p99 := positive("append", a, "p99_us"); p99 < p50 {
			t.Errorf("append %v: p99 %v below p50 %v", key, p99, p50)
		}
		rate := positive("append", a, "records_per_s")
		if h := positive("append", a, "health_rps"); a["ratio_to_health"] != rate/h {
			t.Errorf("append %v: ratio_to_health %v, want %v", key, a["ratio_to_health"], rate/h)
		}
		appended += positive("append", a, "records")
		if v, ok := a["integrity_catch_up_ms"].(float64); !ok || v < 0 {
			t.Errorf("append %v: integrity_catch_up_ms = %v, want a time (the spawned ledgerd serves metrics)", key, a["integrity_catch_up_ms"])
		}
		if a["errors"].(float64) != 0 {
			t.Errorf("append %v: %v errors, first %v", key, a["errors"], a["first_error"])
		}
	}
	if len(want) > 0 {
		t.Errorf("append phases missing: %v", want)
	}
	positive("", top, "replay_records_per_s")
	positive("", top, "rebuild_records_per_s")
	// Appends cut off at the end of a phase may still have been stored.
	if n := positive("", top, "replay_records"); n < appended {
		t.Errorf("replay read %v records, fewer than the %v appended", n, appended)
	}
	if top["rebuild_records"] != top["replay_records"] {
		t.Errorf("rebuild applied %v records, replay read %v", top["rebuild_records"], top["replay_records"])
	}
	if rss := positive("", top, "peak_rss_bytes"); rss < 1<<20 || rss > 4<<30 {
		t.Errorf("peak_rss_bytes = %v, want between 1 MiB and 4 GiB", rss)
	}
	if !strings.Contains(stderr.String(), "bench: spawned ") {
		t.Errorf("no progress on stderr: %q", stderr.String())
	}
}

// TestFindLedgerdFailsClearly: with no ledgerd beside the executable or on PATH, --spawn
// says what to do.
func TestFindLedgerdFailsClearly(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findLedgerd("")
	if err == nil || !strings.Contains(err.Error(), "--ledgerd") {
		t.Errorf("findLedgerd with no ledgerd anywhere: %v, want an error naming --ledgerd", err)
	}
	if p, err := findLedgerd("/opt/ledgerd"); p != "/opt/ledgerd" || err != nil {
		t.Errorf("findLedgerd(named) = %q, %v", p, err)
	}
}

// TestJudge checks each target's verdict on figures on both sides of its line.
func TestJudge(t *testing.T) {
	base := func() *benchReport {
		return &benchReport{
			Floors: benchFloors{HealthC1P50us: 200, HealthC32RPS: 30000, FdatasyncP50us: 200, StreamFloorMsgsPerS: 400000},
			Append: []appendResult{
				{Clients: 1, Batch: 1, P50us: 499},
				{Clients: 32, Batch: 1, RecordsPerS: 15001, P99us: 9000, CatchUpMS: 10},
				{Clients: 8, Batch: 100, RecordsPerS: 150000},
			},
			ReplayRecordsPerS: 200000, RebuildRecordsPerS: 150000, PeakRSSBytes: 256 << 20,
			RSSAfterAppendBytes: 100 << 20, RSSAfterReplayBytes: 105 << 20,
		}
	}
	verdicts := func(r *benchReport) map[string]bool {
		out := map[string]bool{}
		for _, tg := range judge(r) {
			out[tg.ID] = tg.Holds
		}
		return out
	}
	all := verdicts(base())
	if len(all) != 9 {
		t.Fatalf("judge returned %d targets, want 9: %v", len(all), all)
	}
	for name, holds := range all {
		if !holds {
			t.Errorf("target %q missed on figures that meet it", name)
		}
	}
	for _, tc := range []struct {
		name   string
		target string
		worsen func(*benchReport)
	}{
		{"32 clients too slow", "append_c32_rate", func(r *benchReport) { r.Append[1].RecordsPerS = 14000 }},
		{"1 client too slow", "append_c1_p50", func(r *benchReport) { r.Append[0].P50us = 501 }},
		{"8×100 too slow", "append_c8_b100_rate", func(r *benchReport) { r.Append[2].RecordsPerS = 149999 }},
		{"replay too slow", "replay", func(r *benchReport) { r.ReplayRecordsPerS = 199999 }},
		{"rebuild too slow", "rebuild", func(r *benchReport) { r.RebuildRecordsPerS = 1 }},
		{"slow catch-up", "catch_up", func(r *benchReport) { r.Append[1].CatchUpMS = 1001 }},
		{"too much memory", "peak_rss", func(r *benchReport) { r.PeakRSSBytes++ }},
		{"replay grows memory", "replay_rss", func(r *benchReport) { r.RSSAfterReplayBytes = 120 << 20 }},
	} {
		r := base()
		tc.worsen(r)
		got := verdicts(r)
		for name, holds := range got {
			if holds == (name == tc.target) {
				t.Errorf("%s: target %q holds=%v", tc.name, name, holds)
			}
		}
	}
}

// pastDeadline is a context whose deadline has passed but whose Err is still nil,
// the moment between a deadline and its timer firing.
type pastDeadline struct{ context.Context }

func (pastDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// TestTimeUp checks that the bench's drain ends on the clock as well as on ctx.Err:
// grpc-go reports a reset stream as DeadlineExceeded once the deadline has passed,
// which can come before the context's timer sets Err (a CI run failed so).
func TestTimeUp(t *testing.T) {
	if !timeUp(pastDeadline{context.Background()}) {
		t.Error("timeUp = false for a passed deadline whose timer has not fired")
	}
	if timeUp(context.Background()) {
		t.Error("timeUp = true without a deadline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if timeUp(ctx) {
		t.Error("timeUp = true an hour before the deadline")
	}
	cancel()
	if !timeUp(ctx) {
		t.Error("timeUp = false for a cancelled context")
	}
}
