// Package store is the storage contract of the ledger: the small interfaces the server
// and the projections consume, with the guarantees every backend MUST give. The
// conformance suite in store/storetest checks them; every backend runs it.
//
// Records are opaque bytes here (ledger.Encode produces them): a backend stores and
// returns exactly what it was given, never a re-encoding.
package store

import (
	"context"
	"iter"

	ledger "github.com/stanceledger/ledger"
)

// Proposed is a record to append: an event in its stored bytes.
type Proposed struct {
	// EventID is the ledger event_id: the idempotency key, unique in the whole log.
	EventID string
	// Type is the stored event type, e.g. "StatementIssued".
	Type string
	// Data and Metadata are stored and returned byte for byte.
	Data     []byte
	Metadata []byte
	// ContentHash identifies the content for idempotency: a retry of the same event
	// carries the same hash (ledger.Encoded.ContentHash).
	ContentHash string
}

// Record is a stored record.
type Record struct {
	// Stream is the stream that holds it, "party-<party>".
	Stream string
	// Revision is its place in Stream, from 0.
	Revision uint64
	// Position is its place in the global log.
	Position ledger.Position
	EventID  string
	Type     string
	// A record read from a store has Data and Metadata of its own: writing into them
	// or appending to them changes no other record. (Records read together may share
	// one allocation, so keeping one record's bytes can keep its neighbours' memory.)
	Data        []byte
	Metadata    []byte
	ContentHash string
}

// AppendResult describes a successful append.
type AppendResult struct {
	// Records are the stored records, one per proposed record, in order. On an
	// idempotent retry they are the records stored by the original append.
	Records []Record
	// NextExpectedRevision is the revision of the last record in Records.
	NextExpectedRevision uint64
	// Position is the position of the last record in Records.
	Position ledger.Position
	// AlreadyPresent is true when every record was already stored with the same content
	// and nothing was written.
	AlreadyPresent bool
}

// Appender appends to a stream.
type Appender interface {
	// Append stores records at the end of stream, atomically: after it returns, either
	// every record is stored, consecutively in the stream and in the global log, or none
	// is. A nil error means the records are durable (synced to stable storage).
	//
	// Errors:
	//   - *ledger.ConflictError when the stream does not satisfy expected; nothing stored.
	//   - *ledger.DuplicateEventError when an EventID is already stored with another
	//     ContentHash or in another stream, when some but not all EventIDs are already
	//     stored, or when one EventID appears twice in records; nothing stored.
	//   - an error matching ledger.ErrInvalid when records is empty.
	//   - ledger.ErrUnavailable (wrapped) when the backend cannot be reached.
	//
	// When every EventID is already stored in stream with the same ContentHash, Append
	// stores nothing and returns the original records with AlreadyPresent set; expected
	// is not checked then, so a retry of an acknowledged append succeeds.
	Append(ctx context.Context, stream string, expected ledger.ExpectedRevision, records []Proposed) (AppendResult, error)
}

// ReadStreamOptions chooses what ReadStream returns.
type ReadStreamOptions struct {
	// Backwards reads from higher revisions to lower.
	Backwards bool
	// From is the first revision to return (inclusive). Ignored when FromEnd is set.
	From uint64
	// FromEnd starts at the last revision (useful with Backwards).
	FromEnd bool
	// Max is the most records to return; 0 means no limit.
	Max uint64
}

// StreamReader reads one stream.
type StreamReader interface {
	// ReadStream yields the records of stream in revision order (or reverse). A stream
	// that does not exist yields one error matching ledger.ErrNotFound. Iteration stops
	// at the first error, which is yielded.
	ReadStream(ctx context.Context, stream string, opts ReadStreamOptions) iter.Seq2[Record, error]
}

// Filter narrows reads of the global log. Empty fields match everything; within one
// field, any entry matches.
type Filter struct {
	// Streams are exact stream names.
	Streams []string
	// Types are stored event types.
	Types []string
}

// Match reports whether r passes f.
func (f Filter) Match(r Record) bool {
	return matchAny(f.Streams, r.Stream) && matchAny(f.Types, r.Type)
}

func matchAny(list []string, s string) bool {
	if len(list) == 0 {
		return true
	}
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// LogReader reads the global log.
type LogReader interface {
	// ReadAll yields the ledger's records with Position >= from that pass filter, in
	// global log order, up to the records stored when the read reaches the end. Only
	// ledger records (streams "party-…") are yielded. Iteration stops at the first
	// error, which is yielded.
	ReadAll(ctx context.Context, from ledger.Position, filter Filter) iter.Seq2[Record, error]
}

// Message is one item of a subscription: a record, or the mark that the subscription
// has caught up.
type Message struct {
	// Record is set when CaughtUp is false.
	Record Record
	// CaughtUp is true exactly once per subscription, after every record stored when
	// the subscription started has been yielded; live records follow it.
	CaughtUp bool
}

// Subscriber follows the global log.
type Subscriber interface {
	// Subscribe yields every ledger record with Position >= from that passes filter,
	// exactly once and in global log order: first those already stored (catch-up), then
	// a Message with CaughtUp, then new records as they are appended (live), with no gap
	// or repeat across the switch. It runs until ctx ends, then yields ctx's error and
	// stops. A subscriber that falls too far behind may be ended with an error; it can
	// resume by subscribing from the last position it saw and skipping that record.
	Subscribe(ctx context.Context, from ledger.Position, filter Filter) iter.Seq2[Message, error]
}

// EventGetter finds one record by event_id.
type EventGetter interface {
	// GetEvent returns the record stored under eventID, or an error matching
	// ledger.ErrNotFound.
	GetEvent(ctx context.Context, eventID string) (Record, error)
}

// ContentVoucher is implemented by a backend that vouches for the content hashes of
// the records it returns (VouchesForContent reports true): the ledger is its only
// writer, so every record's hash was computed from its content, or checked against
// it, before it was stored, and the backend checksums what it stores. Readers may
// then decode its records without recomputing the hash (ledger.DecodeTrusted). A
// backend that other programs can write to (EventStoreDB) does not vouch.
type ContentVoucher interface {
	VouchesForContent() bool
}

// Vouches reports whether s is a ContentVoucher that vouches for its content hashes.
func Vouches(s any) bool {
	v, ok := s.(ContentVoucher)
	return ok && v.VouchesForContent()
}

// Store is everything a backend provides. Consumers should accept the smallest
// interface above that they need.
type Store interface {
	Appender
	StreamReader
	LogReader
	Subscriber
	EventGetter
	// Close releases the backend. Subscriptions end; later calls fail with an error
	// matching ledger.ErrClosed.
	Close() error
}
