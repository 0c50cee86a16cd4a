package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

var (
	ledgerctlOnce sync.Once
	ledgerctlBin  string
	ledgerctlErr  error
)

// ledgerctl runs the ledgerctl binary (built once) against p and returns its stdout.
func ledgerctl(t *testing.T, p *ledgerd, args ...string) (string, error) {
	t.Helper()
	ledgerctlOnce.Do(func() {
		ledgerctlBin = filepath.Join(filepath.Dir(ledgerdBin), "ledgerctl")
		out, err := exec.Command("go", "build", "-o", ledgerctlBin, "github.com/stanceledger/ledger/cmd/ledgerctl").CombinedOutput()
		if err != nil {
			ledgerctlErr = fmt.Errorf("building ledgerctl: %v\n%s", err, out)
		}
	})
	if ledgerctlErr != nil {
		t.Fatal(ledgerctlErr)
	}
	if p != nil {
		args = append([]string{"--addr", p.addr}, args...)
	}
	cmd := exec.Command(ledgerctlBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ledgerctl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func mustLedgerctl(t *testing.T, p *ledgerd, args ...string) string {
	t.Helper()
	out, err := ledgerctl(t, p, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// exportAndVerify exports the log, fetches a checkpoint covering all of it, and
// verifies the export offline; it returns the export's file and the checkpoint's.
func exportAndVerify(t *testing.T, p *ledgerd, dir, key string, n int) (string, string) {
	t.Helper()
	export := filepath.Join(dir, "replay.jsonl")
	cp := filepath.Join(dir, "cp.txt")
	if err := os.WriteFile(export, []byte(mustLedgerctl(t, p, "replay", "-o", "jsonl")), 0o644); err != nil {
		t.Fatal(err)
	}
	mustLedgerctl(t, p, "checkpoint", "--key", key, "--covering", fmt.Sprint(n), "-o", cp)
	out := mustLedgerctl(t, nil, "verify", "--export", export, "--checkpoint", cp, "--key", key)
	if !strings.HasPrefix(out, fmt.Sprintf("OK: %d records", n)) {
		t.Fatalf("verify: %s", out)
	}
	return export, cp
}

// TestSeedStoryVerifiesOffline is the seed story: import the seed article's
// records, export them, fetch a checkpoint and a snapshot, and verify all three with
// no server; prove one record online; audit.
func TestSeedStoryVerifiesOffline(t *testing.T) {
	data, dir := t.TempDir(), t.TempDir()
	p := startLedgerd(t, data, "--origin", "stanceledger.example/e2e-seed")
	defer p.stop()
	key := filepath.Join(data, "keys", "checkpoint.pub")
	if served := strings.TrimSpace(mustLedgerctl(t, p, "verifier-key")); !strings.HasPrefix(served, "stanceledger.example/e2e-seed+") {
		t.Fatalf("verifier-key printed %q", served)
	}
	mustLedgerctl(t, p, "import", filepath.Join("..", "testdata", "seed.jsonl"))
	export, cp := exportAndVerify(t, p, dir, key, 14)

	// A snapshot at the 10th record, as the server gives it, verifies offline too.
	snap, err := ledgerv1.NewPositionServiceClient(p.conn).GetSnapshot(t.Context(), &ledgerv1.GetSnapshotRequest{
		AsOfPosition: &ledgerv1.Position{Commit: 10, Prepare: 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	if snap.GetCheckpoint() == nil {
		t.Fatal("the snapshot carries no checkpoint")
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	snapFile := filepath.Join(dir, "snap.json")
	if err := os.WriteFile(snapFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustLedgerctl(t, nil, "verify", "--export", export, "--checkpoint", cp, "--key", key, "--snapshot", snapFile)
	if !strings.Contains(out, "digest "+snap.GetDigest()+" recomputed from the export") || !strings.Contains(out, "matches the export") {
		t.Fatalf("verify --snapshot: %s", out)
	}

	out = mustLedgerctl(t, p, "proof", "--key", key, "seed-2024-03-28-russia-vetoes-poe-renewal")
	if !strings.Contains(out, "is leaf 0 (position 1/1)") || !strings.Contains(out, "proof verified") {
		t.Fatalf("proof: %s", out)
	}
	state := filepath.Join(dir, "audit.state")
	if out := mustLedgerctl(t, p, "audit", "--key", key, "--state", state); !strings.HasPrefix(out, "first checkpoint saved") {
		t.Fatalf("audit: %s", out)
	}
	if out := mustLedgerctl(t, p, "audit", "--key", key, "--state", state); !strings.HasPrefix(out, "consistent: 14 → 14") {
		t.Fatalf("audit: %s", out)
	}
}

// TestCheckpointsSurviveKill9 imports a large file, kills ledgerd with SIGKILL in the
// middle, restarts it, finishes the import, and checks that the checkpoints from before
// the crash are consistent with those after, and that the whole export verifies.
func TestCheckpointsSurviveKill9(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 600
	}
	data, dir := t.TempDir(), t.TempDir()
	input := filepath.Join(dir, "import.jsonl")
	var lines bytes.Buffer
	for i := range n {
		b := newBatch(fmt.Sprintf("party-%d", i%4)[6:], 1)
		b.events[0].Party = fmt.Sprintf("p%d", i%4)
		b.events[0].EventId = fmt.Sprintf("kill9-%05d", i)
		line, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b.events[0])
		if err != nil {
			t.Fatal(err)
		}
		lines.Write(bytes.ReplaceAll(line, []byte("\n"), nil))
		lines.WriteByte('\n')
	}
	if err := os.WriteFile(input, lines.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(data, "keys", "checkpoint.pub")
	state := filepath.Join(dir, "audit.state")

	p := startLedgerd(t, data, "--checkpoint-every", "50", "--checkpoint-interval", "100ms")
	importDone := make(chan error, 1)
	go func() { _, err := ledgerctl(t, p, "import", input); importDone <- err }()
	// Audit while the import runs, then kill the server under it.
	deadline := time.Now().Add(90 * time.Second)
	var before string
	for {
		out, err := ledgerctl(t, p, "audit", "--key", key, "--state", state)
		if err == nil && !strings.HasPrefix(out, "first") {
			before = out
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no second audit within 90s: %v %s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.kill()
	<-importDone // fails or not: the server died under it
	saved, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	if first, _, ok := strings.Cut(string(saved), "\n"); ok {
		size, _, _ := strings.Cut(strings.TrimPrefix(string(saved), first+"\n"), "\n")
		t.Logf("killed ledgerd with a checkpoint of %s of %d records saved (%s)", size, n, strings.TrimSpace(before))
	}

	p = startLedgerd(t, data)
	defer p.stop()
	out := mustLedgerctl(t, p, "audit", "--key", key, "--state", state)
	if !strings.HasPrefix(out, "consistent: ") {
		t.Fatalf("audit after the crash: %s (before: %s, saved %q)", out, before, saved)
	}
	mustLedgerctl(t, p, "import", input) // idempotent: finishes what the crash cut off
	exportAndVerify(t, p, dir, key, n)
	if out := mustLedgerctl(t, p, "audit", "--key", key, "--state", state); !strings.HasPrefix(out, "consistent: ") {
		t.Fatalf("audit after the import: %s", out)
	}
}
