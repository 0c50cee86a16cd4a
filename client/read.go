package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// Recorded is an event as the ledger stored it.
type Recorded struct {
	// Event is the event as submitted (decoded from the wire).
	Event *ledger.Event
	// Stream is the stream that holds it, "party-<party>".
	Stream string
	// Revision is its place in Stream, from 0.
	Revision uint64
	// Position is its place in the global log.
	Position ledger.Position
	// RecordedAt is transaction time: when the ledger stored it.
	RecordedAt time.Time
	// RecordedBy is the principal that appended it.
	RecordedBy string
	// Stored is the record in the exact bytes the ledger keeps: the bytes a Merkle leaf
	// hashes and an auditor checks. Never re-encode Event to get them.
	Stored Stored
}

// Stored is a record in its stored bytes (docs/architecture.md, "Stored bytes").
type Stored struct {
	// Type is the stored event type, e.g. "StatementIssued".
	Type string
	// Data is the body as JSON.
	Data []byte
	// Metadata is the metadata as JSON.
	Metadata []byte
}

// recordedFrom converts a recorded event from the wire. An event the client cannot decode
// is an error: the server only sends what it validated, so it means client and server
// disagree about the API.
func recordedFrom(pb *ledgerv1.RecordedEvent) (Recorded, error) {
	if pb == nil {
		return Recorded{}, errors.New("server sent an empty recorded event")
	}
	e, err := wire.EventFromProto(pb.GetEvent())
	if err != nil {
		return Recorded{}, fmt.Errorf("decode recorded event at %d: %w", pb.GetPosition().GetCommit(), err)
	}
	r := Recorded{
		Event:      e,
		Stream:     pb.GetStream(),
		Revision:   pb.GetRevision(),
		Position:   wire.PositionFromProto(pb.GetPosition()),
		RecordedBy: pb.GetRecordedBy(),
		Stored: Stored{
			Type:     pb.GetStored().GetEventType(),
			Data:     pb.GetStored().GetData(),
			Metadata: pb.GetStored().GetMetadata(),
		},
	}
	if pb.GetRecordedAt() != nil {
		r.RecordedAt = pb.GetRecordedAt().AsTime()
	}
	return r, nil
}

// GetEvent returns the event stored under eventID. An unknown id is an error matching
// ledger.ErrNotFound.
func (c *Client) GetEvent(ctx context.Context, eventID string) (Recorded, error) {
	resp, err := c.ledger.GetEvent(ctx, &ledgerv1.GetEventRequest{EventId: eventID})
	if err != nil {
		return Recorded{}, fromStatus(err)
	}
	return recordedFrom(resp.GetEvent())
}

// ReadStreamOptions chooses what ReadStream returns. The zero value reads the whole
// stream forwards.
type ReadStreamOptions struct {
	// Backwards reads from higher revisions to lower.
	Backwards bool
	// From is the first revision to return (inclusive). Ignored when FromEnd is set.
	From uint64
	// FromEnd starts at the last revision (use with Backwards).
	FromEnd bool
	// Max is the most records to return; 0 means no limit.
	Max uint64
}

// ReadStream yields the records of party's stream in revision order (or reverse). A
// stream that does not exist yields one error matching ledger.ErrNotFound. Iteration stops
// at the first error, which is yielded; stopping early cancels the call.
func (c *Client) ReadStream(ctx context.Context, party string, opts ReadStreamOptions) iter.Seq2[Recorded, error] {
	dir := ledgerv1.Direction_DIRECTION_FORWARDS
	if opts.Backwards {
		dir = ledgerv1.Direction_DIRECTION_BACKWARDS
	}
	req := &ledgerv1.ReadStreamRequest{Party: party, Direction: dir, FromRevision: opts.From, FromEnd: opts.FromEnd, MaxCount: opts.Max}
	return func(yield func(Recorded, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.ledger.ReadStream(ctx, req)
		if err != nil {
			yield(Recorded{}, fromStatus(err))
			return
		}
		yieldRecords(stream, yield)
	}
}

// recordResponse is a streamed response that carries one recorded event.
type recordResponse interface {
	GetEvent() *ledgerv1.RecordedEvent
}

// recordStream is a server stream of such responses.
type recordStream[R recordResponse] interface {
	Recv() (R, error)
}

// yieldRecords yields the records of stream until it ends, fails or yield stops.
func yieldRecords[R interface {
	GetEvent() *ledgerv1.RecordedEvent
}](stream recordStream[R], yield func(Recorded, error) bool) {
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return
		}
		if err != nil {
			yield(Recorded{}, fromStatus(err))
			return
		}
		r, err := recordedFrom(resp.GetEvent())
		if !yield(r, err) || err != nil {
			return
		}
	}
}

// Filter narrows ReadAll and Subscribe. Empty fields match everything; within one field
// any entry matches.
type Filter struct {
	// Parties are party slugs.
	Parties []string
	// Types are record types.
	Types []ledger.RecordType
	// Since keeps events with occurred_at >= Since; the zero time sets no bound.
	Since time.Time
	// Until keeps events with occurred_at < Until; the zero time sets no bound.
	Until time.Time
}

func (f Filter) proto() *ledgerv1.Filter {
	pb := &ledgerv1.Filter{Parties: f.Parties}
	for _, t := range f.Types {
		pb.Types = append(pb.Types, wire.RecordTypeToProto(t))
	}
	if !f.Since.IsZero() {
		pb.OccurredSince = timestamppb.New(f.Since)
	}
	if !f.Until.IsZero() {
		pb.OccurredUntil = timestamppb.New(f.Until)
	}
	return pb
}

// ReadAll yields the records with position >= from that pass filter, in global log
// order, up to the end of the log as the server sees it when it gets there. The zero
// position reads from the start. Iteration stops at the first error, which is yielded;
// stopping early cancels the call.
func (c *Client) ReadAll(ctx context.Context, from ledger.Position, filter Filter) iter.Seq2[Recorded, error] {
	req := &ledgerv1.ReadAllRequest{Filter: filter.proto()}
	if !from.IsZero() {
		req.From = wire.PositionToProto(from)
	}
	return func(yield func(Recorded, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.ledger.ReadAll(ctx, req)
		if err != nil {
			yield(Recorded{}, fromStatus(err))
			return
		}
		yieldRecords(stream, yield)
	}
}

// Message is one item of a subscription: a record, or the mark that the subscription
// has caught up.
type Message struct {
	// Record is set when CaughtUp is false.
	Record Recorded
	// CaughtUp is true exactly once per subscription, after every record that existed
	// when it started has been yielded; live records follow.
	CaughtUp bool
	// CaughtUpAt is the position the server reported with the caught-up mark.
	CaughtUpAt ledger.Position
}

// Subscribe yields every record with position >= from that passes filter, exactly once
// and in log order: first the stored ones, then a Message with CaughtUp, then new records
// as they are appended. It runs until ctx ends or the consumer stops; when ctx ends it
// yields an error matching ctx's error. A subscription the server ends (it shuts down, or
// the subscriber fell too far behind) yields an error; resume by subscribing from the
// last position seen and skipping the record at it.
func (c *Client) Subscribe(ctx context.Context, from ledger.Position, filter Filter) iter.Seq2[Message, error] {
	req := &ledgerv1.SubscribeRequest{Filter: filter.proto()}
	if !from.IsZero() {
		req.From = wire.PositionToProto(from)
	}
	return func(yield func(Message, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.ledger.Subscribe(ctx, req)
		if err != nil {
			yield(Message{}, fromStatus(err))
			return
		}
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				yield(Message{}, fmt.Errorf("subscription ended by the server: %w", ledger.ErrUnavailable))
				return
			}
			if err != nil {
				yield(Message{}, fromStatus(err))
				return
			}
			var m Message
			switch content := resp.GetContent().(type) {
			case *ledgerv1.SubscribeResponse_CaughtUp:
				m = Message{CaughtUp: true, CaughtUpAt: wire.PositionFromProto(content.CaughtUp)}
			case *ledgerv1.SubscribeResponse_Event:
				m.Record, err = recordedFrom(content.Event)
			default:
				err = errors.New("server sent an empty subscription message")
			}
			if !yield(m, err) || err != nil {
				return
			}
		}
	}
}
