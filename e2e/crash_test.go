package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// batch is one append: its events, chosen once, so a retry sends exactly the same
// event_ids and content.
type batch struct {
	party    string
	ids      []string
	events   []*ledgerv1.Event
	expected *ledgerv1.ExpectedRevision
	// resp is the acknowledgement, once there is one.
	resp *ledgerv1.AppendResponse
	// retried is set when the first attempt's outcome was unknown (the server died).
	retried bool
}

var batchClock atomic.Int64

// newBatch makes n valid StatementIssued events of about 300 bytes for party.
func newBatch(party string, n int) *batch {
	b := &batch{party: party}
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for range n {
		id := uuid.NewString()
		at := base.Add(time.Duration(batchClock.Add(1)) * time.Second)
		b.ids = append(b.ids, id)
		b.events = append(b.events, &ledgerv1.Event{
			EventId:    id,
			Party:      party,
			OccurredAt: timestamppb.New(at),
			Sources: []*ledgerv1.Source{{
				Url: "https://example.org/statements/" + id, Publisher: "Example Wire", Language: "en",
			}},
			Body: &ledgerv1.Event_StatementIssued{StatementIssued: &ledgerv1.StatementIssued{
				StatementId: "st-" + id[:8],
				Speaker:     "spokesperson",
				Channel:     "press briefing",
				Stances: []*ledgerv1.Stance{{
					Topic:     "crash-test-topic",
					Alignment: ledgerv1.Alignment_ALIGNMENT_SUPPORTS,
					Act:       ledgerv1.Act_ACT_AFFIRM,
					Summary:   "The party affirms its support, as reported by the wire.",
				}},
			}},
		})
	}
	return b
}

// request builds the AppendRequest; the expected revision is fixed on the first call
// so that retries send the same one.
func (b *batch) request(expected *ledgerv1.ExpectedRevision) *ledgerv1.AppendRequest {
	if b.expected == nil {
		b.expected = expected
	}
	return &ledgerv1.AppendRequest{Party: b.party, ExpectedRevision: b.expected, Events: b.events}
}

// crashWorker appends batches of 1–5 events, one at a time. An exclusive worker owns its
// party and appends with exact expected revisions; the others share one party and
// append with any revision.
type crashWorker struct {
	party     string
	exclusive bool
	// last is the last acknowledged revision of an exclusive worker's stream; -1 for none.
	last    int64
	pending *batch
	done    []*batch
	rng     *rand.Rand
}

func (w *crashWorker) expected() *ledgerv1.ExpectedRevision {
	switch {
	case !w.exclusive:
		return &ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_Any{Any: true}}
	case w.last < 0:
		return &ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_NoStream{NoStream: true}}
	}
	return &ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_Exact{Exact: uint64(w.last)}}
}

// run appends until an append fails because the server went away (the batch stays
// pending, its outcome unknown) or ctx ends. A pending batch from the previous life
// of the server is retried first, with the same event_ids. Acknowledged appends are
// counted in acks. Any other error fails the test.
func (w *crashWorker) run(ctx context.Context, t *testing.T, c ledgerv1.LedgerServiceClient, acks *atomic.Int64) {
	for ctx.Err() == nil {
		b := w.pending
		if b == nil {
			b = newBatch(w.party, 1+w.rng.IntN(5))
			w.pending = b
		}
		resp, err := c.Append(ctx, b.request(w.expected()))
		if err != nil {
			switch status.Code(err) {
			case codes.Unavailable, codes.Canceled:
				// The outcome is unknown: retry it with the same event_ids after the restart.
				b.retried = true
				return
			}
			t.Errorf("%s: append of %d events (retry %v): %v", w.party, len(b.ids), b.retried, err)
			return
		}
		if len(resp.GetEvents()) != len(b.ids) {
			t.Errorf("%s: append of %d events acknowledged %d", w.party, len(b.ids), len(resp.GetEvents()))
			return
		}
		b.resp = resp
		w.pending = nil
		w.done = append(w.done, b)
		if w.exclusive {
			w.last = int64(resp.GetNextExpectedRevision())
		}
		acks.Add(1)
	}
}

// retryPending retries the worker's pending append, if any; it must succeed now.
func (w *crashWorker) retryPending(ctx context.Context, t *testing.T, c ledgerv1.LedgerServiceClient) {
	b := w.pending
	if b == nil {
		return
	}
	resp, err := c.Append(ctx, b.request(nil))
	if err != nil {
		t.Errorf("%s: final retry of an append of %d events: %v", w.party, len(b.ids), err)
		return
	}
	b.resp = resp
	w.pending = nil
	w.done = append(w.done, b)
}

// TestCrashKill9 appends from 16 concurrent clients, kills ledgerd with SIGKILL at random
// moments under load, restarts it on the same data directory, and repeats. At the end,
// every acknowledged record is in the log exactly once, where its acknowledgement said;
// every append is whole and contiguous; and every append whose outcome was unknown,
// retried with the same event_ids, was stored exactly once.
func TestCrashKill9(t *testing.T) { runCrashKill9(t) }

// runCrashKill9 is TestCrashKill9 with extra ledgerd flags (another store).
func runCrashKill9(t *testing.T, extra ...string) {
	kills := 5
	if testing.Short() {
		kills = 2
	}
	const clients = 16
	data := t.TempDir()
	workers := make([]*crashWorker, clients)
	for i := range workers {
		w := &crashWorker{party: "crash-shared", last: -1, rng: rand.New(rand.NewPCG(uint64(i), 42))}
		if i%2 == 0 {
			w.party, w.exclusive = fmt.Sprintf("crash-w%02d", i), true
		}
		workers[i] = w
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("kill moments seeded with %d", seed)

	for round := 0; round < kills; round++ {
		p := startLedgerd(t, data, extra...)
		ctx, cancel := context.WithCancel(t.Context())
		var acks atomic.Int64
		var wg sync.WaitGroup
		for _, w := range workers {
			wg.Go(func() { w.run(ctx, t, p.client(), &acks) })
		}
		// Kill mid-load: after some appends have been acknowledged, at a random moment.
		loaded := time.Now().Add(30 * time.Second)
		for acks.Load() < 20 && !t.Failed() && time.Now().Before(loaded) {
			time.Sleep(time.Millisecond)
		}
		if acks.Load() < 20 {
			cancel()
			t.Fatalf("round %d: only %d appends acknowledged in 30s; stderr:\n%s", round, acks.Load(), p.stderr)
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		p.kill()
		wg.Wait()
		cancel()
		t.Logf("round %d: killed after %d acknowledged appends in this life", round, acks.Load())
		if t.Failed() {
			return
		}
	}

	// The last life: retry every append whose outcome is still unknown, then check the log.
	p := startLedgerd(t, data, extra...)
	for _, w := range workers {
		w.retryPending(t.Context(), t, p.client())
	}
	verifyLog(t, readAll(t, t.Context(), p.client()), workers)
	p.stop()
}

// verifyLog checks the whole log against what the workers were told.
func verifyLog(t *testing.T, log []*ledgerv1.RecordedEvent, workers []*crashWorker) {
	t.Helper()
	at := map[string]int{} // event_id → index in log
	nextRev := map[string]uint64{}
	for i, r := range log {
		id := r.GetEvent().GetEventId()
		if j, dup := at[id]; dup {
			t.Errorf("event_id %s is in the log twice, at %d and %d", id, j, i)
		}
		at[id] = i
		if got := r.GetPosition().GetCommit(); got != uint64(i+1) {
			t.Errorf("log[%d] has position %d; the embedded store's positions are dense from 1", i, got)
		}
		stream := "party-" + r.GetEvent().GetParty()
		if r.GetStream() != stream {
			t.Errorf("log[%d] is in stream %q, its party says %q", i, r.GetStream(), stream)
		}
		if r.GetRevision() != nextRev[stream] {
			t.Errorf("log[%d] has revision %d in %s, want %d", i, r.GetRevision(), stream, nextRev[stream])
		}
		nextRev[stream] = r.GetRevision() + 1
	}

	var batches, events, retried, unknownStored int
	for _, w := range workers {
		if w.pending != nil {
			t.Errorf("%s: an append is still pending after the last restart", w.party)
		}
		for _, b := range w.done {
			batches++
			events += len(b.ids)
			if b.retried {
				retried++
				if !b.resp.GetAlreadyPresent() {
					unknownStored++
				}
			}
			first := -1
			for k, id := range b.ids {
				i, ok := at[id]
				if !ok {
					t.Errorf("%s: acknowledged event %s is not in the log", w.party, id)
					continue
				}
				if k == 0 {
					first = i
				} else if first >= 0 && i != first+k {
					t.Errorf("%s: append of %d events is not contiguous: event %d at %d, first at %d", w.party, len(b.ids), k, i, first)
				}
				ack := b.resp.GetEvents()[k]
				if got := log[i]; got.GetPosition().GetCommit() != ack.GetPosition().GetCommit() || got.GetRevision() != ack.GetRevision() {
					t.Errorf("%s: event %s acknowledged at %d rev %d, found at %d rev %d", w.party, id,
						ack.GetPosition().GetCommit(), ack.GetRevision(), got.GetPosition().GetCommit(), got.GetRevision())
				}
				if log[i].GetEvent().GetParty() != b.party || log[i].GetEvent().GetStatementIssued() == nil {
					t.Errorf("%s: event %s stored as %v", w.party, id, log[i].GetEvent())
				}
			}
		}
	}
	if events != len(log) {
		t.Errorf("the log holds %d records; the clients appended %d (no append may be partial, none may be lost)", len(log), events)
	}
	t.Logf("%d appends (%d records); %d had an unknown outcome and were retried: %d already present, %d stored by the retry",
		batches, events, retried, retried-unknownStored, unknownStored)
	if retried == 0 {
		t.Log("no append was cut off by a kill in this run")
	}
}
