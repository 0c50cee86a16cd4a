// Package wire converts between the gRPC API's messages (package ledgerv1) and the
// domain types of package ledger. The server, the client and the commands all need it
// and none may import another, so it lives here, once.
//
// Conversions from the wire keep what they cannot judge for validation to judge:
// unknown enum numbers stay numbers, so ledger.ValidateAppend names the field; only
// what cannot be represented in a ledger.Event at all (an invalid timestamp, a missing
// body) is refused here, with a *ledger.ValidationError naming the field.
package wire

import (
	"fmt"
	"time"

	ledger "github.com/stanceledger/ledger"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// EventFromProto converts an event from the wire. It does not validate the event
// (call ledger.ValidateEvent or ledger.ValidateAppend); it fails only when pe cannot be
// represented, with a *ledger.ValidationError whose field paths are relative to the
// event: "" for a nil event, "body" when no body is set, "occurred_at",
// "reported_at" or "record_corrected.corrected_occurred_at" for a timestamp that
// timestamppb rejects (out of range, or nanos outside [0, 1e9)) or that is exactly
// 0001-01-01T00:00:00Z (time.Time's zero, which the domain reads as unset). An unset
// occurred_at becomes the zero time, which validation refuses as missing.
func EventFromProto(pe *ledgerv1.Event) (*ledger.Event, error) {
	if pe == nil {
		return nil, ledger.Invalid("", "required")
	}
	verr := &ledger.ValidationError{}
	e := &ledger.Event{
		EventID:    pe.GetEventId(),
		Party:      pe.GetParty(),
		OccurredAt: timeFromProto(verr, "occurred_at", pe.GetOccurredAt()),
		ReportedAt: timeFromProto(verr, "reported_at", pe.GetReportedAt()),
		Sources:    sourcesFromProto(pe.GetSources()),
	}
	switch b := pe.GetBody().(type) {
	case *ledgerv1.Event_ReportPublished:
		if r := b.ReportPublished; r != nil {
			e.Body = &ledger.ReportPublished{
				ReportID: r.GetReportId(),
				Title:    r.GetTitle(),
				Findings: stancesFromProto(r.GetFindings()),
				Accused:  copyList(r.GetAccused()),
			}
		}
	case *ledgerv1.Event_StatementIssued:
		if s := b.StatementIssued; s != nil {
			e.Body = &ledger.StatementIssued{
				StatementID: s.GetStatementId(),
				Speaker:     s.GetSpeaker(),
				Channel:     s.GetChannel(),
				Stances:     stancesFromProto(s.GetStances()),
				RespondsTo:  copyList(s.GetRespondsTo()),
				CoSigners:   copyList(s.GetCoSigners()),
			}
		}
	case *ledgerv1.Event_MandateVetoed:
		if m := b.MandateVetoed; m != nil {
			body := &ledger.MandateVetoed{
				Body:            m.GetBody(),
				Mandate:         m.GetMandate(),
				DraftResolution: m.GetDraftResolution(),
				VetoedBy:        copyList(m.GetVetoedBy()),
			}
			if votes := m.GetVotes(); len(votes) > 0 {
				body.Votes = make([]ledger.MemberVote, len(votes))
				for i, v := range votes {
					body.Votes[i] = ledger.MemberVote{Party: v.GetParty(), Vote: ledger.Vote(v.GetVote())}
				}
			}
			e.Body = body
		}
	case *ledgerv1.Event_RecordCorrected:
		if c := b.RecordCorrected; c != nil {
			body := &ledger.RecordCorrected{
				CorrectsEventID:    c.GetCorrectsEventId(),
				Reason:             c.GetReason(),
				Withdraw:           c.GetWithdraw(),
				ReplacementStances: stancesFromProto(c.GetReplacementStances()),
				AddedSources:       sourcesFromProto(c.GetAddedSources()),
			}
			if ts := c.GetCorrectedOccurredAt(); ts != nil {
				t := timeFromProto(verr, "record_corrected.corrected_occurred_at", ts)
				body.CorrectedOccurredAt = &t
			}
			e.Body = body
		}
	}
	if e.Body == nil {
		verr.Violations = append(verr.Violations, ledger.FieldViolation{Field: "body", Description: "required"})
	}
	if len(verr.Violations) > 0 {
		return nil, verr
	}
	return e, nil
}

// EventToProto converts an event for the wire. Zero times become unset timestamps; a
// nil event gives nil. Enum values are copied by number (the numbers match by design).
func EventToProto(e *ledger.Event) *ledgerv1.Event {
	if e == nil {
		return nil
	}
	pe := &ledgerv1.Event{
		EventId:    e.EventID,
		Party:      e.Party,
		OccurredAt: timeToProto(e.OccurredAt),
		ReportedAt: timeToProto(e.ReportedAt),
		Sources:    sourcesToProto(e.Sources),
	}
	switch b := e.Body.(type) {
	case *ledger.ReportPublished:
		if b != nil {
			pe.Body = &ledgerv1.Event_ReportPublished{ReportPublished: &ledgerv1.ReportPublished{
				ReportId: b.ReportID,
				Title:    b.Title,
				Findings: stancesToProto(b.Findings),
				Accused:  copyList(b.Accused),
			}}
		}
	case *ledger.StatementIssued:
		if b != nil {
			pe.Body = &ledgerv1.Event_StatementIssued{StatementIssued: &ledgerv1.StatementIssued{
				StatementId: b.StatementID,
				Speaker:     b.Speaker,
				Channel:     b.Channel,
				Stances:     stancesToProto(b.Stances),
				RespondsTo:  copyList(b.RespondsTo),
				CoSigners:   copyList(b.CoSigners),
			}}
		}
	case *ledger.MandateVetoed:
		if b != nil {
			m := &ledgerv1.MandateVetoed{
				Body:            b.Body,
				Mandate:         b.Mandate,
				DraftResolution: b.DraftResolution,
				VetoedBy:        copyList(b.VetoedBy),
			}
			if len(b.Votes) > 0 {
				m.Votes = make([]*ledgerv1.MemberVote, len(b.Votes))
				for i, v := range b.Votes {
					m.Votes[i] = &ledgerv1.MemberVote{Party: v.Party, Vote: ledgerv1.Vote(v.Vote)}
				}
			}
			pe.Body = &ledgerv1.Event_MandateVetoed{MandateVetoed: m}
		}
	case *ledger.RecordCorrected:
		if b != nil {
			c := &ledgerv1.RecordCorrected{
				CorrectsEventId:    b.CorrectsEventID,
				Reason:             b.Reason,
				Withdraw:           b.Withdraw,
				ReplacementStances: stancesToProto(b.ReplacementStances),
				AddedSources:       sourcesToProto(b.AddedSources),
			}
			if b.CorrectedOccurredAt != nil {
				c.CorrectedOccurredAt = timestamppb.New(*b.CorrectedOccurredAt)
			}
			pe.Body = &ledgerv1.Event_RecordCorrected{RecordCorrected: c}
		}
	}
	return pe
}

// ExpectedFromProto converts an append's expected revision. Unset (nil) means any; a
// message with no kind set (empty, or a kind this server does not know) is refused on
// "expected_revision", so optimistic concurrency is never dropped silently. A kind set to false (`{"no_stream": false}`) is ambiguous and refused with
// a *ledger.ValidationError on "expected_revision.<kind>", the path within an
// AppendRequest.
func ExpectedFromProto(x *ledgerv1.ExpectedRevision) (ledger.ExpectedRevision, error) {
	flag := func(set bool, name string, exp ledger.ExpectedRevision) (ledger.ExpectedRevision, error) {
		if !set {
			return ledger.AnyRevision, ledger.Invalid("expected_revision."+name, "must be true when set")
		}
		return exp, nil
	}
	switch k := x.GetKind().(type) {
	case *ledgerv1.ExpectedRevision_Any:
		return flag(k.Any, "any", ledger.AnyRevision)
	case *ledgerv1.ExpectedRevision_NoStream:
		return flag(k.NoStream, "no_stream", ledger.NoStream)
	case *ledgerv1.ExpectedRevision_StreamExists:
		return flag(k.StreamExists, "stream_exists", ledger.StreamExists)
	case *ledgerv1.ExpectedRevision_Exact:
		return ledger.ExactRevision(k.Exact), nil
	}
	// Absent means any; present with no kind this server knows (an empty message, or a
	// kind added after it was built) must not silently become "any".
	if x != nil {
		return ledger.AnyRevision, ledger.Invalid("expected_revision", "set without a kind: any, no_stream, stream_exists or exact")
	}
	return ledger.AnyRevision, nil
}

// ExpectedToProto converts an expected revision for the wire; every kind is set
// explicitly, AnyRevision as `any: true`.
func ExpectedToProto(e ledger.ExpectedRevision) *ledgerv1.ExpectedRevision {
	switch {
	case e.IsNoStream():
		return &ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_NoStream{NoStream: true}}
	case e.IsStreamExists():
		return &ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_StreamExists{StreamExists: true}}
	}
	if rev, ok := e.Exact(); ok {
		return &ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_Exact{Exact: rev}}
	}
	return &ledgerv1.ExpectedRevision{Kind: &ledgerv1.ExpectedRevision_Any{Any: true}}
}

// PositionFromProto converts a log position; nil is the zero position (the start).
func PositionFromProto(p *ledgerv1.Position) ledger.Position {
	return ledger.Position{Commit: p.GetCommit(), Prepare: p.GetPrepare()}
}

// PositionToProto converts a log position for the wire; it never returns nil.
func PositionToProto(p ledger.Position) *ledgerv1.Position {
	return &ledgerv1.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// RecordTypeFromProto converts a record type of a filter. It returns false for
// RECORD_TYPE_UNSPECIFIED and for numbers the ledger does not know; the caller names
// the field.
func RecordTypeFromProto(t ledgerv1.RecordType) (ledger.RecordType, bool) {
	rt := ledger.RecordType(t)
	if rt == ledger.TypeUnspecified || rt.String() == "" {
		return ledger.TypeUnspecified, false
	}
	return rt, true
}

// RecordTypeToProto converts a record type for the wire (the numbers match by design).
func RecordTypeToProto(t ledger.RecordType) ledgerv1.RecordType { return ledgerv1.RecordType(t) }

// RecordToProto converts a stored record for the wire: it decodes the stored bytes
// with ledger.Decode and fills the event, its revision, position, stream, recorded_at,
// recorded_by and the stored bytes themselves, unchanged.
//
// A record that does not decode, or whose metadata names another event_id, is
// corruption, not bad input: the error deliberately does not match ledger.ErrInvalid,
// so the server answers Internal rather than InvalidArgument.
func RecordToProto(r store.Record) (*ledgerv1.RecordedEvent, error) {
	return recordToProto(r, ledger.Decode)
}

// VouchedRecordToProto is RecordToProto for a record of a backend that vouches for
// its content hashes (store.ContentVoucher): it decodes the stored bytes with
// ledger.DecodeTrusted, without recomputing the hash.
func VouchedRecordToProto(r store.Record) (*ledgerv1.RecordedEvent, error) {
	return recordToProto(r, ledger.DecodeTrusted)
}

func recordToProto(r store.Record, decode func(string, []byte, []byte) (*ledger.Event, *ledger.Metadata, error)) (*ledgerv1.RecordedEvent, error) {
	e, md, err := decode(r.Type, r.Data, r.Metadata)
	if err != nil {
		return nil, fmt.Errorf("stored record %q at %s does not decode: %v", r.EventID, r.Position, err)
	}
	if r.EventID != "" && md.EventID != r.EventID {
		return nil, fmt.Errorf("stored record %q at %s: metadata names event_id %q", r.EventID, r.Position, md.EventID)
	}
	pe := &ledgerv1.RecordedEvent{
		Event:      EventToProto(e),
		Revision:   r.Revision,
		Position:   PositionToProto(r.Position),
		RecordedBy: md.RecordedBy,
		Stream:     r.Stream,
		Stored:     &ledgerv1.StoredRecord{EventType: r.Type, Data: r.Data, Metadata: r.Metadata},
	}
	if md.RecordedAt != nil {
		pe.RecordedAt = timestamppb.New(*md.RecordedAt)
	}
	return pe, nil
}

// RecordFromProto rebuilds the stored record of a recorded event from its stored
// bytes (for verifiers: the Merkle leaf hashes those bytes). It fails, with an error
// that does not match ledger.ErrInvalid, when the stored bytes are missing or do not
// decode, or when the event sent beside them has another event_id.
func RecordFromProto(pe *ledgerv1.RecordedEvent) (store.Record, error) {
	st := pe.GetStored()
	if st == nil {
		return store.Record{}, fmt.Errorf("recorded event at %s carries no stored bytes", PositionFromProto(pe.GetPosition()))
	}
	_, md, err := ledger.Decode(st.GetEventType(), st.GetData(), st.GetMetadata())
	if err != nil {
		return store.Record{}, fmt.Errorf("stored bytes at %s do not decode: %v", PositionFromProto(pe.GetPosition()), err)
	}
	if id := pe.GetEvent().GetEventId(); pe.GetEvent() != nil && id != md.EventID {
		return store.Record{}, fmt.Errorf("recorded event %q carries the stored bytes of %q", id, md.EventID)
	}
	return store.Record{
		Stream:      pe.GetStream(),
		Revision:    pe.GetRevision(),
		Position:    PositionFromProto(pe.GetPosition()),
		EventID:     md.EventID,
		Type:        st.GetEventType(),
		Data:        st.GetData(),
		Metadata:    st.GetMetadata(),
		ContentHash: md.ContentSHA256,
	}, nil
}

func timeFromProto(verr *ledger.ValidationError, field string, ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		verr.Violations = append(verr.Violations, ledger.FieldViolation{Field: field, Description: fmt.Sprintf("invalid timestamp: %v", err)})
		return time.Time{}
	}
	t := ts.AsTime()
	if t.IsZero() {
		// 0001-01-01T00:00:00Z is time.Time's zero, which the domain reads as "not
		// set"; refuse it here rather than let a set time pass as an unset one.
		verr.Violations = append(verr.Violations, ledger.FieldViolation{Field: field, Description: "must not be before 1900-01-01T00:00:00Z"})
	}
	return t
}

func timeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// copyList copies a list, keeping an empty list nil so round trips compare equal.
func copyList(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

func sourcesFromProto(list []*ledgerv1.Source) []ledger.Source {
	if len(list) == 0 {
		return nil
	}
	out := make([]ledger.Source, len(list))
	for i, s := range list {
		out[i] = ledger.Source{URL: s.GetUrl(), Publisher: s.GetPublisher(), Title: s.GetTitle(), Language: s.GetLanguage()}
	}
	return out
}

func sourcesToProto(list []ledger.Source) []*ledgerv1.Source {
	if len(list) == 0 {
		return nil
	}
	out := make([]*ledgerv1.Source, len(list))
	for i, s := range list {
		out[i] = &ledgerv1.Source{Url: s.URL, Publisher: s.Publisher, Title: s.Title, Language: s.Language}
	}
	return out
}

func stancesFromProto(list []*ledgerv1.Stance) []ledger.Stance {
	if len(list) == 0 {
		return nil
	}
	out := make([]ledger.Stance, len(list))
	for i, s := range list {
		out[i] = ledger.Stance{
			Topic:     s.GetTopic(),
			Alignment: ledger.Alignment(s.GetAlignment()),
			Act:       ledger.Act(s.GetAct()),
			Summary:   s.GetSummary(),
			Quote:     s.GetQuote(),
		}
	}
	return out
}

func stancesToProto(list []ledger.Stance) []*ledgerv1.Stance {
	if len(list) == 0 {
		return nil
	}
	out := make([]*ledgerv1.Stance, len(list))
	for i, s := range list {
		out[i] = &ledgerv1.Stance{
			Topic:     s.Topic,
			Alignment: ledgerv1.Alignment(s.Alignment),
			Act:       ledgerv1.Act(s.Act),
			Summary:   s.Summary,
			Quote:     s.Quote,
		}
	}
	return out
}
