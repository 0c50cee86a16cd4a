package esdbcompat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// Append receives the options, then the proposed messages, and answers once: Success,
// WrongExpectedVersion, or an error status (InvalidArgument for anything that is not a
// valid ledger record; nothing is stored then).
func (x *streams) Append(srv api.Streams_AppendServer) error {
	ctx := srv.Context()
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "the first append message must carry options")
	}
	name := string(opts.GetStreamIdentifier().GetStreamName())
	expected, err := expectedOf(opts)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var msgs []*api.AppendReq_ProposedMessage
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		pm := req.GetProposedMessage()
		if pm == nil {
			return status.Error(codes.InvalidArgument, "only proposed messages may follow the options")
		}
		// Stop reading a flood early: validation would refuse it anyway.
		if len(msgs) >= x.s.limits.MaxEvents {
			return status.Errorf(codes.InvalidArgument, "events: at most %d events per append", x.s.limits.MaxEvents)
		}
		msgs = append(msgs, pm)
	}
	var resp *api.AppendResp
	if strings.HasPrefix(name, store.EventIndexPrefix) {
		resp, err = x.s.appendIndex(ctx, name, msgs)
	} else {
		resp, err = x.s.appendRecords(ctx, name, expected, msgs)
	}
	if err != nil {
		return x.s.toStatus(ctx, "Append", err)
	}
	return srv.SendAndClose(resp)
}

func expectedOf(o *api.AppendReq_Options) (ledger.ExpectedRevision, error) {
	switch v := o.GetExpectedStreamRevision().(type) {
	case *api.AppendReq_Options_Any:
		return ledger.AnyRevision, nil
	case *api.AppendReq_Options_NoStream:
		return ledger.NoStream, nil
	case *api.AppendReq_Options_StreamExists:
		return ledger.StreamExists, nil
	case *api.AppendReq_Options_Revision:
		return ledger.ExactRevision(v.Revision), nil
	}
	return ledger.ExpectedRevision{}, errors.New("expected stream revision required")
}

// appendRecords decodes, validates and stores msgs in the ledger stream name.
func (s *Server) appendRecords(ctx context.Context, name string, expected ledger.ExpectedRevision, msgs []*api.AppendReq_ProposedMessage) (*api.AppendResp, error) {
	party, ok := ledger.PartyOf(name)
	if !s.trust && (!ok || !ledger.IsSlug(party)) {
		return nil, ledger.Invalid("stream", "only ledger streams %q<party> accept appends, not %q", ledger.StreamPrefix, name)
	}
	if len(msgs) == 0 {
		return nil, ledger.Invalid("events", "at least one event required")
	}
	var v ledger.ValidationError
	events := make([]*ledger.Event, len(msgs))
	proposed := make([]store.Proposed, len(msgs))
	for i, m := range msgs {
		path := fmt.Sprintf("events[%d]", i)
		p, e, fvs := s.proposed(m)
		for _, fv := range fvs {
			v.Violations = append(v.Violations, ledger.FieldViolation{Field: path + "." + fv.Field, Description: fv.Description})
		}
		events[i], proposed[i] = e, p
	}
	if len(v.Violations) > 0 {
		return nil, &v
	}
	if !s.trust {
		if err := ledger.ValidateAppend(ctx, party, events, s.now(), s.limits, s.lookup); err != nil {
			return nil, err
		}
	}
	res, err := s.st.Append(ctx, name, expected, proposed)
	var cerr *ledger.ConflictError
	if errors.As(err, &cerr) {
		return wrongExpectedVersion(expected, cerr.Actual), nil
	}
	if err != nil {
		return nil, err
	}
	success := &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: res.NextExpectedRevision},
		PositionOption: &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{
			CommitPosition: res.Position.Commit, PreparePosition: res.Position.Prepare,
		}},
	}
	if res.AlreadyPresent {
		// As EventStoreDB answers an idempotent write: no position, nothing was written.
		success.PositionOption = &api.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}
	}
	return &api.AppendResp{Result: &api.AppendResp_Success_{Success: success}}, nil
}

// proposed decodes one proposed message into the record to store and the event it
// holds (nil when appends are trusted), or the violations that refuse it.
func (s *Server) proposed(m *api.AppendReq_ProposedMessage) (store.Proposed, *ledger.Event, []ledger.FieldViolation) {
	typ := m.GetMetadata()["type"]
	if ct := m.GetMetadata()["content-type"]; ct != "application/json" {
		return store.Proposed{}, nil, []ledger.FieldViolation{{Field: "content_type", Description: fmt.Sprintf("must be application/json, not %q", ct)}}
	}
	var (
		e   *ledger.Event
		md  = new(ledger.Metadata)
		err error
	)
	if s.trust {
		err = json.Unmarshal(m.GetCustomMetadata(), md)
		if err == nil && md.EventID == "" {
			err = errors.New("event_id required")
		}
		if err != nil {
			return store.Proposed{}, nil, []ledger.FieldViolation{{Field: "metadata", Description: err.Error()}}
		}
	} else {
		e, md, err = ledger.Decode(typ, m.GetData(), m.GetCustomMetadata())
		var verr *ledger.ValidationError
		if errors.As(err, &verr) {
			return store.Proposed{}, nil, verr.Violations
		}
		if err != nil {
			return store.Proposed{}, nil, []ledger.FieldViolation{{Description: err.Error()}}
		}
		if md.ContentSHA256 == "" {
			return store.Proposed{}, nil, []ledger.FieldViolation{{Field: "metadata.content_sha256", Description: "required: it decides idempotency"}}
		}
	}
	id, err := uuidOf(m.GetId())
	if err != nil {
		return store.Proposed{}, nil, []ledger.FieldViolation{{Field: "id", Description: err.Error()}}
	}
	if want := store.EventUUID(md.EventID); id != want {
		return store.Proposed{}, nil, []ledger.FieldViolation{{Field: "id",
			Description: fmt.Sprintf("must be %s, the UUIDv5 of event_id %q", store.FormatUUID(want), md.EventID)}}
	}
	return store.Proposed{EventID: md.EventID, Type: typ, Data: m.GetData(), Metadata: m.GetCustomMetadata(), ContentHash: md.ContentSHA256}, e, nil
}

// lookup resolves corrects_event_id for ValidateAppend from the store.
func (s *Server) lookup(ctx context.Context, eventID string) (string, ledger.RecordType, bool, error) {
	r, err := s.st.GetEvent(ctx, eventID)
	if errors.Is(err, ledger.ErrNotFound) {
		return "", ledger.TypeUnspecified, false, nil
	}
	if err != nil {
		return "", ledger.TypeUnspecified, false, err
	}
	party, _ := ledger.PartyOf(r.Stream)
	typ, _ := ledger.ParseRecordType(r.Type)
	return party, typ, true, nil
}

func wrongExpectedVersion(expected ledger.ExpectedRevision, actual int64) *api.AppendResp {
	w := &api.AppendResp_WrongExpectedVersion{}
	if actual == ledger.NoRevision {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
		w.CurrentRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(actual)}
		w.CurrentRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: uint64(actual)}
	}
	switch {
	case expected.IsNoStream():
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
	case expected.IsStreamExists():
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: &shared.Empty{}}
	case expected.IsAny():
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: &shared.Empty{}}
	default:
		rev, _ := expected.Exact()
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: rev}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: rev}
	}
	return &api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
}

// appendIndex answers an append to a virtual index stream. The store keeps its own
// event_id index, so nothing is written: an entry that agrees with the store succeeds
// (as an idempotent write of the one index event), one that disagrees gets
// WrongExpectedVersion (the stream already holds its event), and one for a record the
// store does not hold is refused.
func (s *Server) appendIndex(ctx context.Context, name string, msgs []*api.AppendReq_ProposedMessage) (*api.AppendResp, error) {
	eventID := strings.TrimPrefix(name, store.EventIndexPrefix)
	if len(msgs) != 1 {
		return nil, ledger.Invalid("events", "an index stream takes exactly one %s event", store.EventIndexType)
	}
	m := msgs[0]
	if typ := m.GetMetadata()["type"]; typ != store.EventIndexType {
		return nil, ledger.Invalid("events[0].type", "must be %s, not %q", store.EventIndexType, typ)
	}
	var entry store.EventIndexEntry
	if err := json.Unmarshal(m.GetData(), &entry); err != nil {
		return nil, ledger.Invalid("events[0].data", "%v", err)
	}
	r, err := s.st.GetEvent(ctx, eventID)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, ledger.Invalid("events[0].data", "no record with event_id %q is stored", eventID)
	}
	if err != nil {
		return nil, err
	}
	if entry.EventID != r.EventID || entry.Stream != r.Stream || entry.Revision != r.Revision || entry.ContentHash != r.ContentHash {
		return wrongExpectedVersion(ledger.NoStream, 0), nil
	}
	return &api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: 0},
		PositionOption: &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{
			CommitPosition: r.Position.Commit, PreparePosition: r.Position.Prepare,
		}},
	}}}, nil
}
