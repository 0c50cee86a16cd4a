package ledger

import (
	"fmt"
	"time"
)

// RecordType names one of the four record types. Its String is the EventStoreDB event
// type the record is stored under.
type RecordType int

// The record types. Their numbers match the proto enum RecordType.
const (
	TypeUnspecified     RecordType = 0
	TypeReportPublished RecordType = 1
	TypeStatementIssued RecordType = 2
	TypeMandateVetoed   RecordType = 3
	TypeRecordCorrected RecordType = 4
)

var recordTypeNames = [...]string{"", "ReportPublished", "StatementIssued", "MandateVetoed", "RecordCorrected"}

// String returns the stored event type, e.g. "StatementIssued", or "" for an unknown type.
func (t RecordType) String() string {
	if t < 0 || int(t) >= len(recordTypeNames) {
		return ""
	}
	return recordTypeNames[t]
}

// ParseRecordType maps a stored event type ("StatementIssued") back to its RecordType.
// It returns TypeUnspecified and false for anything else.
func ParseRecordType(s string) (RecordType, bool) {
	for i, n := range recordTypeNames {
		if i > 0 && n == s {
			return RecordType(i), true
		}
	}
	return TypeUnspecified, false
}

// Alignment is what a stance says about its topic. Numbers match the proto enum.
type Alignment int

// Alignments. AlignmentAbstains comes only from votes.
const (
	AlignmentUnspecified Alignment = 0
	AlignmentSupports    Alignment = 1
	AlignmentOpposes     Alignment = 2
	AlignmentNeutral     Alignment = 3
	AlignmentAbstains    Alignment = 4
)

// Act is the kind of speech act (after CAMEO/PLOVER). Numbers match the proto enum.
type Act int

// Acts. ActUnspecified means the act was not given; it is optional.
const (
	ActUnspecified    Act = 0
	ActAffirm         Act = 1
	ActDeny           Act = 2
	ActReject         Act = 3
	ActCondemn        Act = 4
	ActAccuse         Act = 5
	ActEndorse        Act = 6
	ActAppeal         Act = 7
	ActDemand         Act = 8
	ActThreaten       Act = 9
	ActDeclineComment Act = 10
	ActVote           Act = 11
)

// Vote is one member's vote on a draft resolution. Numbers match the proto enum.
type Vote int

// Votes.
const (
	VoteUnspecified Vote = 0
	VoteYes         Vote = 1
	VoteNo          Vote = 2
	VoteAbstain     Vote = 3
)

var (
	alignmentNames = []string{"ALIGNMENT_UNSPECIFIED", "ALIGNMENT_SUPPORTS", "ALIGNMENT_OPPOSES", "ALIGNMENT_NEUTRAL", "ALIGNMENT_ABSTAINS"}
	actNames       = []string{"ACT_UNSPECIFIED", "ACT_AFFIRM", "ACT_DENY", "ACT_REJECT", "ACT_CONDEMN", "ACT_ACCUSE", "ACT_ENDORSE", "ACT_APPEAL", "ACT_DEMAND", "ACT_THREATEN", "ACT_DECLINE_COMMENT", "ACT_VOTE"}
	voteNames      = []string{"VOTE_UNSPECIFIED", "VOTE_YES", "VOTE_NO", "VOTE_ABSTAIN"}
)

func enumName(names []string, n int) string {
	if n < 0 || n >= len(names) {
		return fmt.Sprintf("%d", n)
	}
	return names[n]
}

func enumParse(names []string, what string, b []byte) (int, error) {
	for i, n := range names {
		if n == string(b) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown %s %q", what, b)
}

// String returns the proto enum name, e.g. "ALIGNMENT_OPPOSES"; unknown numbers print as digits.
func (a Alignment) String() string { return enumName(alignmentNames, int(a)) }

// Valid reports whether a is one of the four named alignments (not unspecified).
func (a Alignment) Valid() bool { return a >= AlignmentSupports && a <= AlignmentAbstains }

// MarshalText encodes a as its proto enum name; it fails on unknown numbers.
func (a Alignment) MarshalText() ([]byte, error) {
	if a < 0 || int(a) >= len(alignmentNames) {
		return nil, fmt.Errorf("unknown alignment %d", int(a))
	}
	return []byte(alignmentNames[a]), nil
}

// UnmarshalText accepts the proto enum names only.
func (a *Alignment) UnmarshalText(b []byte) error {
	n, err := enumParse(alignmentNames, "alignment", b)
	*a = Alignment(n)
	return err
}

// String returns the proto enum name, e.g. "ACT_DENY"; unknown numbers print as digits.
func (a Act) String() string { return enumName(actNames, int(a)) }

// Valid reports whether a is a known act; ActUnspecified is valid (the act is optional).
func (a Act) Valid() bool { return a >= ActUnspecified && a <= ActVote }

// MarshalText encodes a as its proto enum name; it fails on unknown numbers.
func (a Act) MarshalText() ([]byte, error) {
	if !a.Valid() {
		return nil, fmt.Errorf("unknown act %d", int(a))
	}
	return []byte(actNames[a]), nil
}

// UnmarshalText accepts the proto enum names only.
func (a *Act) UnmarshalText(b []byte) error {
	n, err := enumParse(actNames, "act", b)
	*a = Act(n)
	return err
}

// String returns the proto enum name, e.g. "VOTE_NO"; unknown numbers print as digits.
func (v Vote) String() string { return enumName(voteNames, int(v)) }

// Valid reports whether v is YES, NO or ABSTAIN.
func (v Vote) Valid() bool { return v >= VoteYes && v <= VoteAbstain }

// MarshalText encodes v as its proto enum name; it fails on unknown numbers.
func (v Vote) MarshalText() ([]byte, error) {
	if v < 0 || int(v) >= len(voteNames) {
		return nil, fmt.Errorf("unknown vote %d", int(v))
	}
	return []byte(voteNames[v]), nil
}

// UnmarshalText accepts the proto enum names only.
func (v *Vote) UnmarshalText(b []byte) error {
	n, err := enumParse(voteNames, "vote", b)
	*v = Vote(n)
	return err
}

// Alignment maps a vote to the alignment it contributes: YES → SUPPORTS, NO → OPPOSES,
// ABSTAIN → ABSTAINS.
func (v Vote) Alignment() Alignment {
	switch v {
	case VoteYes:
		return AlignmentSupports
	case VoteNo:
		return AlignmentOpposes
	case VoteAbstain:
		return AlignmentAbstains
	}
	return AlignmentUnspecified
}

// Source is where a record was reported.
type Source struct {
	URL       string `json:"url,omitempty"`
	Publisher string `json:"publisher,omitempty"`
	Title     string `json:"title,omitempty"`
	Language  string `json:"language,omitempty"`
}

// Stance is one party's stated stance on one topic.
type Stance struct {
	Topic     string    `json:"topic,omitempty"`
	Alignment Alignment `json:"alignment,omitempty"`
	Act       Act       `json:"act,omitempty"`
	Summary   string    `json:"summary,omitempty"`
	Quote     string    `json:"quote,omitempty"`
}

// Body is the type-specific part of an event: exactly one of *ReportPublished,
// *StatementIssued, *MandateVetoed or *RecordCorrected.
type Body interface {
	// Type returns the record type of the body.
	Type() RecordType
}

// ReportPublished: the event's party published a report.
type ReportPublished struct {
	ReportID string   `json:"report_id,omitempty"`
	Title    string   `json:"title,omitempty"`
	Findings []Stance `json:"findings,omitempty"`
	Accused  []string `json:"accused,omitempty"`
}

// StatementIssued: the event's party issued a statement; its stances also count for
// every co-signer.
type StatementIssued struct {
	StatementID string   `json:"statement_id,omitempty"`
	Speaker     string   `json:"speaker,omitempty"`
	Channel     string   `json:"channel,omitempty"`
	Stances     []Stance `json:"stances,omitempty"`
	RespondsTo  []string `json:"responds_to,omitempty"`
	CoSigners   []string `json:"co_signers,omitempty"`
}

// MemberVote is one party's vote.
type MemberVote struct {
	Party string `json:"party,omitempty"`
	Vote  Vote   `json:"vote,omitempty"`
}

// MandateVetoed: the event's party vetoed the renewal of a mandate (a topic).
type MandateVetoed struct {
	Body            string       `json:"body,omitempty"`
	Mandate         string       `json:"mandate,omitempty"`
	DraftResolution string       `json:"draft_resolution,omitempty"`
	Votes           []MemberVote `json:"votes,omitempty"`
	VetoedBy        []string     `json:"vetoed_by,omitempty"`
}

// RecordCorrected corrects an earlier record of the same party: it withdraws its
// stances, replaces them, and/or moves its valid time.
type RecordCorrected struct {
	CorrectsEventID     string     `json:"corrects_event_id,omitempty"`
	Reason              string     `json:"reason,omitempty"`
	Withdraw            bool       `json:"withdraw,omitempty"`
	ReplacementStances  []Stance   `json:"replacement_stances,omitempty"`
	CorrectedOccurredAt *time.Time `json:"corrected_occurred_at,omitempty"`
	AddedSources        []Source   `json:"added_sources,omitempty"`
}

// Type implements Body.
func (*ReportPublished) Type() RecordType { return TypeReportPublished }

// Type implements Body.
func (*StatementIssued) Type() RecordType { return TypeStatementIssued }

// Type implements Body.
func (*MandateVetoed) Type() RecordType { return TypeMandateVetoed }

// Type implements Body.
func (*RecordCorrected) Type() RecordType { return TypeRecordCorrected }

// Event is one immutable ledger record as a client submits it.
type Event struct {
	// EventID is the client's idempotency key, 1–128 characters.
	EventID string
	// Party is the issuing party; the event is stored in stream StreamOf(Party).
	Party string
	// OccurredAt is valid time: when it was said or done. Required.
	OccurredAt time.Time
	// ReportedAt is when it became public; the zero time means not given.
	ReportedAt time.Time
	Sources    []Source
	// Body is required.
	Body Body
}

// Type returns the record type of e's body, or TypeUnspecified when it has none.
func (e *Event) Type() RecordType {
	if e.Body == nil {
		return TypeUnspecified
	}
	return e.Body.Type()
}

// StreamPrefix begins every ledger stream name.
const StreamPrefix = "party-"

// StreamOf returns the stream that holds party's records: "party-<party>".
func StreamOf(party string) string { return StreamPrefix + party }

// PartyOf returns the party of a ledger stream name and whether name is one.
func PartyOf(stream string) (string, bool) {
	if len(stream) <= len(StreamPrefix) || stream[:len(StreamPrefix)] != StreamPrefix {
		return "", false
	}
	return stream[len(StreamPrefix):], true
}

// Position is a place in the global log. Both numbers only grow. The embedded store
// uses one dense sequence from 1 (Commit == Prepare); EventStoreDB its transaction-file
// positions. The zero Position is before every record.
type Position struct {
	Commit  uint64
	Prepare uint64
}

// Compare orders positions by Commit, then Prepare: -1, 0 or +1.
func (p Position) Compare(q Position) int {
	switch {
	case p.Commit < q.Commit:
		return -1
	case p.Commit > q.Commit:
		return 1
	case p.Prepare < q.Prepare:
		return -1
	case p.Prepare > q.Prepare:
		return 1
	}
	return 0
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool { return p.Compare(q) < 0 }

// IsZero reports whether p is the zero position (the start of the log).
func (p Position) IsZero() bool { return p == Position{} }

// String formats p as "commit/prepare".
func (p Position) String() string { return fmt.Sprintf("%d/%d", p.Commit, p.Prepare) }

// ExpectedRevision is an append's optimistic concurrency check on its stream.
// The zero value is AnyRevision.
type ExpectedRevision struct {
	kind expectKind
	rev  uint64
}

type expectKind uint8

const (
	expectAny expectKind = iota
	expectNoStream
	expectStreamExists
	expectExact
)

// The non-exact expected revisions.
var (
	// AnyRevision appends whatever the stream holds.
	AnyRevision = ExpectedRevision{kind: expectAny}
	// NoStream requires that the stream does not exist yet.
	NoStream = ExpectedRevision{kind: expectNoStream}
	// StreamExists requires that the stream has at least one record.
	StreamExists = ExpectedRevision{kind: expectStreamExists}
)

// ExactRevision requires that the stream's last revision is exactly rev (revisions count from 0).
func ExactRevision(rev uint64) ExpectedRevision {
	return ExpectedRevision{kind: expectExact, rev: rev}
}

// Exact returns the revision and true when e is an exact expectation.
func (e ExpectedRevision) Exact() (uint64, bool) { return e.rev, e.kind == expectExact }

// IsAny reports whether e accepts any state of the stream.
func (e ExpectedRevision) IsAny() bool { return e.kind == expectAny }

// IsNoStream reports whether e requires that the stream does not exist.
func (e ExpectedRevision) IsNoStream() bool { return e.kind == expectNoStream }

// IsStreamExists reports whether e requires that the stream exists.
func (e ExpectedRevision) IsStreamExists() bool { return e.kind == expectStreamExists }

// Check reports whether a stream whose last revision is actual (NoRevision when the
// stream does not exist) satisfies e.
func (e ExpectedRevision) Check(actual int64) bool {
	switch e.kind {
	case expectNoStream:
		return actual == NoRevision
	case expectStreamExists:
		return actual != NoRevision
	case expectExact:
		return actual == int64(e.rev)
	}
	return true
}

// String formats e as "any", "no_stream", "stream_exists" or the exact revision.
func (e ExpectedRevision) String() string {
	switch e.kind {
	case expectNoStream:
		return "no_stream"
	case expectStreamExists:
		return "stream_exists"
	case expectExact:
		return fmt.Sprintf("%d", e.rev)
	}
	return "any"
}

// NoRevision is the actual revision of a stream that does not exist.
const NoRevision int64 = -1
