package client

import (
	"context"
	"fmt"
	"io"
	"iter"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// The PositionService calls pass the request and response messages through as they
// are, so that callers (ledgerctl's -o json) can print exactly what the server said.
// Errors are mapped back to the domain's errors like every other call: a wait for
// min_position that ran out of time is an *Error with code DeadlineExceeded whose
// message says how far the view is.

// GetPosition returns one party's stance on one topic.
func (c *Client) GetPosition(ctx context.Context, req *ledgerv1.GetPositionRequest) (*ledgerv1.GetPositionResponse, error) {
	resp, err := ledgerv1.NewPositionServiceClient(c.conn).GetPosition(ctx, req)
	return resp, fromStatus(err)
}

// ListPositions returns one page of stances.
func (c *Client) ListPositions(ctx context.Context, req *ledgerv1.ListPositionsRequest) (*ledgerv1.ListPositionsResponse, error) {
	resp, err := ledgerv1.NewPositionServiceClient(c.conn).ListPositions(ctx, req)
	return resp, fromStatus(err)
}

// AllPositions follows ListPositions' pages and returns them as one response (the
// first page's as_of_position; no next_page_token).
func (c *Client) AllPositions(ctx context.Context, req *ledgerv1.ListPositionsRequest) (*ledgerv1.ListPositionsResponse, error) {
	var all *ledgerv1.ListPositionsResponse
	for {
		page, err := c.ListPositions(ctx, req)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = page
		} else {
			all.Positions = append(all.Positions, page.GetPositions()...)
		}
		if page.GetNextPageToken() == "" {
			all.NextPageToken = ""
			return all, nil
		}
		next := ledgerv1.ListPositionsRequest{
			Party: req.GetParty(), Topic: req.GetTopic(), AsOfTime: req.GetAsOfTime(),
			PageSize: req.GetPageSize(), MinPosition: req.GetMinPosition(),
		}
		next.PageToken = page.GetNextPageToken()
		req = &next
	}
}

// GetHistory returns every contribution to (party, topic).
func (c *Client) GetHistory(ctx context.Context, req *ledgerv1.GetHistoryRequest) (*ledgerv1.GetHistoryResponse, error) {
	resp, err := ledgerv1.NewPositionServiceClient(c.conn).GetHistory(ctx, req)
	return resp, fromStatus(err)
}

// GetSnapshot returns the whole table at (T, P) with its digest.
func (c *Client) GetSnapshot(ctx context.Context, req *ledgerv1.GetSnapshotRequest) (*ledgerv1.GetSnapshotResponse, error) {
	resp, err := ledgerv1.NewPositionServiceClient(c.conn).GetSnapshot(ctx, req)
	return resp, fromStatus(err)
}

// WatchPositions yields changes of current stances until ctx ends (then an error
// matching ctx's error) or the server ends the stream (an error).
func (c *Client) WatchPositions(ctx context.Context, req *ledgerv1.WatchPositionsRequest) iter.Seq2[*ledgerv1.WatchPositionsResponse, error] {
	return func(yield func(*ledgerv1.WatchPositionsResponse, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := ledgerv1.NewPositionServiceClient(c.conn).WatchPositions(ctx, req)
		if err != nil {
			yield(nil, fromStatus(err))
			return
		}
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				yield(nil, fmt.Errorf("watch ended by the server: %w", ledger.ErrUnavailable))
				return
			}
			if err != nil {
				yield(nil, fromStatus(err))
				return
			}
			if !yield(resp, nil) {
				return
			}
		}
	}
}

// RebuildProjection rebuilds the named projection ("positions") from the log and
// returns the rebuilt view's applied position once it has taken over.
func (c *Client) RebuildProjection(ctx context.Context, name string) (ledger.Position, error) {
	resp, err := ledgerv1.NewAdminServiceClient(c.conn).RebuildProjection(ctx, &ledgerv1.RebuildProjectionRequest{Name: name})
	if err != nil {
		return ledger.Position{}, fromStatus(err)
	}
	return wire.PositionFromProto(resp.GetApplied()), nil
}
