package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

func tokensFile(t *testing.T, path string, lines ...[3]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# NAME ROLE SHA256HEX\n")
	for _, l := range lines {
		sum := sha256.Sum256([]byte(l[2]))
		b.WriteString(l[0] + " " + l[1] + " " + hex.EncodeToString(sum[:]) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLedgerdTokensReloadOnSIGHUP runs ledgerd with --tokens at debug level: a writer's
// token appends (recorded_by is its name), an auditor's is refused, SIGHUP swaps the
// file (the old token stops working, the new one works), a broken file keeps the tokens
// in force, and no token ever appears in ledgerd's output.
func TestLedgerdTokensReloadOnSIGHUP(t *testing.T) {
	const (
		writerTok  = "e2e-wr1ter-t0ken-1111111111111111111"
		auditorTok = "e2e-aud1tor-t0ken-222222222222222222"
		newTok     = "e2e-r0tated-t0ken-333333333333333333"
	)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	tokensFile(t, tokens, [3]string{"importer", "writer", writerTok}, [3]string{"auditor-1", "auditor", auditorTok})
	p := startLedgerd(t, filepath.Join(dir, "data"), "--tokens", tokens, "--log-level", "debug")
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lc := ledgerv1.NewLedgerServiceClient(conn)
	n := 0
	appendAs := func(token string) (*ledgerv1.AppendResponse, error) {
		n++
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token), 10*time.Second)
		defer cancel()
		b := newBatch("e2e-auth", 1)
		return lc.Append(ctx, b.request(&ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_Any{Any: true}}))
	}
	resp, err := appendAs(writerTok)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetEvents()[0].GetRecordedBy(); got != "importer" {
		t.Errorf("recorded_by %q, want importer", got)
	}
	if _, err := appendAs(auditorTok); status.Code(err) != codes.PermissionDenied {
		t.Errorf("auditor append: %v, want PermissionDenied", err)
	}

	tokensFile(t, tokens, [3]string{"importer", "writer", newTok})
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(p.stderr.String(), "tokens file reloaded") })
	if _, err := appendAs(writerTok); status.Code(err) != codes.Unauthenticated {
		t.Errorf("old token after SIGHUP: %v, want Unauthenticated", err)
	}
	if _, err := appendAs(newTok); err != nil {
		t.Errorf("new token after SIGHUP: %v", err)
	}

	if err := os.WriteFile(tokens, []byte("importer writer "+newTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(p.stderr.String(), "tokens file not reloaded") })
	if _, err := appendAs(newTok); err != nil {
		t.Errorf("token after a broken reload: %v", err)
	}
	p.stop()
	for _, tok := range []string{writerTok, auditorTok, newTok} {
		if strings.Contains(p.stderr.String(), tok) {
			t.Errorf("ledgerd's output holds a token")
		}
	}
	if !strings.Contains(p.stderr.String(), "principal=importer") {
		t.Errorf("the debug log does not name the principal:\n%.3000s", p.stderr.String())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
