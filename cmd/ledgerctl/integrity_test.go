package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/projections"
	"github.com/stanceledger/ledger/projections/integrityview"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store/embedded"
)

// startIntegrityServer runs a real ledger with the integrity projection, whose
// checkpoints signer signs, on a random loopback port, and returns its address.
func startIntegrityServer(t *testing.T, signer *integrity.Signer) string {
	t.Helper()
	dir := t.TempDir()
	st, err := embedded.Open(filepath.Join(dir, "log"), &embedded.Options{MemTableSize: 4 << 20, CacheSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	view, err := integrityview.Open(filepath.Join(dir, "integrity"), signer, nil, &integrityview.Options{Every: 4})
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
	srv, err := server.New(server.Config{Store: st, Integrity: view})
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
		stopCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		srv.Stop(stopCtx)
		<-done
		cancel()
		<-ran
		view.Close()
		st.Close()
	})
	return lis.Addr().String()
}

func testSigner(t *testing.T) *integrity.Signer {
	t.Helper()
	skey, _, err := integrity.GenerateKey("stanceledger.example/ledgerctl-test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := integrity.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCheckpointProofVerifyAudit runs the integrity commands against a real ledger:
// verifier-key, checkpoint, an offline verify of the export, proof, and audit, which
// then catches a log that forked from the one it saw.
func TestCheckpointProofVerifyAudit(t *testing.T) {
	signer := testSigner(t)
	addr := startIntegrityServer(t, signer)
	dir := t.TempDir()
	key := filepath.Join(dir, "key.pub")
	if err := os.WriteFile(key, []byte(signer.VerifierKey()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(mustCtl(t, addr, "", "verifier-key")); got != signer.VerifierKey() {
		t.Fatalf("verifier-key printed %q, want %q", got, signer.VerifierKey())
	}
	mustCtl(t, addr, "", "import", filepath.Join("testdata", "import.jsonl"))

	cp := filepath.Join(dir, "cp.txt")
	mustCtl(t, addr, "", "checkpoint", "--key", key, "--covering", "6", "-o", cp)
	export := filepath.Join(dir, "replay.jsonl")
	if err := os.WriteFile(export, []byte(mustCtl(t, addr, "", "replay", "-o", "jsonl")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustCtl(t, "", "", "verify", "--export", export, "--checkpoint", cp, "--key", key); !strings.HasPrefix(out, "OK: 6 records") {
		t.Fatalf("verify printed %q", out)
	}
	if out := mustCtl(t, addr, "", "checkpoint", "--key", signer.VerifierKey()); !strings.HasPrefix(out, "stanceledger.example/ledgerctl-test\n") {
		t.Fatalf("checkpoint printed %q", out)
	}
	out := mustCtl(t, addr, "", "proof", "--key", key, "ctl-msmt-report-2025-05")
	if !strings.Contains(out, "is leaf 0 (position 1/1)") || !strings.Contains(out, "proof verified") {
		t.Fatalf("proof printed %q", out)
	}
	if _, _, err := ledgerctl(t.Context(), addr, "", "checkpoint", "--key", testSigner(t).VerifierKey()); err == nil ||
		!strings.Contains(err.Error(), "checkpoint not signed by the trusted key") {
		t.Fatalf("checkpoint under another key = %v", err)
	}

	state := filepath.Join(dir, "audit.state")
	if out := mustCtl(t, addr, "", "audit", "--key", key, "--state", state); !strings.HasPrefix(out, "first checkpoint saved") {
		t.Fatalf("first audit printed %q", out)
	}
	mustCtl(t, addr, validLine("more-1", "usa")+"\n"+validLine("more-2", "usa")+"\n", "import", "-")
	mustCtl(t, addr, "", "checkpoint", "--key", key, "--covering", "8")
	if out := mustCtl(t, addr, "", "audit", "--key", key, "--state", state); !strings.HasPrefix(out, "consistent: 6 → 8 records") {
		t.Fatalf("second audit printed %q", out)
	}

	// Another ledger under the same key, with other records: a fork of the log.
	fork := startIntegrityServer(t, signer)
	var lines strings.Builder
	for _, id := range []string{"f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9"} {
		lines.WriteString(validLine(id, "dprk") + "\n")
	}
	mustCtl(t, fork, lines.String(), "import", "-")
	mustCtl(t, fork, "", "checkpoint", "--key", key, "--covering", "9")
	saved, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = ledgerctl(t.Context(), fork, "", "audit", "--key", key, "--state", state)
	if err == nil || !strings.Contains(err.Error(), "checkpoints are inconsistent") || !strings.Contains(err.Error(), "size 8") {
		t.Fatalf("audit of a forked log = %v", err)
	}
	if after, _ := os.ReadFile(state); string(after) != string(saved) {
		t.Fatal("a failed audit replaced the saved checkpoint")
	}
}
