package client

import (
	"context"
	"errors"
	"time"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// AppendResult describes a successful append.
type AppendResult struct {
	// Records are the stored events, one per event sent, in order. On an idempotent
	// retry they are the records of the original append.
	Records []Recorded
	// NextExpectedRevision is the stream revision of the last record: pass
	// ledger.ExactRevision(NextExpectedRevision) to append right after it.
	NextExpectedRevision uint64
	// Position is the log position of the last record.
	Position ledger.Position
	// AlreadyPresent is true when every event was already stored with the same content
	// and nothing was written (a retry of an append that had succeeded).
	AlreadyPresent bool
}

// Append stores events in party's stream, atomically (all or none), if the stream
// satisfies expected. Every event must have Party == party and carries its own EventID,
// sent as is: Append never invents ids, so a caller's retry of the same events is
// deduplicated by the ledger. A nil error means the events are durable.
//
// With a RetryPolicy (WithAppendRetry), a call that fails with Unavailable is sent again
// with the same events after a backoff, until it succeeds, fails otherwise, the attempts
// run out, or ctx ends.
//
// Errors unwrap to *ledger.ValidationError (nothing stored), *ledger.ConflictError,
// *ledger.DuplicateEventError (an event_id already used with other content, or an append
// that mixes stored and new event_ids), or ledger.ErrUnavailable; see Error.
func (c *Client) Append(ctx context.Context, party string, expected ledger.ExpectedRevision, events ...*ledger.Event) (AppendResult, error) {
	req := &ledgerv1.AppendRequest{
		Party:            party,
		ExpectedRevision: wire.ExpectedToProto(expected),
		Events:           make([]*ledgerv1.Event, len(events)),
	}
	for i, e := range events {
		req.Events[i] = wire.EventToProto(e)
	}
	for attempt := 1; ; attempt++ {
		resp, err := c.ledger.Append(ctx, req)
		if err == nil {
			return appendResultFrom(resp)
		}
		err = fromStatus(err)
		if !errors.Is(err, ledger.ErrUnavailable) || attempt >= c.retry.MaxAttempts {
			return AppendResult{}, err
		}
		t := time.NewTimer(c.retry.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return AppendResult{}, err
		case <-t.C:
		}
	}
}

func appendResultFrom(resp *ledgerv1.AppendResponse) (AppendResult, error) {
	res := AppendResult{
		NextExpectedRevision: resp.GetNextExpectedRevision(),
		Position:             wire.PositionFromProto(resp.GetPosition()),
		AlreadyPresent:       resp.GetAlreadyPresent(),
		Records:              make([]Recorded, 0, len(resp.GetEvents())),
	}
	for _, pb := range resp.GetEvents() {
		r, err := recordedFrom(pb)
		if err != nil {
			return AppendResult{}, err
		}
		res.Records = append(res.Records, r)
	}
	return res, nil
}
