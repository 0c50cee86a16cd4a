package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/store"
)

// ledgerService implements ledgerv1.LedgerServiceServer over the Server's store.
type ledgerService struct {
	ledgerv1.UnimplementedLedgerServiceServer
	s *Server
}

// Append validates the request, encodes every event once (recorded now, by the
// caller's principal) and appends them atomically to the party's stream.
func (l *ledgerService) Append(ctx context.Context, req *ledgerv1.AppendRequest) (*ledgerv1.AppendResponse, error) {
	party := req.GetParty()
	// Converting and validating a flood of events is work the caller chooses: refuse it
	// before doing any.
	if maxEvents := l.s.maxEvents(); len(req.GetEvents()) > maxEvents {
		return nil, fmt.Errorf("%d events in one append: %w", len(req.GetEvents()), limitErr(LimitMaxEventsPerAppend, int64(maxEvents)))
	}
	events := make([]*ledger.Event, len(req.GetEvents()))
	verr := &ledger.ValidationError{}
	for i, pe := range req.GetEvents() {
		e, err := wire.EventFromProto(pe)
		if err != nil {
			if !collectViolations(verr, fmt.Sprintf("events[%d]", i), err) {
				return nil, err
			}
			continue
		}
		events[i] = e
	}
	expected, err := wire.ExpectedFromProto(req.GetExpectedRevision())
	if err != nil && !collectViolations(verr, "", err) {
		return nil, err
	}
	if len(verr.Violations) > 0 {
		return nil, verr
	}

	now := l.s.now()
	principal := PrincipalFrom(ctx)
	encoded, err := ledger.EncodeAppend(ctx, party, events, now, principal, l.s.limits, l.lookup)
	if err != nil {
		return nil, err
	}
	proposed := make([]store.Proposed, len(events))
	for i, enc := range encoded {
		proposed[i] = store.Proposed{
			EventID: enc.EventID, Type: enc.Type, Data: enc.Data, Metadata: enc.Metadata, ContentHash: enc.ContentHash,
		}
	}
	res, err := l.s.store.Append(ctx, ledger.StreamOf(party), expected, proposed)
	if err != nil {
		return nil, err
	}
	resp := &ledgerv1.AppendResponse{
		NextExpectedRevision: res.NextExpectedRevision,
		Position:             wire.PositionToProto(res.Position),
		AlreadyPresent:       res.AlreadyPresent,
		Events:               make([]*ledgerv1.RecordedEvent, len(res.Records)),
	}
	for i, r := range res.Records {
		if !res.AlreadyPresent && i < len(events) && r.EventID == events[i].EventID {
			resp.Events[i] = appendedRecord(r, events[i], now, principal)
			continue
		}
		if resp.Events[i], err = l.s.recorded(r); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// collectViolations adds the field violations of a conversion error to verr, each
// field prefixed with prefix. It reports false when err is not a validation error.
func collectViolations(verr *ledger.ValidationError, prefix string, err error) bool {
	var v *ledger.ValidationError
	if !errors.As(err, &v) {
		return false
	}
	for _, fv := range v.Violations {
		switch {
		case prefix == "":
		case fv.Field == "":
			fv.Field = prefix
		default:
			fv.Field = prefix + "." + fv.Field
		}
		verr.Violations = append(verr.Violations, fv)
	}
	return true
}

// lookup answers validation's questions about stored records (a correction must name
// a record of the same party) from the store.
func (l *ledgerService) lookup(ctx context.Context, eventID string) (string, ledger.RecordType, bool, error) {
	r, err := l.s.store.GetEvent(ctx, eventID)
	if errors.Is(err, ledger.ErrNotFound) {
		return "", ledger.TypeUnspecified, false, nil
	}
	if err != nil {
		return "", ledger.TypeUnspecified, false, err
	}
	e, md, err := ledger.Decode(r.Type, r.Data, r.Metadata)
	if err != nil {
		return "", ledger.TypeUnspecified, false, corrupt(r, err)
	}
	return md.Party, e.Type(), true, nil
}

// corrupt reports a stored record that does not decode. It deliberately drops the
// error chain: the decoder's errors match ledger.ErrInvalid, but the fault is the
// store's, not the request's, so the table must answer Internal.
func corrupt(r store.Record, err error) error {
	return fmt.Errorf("stored record %q at %s does not decode: %v", r.EventID, r.Position, err)
}

// ReadStream sends one party's stream in revision order, or backwards.
func (l *ledgerService) ReadStream(req *ledgerv1.ReadStreamRequest, stream ledgerv1.LedgerService_ReadStreamServer) error {
	if !ledger.IsSlug(req.GetParty()) {
		return ledger.Invalid("party", "must be a slug (^[a-z0-9][a-z0-9-]{0,62}$)")
	}
	opts := store.ReadStreamOptions{From: req.GetFromRevision(), FromEnd: req.GetFromEnd(), Max: req.GetMaxCount()}
	switch req.GetDirection() {
	case ledgerv1.Direction_DIRECTION_UNSPECIFIED, ledgerv1.Direction_DIRECTION_FORWARDS:
	case ledgerv1.Direction_DIRECTION_BACKWARDS:
		opts.Backwards = true
	default:
		return ledger.Invalid("direction", "unknown direction %d", req.GetDirection())
	}
	ctx := stream.Context()
	for r, err := range l.s.store.ReadStream(ctx, ledger.StreamOf(req.GetParty()), opts) {
		if err != nil {
			return err
		}
		pe, err := l.s.recorded(r)
		if err != nil {
			return err
		}
		if err := stream.Send(&ledgerv1.ReadStreamResponse{Event: pe}); err != nil {
			return err
		}
	}
	return nil
}

// ReadAll sends the global log from a position, filtered, in log order.
func (l *ledgerService) ReadAll(req *ledgerv1.ReadAllRequest, stream ledgerv1.LedgerService_ReadAllServer) error {
	f, err := filterFromProto(req.GetFilter())
	if err != nil {
		return err
	}
	ctx := stream.Context()
	var sent uint64
	for r, err := range l.s.store.ReadAll(ctx, wire.PositionFromProto(req.GetFrom()), f.store) {
		if err != nil {
			return err
		}
		pe, err := l.s.recorded(r)
		if err != nil {
			return err
		}
		if !f.matchTime(pe) {
			continue
		}
		if err := stream.Send(&ledgerv1.ReadAllResponse{Event: pe}); err != nil {
			return err
		}
		if sent++; req.GetMaxCount() > 0 && sent >= req.GetMaxCount() {
			return nil
		}
	}
	return nil
}

// errStopping ends live subscriptions when the server stops.
var errStopping = fmt.Errorf("server is stopping: %w", ledger.ErrUnavailable)

// Subscribe sends the log from a position (catch-up), then caught_up once, then new
// records as they are stored, until the client goes away or the server stops.
func (l *ledgerService) Subscribe(req *ledgerv1.SubscribeRequest, stream ledgerv1.LedgerService_SubscribeServer) error {
	f, err := filterFromProto(req.GetFilter())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	go func() {
		select {
		case <-l.s.stopping:
			cancel(errStopping)
		case <-ctx.Done():
		}
	}()
	// last is the position of the last record the store yielded, delivered or not;
	// caught_up carries it so a client knows how far the catch-up reached.
	var last ledger.Position
	for m, err := range l.s.store.Subscribe(ctx, wire.PositionFromProto(req.GetFrom()), f.store) {
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				return cause
			}
			return err
		}
		if m.CaughtUp {
			if err := stream.Send(&ledgerv1.SubscribeResponse{
				Content: &ledgerv1.SubscribeResponse_CaughtUp{CaughtUp: wire.PositionToProto(last)},
			}); err != nil {
				return err
			}
			continue
		}
		last = m.Record.Position
		pe, err := l.s.recorded(m.Record)
		if err != nil {
			return err
		}
		if !f.matchTime(pe) {
			continue
		}
		if err := stream.Send(&ledgerv1.SubscribeResponse{
			Content: &ledgerv1.SubscribeResponse_Event{Event: pe},
		}); err != nil {
			return err
		}
	}
	return nil
}

// GetEvent returns one record by its event_id.
func (l *ledgerService) GetEvent(ctx context.Context, req *ledgerv1.GetEventRequest) (*ledgerv1.GetEventResponse, error) {
	if req.GetEventId() == "" {
		return nil, ledger.Invalid("event_id", "required")
	}
	r, err := l.s.store.GetEvent(ctx, req.GetEventId())
	if err != nil {
		return nil, err
	}
	pe, err := l.s.recorded(r)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.GetEventResponse{Event: pe}, nil
}

// filter is a request's filter: the part the store applies, and the occurred_at window,
// which only the decoded record can answer.
type filter struct {
	store        store.Filter
	since, until time.Time
}

func filterFromProto(f *ledgerv1.Filter) (filter, error) {
	var out filter
	verr := &ledger.ValidationError{}
	for i, p := range f.GetParties() {
		if !ledger.IsSlug(p) {
			verr.Violations = append(verr.Violations, ledger.FieldViolation{
				Field: fmt.Sprintf("filter.parties[%d]", i), Description: "must be a slug (^[a-z0-9][a-z0-9-]{0,62}$)",
			})
			continue
		}
		out.store.Streams = append(out.store.Streams, ledger.StreamOf(p))
	}
	for i, t := range f.GetTypes() {
		rt, ok := wire.RecordTypeFromProto(t)
		if !ok {
			verr.Violations = append(verr.Violations, ledger.FieldViolation{
				Field: fmt.Sprintf("filter.types[%d]", i), Description: fmt.Sprintf("unknown record type %d", t),
			})
			continue
		}
		out.store.Types = append(out.store.Types, rt.String())
	}
	if ts := f.GetOccurredSince(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			verr.Violations = append(verr.Violations, ledger.FieldViolation{Field: "filter.occurred_since", Description: err.Error()})
		}
		out.since = ts.AsTime()
	}
	if ts := f.GetOccurredUntil(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			verr.Violations = append(verr.Violations, ledger.FieldViolation{Field: "filter.occurred_until", Description: err.Error()})
		}
		out.until = ts.AsTime()
	}
	if len(verr.Violations) > 0 {
		return filter{}, verr
	}
	return out, nil
}

// matchTime reports whether the event's occurred_at lies in [since, until).
func (f filter) matchTime(pe *ledgerv1.RecordedEvent) bool {
	if f.since.IsZero() && f.until.IsZero() {
		return true
	}
	t := pe.GetEvent().GetOccurredAt().AsTime()
	return (f.since.IsZero() || !t.Before(f.since)) && (f.until.IsZero() || t.Before(f.until))
}
