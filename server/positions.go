package server

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	"github.com/stanceledger/ledger/projections"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// PositionServiceName is the full name of the PositionService, as gRPC health reports it.
const PositionServiceName = "stanceledger.v1.PositionService"

// PositionsView is what the PositionService reads: the positions read model
// (*projections.Positions implements it).
type PositionsView interface {
	// WaitFor blocks until the view has applied pos; when ctx ends first it returns
	// a *projections.LagError that says how far the view is.
	WaitFor(ctx context.Context, pos ledger.Position) error
	Get(ctx context.Context, party, topic string, q projections.Query) (projections.PartyPosition, ledger.Position, error)
	List(ctx context.Context, f projections.ListFilter, q projections.Query) ([]projections.PartyPosition, ledger.Position, bool, error)
	History(ctx context.Context, party, topic string) ([]projections.HistoryEntry, ledger.Position, error)
	Snapshot(ctx context.Context, q projections.Query) (projections.Snapshot, error)
	Watch(ctx context.Context, party, topic string) iter.Seq2[projections.Change, error]
}

// Rebuilder rebuilds a projection from the log (*projections.Runner implements it).
type Rebuilder interface {
	Rebuild(ctx context.Context, name string) (ledger.Position, error)
}

// NewPositionService returns the PositionService over v, for registering on the
// server's gRPC server. stopping, when closed, ends live watches (the server's
// graceful stop would otherwise wait for them).
func NewPositionService(v PositionsView, log *slog.Logger, stopping <-chan struct{}) ledgerv1.PositionServiceServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &positionService{v: v, log: log, stopping: stopping}
}

// NewAdminService returns the AdminService over r.
func NewAdminService(r Rebuilder) ledgerv1.AdminServiceServer {
	return &adminService{r: r}
}

type positionService struct {
	ledgerv1.UnimplementedPositionServiceServer
	v        PositionsView
	log      *slog.Logger
	stopping <-chan struct{}
}

// Page sizes of ListPositions.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// deadlineMargin is how long before the caller's deadline a wait for min_position
// gives up, so the server's answer (naming how far the view is) reaches the client
// before the client's own deadline fires.
func deadlineMargin(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	margin := min(time.Until(d)/10, 100*time.Millisecond)
	return context.WithDeadline(ctx, d.Add(-margin))
}

// wait waits until the view has applied the later of min and asOf.
func (p *positionService) wait(ctx context.Context, min, asOf *ledgerv1.Position) error {
	want := wire.PositionFromProto(min)
	if a := wire.PositionFromProto(asOf); want.Less(a) {
		want = a
	}
	if want.IsZero() {
		return nil
	}
	wctx, cancel := deadlineMargin(ctx)
	defer cancel()
	return p.v.WaitFor(wctx, want)
}

// query checks the optional slugs and builds a projections.Query.
func query(party, topic string, asOfTime *timestamppb.Timestamp, asOfPos *ledgerv1.Position, partyRequired bool) (projections.Query, error) {
	verr := &ledger.ValidationError{}
	for _, f := range []struct {
		name, value string
	}{{"party", party}, {"topic", topic}} {
		switch {
		case f.value == "" && partyRequired:
			verr.Violations = append(verr.Violations, ledger.FieldViolation{Field: f.name, Description: "required"})
		case f.value != "" && !ledger.IsSlug(f.value):
			verr.Violations = append(verr.Violations, ledger.FieldViolation{Field: f.name, Description: "must be a slug: ^[a-z0-9][a-z0-9-]{0,62}$"})
		}
	}
	var q projections.Query
	if asOfTime != nil {
		if err := asOfTime.CheckValid(); err != nil {
			verr.Violations = append(verr.Violations, ledger.FieldViolation{Field: "as_of_time", Description: err.Error()})
		} else {
			q.AsOfTime = asOfTime.AsTime()
		}
	}
	q.AsOfPosition = wire.PositionFromProto(asOfPos)
	if len(verr.Violations) > 0 {
		return q, verr
	}
	return q, nil
}

// GetPosition returns one stance at (T, P).
func (p *positionService) GetPosition(ctx context.Context, req *ledgerv1.GetPositionRequest) (*ledgerv1.GetPositionResponse, error) {
	q, err := query(req.GetParty(), req.GetTopic(), req.GetAsOfTime(), req.GetAsOfPosition(), true)
	if err != nil {
		return nil, err
	}
	if err := p.wait(ctx, req.GetMinPosition(), req.GetAsOfPosition()); err != nil {
		return nil, err
	}
	pp, at, err := p.v.Get(ctx, req.GetParty(), req.GetTopic(), q)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.GetPositionResponse{Position: PartyPositionToProto(pp), AsOfPosition: wire.PositionToProto(at)}, nil
}

// ListPositions returns a page of stances at (T, P).
func (p *positionService) ListPositions(ctx context.Context, req *ledgerv1.ListPositionsRequest) (*ledgerv1.ListPositionsResponse, error) {
	q, err := query(req.GetParty(), req.GetTopic(), req.GetAsOfTime(), req.GetAsOfPosition(), false)
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, ledger.Invalid("page_size", "must not be negative")
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	f := projections.ListFilter{Party: req.GetParty(), Topic: req.GetTopic(), Limit: size}
	if tok := req.GetPageToken(); tok != "" {
		at, party, topic, err := parsePageToken(tok)
		if err != nil {
			return nil, err
		}
		if !q.AsOfPosition.IsZero() && q.AsOfPosition != at {
			return nil, ledger.Invalid("page_token", "was issued for as_of_position %s, not %s", at, q.AsOfPosition)
		}
		q.AsOfPosition, f.AfterParty, f.AfterTopic = at, party, topic
	}
	if err := p.wait(ctx, req.GetMinPosition(), wire.PositionToProto(q.AsOfPosition)); err != nil {
		return nil, err
	}
	list, at, more, err := p.v.List(ctx, f, q)
	if err != nil {
		return nil, err
	}
	resp := &ledgerv1.ListPositionsResponse{AsOfPosition: wire.PositionToProto(at)}
	for _, pp := range list {
		resp.Positions = append(resp.Positions, PartyPositionToProto(pp))
	}
	if more {
		last := list[len(list)-1]
		resp.NextPageToken = pageToken(at, last.Party, last.Topic)
	}
	return resp, nil
}

// pageToken encodes where the next page starts and the log position the listing
// answers at: base64url of commit, prepare (8 bytes each), party, 0x00, topic.
func pageToken(at ledger.Position, party, topic string) string {
	b := binary.BigEndian.AppendUint64(nil, at.Commit)
	b = binary.BigEndian.AppendUint64(b, at.Prepare)
	b = append(append(append(b, party...), 0), topic...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parsePageToken(tok string) (ledger.Position, string, string, error) {
	bad := ledger.Invalid("page_token", "not a token this server issued")
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 17 {
		return ledger.Position{}, "", "", bad
	}
	at := ledger.Position{Commit: binary.BigEndian.Uint64(b), Prepare: binary.BigEndian.Uint64(b[8:])}
	rest := b[16:]
	for i, c := range rest {
		if c == 0 {
			party, topic := string(rest[:i]), string(rest[i+1:])
			if !ledger.IsSlug(party) || !ledger.IsSlug(topic) {
				return ledger.Position{}, "", "", bad
			}
			return at, party, topic, nil
		}
	}
	return ledger.Position{}, "", "", bad
}

// GetHistory returns every contribution to (party, topic).
func (p *positionService) GetHistory(ctx context.Context, req *ledgerv1.GetHistoryRequest) (*ledgerv1.GetHistoryResponse, error) {
	if _, err := query(req.GetParty(), req.GetTopic(), nil, nil, true); err != nil {
		return nil, err
	}
	if err := p.wait(ctx, req.GetMinPosition(), nil); err != nil {
		return nil, err
	}
	entries, at, err := p.v.History(ctx, req.GetParty(), req.GetTopic())
	if err != nil {
		return nil, err
	}
	resp := &ledgerv1.GetHistoryResponse{AsOfPosition: wire.PositionToProto(at)}
	for _, h := range entries {
		e := &ledgerv1.HistoryEntry{
			Contribution: PartyPositionToProto(h.Contribution),
			UntilEventId: h.UntilEventID,
			UntilEffects: effectsToProto(h.UntilEffect),
			Corrected:    len(h.RecordCorrections) > 0,
		}
		if !h.Until.IsZero() {
			e.Until = wire.PositionToProto(h.Until)
		}
		for _, c := range h.RecordCorrections {
			pc := &ledgerv1.Correction{
				EventId: c.EventID, Position: wire.PositionToProto(c.Position),
				Effects: effectsToProto(c.Effect), Reason: c.Reason,
			}
			if c.Effect&projections.EffectRedate != 0 {
				pc.CorrectedOccurredAt = timestamppb.New(c.RedatedTo)
			}
			e.RecordCorrections = append(e.RecordCorrections, pc)
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, nil
}

// GetSnapshot returns the whole table at (T, P) with its digest.
func (p *positionService) GetSnapshot(ctx context.Context, req *ledgerv1.GetSnapshotRequest) (*ledgerv1.GetSnapshotResponse, error) {
	q, err := query("", "", req.GetAsOfTime(), req.GetAsOfPosition(), false)
	if err != nil {
		return nil, err
	}
	if err := p.wait(ctx, req.GetMinPosition(), req.GetAsOfPosition()); err != nil {
		return nil, err
	}
	snap, err := p.v.Snapshot(ctx, q)
	if err != nil {
		return nil, err
	}
	resp := &ledgerv1.GetSnapshotResponse{AsOfPosition: wire.PositionToProto(snap.AsOfPosition), Digest: snap.Digest}
	if !snap.AsOfTime.IsZero() {
		resp.AsOfTime = timestamppb.New(snap.AsOfTime)
	}
	for _, r := range snap.Rows {
		resp.Rows = append(resp.Rows, PartyPositionToProto(r))
	}
	return resp, nil
}

// WatchPositions streams changes of current stances until the client goes away or
// the server stops.
func (p *positionService) WatchPositions(req *ledgerv1.WatchPositionsRequest, stream ledgerv1.PositionService_WatchPositionsServer) error {
	if _, err := query(req.GetParty(), req.GetTopic(), nil, nil, false); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	go func() {
		select {
		case <-p.stopping:
			cancel(errStopping)
		case <-ctx.Done():
		}
	}()
	for c, err := range p.v.Watch(ctx, req.GetParty(), req.GetTopic()) {
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				return cause
			}
			return err
		}
		msg := &ledgerv1.WatchPositionsResponse{Party: c.Party, Topic: c.Topic, Applied: wire.PositionToProto(c.Applied)}
		if c.Current != nil {
			msg.Position = PartyPositionToProto(*c.Current)
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

// PartyPositionToProto converts a stance of the positions view to its message.
func PartyPositionToProto(pp projections.PartyPosition) *ledgerv1.PartyPosition {
	return &ledgerv1.PartyPosition{
		Party: pp.Party, Topic: pp.Topic,
		Alignment: ledgerv1.Alignment(pp.Alignment), Act: ledgerv1.Act(pp.Act),
		Summary: pp.Summary, Quote: pp.Quote,
		OccurredAt: timestamppb.New(pp.OccurredAt),
		EventId:    pp.EventID, Position: wire.PositionToProto(pp.Position),
		Since: wire.PositionToProto(pp.Since), SinceEventId: pp.SinceEventID, Index: pp.Index,
	}
}

func effectsToProto(e projections.Effect) []ledgerv1.CorrectionEffect {
	var out []ledgerv1.CorrectionEffect
	if e&projections.EffectWithdraw != 0 {
		out = append(out, ledgerv1.CorrectionEffect_CORRECTION_EFFECT_WITHDRAW)
	}
	if e&projections.EffectReplace != 0 {
		out = append(out, ledgerv1.CorrectionEffect_CORRECTION_EFFECT_REPLACE)
	}
	if e&projections.EffectRedate != 0 {
		out = append(out, ledgerv1.CorrectionEffect_CORRECTION_EFFECT_REDATE)
	}
	return out
}

type adminService struct {
	ledgerv1.UnimplementedAdminServiceServer
	r Rebuilder
}

// RebuildProjection rebuilds the named projection and returns when it has switched over.
func (a *adminService) RebuildProjection(ctx context.Context, req *ledgerv1.RebuildProjectionRequest) (*ledgerv1.RebuildProjectionResponse, error) {
	if req.GetName() == "" {
		return nil, ledger.Invalid("name", "required")
	}
	applied, err := a.r.Rebuild(ctx, req.GetName())
	if errors.Is(err, projections.ErrNotRebuildable) {
		return nil, ledger.Invalid("name", "projection %q cannot be rebuilt", req.GetName())
	}
	if err != nil {
		return nil, fmt.Errorf("rebuild %s: %w", req.GetName(), err)
	}
	return &ledgerv1.RebuildProjectionResponse{Applied: wire.PositionToProto(applied)}, nil
}

// ProjectionHealthName is the gRPC health service name that reports projection name,
// e.g. "stanceledger.v1.projections.positions".
func ProjectionHealthName(name string) string { return "stanceledger.v1.projections." + name }

// ReportProjection sets the gRPC health of projection name (ProjectionHealthName) to
// SERVING or NOT_SERVING; the positions projection's health is also the
// PositionService's. A projections.Runner calls it through RunnerOptions.OnHealth.
func (s *Server) ReportProjection(name string, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(ProjectionHealthName(name), st)
	if name == projections.PositionsName {
		s.health.SetServingStatus(PositionServiceName, st)
	}
}
