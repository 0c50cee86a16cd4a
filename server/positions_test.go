package server_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/projections"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
)

// positionsServer serves a store with the positions view kept up to date by a runner.
type positionsServer struct {
	*testServer
	positions ledgerv1.PositionServiceClient
	view      *projections.Positions
}

func startPositions(t *testing.T) *positionsServer {
	t.Helper()
	st := openStore(t)
	view, err := projections.OpenPositions(t.TempDir()+"/views/positions", nil)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := projections.NewRunner(st, nil, nil, view)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { runner.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; view.Close() })
	ts := start(t, server.Config{Store: st, Positions: view, Rebuilder: runner})
	return &positionsServer{testServer: ts, positions: ledgerv1.NewPositionServiceClient(ts.conn), view: view}
}

// importSeed appends every record of testdata/seed.jsonl and returns the last position.
func importSeed(t *testing.T, c ledgerv1.LedgerServiceClient) *ledgerv1.Position {
	t.Helper()
	f, err := os.Open("../testdata/seed.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last *ledgerv1.Position
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		e := new(ledgerv1.Event)
		if err := protojson.Unmarshal(sc.Bytes(), e); err != nil {
			t.Fatal(err)
		}
		last = appendOK(t, c, e.GetParty(), anyRev(), e).GetPosition()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return last
}

func date(s string) *timestamppb.Timestamp {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return timestamppb.New(t.Add(24*time.Hour - time.Nanosecond))
}

func TestSeedStoryPositions(t *testing.T) {
	ps := startPositions(t)
	last := importSeed(t, ps.client)
	ctx := t.Context()

	cases := []struct {
		name         string
		party, topic string
		asOf         *timestamppb.Timestamp
		want         ledgerv1.Alignment // UNSPECIFIED: no stance (NotFound)
	}{
		{"DPRK opposes the MSMT's legitimacy", "dprk", "msmt-legitimacy", nil, ledgerv1.Alignment_ALIGNMENT_OPPOSES},
		{"before its rejection the DPRK had no stance on it", "dprk", "msmt-legitimacy", date("2025-05-31"), ledgerv1.Alignment_ALIGNMENT_UNSPECIFIED},
		{"after its rejection it opposes it", "dprk", "msmt-legitimacy", date("2025-06-01"), ledgerv1.Alignment_ALIGNMENT_OPPOSES},
		{"DPRK opposes the MSMT report", "dprk", "msmt-report-2025-05", nil, ledgerv1.Alignment_ALIGNMENT_OPPOSES},
		{"Russia opposed renewing the Panel's mandate", "russia", "poe-mandate-renewal-2024", nil, ledgerv1.Alignment_ALIGNMENT_OPPOSES},
		{"China abstained", "china", "poe-mandate-renewal-2024", nil, ledgerv1.Alignment_ALIGNMENT_ABSTAINS},
		{"the US voted for it", "usa", "poe-mandate-renewal-2024", nil, ledgerv1.Alignment_ALIGNMENT_SUPPORTS},
		{"Russia calls the MSMT illegal", "russia", "msmt-legitimacy", nil, ledgerv1.Alignment_ALIGNMENT_OPPOSES},
		{"co-signers of the MSMT's founding support it", "japan", "msmt-legitimacy", nil, ledgerv1.Alignment_ALIGNMENT_SUPPORTS},
		{"the MSMT did not exist before October 2024", "japan", "msmt-legitimacy", date("2024-10-15"), ledgerv1.Alignment_ALIGNMENT_UNSPECIFIED},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := ps.positions.GetPosition(ctx, &ledgerv1.GetPositionRequest{
				Party: tc.party, Topic: tc.topic, AsOfTime: tc.asOf, MinPosition: last,
			})
			if tc.want == ledgerv1.Alignment_ALIGNMENT_UNSPECIFIED {
				if status.Code(err) != codes.NotFound {
					t.Fatalf("GetPosition = %v, %v; want NotFound", resp, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetPosition().GetAlignment(); got != tc.want {
				t.Fatalf("alignment %v, want %v (%v)", got, tc.want, resp.GetPosition())
			}
		})
	}

	// The snapshot before the MSMT report differs from the one after it.
	before, err := ps.positions.GetSnapshot(ctx, &ledgerv1.GetSnapshotRequest{AsOfTime: date("2025-05-28"), MinPosition: last})
	if err != nil {
		t.Fatal(err)
	}
	after, err := ps.positions.GetSnapshot(ctx, &ledgerv1.GetSnapshotRequest{MinPosition: last})
	if err != nil {
		t.Fatal(err)
	}
	if before.GetDigest() == after.GetDigest() || len(before.GetRows()) >= len(after.GetRows()) {
		t.Fatalf("snapshots before (%d rows, %s) and after (%d rows, %s) the report", len(before.GetRows()), before.GetDigest(), len(after.GetRows()), after.GetDigest())
	}
	// History: the DPRK's rejection was corrected (sources added) and says so.
	hist, err := ps.positions.GetHistory(ctx, &ledgerv1.GetHistoryRequest{Party: "dprk", Topic: "msmt-legitimacy"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist.GetEntries()) != 1 || !hist.GetEntries()[0].GetCorrected() || len(hist.GetEntries()[0].GetRecordCorrections()) != 1 {
		t.Fatalf("history %v", hist)
	}
	// Paging: three at a time gives the same rows as the snapshot.
	var rows []*ledgerv1.PartyPosition
	req := &ledgerv1.ListPositionsRequest{PageSize: 3}
	for {
		page, err := ps.positions.ListPositions(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, page.GetPositions()...)
		if page.GetNextPageToken() == "" {
			break
		}
		req.PageToken = page.GetNextPageToken()
	}
	if len(rows) != len(after.GetRows()) {
		t.Fatalf("paged list has %d rows, snapshot %d", len(rows), len(after.GetRows()))
	}
}

func TestPositionsBadRequests(t *testing.T) {
	ps := startPositions(t)
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"party missing": func() error {
			_, err := ps.positions.GetPosition(ctx, &ledgerv1.GetPositionRequest{Topic: "x"})
			return err
		},
		"party not a slug": func() error {
			_, err := ps.positions.ListPositions(ctx, &ledgerv1.ListPositionsRequest{Party: "Not A Slug"})
			return err
		},
		"negative page size": func() error {
			_, err := ps.positions.ListPositions(ctx, &ledgerv1.ListPositionsRequest{PageSize: -1})
			return err
		},
		"forged page token": func() error {
			_, err := ps.positions.ListPositions(ctx, &ledgerv1.ListPositionsRequest{PageToken: "!!"})
			return err
		},
		"history without topic": func() error {
			_, err := ps.positions.GetHistory(ctx, &ledgerv1.GetHistoryRequest{Party: "dprk"})
			return err
		},
		"unknown projection": func() error {
			_, err := ledgerv1.NewAdminServiceClient(ps.conn).RebuildProjection(ctx, &ledgerv1.RebuildProjectionRequest{})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}

// A wait for a position the view never reaches fails with DeadlineExceeded, saying
// how far the view is.
func TestMinPositionPastDeadline(t *testing.T) {
	ps := startPositions(t)
	last := importSeed(t, ps.client)
	// The view first applies the whole seed (on a loaded machine it may take longer
	// than the deadline below), so the message names the seed's last position.
	if _, err := ps.positions.GetPosition(t.Context(), &ledgerv1.GetPositionRequest{
		Party: "dprk", Topic: "msmt-legitimacy", MinPosition: last,
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := ps.positions.GetPosition(ctx, &ledgerv1.GetPositionRequest{
		Party: "dprk", Topic: "msmt-legitimacy", MinPosition: &ledgerv1.Position{Commit: last.GetCommit() + 100, Prepare: last.GetPrepare() + 100},
	})
	want := fmt.Sprintf("applied the log up to position %d/%d", last.GetCommit(), last.GetPrepare())
	if s, _ := status.FromError(err); s.Code() != codes.DeadlineExceeded || !strings.Contains(s.Message(), want) {
		t.Fatalf("GetPosition = %v; want DeadlineExceeded saying %q", err, want)
	}
}

// Concurrent clients each append and at once read with min_position: every one sees
// its own write, never an older state.
func TestReadYourWritesUnderConcurrency(t *testing.T) {
	ps := startPositions(t)
	ctx := t.Context()
	const clients, rounds = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			party := fmt.Sprintf("party-%d", c)
			for r := range rounds {
				// Later rounds happen later in valid time, so each write becomes current.
				at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r) * time.Hour)
				ev := statement(fmt.Sprintf("rw-%d-%d", c, r), party, "topic", at)
				resp, err := ps.client.Append(ctx, &ledgerv1.AppendRequest{Party: party, Events: []*ledgerv1.Event{ev}})
				if err != nil {
					errs <- err
					return
				}
				got, err := ps.positions.GetPosition(ctx, &ledgerv1.GetPositionRequest{
					Party: party, Topic: "topic", MinPosition: resp.GetPosition(),
				})
				if err != nil {
					errs <- fmt.Errorf("%s round %d: %w", party, r, err)
					return
				}
				if got.GetPosition().GetEventId() != ev.GetEventId() {
					errs <- fmt.Errorf("%s round %d: read %s, want its own write %s", party, r, got.GetPosition().GetEventId(), ev.GetEventId())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestWatchAndRebuild(t *testing.T) {
	ps := startPositions(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	watch, err := ps.positions.WatchPositions(ctx, &ledgerv1.WatchPositionsRequest{Party: "dprk"})
	if err != nil {
		t.Fatal(err)
	}
	// The watch is registered once the server has started the stream; retry the
	// first append until a change arrives.
	changes := make(chan *ledgerv1.WatchPositionsResponse, 100)
	go func() {
		for {
			m, err := watch.Recv()
			if err != nil {
				close(changes)
				return
			}
			changes <- m
		}
	}()
	time.Sleep(100 * time.Millisecond)
	last := importSeed(t, ps.client)
	seen := map[string]bool{}
	for len(seen) < 4 {
		select {
		case m, ok := <-changes:
			if !ok {
				t.Fatal("watch ended")
			}
			if m.GetParty() != "dprk" {
				t.Fatalf("watch for dprk sent %v", m)
			}
			seen[m.GetTopic()] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("changes seen: %v", seen)
		}
	}
	before, err := ps.positions.GetSnapshot(t.Context(), &ledgerv1.GetSnapshotRequest{MinPosition: last})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ledgerv1.NewAdminServiceClient(ps.conn).RebuildProjection(t.Context(), &ledgerv1.RebuildProjectionRequest{Name: "positions"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetApplied().GetCommit() < last.GetCommit() {
		t.Fatalf("rebuilt to %v, want at least %v", resp.GetApplied(), last)
	}
	after, err := ps.positions.GetSnapshot(t.Context(), &ledgerv1.GetSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if after.GetDigest() != before.GetDigest() {
		t.Fatalf("digest after rebuild %s, before %s", after.GetDigest(), before.GetDigest())
	}
	if _, err := ledgerv1.NewAdminServiceClient(ps.conn).RebuildProjection(t.Context(), &ledgerv1.RebuildProjectionRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("rebuild of an unknown projection: %v", err)
	}
}

// notRebuildable is a Rebuilder whose only projection cannot be rebuilt.
type notRebuildable struct{}

func (notRebuildable) Rebuild(ctx context.Context, name string) (ledger.Position, error) {
	return ledger.Position{}, fmt.Errorf("%w: %s", projections.ErrNotRebuildable, name)
}

func TestRebuildOfAViewThatCannotBeRebuilt(t *testing.T) {
	ts := start(t, server.Config{Rebuilder: notRebuildable{}})
	_, err := ledgerv1.NewAdminServiceClient(ts.conn).RebuildProjection(t.Context(), &ledgerv1.RebuildProjectionRequest{Name: "integrity"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("RebuildProjection(integrity) = %v, want InvalidArgument", err)
	}
}
