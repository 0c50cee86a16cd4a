package client_test

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/projections"
	"github.com/stanceledger/ledger/projections/integrityview"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store/embedded"
)

// startLedger runs a real ledger (embedded store, integrity projection, gRPC server on a
// random loopback port) whose checkpoints signer signs and whose clock is fixed, so two
// ledgers fed the same events hold the same bytes.
func startLedger(t *testing.T, signer *integrity.Signer) *client.Client {
	t.Helper()
	dir := t.TempDir()
	st, err := embedded.Open(filepath.Join(dir, "log"), &embedded.Options{MemTableSize: 4 << 20, CacheSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	view, err := integrityview.Open(filepath.Join(dir, "views", "integrity"), signer, nil, &integrityview.Options{Every: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { view.Close() })
	runner, err := projections.NewRunner(st, nil, nil, view)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	done := make(chan struct{})
	go func() { runner.Run(ctx); close(done) }()
	t.Cleanup(func() { <-done })
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	srv, err := server.New(server.Config{Store: st, Integrity: view, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Stop(t.Context()) })
	c, err := client.Dial(ctx, lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// appendStatements appends statements from..to-1 by dprk; variant changes their content.
func appendStatements(t *testing.T, c *client.Client, from, to int, variant string) {
	t.Helper()
	for i := from; i < to; i++ {
		e := client.Statement("dprk", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), ledger.StatementIssued{
			StatementID: fmt.Sprintf("st-%d", i),
			Stances: []ledger.Stance{{Topic: "msmt-legitimacy", Alignment: ledger.AlignmentOpposes, Act: ledger.ActReject,
				Quote: fmt.Sprintf("statement %d%s", i, variant)}},
		}, ledger.Source{URL: "https://example.org/kcna", Publisher: "KCNA", Language: "ko"})
		e.EventID = fmt.Sprintf("ev-%d", i)
		if _, err := c.Append(t.Context(), "dprk", ledger.AnyRevision, e); err != nil {
			t.Fatal(err)
		}
	}
}

// settle waits until the ledger's integrity view has applied n records and a checkpoint
// covers them, so that Latest sees all of them.
func settle(t *testing.T, c *client.Client, key string, n uint64) {
	t.Helper()
	a, err := c.Auditor(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Covering(t.Context(), ledger.Position{Commit: n, Prepare: n}); err != nil {
		t.Fatal(err)
	}
}

func newSigner(t *testing.T) *integrity.Signer {
	t.Helper()
	skey, _, err := integrity.GenerateKey("stanceledger.example/client-test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := integrity.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAuditorProvesAndFollows(t *testing.T) {
	signer := newSigner(t)
	c := startLedger(t, signer)
	ctx := t.Context()
	appendStatements(t, c, 0, 6, "")

	served, err := c.VerifierKey(ctx)
	if err != nil || served != signer.VerifierKey() {
		t.Fatalf("VerifierKey = %q, %v; want %q", served, err, signer.VerifierKey())
	}
	a, err := c.Auditor(signer.VerifierKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	inc, err := a.ProveEvent(ctx, "ev-5")
	if err != nil {
		t.Fatal(err)
	}
	if inc.LeafIndex != 5 || inc.Checkpoint.Size < 6 {
		t.Fatalf("ev-5 proved as leaf %d of %d", inc.LeafIndex, inc.Checkpoint.Size)
	}
	if _, err := a.ProveEvent(ctx, "nope"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("ProveEvent(unknown) = %v, want ErrNotFound", err)
	}
	first := a.Last()

	appendStatements(t, c, 6, 11, "")
	cov, err := a.Covering(ctx, ledger.Position{Commit: 11, Prepare: 11})
	if err != nil {
		t.Fatal(err)
	}
	if cov.Size != 11 || a.Last().Size != 11 {
		t.Fatalf("covering position 11: size %d, last %d", cov.Size, a.Last().Size)
	}
	// A fresh auditor starting from the first checkpoint proves the log only grew.
	b, err := c.Auditor(signer.VerifierKey(), first)
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := b.Latest(ctx); err != nil || cp.Size < 11 {
		t.Fatalf("Latest from %s = %v, %v", first, cp, err)
	}

	// A key the log does not sign with.
	other, err := c.Auditor(newSigner(t).VerifierKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Latest(ctx); !errors.Is(err, integrity.ErrBadSignature) {
		t.Fatalf("Latest under another key = %v, want ErrBadSignature", err)
	}
}

// TestAuditorCatchesForkAndRollback shows one auditor three ledgers signed with one key:
// the genuine one, one that rewrote a record (a fork), and one that lost its tail.
func TestAuditorCatchesForkAndRollback(t *testing.T) {
	signer := newSigner(t)
	ctx := t.Context()
	genuine := startLedger(t, signer)
	appendStatements(t, genuine, 0, 8, "")
	settle(t, genuine, signer.VerifierKey(), 8)
	a, err := genuine.Auditor(signer.VerifierKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	seen, err := a.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if seen.Size != 8 {
		t.Fatalf("genuine ledger checkpoint of %d records, want 8", seen.Size)
	}

	tests := []struct {
		name  string
		build func(c *client.Client) uint64
		check func(t *testing.T, err error)
	}{
		{"fork at the same size", func(c *client.Client) uint64 {
			appendStatements(t, c, 0, 3, "")
			appendStatements(t, c, 3, 8, " (rewritten)")
			return 8
		}, func(t *testing.T, err error) {
			var ie *integrity.InconsistencyError
			if !errors.As(err, &ie) || ie.Old.Size != 8 || ie.New.Size != 8 {
				t.Fatalf("Latest = %v, want an *InconsistencyError at size 8", err)
			}
		}},
		{"fork that grew further", func(c *client.Client) uint64 {
			appendStatements(t, c, 0, 5, "")
			appendStatements(t, c, 5, 12, " (rewritten)")
			return 12
		}, func(t *testing.T, err error) {
			var ie *integrity.InconsistencyError
			if !errors.As(err, &ie) || ie.Old.Size != 8 || ie.New.Size != 12 {
				t.Fatalf("Latest = %v, want an *InconsistencyError from 8 to 12", err)
			}
		}},
		{"rolled back", func(c *client.Client) uint64 {
			appendStatements(t, c, 0, 4, "")
			return 4
		}, func(t *testing.T, err error) {
			if !errors.Is(err, integrity.ErrRollback) {
				t.Fatalf("Latest = %v, want ErrRollback", err)
			}
		}},
		{"the genuine log grown", func(c *client.Client) uint64 {
			appendStatements(t, c, 0, 13, "")
			return 13
		}, func(t *testing.T, err error) {
			if err != nil {
				t.Fatalf("Latest on a log that only grew = %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := startLedger(t, signer)
			settle(t, c, signer.VerifierKey(), tc.build(c))
			a, err := c.Auditor(signer.VerifierKey(), seen)
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.Latest(ctx)
			tc.check(t, err)
		})
	}
}
