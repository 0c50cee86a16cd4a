package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/projections"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store/embedded"
)

// startPositionsServer runs a server with the positions view and its runner, imports
// the seed story with ledgerctl, waits for the view to apply it, and returns the address.
func startPositionsServer(t *testing.T) string {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), &embedded.Options{MemTableSize: 4 << 20, CacheSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	view, err := projections.OpenPositions(filepath.Join(t.TempDir(), "views", "positions"), nil)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := projections.NewRunner(st, nil, nil, view)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { runner.Run(ctx); close(ran) }()
	srv, err := server.New(server.Config{Store: st, Positions: view, Rebuilder: runner})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		stop, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelStop()
		srv.Stop(stop)
		<-done
		cancel()
		<-ran
		view.Close()
		st.Close()
	})
	addr := lis.Addr().String()
	mustCtl(t, addr, "", "import", filepath.Join("..", "..", "testdata", "seed.jsonl"))
	n := uint64(nonBlankLines(t, filepath.Join("..", "..", "testdata", "seed.jsonl")))
	wait, cancelWait := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancelWait()
	if err := view.WaitFor(wait, ledger.Position{Commit: n, Prepare: n}); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestPositionsCommands(t *testing.T) {
	addr := startPositionsServer(t)
	tests := []struct {
		golden string
		args   []string
	}{
		{"positions.matrix.golden", []string{"positions"}},
		{"positions.party.golden", []string{"positions", "--party", "dprk"}},
		{"positions.party.before-report.golden", []string{"positions", "--party", "dprk", "--as-of", "2025-05-31"}},
		{"positions.topic.at-position.golden", []string{"positions", "--topic", "poe-mandate-renewal-2024", "--at-position", "3"}},
		{"positions.json.golden", []string{"positions", "--party", "china", "-o", "json"}},
		{"history.golden", []string{"history", "--party", "dprk", "--topic", "msmt-legitimacy"}},
		{"history.json.golden", []string{"history", "--party", "russia", "--topic", "msmt-legitimacy", "-o", "json"}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			out := mustCtl(t, addr, "", tt.args...)
			if !strings.HasSuffix(tt.golden, ".json.golden") {
				for l := range strings.Lines(out) {
					if n := len([]rune(strings.TrimSuffix(l, "\n"))); n > 80 {
						t.Errorf("table line has %d columns; want at most 80: %q", n, l)
					}
				}
			}
			golden := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s:\n got:\n%s\nwant:\n%s", golden, out, want)
			}
		})
	}

	// A position the view has not reached: DeadlineExceeded, saying how far it is.
	_, errOut, err := ledgerctl(t.Context(), addr, "", "positions", "--at-position", "999", "--timeout", "300ms")
	if err == nil || !strings.Contains(errOut, "DeadlineExceeded") || !strings.Contains(errOut, "applied the log up to position 14/14") {
		t.Errorf("positions --at-position 999: %v\n%s", err, errOut)
	}

	// The seed story's answers, in words.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"positions", "--party", "dprk", "--topic", "msmt-legitimacy"}, "OPPOSES"},
		{[]string{"positions", "--party", "russia", "--topic", "poe-mandate-renewal-2024"}, "OPPOSES"},
		{[]string{"positions", "--party", "china", "--topic", "poe-mandate-renewal-2024"}, "ABSTAINS"},
		{[]string{"positions", "--party", "dprk", "--topic", "msmt-legitimacy", "--as-of", "2025-05-31"}, "no positions"},
	} {
		if out := mustCtl(t, addr, "", c.args...); !strings.Contains(out, c.want) {
			t.Errorf("ledgerctl %s:\n%s\nwant %q", strings.Join(c.args, " "), out, c.want)
		}
	}
}

func TestSnapshotAndRebuildCommands(t *testing.T) {
	addr := startPositionsServer(t)
	file := filepath.Join(t.TempDir(), "snap.json")
	_, errOut, err := ledgerctl(t.Context(), addr, "", "snapshot", "--as-of", "2025-06-01", "-o", file)
	if err != nil {
		t.Fatalf("snapshot: %v: %s", err, errOut)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	snap := new(ledgerv1.GetSnapshotResponse)
	if err := protojson.Unmarshal(b, snap); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, snap.GetDigest()) || snap.GetAsOfTime().AsTime() != time.Date(2025, 6, 1, 23, 59, 59, 999999999, time.UTC) {
		t.Fatalf("stderr %q, snapshot T %v", errOut, snap.GetAsOfTime().AsTime())
	}
	// The digest is recomputed from the rows as docs/snapshot-digest.md says.
	var raw struct {
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	var rows []projections.PartyPosition
	for _, r := range snap.GetRows() {
		rows = append(rows, projections.PartyPosition{
			Party: r.GetParty(), Topic: r.GetTopic(), Alignment: ledger.Alignment(r.GetAlignment()), Act: ledger.Act(r.GetAct()),
			Summary: r.GetSummary(), Quote: r.GetQuote(), OccurredAt: r.GetOccurredAt().AsTime(), EventID: r.GetEventId(),
			Position: ledger.Position{Commit: r.GetPosition().GetCommit(), Prepare: r.GetPosition().GetPrepare()},
		})
	}
	if got := projections.Digest(rows); got != snap.GetDigest() || len(raw.Rows) != len(rows) || len(rows) == 0 {
		t.Fatalf("recomputed digest %s, snapshot says %s (%d rows)", got, snap.GetDigest(), len(rows))
	}

	out := mustCtl(t, addr, "", "admin", "rebuild", "positions")
	if !regexp.MustCompile(`^rebuilt positions up to log position \d+ in \S+\n$`).MatchString(out) {
		t.Fatalf("admin rebuild printed %q", out)
	}
	again := filepath.Join(t.TempDir(), "again.json")
	if _, errOut, err := ledgerctl(t.Context(), addr, "", "snapshot", "--as-of", "2025-06-01", "-o", again); err != nil {
		t.Fatalf("snapshot: %v: %s", err, errOut)
	}
	b2, err := os.ReadFile(again)
	if err != nil {
		t.Fatal(err)
	}
	if string(b2) != string(b) {
		t.Fatal("snapshot after rebuild differs")
	}
	if _, errOut, err := ledgerctl(t.Context(), addr, "", "admin", "rebuild", "nope"); err == nil || !strings.Contains(errOut, "NotFound") {
		t.Fatalf("rebuild nope: %v %s", err, errOut)
	}
}

func TestWatchCommand(t *testing.T) {
	addr := startPositionsServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- runCtl(ctx, &out, &errOut, addr, "", "watch", "--party", "usa", "-o", "json") }()
	ev := `{"event_id":"watch-1","party":"usa","occurred_at":"2025-07-01T00:00:00Z","sources":[{"url":"https://example.org/a"}],` +
		`"statement_issued":{"statement_id":"w1","speaker":"spokesperson","stances":[{"topic":"msmt-legitimacy","alignment":"ALIGNMENT_SUPPORTS"}]}}`
	deadline := time.Now().Add(10 * time.Second)
	// The watch starts asynchronously: append until a change shows up.
	for i := 0; !strings.Contains(out.String(), `"topic":"msmt-legitimacy"`); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no change printed; stdout %q stderr %q", out.String(), errOut.String())
		}
		if i == 0 {
			mustCtl(t, addr, ev, "append")
		}
		time.Sleep(50 * time.Millisecond)
		if i%20 == 19 {
			mustCtl(t, addr, strings.Replace(strings.ReplaceAll(ev, "watch-1", "watch-"+time.Now().Format("150405.000")), "2025-07-01", "2025-07-02", 1), "append")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	var first ledgerv1.WatchPositionsResponse
	if err := protojson.Unmarshal([]byte(strings.SplitN(out.String(), "\n", 2)[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first.GetParty() != "usa" || first.GetPosition().GetAlignment() != ledgerv1.Alignment_ALIGNMENT_SUPPORTS {
		t.Fatalf("first change %v", &first)
	}
}
