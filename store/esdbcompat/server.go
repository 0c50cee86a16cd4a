// Package esdbcompat serves the part of EventStoreDB's client gRPC protocol that
// EventStore-Client-Go uses for streams, over any store.Store: the
// event_store.client.streams.Streams service (Append, Read of one stream or of $all,
// forwards and backwards, with counts, catch-up subscriptions, $all filters by stream
// prefix or event type with checkpoints) and event_store.client.server_features. It
// implements the server interfaces generated in the client module itself, so client
// and endpoint cannot drift apart.
//
// It lets EventStoreDB tools and clients read a ledger that runs on the embedded store,
// and lets store/esdb be tested end to end over the real wire protocol on any machine.
//
// Mapping:
//   - Ledger streams "party-<party>" are EventStoreDB streams; revisions map directly.
//   - $all is the store's global log; EventStoreDB's Position{commit, prepare} is the
//     store's ledger.Position.
//   - The EventStoreDB event id of a record is store.EventUUID(event_id); the ledger
//     event_id itself is in the JSON metadata.
//   - Streams "ledger-event-<event_id>" (store.EventIndexStream) are served read-only
//     from the store's event_id index: one LedgerEventIndexed event saying where the
//     record is. store/esdb writes them on a real EventStoreDB; here an append of an
//     entry that agrees with the store succeeds and stores nothing.
//
// Appends pass the same validation as LedgerService.Append (ledger.ValidateAppend after
// a strict ledger.Decode): an event that is not a valid ledger record is refused with
// InvalidArgument and nothing is stored. Delete and Tombstone are refused with
// PermissionDenied: the ledger never deletes. BatchAppend is not served (and not
// advertised, so clients do not use it). The endpoint does not authenticate: bind it
// to an address only trusted clients reach.
package esdbcompat

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	features "github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// ProtocolVersion is the EventStoreDB server version the endpoint reports through
// ServerFeatures: the protocol it follows, as of EventStore-Client-Go v4.2.0.
const ProtocolVersion = "24.10.0"

// Options configures a Server. A nil *Options means defaults.
type Options struct {
	// Logger receives unexpected errors; nil means slog.Default().
	Logger *slog.Logger
	// Limits bounds appends as in LedgerService.Append; zero fields take
	// ledger.DefaultLimits.
	Limits ledger.Limits
	// Now is the clock validation uses; nil means time.Now.
	Now func() time.Time
	// TrustAppends stores appends as given, without ledger validation, to any stream:
	// the endpoint is then a plain mapping of the store contract onto EventStoreDB's
	// protocol (each event's metadata must still carry its event_id). It exists for
	// the store conformance suite, which stores contract-level records (foreign
	// streams, corrections of absent records); never set it on an endpoint that
	// clients reach.
	TrustAppends bool
}

// Server is the EventStoreDB-compatible endpoint over one store.
type Server struct {
	st     store.Store
	log    *slog.Logger
	limits ledger.Limits
	now    func() time.Time
	trust  bool
}

// New returns a Server over st. It does not own st: closing the gRPC server leaves st
// open.
func New(st store.Store, opts *Options) *Server {
	s := &Server{st: st, log: slog.Default(), limits: ledger.DefaultLimits, now: time.Now}
	if opts != nil {
		if opts.Logger != nil {
			s.log = opts.Logger
		}
		if opts.Limits != (ledger.Limits{}) {
			s.limits = opts.Limits
		}
		if opts.Now != nil {
			s.now = opts.Now
		}
		s.trust = opts.TrustAppends
	}
	return s
}

// Register adds the Streams and ServerFeatures services to g.
func (s *Server) Register(g *grpc.Server) {
	api.RegisterStreamsServer(g, &streams{s: s})
	features.RegisterServerFeaturesServer(g, &serverFeatures{})
}

type serverFeatures struct {
	features.UnimplementedServerFeaturesServer
}

// GetSupportedMethods lists what the endpoint serves. BatchAppend and persistent
// subscriptions are absent, so EventStore-Client-Go never tries them.
func (*serverFeatures) GetSupportedMethods(context.Context, *shared.Empty) (*features.SupportedMethods, error) {
	const streamsService = "event_store.client.streams.streams"
	return &features.SupportedMethods{
		EventStoreServerVersion: ProtocolVersion,
		Methods: []*features.SupportedMethod{
			{ServiceName: streamsService, MethodName: "read"},
			{ServiceName: streamsService, MethodName: "append"},
			{ServiceName: streamsService, MethodName: "delete"},
			{ServiceName: streamsService, MethodName: "tombstone"},
			{ServiceName: "event_store.client.server_features.serverfeatures", MethodName: "getsupportedmethods"},
		},
	}, nil
}

type streams struct {
	api.UnimplementedStreamsServer
	s *Server
}

// Delete is refused: the ledger never deletes.
func (*streams) Delete(context.Context, *api.DeleteReq) (*api.DeleteResp, error) {
	return nil, status.Error(codes.PermissionDenied, ledger.ErrRefused.Error())
}

// Tombstone is refused: the ledger never deletes.
func (*streams) Tombstone(context.Context, *api.TombstoneReq) (*api.TombstoneResp, error) {
	return nil, status.Error(codes.PermissionDenied, ledger.ErrRefused.Error())
}

// toStatus maps store and domain errors to the codes an EventStoreDB client expects.
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
	var verr *ledger.ValidationError
	switch {
	case errors.As(err, &verr):
		br := &errdetails.BadRequest{}
		for _, v := range verr.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		st := status.New(codes.InvalidArgument, verr.Error())
		if sd, derr := st.WithDetails(br); derr == nil {
			return sd.Err()
		}
		return st.Err()
	case errors.Is(err, ledger.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ledger.ErrDuplicateEvent):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, ledger.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ledger.ErrRefused):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, ledger.ErrUnavailable), errors.Is(err, ledger.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	s.log.ErrorContext(ctx, "esdbcompat request failed", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error")
}

// uuidOf converts an EventStoreDB UUID message to bytes.
func uuidOf(u *shared.UUID) ([16]byte, error) {
	var out [16]byte
	if u == nil {
		return out, errors.New("missing id")
	}
	if st := u.GetStructured(); st != nil {
		most, least := uint64(st.GetMostSignificantBits()), uint64(st.GetLeastSignificantBits())
		for i := range 8 {
			out[i] = byte(most >> (56 - 8*i))
			out[8+i] = byte(least >> (56 - 8*i))
		}
		return out, nil
	}
	return parseUUID(u.GetString_())
}

// parseUUID reads the canonical 36-character form only (what the Go client sends);
// github.com/google/uuid does the parsing.
func parseUUID(s string) ([16]byte, error) {
	if len(s) != 36 {
		return [16]byte{}, fmt.Errorf("malformed uuid %q", s)
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return [16]byte{}, fmt.Errorf("malformed uuid %q", s)
	}
	return u, nil
}

// uuidMessage encodes u as the client asked: structured (two int64) or string.
func uuidMessage(u [16]byte, asString bool) *shared.UUID {
	if asString {
		return &shared.UUID{Value: &shared.UUID_String_{String_: store.FormatUUID(u)}}
	}
	var most, least uint64
	for i := range 8 {
		most = most<<8 | uint64(u[i])
		least = least<<8 | uint64(u[8+i])
	}
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits: int64(most), LeastSignificantBits: int64(least),
	}}}
}

// recordedAt reads recorded_at from stored metadata, for EventStoreDB's "created".
func recordedAt(metadata []byte) time.Time {
	var md struct {
		RecordedAt *time.Time `json:"recorded_at"`
	}
	if json.Unmarshal(metadata, &md) != nil || md.RecordedAt == nil {
		return time.Time{}
	}
	return *md.RecordedAt
}

// ticks is EventStoreDB's "created": 100 ns units since the Unix epoch, in decimal.
func ticks(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return fmt.Sprintf("%d", t.UnixNano()/100)
}

// readEvent converts a stored record into an EventStoreDB ReadEvent.
func readEvent(r store.Record, uuidAsString bool) *api.ReadResp {
	return &api.ReadResp{Content: &api.ReadResp_Event{Event: &api.ReadResp_ReadEvent{
		Event: &api.ReadResp_ReadEvent_RecordedEvent{
			Id:               uuidMessage(store.EventUUID(r.EventID), uuidAsString),
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.Stream)},
			StreamRevision:   r.Revision,
			PreparePosition:  r.Position.Prepare,
			CommitPosition:   r.Position.Commit,
			Metadata: map[string]string{
				"type":         r.Type,
				"content-type": "application/json",
				"created":      ticks(recordedAt(r.Metadata)),
			},
			CustomMetadata: r.Metadata,
			Data:           r.Data,
		},
		Position: &api.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.Position.Commit},
	}}}
}

// indexEvent is the single event of the virtual index stream of r.
func indexEvent(r store.Record, uuidAsString bool) (*api.ReadResp, error) {
	data, err := json.Marshal(store.EventIndexEntry{EventID: r.EventID, Stream: r.Stream, Revision: r.Revision, ContentHash: r.ContentHash})
	if err != nil {
		return nil, err
	}
	name := store.EventIndexStream(r.EventID)
	return &api.ReadResp{Content: &api.ReadResp_Event{Event: &api.ReadResp_ReadEvent{
		Event: &api.ReadResp_ReadEvent_RecordedEvent{
			Id:               uuidMessage(store.EventUUID(name), uuidAsString),
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
			StreamRevision:   0,
			PreparePosition:  r.Position.Prepare,
			CommitPosition:   r.Position.Commit,
			Metadata: map[string]string{
				"type":         store.EventIndexType,
				"content-type": "application/json",
				"created":      ticks(recordedAt(r.Metadata)),
			},
			CustomMetadata: []byte{},
			Data:           data,
		},
		Position: &api.ReadResp_ReadEvent_NoPosition{NoPosition: &shared.Empty{}},
	}}}, nil
}

func streamNotFound(name string) *api.ReadResp {
	return &api.ReadResp{Content: &api.ReadResp_StreamNotFound_{StreamNotFound: &api.ReadResp_StreamNotFound{
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
	}}}
}

func newSubscriptionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return store.FormatUUID(b)
}
