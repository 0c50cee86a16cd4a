package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"

	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/projections"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// TestCrashKill9Audited is the crash test of issue 6: ledgerd under 16 concurrent
// writers is killed with SIGKILL at random moments 20 times (4 with -short). After each
// restart, before the writers resume:
//   - every acknowledged record is in the log exactly once, where its acknowledgement
//     said, and every append whose outcome was unknown is there whole or not at all;
//   - the positions view equals a rebuild of it (same snapshot digest at the log's head);
//   - the latest signed checkpoint covers the whole log and is consistent with every
//     checkpoint the server issued before any of the kills (consistency proofs from
//     each saved checkpoint).
//
// Appends whose outcome was unknown are retried, with the same event_ids, by their
// writer in the next life; the last life settles them and checks the whole log.
func TestCrashKill9Audited(t *testing.T) {
	kills := 20
	if testing.Short() {
		kills = 4
	}
	const clients = 16
	flags := []string{"--checkpoint-every", "7", "--checkpoint-interval", "50ms"}
	data := t.TempDir()
	workers := make([]*crashWorker, clients)
	for i := range workers {
		w := &crashWorker{party: "audit-shared", last: -1, rng: rand.New(rand.NewPCG(uint64(i), 43))}
		if i%2 == 0 {
			w.party, w.exclusive = fmt.Sprintf("audit-w%02d", i), true
		}
		workers[i] = w
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 9))
	t.Logf("kill moments seeded with %d", seed)

	var (
		verifier note.Verifier
		saved    []*integrity.Checkpoint // every distinct checkpoint seen before a kill
	)
	start := time.Now()
	for round := 0; round <= kills; round++ {
		p := startLedgerd(t, data, flags...)
		ctx := t.Context()
		if round > 0 {
			auditRestart(t, ctx, p.conn, workers, verifier, saved, round)
			if t.Failed() {
				return
			}
		} else {
			resp, err := ledgerv1.NewIntegrityServiceClient(p.conn).GetVerifierKey(ctx, &ledgerv1.GetVerifierKeyRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if verifier, err = integrity.NewVerifier(resp.GetVerifierKey()); err != nil {
				t.Fatal(err)
			}
		}
		if round == kills {
			// The last life: settle every append whose outcome is still unknown, then the
			// whole log must be exactly what the clients were told.
			for _, w := range workers {
				w.retryPending(ctx, t, p.client())
			}
			verifyLog(t, readAll(t, ctx, p.client()), workers)
			p.stop()
			break
		}

		loadCtx, cancel := context.WithCancel(ctx)
		var acks atomic.Int64
		var wg sync.WaitGroup
		for _, w := range workers {
			wg.Go(func() { w.run(loadCtx, t, p.client(), &acks) })
		}
		// Collect every checkpoint the server issues in this life.
		var cpMu sync.Mutex
		var issued []*integrity.Checkpoint
		wg.Go(func() {
			ic := ledgerv1.NewIntegrityServiceClient(p.conn)
			var lastSize uint64
			for loadCtx.Err() == nil {
				resp, err := ic.GetCheckpoint(loadCtx, &ledgerv1.GetCheckpointRequest{})
				if err == nil && resp.GetCheckpoint().GetSize() != lastSize {
					cp, err := integrity.OpenCheckpoint([]byte(resp.GetCheckpoint().GetSignedNote()), verifier)
					if err != nil {
						t.Errorf("round %d: checkpoint does not verify: %v", round, err)
						return
					}
					lastSize = cp.Size
					cpMu.Lock()
					issued = append(issued, cp)
					cpMu.Unlock()
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
		loaded := time.Now().Add(30 * time.Second)
		for acks.Load() < 20 && !t.Failed() && time.Now().Before(loaded) {
			time.Sleep(time.Millisecond)
		}
		if acks.Load() < 20 {
			cancel()
			wg.Wait()
			t.Fatalf("round %d: only %d appends acknowledged in 30s; stderr:\n%s", round, acks.Load(), p.stderr)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		p.kill()
		cancel()
		wg.Wait()
		cpMu.Lock()
		saved = append(saved, issued...)
		cpMu.Unlock()
		t.Logf("round %d: killed after %d acknowledged appends, %d checkpoints issued in this life", round, acks.Load(), len(issued))
		if t.Failed() {
			return
		}
	}
	if len(saved) < kills {
		t.Errorf("only %d checkpoints were issued in %d lives", len(saved), kills)
	}
	t.Logf("%d kills, %d checkpoints proved consistent after each restart, %s", kills, len(saved), time.Since(start).Round(time.Second))
}

// auditRestart checks a freshly restarted ledgerd, then retries the appends whose
// outcome the kill left unknown.
func auditRestart(t *testing.T, ctx context.Context, conn *grpc.ClientConn, workers []*crashWorker, v note.Verifier, saved []*integrity.Checkpoint, round int) {
	t.Helper()
	lc := ledgerv1.NewLedgerServiceClient(conn)
	log := readAll(t, ctx, lc)
	checkAcknowledged(t, log, workers, round)

	// Positions: the view at the log's head equals a rebuild of it.
	head := &ledgerv1.Position{}
	if len(log) > 0 {
		head = log[len(log)-1].GetPosition()
	}
	pc := ledgerv1.NewPositionServiceClient(conn)
	snap := func() string {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		resp, err := pc.GetSnapshot(sctx, &ledgerv1.GetSnapshotRequest{AsOfPosition: head, MinPosition: head})
		if err != nil {
			t.Fatalf("round %d: snapshot at %d: %v", round, head.GetCommit(), err)
		}
		return resp.GetDigest()
	}
	before := snap()
	if _, err := ledgerv1.NewAdminServiceClient(conn).RebuildProjection(ctx, &ledgerv1.RebuildProjectionRequest{Name: projections.PositionsName}); err != nil {
		t.Fatalf("round %d: rebuild: %v", round, err)
	}
	if after := snap(); after != before {
		t.Errorf("round %d: positions digest %s after restart, %s after a rebuild", round, before, after)
	}

	// Integrity: wait for a checkpoint of the whole log, then prove it consistent with
	// every checkpoint issued before the kills.
	ic := ledgerv1.NewIntegrityServiceClient(conn)
	var latest *integrity.Checkpoint
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := ic.GetCheckpoint(ctx, &ledgerv1.GetCheckpointRequest{})
		if err == nil {
			if latest, err = integrity.OpenCheckpoint([]byte(resp.GetCheckpoint().GetSignedNote()), v); err != nil {
				t.Fatalf("round %d: latest checkpoint: %v", round, err)
			}
			if latest.Size > uint64(len(log)) {
				t.Fatalf("round %d: checkpoint of %d records over a log of %d", round, latest.Size, len(log))
			}
			if latest.Size == uint64(len(log)) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("round %d: no checkpoint of the whole log (%d records) after 30s: %v, latest %v", round, len(log), err, latest)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, old := range saved {
		var proof [][]byte
		if old.Size < latest.Size {
			resp, err := ic.GetConsistencyProof(ctx, &ledgerv1.GetConsistencyProofRequest{OldSize: old.Size, NewSize: latest.Size})
			if err != nil {
				t.Fatalf("round %d: consistency %d→%d: %v", round, old.Size, latest.Size, err)
			}
			proof = resp.GetHashes()
		}
		if err := integrity.VerifyConsistency(old, latest, proof); err != nil {
			t.Errorf("round %d: the log after restart is not consistent with checkpoint %s issued before a kill: %v", round, old, err)
		}
	}
}

// checkAcknowledged checks the log after a restart: no event_id twice, dense positions
// and revisions, every acknowledged append whole at its acknowledged place, and every
// append of unknown outcome whole or absent.
func checkAcknowledged(t *testing.T, log []*ledgerv1.RecordedEvent, workers []*crashWorker, round int) {
	t.Helper()
	at := map[string]int{}
	nextRev := map[string]uint64{}
	for i, r := range log {
		id := r.GetEvent().GetEventId()
		if j, dup := at[id]; dup {
			t.Errorf("round %d: event_id %s is in the log twice, at %d and %d", round, id, j, i)
		}
		at[id] = i
		if got := r.GetPosition().GetCommit(); got != uint64(i+1) {
			t.Errorf("round %d: log[%d] has position %d, want %d", round, i, got, i+1)
		}
		if r.GetRevision() != nextRev[r.GetStream()] {
			t.Errorf("round %d: log[%d] has revision %d in %s, want %d", round, i, r.GetRevision(), r.GetStream(), nextRev[r.GetStream()])
		}
		nextRev[r.GetStream()] = r.GetRevision() + 1
	}
	whole := func(b *batch) (present bool) {
		first, n := -1, 0
		for k, id := range b.ids {
			i, ok := at[id]
			if !ok {
				continue
			}
			n++
			if k == 0 {
				first = i
			} else if first < 0 || i != first+k {
				t.Errorf("round %d: %s: append of %d events is not contiguous (event %d at %d)", round, b.party, len(b.ids), k, i)
			}
		}
		if n != 0 && n != len(b.ids) {
			t.Errorf("round %d: %s: append half-applied: %d of %d events stored", round, b.party, n, len(b.ids))
		}
		return n == len(b.ids)
	}
	acked := 0
	for _, w := range workers {
		for _, b := range w.done {
			acked += len(b.ids)
			if !whole(b) {
				t.Errorf("round %d: %s: an acknowledged append of %d events is missing", round, w.party, len(b.ids))
				continue
			}
			for k, id := range b.ids {
				if got, ack := log[at[id]], b.resp.GetEvents()[k]; got.GetPosition().GetCommit() != ack.GetPosition().GetCommit() || got.GetRevision() != ack.GetRevision() {
					t.Errorf("round %d: %s: event %s acknowledged at %d, found at %d", round, w.party, id, ack.GetPosition().GetCommit(), got.GetPosition().GetCommit())
				}
			}
		}
		if w.pending != nil {
			whole(w.pending)
		}
	}
	if acked > len(log) {
		t.Errorf("round %d: %d acknowledged records, the log holds %d", round, acked, len(log))
	}
}
