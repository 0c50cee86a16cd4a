package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stanceledger/ledger/projections"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// TestKill9DuringBulkBuild kills ledgerd while it builds the positions view from
// position 0 (the view's directory removed, as a new data directory or a schema change
// leaves it): the build has no WAL, so the next start must find its marker, throw it
// away and build again, ending with the same table as before and as a rebuild.
func TestKill9DuringBulkBuild(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	data := t.TempDir()
	view := filepath.Join(data, "views", projections.PositionsName)

	p := startLedgerd(t, data)
	head := appendVaried(t, ctx, p, 60_000)
	want := snapshotDigest(t, ctx, p, head)
	p.stop()

	caught := false
	for attempt := 0; attempt < 5 && !caught; attempt++ {
		if err := os.RemoveAll(view); err != nil {
			t.Fatal(err)
		}
		p = startLedgerd(t, data)
		// Kill as soon as the build has applied something, well before it is done.
		pc := ledgerv1.NewPositionServiceClient(p.conn)
		for {
			resp, err := pc.ListPositions(ctx, &ledgerv1.ListPositionsRequest{PageSize: 1})
			if err == nil && resp.GetAsOfPosition().GetCommit() > 0 {
				break
			}
			if ctx.Err() != nil {
				t.Fatal(ctx.Err())
			}
		}
		p.kill()
		if _, err := os.Stat(view + ".bulk"); err == nil {
			caught = true
			t.Logf("attempt %d: killed during the bulk build", attempt)
		}
	}
	if !caught {
		t.Fatal("the positions view was never caught in its bulk build in 5 attempts")
	}

	p = startLedgerd(t, data)
	defer p.stop()
	if !strings.Contains(p.stderr.String(), "bulk build was cut short") {
		t.Errorf("the restarted ledgerd did not say it threw the cut-short build away; stderr:\n%s", p.stderr)
	}
	if got := snapshotDigest(t, ctx, p, head); got != want {
		t.Errorf("after a kill during the bulk build: digest %s, before it %s", got, want)
	}
	// Once caught up, the build is settled and reopened as an ordinary view.
	waitFor(t, func() bool {
		_, err := os.Stat(view + ".bulk")
		return os.IsNotExist(err)
	})
	if _, err := ledgerv1.NewAdminServiceClient(p.conn).RebuildProjection(ctx, &ledgerv1.RebuildProjectionRequest{Name: projections.PositionsName}); err != nil {
		t.Fatal(err)
	}
	if got := snapshotDigest(t, ctx, p, head); got != want {
		t.Errorf("after a rebuild: digest %s, before %s", got, want)
	}
}

// appendVaried appends n statements spread over 20 parties and 50 topics, with
// alignments, valid times out of order and co-signers, in appends of 200, and
// returns the position of the last.
func appendVaried(t *testing.T, ctx context.Context, p *ledgerd, n int) *ledgerv1.Position {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, 12))
	c := p.client()
	var head *ledgerv1.Position
	for i := 0; i < n; i += 200 {
		party := fmt.Sprintf("party-%d", rng.IntN(20))
		req := &ledgerv1.AppendRequest{Party: party}
		for j := range 200 {
			st := &ledgerv1.StatementIssued{StatementId: fmt.Sprintf("s-%d", i+j), Speaker: "spokesperson"}
			topic := rng.IntN(50)
			for k := range 1 + rng.IntN(2) {
				st.Stances = append(st.Stances, &ledgerv1.Stance{
					Topic:     fmt.Sprintf("topic-%d", (topic+7*k)%50),
					Alignment: ledgerv1.Alignment(1 + rng.IntN(3)),
					Act:       ledgerv1.Act_ACT_AFFIRM,
					Summary:   "What was said, in a line.",
				})
			}
			if rng.IntN(10) == 0 {
				st.CoSigners = []string{fmt.Sprintf("party-%d", 20+rng.IntN(5))}
			}
			req.Events = append(req.Events, &ledgerv1.Event{
				EventId:    fmt.Sprintf("bulk-%d", i+j),
				Party:      party,
				OccurredAt: timestamppb.New(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(5*365*24)) * time.Hour)),
				Sources:    []*ledgerv1.Source{{Url: "https://example.org/s", Publisher: "Example"}},
				Body:       &ledgerv1.Event_StatementIssued{StatementIssued: st},
			})
		}
		resp, err := c.Append(ctx, req)
		if err != nil {
			t.Fatalf("append at %d: %v", i, err)
		}
		head = resp.GetPosition()
	}
	return head
}

// snapshotDigest waits for the positions view to apply head and returns the digest of
// its snapshot there.
func snapshotDigest(t *testing.T, ctx context.Context, p *ledgerd, head *ledgerv1.Position) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := ledgerv1.NewPositionServiceClient(p.conn).GetSnapshot(sctx, &ledgerv1.GetSnapshotRequest{AsOfPosition: head, MinPosition: head})
	if err != nil {
		t.Fatalf("snapshot at %d: %v", head.GetCommit(), err)
	}
	if len(resp.GetRows()) == 0 {
		t.Fatal("empty snapshot")
	}
	return resp.GetDigest()
}
