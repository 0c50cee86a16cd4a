package ledger

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits bounds the size of appends. A zero (or negative) field means its value in
// DefaultLimits.
type Limits struct {
	// MaxEventBytes bounds one event: len(Data)+len(Metadata) of its Encode output
	// (without recorded_at and recorded_by, which the server adds).
	MaxEventBytes int
	// MaxEvents bounds the number of events in one append.
	MaxEvents int
	// MaxAppendBytes bounds the sum of MaxEventBytes' measure over one append.
	MaxAppendBytes int
}

// DefaultLimits are the limits of issue 2: 64 KiB per event, 1,000 events and 4 MiB
// per append.
var DefaultLimits = Limits{MaxEventBytes: 64 << 10, MaxEvents: 1000, MaxAppendBytes: 4 << 20}

func (l Limits) withDefaults() Limits {
	if l.MaxEventBytes <= 0 {
		l.MaxEventBytes = DefaultLimits.MaxEventBytes
	}
	if l.MaxEvents <= 0 {
		l.MaxEvents = DefaultLimits.MaxEvents
	}
	if l.MaxAppendBytes <= 0 {
		l.MaxAppendBytes = DefaultLimits.MaxAppendBytes
	}
	return l
}

// Bounds on single fields. Strings are measured in bytes, except event ids, which the
// API documents as "up to 128 characters".
const (
	// MaxViolations caps the violations one ValidationError lists; one more entry says
	// that the list was cut.
	MaxViolations = 100
	// MaxFutureSkew is how far after the server's clock an occurred_at may lie.
	MaxFutureSkew = 24 * time.Hour

	maxIDChars    = 128
	maxTextBytes  = 8 << 10 // summary, quote, reason
	maxTitleBytes = 1 << 10 // titles, speaker, channel, publisher, draft_resolution
	maxURLBytes   = 2 << 10
	maxLangBytes  = 35 // the longest BCP 47 tag that is commonly seen
	maxStances    = 256
	maxParties    = 256 // accused, co_signers, votes, vetoed_by
	maxSources    = 64
	maxRespondsTo = 64
)

// minTime is the earliest valid time a record may carry: nothing in a ledger of
// public statements happened before 1900, so an earlier date is a typo or garbage.
var minTime = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	// langRE accepts the shape of BCP 47 tags ("en", "ko", "zh-Hans", "sr-Latn-RS")
	// without checking the registry.
	langRE = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$`)
)

// IsSlug reports whether s is a party or topic slug: ^[a-z0-9][a-z0-9-]{0,62}$.
func IsSlug(s string) bool { return slugRE.MatchString(s) }

// Lookup finds a stored record by event_id for ValidateAppend. found is false when no
// record has that id; err is for failures to look (the store is down), not for absence.
type Lookup func(ctx context.Context, eventID string) (party string, typ RecordType, found bool, err error)

// ValidateEvent checks one event on its own: everything ValidateAppend checks except
// the request party, uniqueness within an append, what a correction refers to, and
// size limits. now is the server's clock; occurred_at may not lie more than
// MaxFutureSkew after it.
//
// It returns nil or a *ValidationError whose field paths are relative to the event and
// use the proto field names ("party", "statement_issued.stances[0].topic").
//
// Rules that are a choice rather than a given:
//   - a report needs at least one finding or one accused party (a report with neither
//     says nothing the ledger can attribute), reported on "report_published.findings";
//   - a veto's issuing party must be among vetoed_by (DESIGN.md: a mandate_vetoed
//     record lives in the vetoing party's stream);
//   - reported_at may lie before occurred_at (an embargoed text can be released before
//     its date); it only has to be in the valid range;
//   - ACT_VOTE is allowed in stances (a party may describe its own vote in a statement).
func ValidateEvent(e *Event, now time.Time) error {
	var v violations
	v.event("", e, now)
	return v.err()
}

// ValidateAppend checks an append request for party: every event (as ValidateEvent,
// with paths prefixed "events[i]."), that each event's party is party, that event_ids
// are unique within the append, that each correction names an earlier record of the
// same party that is not itself a correction, and the size limits (zero fields of
// limits take DefaultLimits).
//
// A correction's corrects_event_id is resolved first among the events before it in
// the same append, then with lookup; a nil lookup finds nothing.
//
// It returns nil, a *ValidationError listing every violation found (at most
// MaxViolations, plus one entry saying the list was cut), or the error of lookup,
// wrapped, when a lookup fails; then the request was not fully validated.
func ValidateAppend(ctx context.Context, party string, events []*Event, now time.Time, limits Limits, lookup Lookup) error {
	return validateAppend(ctx, party, events, now, limits, lookup, func(_ int, e *Event) (int, error) {
		c, err := encodeContent(e) // the size needs no recorded metadata
		return c.size, err
	})
}

// EncodeAppend is ValidateAppend followed, when the append is valid, by
// Encode(e, now, recordedBy) of each event, with each event encoded once: the size
// limits are checked on those encodings (measured as ValidateAppend measures them,
// without recorded_at and recorded_by), not on encodings made only to be measured.
// It returns the encodings in the order of events, or ValidateAppend's error.
func EncodeAppend(ctx context.Context, party string, events []*Event, now time.Time, recordedBy string, limits Limits, lookup Lookup) ([]Encoded, error) {
	out := make([]Encoded, len(events))
	err := validateAppend(ctx, party, events, now, limits, lookup, func(i int, e *Event) (int, error) {
		enc, n, err := encode(e, now, recordedBy)
		out[i] = enc
		return n, err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// validateAppend is ValidateAppend, measuring each event that is otherwise valid
// with size (its encoded size, or why it cannot be encoded).
func validateAppend(ctx context.Context, party string, events []*Event, now time.Time, limits Limits, lookup Lookup, size func(i int, e *Event) (int, error)) error {
	limits = limits.withDefaults()
	var v violations
	if !IsSlug(party) {
		v.add("party", "must be a slug (^[a-z0-9][a-z0-9-]{0,62}$)")
	}
	switch {
	case len(events) == 0:
		v.add("events", "at least one event required")
		return v.err()
	case len(events) > limits.MaxEvents:
		// Validating a flood of events is work an attacker chooses; refuse it outright.
		v.add("events", "at most %d events per append (got %d)", limits.MaxEvents, len(events))
		return v.err()
	}
	firstIndex := make(map[string]int, len(events))
	total := 0
	for i, e := range events {
		p := fmt.Sprintf("events[%d]", i)
		if e == nil {
			v.add(p, "required")
			continue
		}
		before := v.found
		v.event(p, e, now)
		if e.Party != party && IsSlug(party) && IsSlug(e.Party) {
			v.add(p+".party", "must equal the request's party %q", party)
		}
		if j, dup := firstIndex[e.EventID]; dup {
			v.add(p+".event_id", "duplicate of events[%d].event_id", j)
		} else if e.EventID != "" {
			firstIndex[e.EventID] = i
		}
		if c, ok := e.Body.(*RecordCorrected); ok && c != nil && validID(c.CorrectsEventID) == "" {
			if err := v.correctionTarget(ctx, p, i, e, c, events, firstIndex, lookup); err != nil {
				return err
			}
		}
		if v.found == before {
			// Only a valid event is sure to encode; an invalid one is refused anyway.
			n, err := size(i, e)
			if err != nil {
				v.add(p, "cannot be encoded: %v", err)
				continue
			}
			if n > limits.MaxEventBytes {
				v.add(p, "encodes to %d bytes; at most %d per event", n, limits.MaxEventBytes)
			}
			total += n
		}
	}
	if total > limits.MaxAppendBytes {
		v.add("events", "encode to %d bytes; at most %d per append", total, limits.MaxAppendBytes)
	}
	return v.err()
}

// correctionTarget checks what events[i] (a correction) corrects.
func (v *violations) correctionTarget(ctx context.Context, p string, i int, e *Event, c *RecordCorrected, events []*Event, firstIndex map[string]int, lookup Lookup) error {
	f := p + ".record_corrected.corrects_event_id"
	if c.CorrectsEventID == e.EventID {
		v.add(f, "a record cannot correct itself")
		return nil
	}
	if j, ok := firstIndex[c.CorrectsEventID]; ok && j < i {
		t := events[j]
		switch {
		case t.Party != e.Party:
			v.add(f, "names events[%d], a record of party %q; a correction must name a record of its own party", j, t.Party)
		case t.Type() == TypeRecordCorrected:
			v.add(f, "names events[%d], a correction; corrections cannot be corrected", j)
		}
		return nil
	}
	if lookup == nil {
		v.add(f, "no record with this event_id")
		return nil
	}
	party, typ, found, err := lookup(ctx, c.CorrectsEventID)
	if err != nil {
		return fmt.Errorf("look up %s %q: %w", f, c.CorrectsEventID, err)
	}
	switch {
	case !found:
		v.add(f, "no record with this event_id")
	case party != e.Party:
		v.add(f, "names a record of party %q; a correction must name a record of its own party", party)
	case typ == TypeRecordCorrected:
		v.add(f, "names a correction; corrections cannot be corrected")
	}
	return nil
}

// violations collects FieldViolations up to MaxViolations.
type violations struct {
	list []FieldViolation
	cut  bool
	// found counts every violation, listed or not.
	found int
}

func (v *violations) add(field, format string, args ...any) {
	v.found++
	if len(v.list) >= MaxViolations {
		v.cut = true
		return
	}
	v.list = append(v.list, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (v *violations) err() error {
	if len(v.list) == 0 {
		return nil
	}
	list := v.list
	if v.cut {
		list = append(list, FieldViolation{Description: fmt.Sprintf("more violations not listed (at most %d are)", MaxViolations)})
	}
	return &ValidationError{Violations: list}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func index(prefix string, i int) string { return fmt.Sprintf("%s[%d]", prefix, i) }

func (v *violations) event(p string, e *Event, now time.Time) {
	if e == nil {
		if p == "" {
			v.add(p, "event required")
		} else {
			v.add(p, "required")
		}
		return
	}
	if d := validID(e.EventID); d != "" {
		v.add(join(p, "event_id"), "%s", d)
	}
	v.slug(join(p, "party"), e.Party)
	v.timestamp(join(p, "occurred_at"), e.OccurredAt, now, true)
	if !e.ReportedAt.IsZero() {
		v.timestamp(join(p, "reported_at"), e.ReportedAt, now, false)
	}
	switch {
	case len(e.Sources) == 0:
		v.add(join(p, "sources"), "at least one source required")
	default:
		v.sources(join(p, "sources"), e.Sources)
	}
	switch b := e.Body.(type) {
	case *ReportPublished:
		if b != nil {
			v.report(join(p, "report_published"), b)
			return
		}
	case *StatementIssued:
		if b != nil {
			v.statement(join(p, "statement_issued"), e.Party, b)
			return
		}
	case *MandateVetoed:
		if b != nil {
			v.veto(join(p, "mandate_vetoed"), e.Party, b)
			return
		}
	case *RecordCorrected:
		if b != nil {
			v.correction(join(p, "record_corrected"), b, now)
			return
		}
	case nil:
	default:
		v.add(join(p, "body"), "unknown body type %T", e.Body)
		return
	}
	v.add(join(p, "body"), "required (one of report_published, statement_issued, mandate_vetoed, record_corrected)")
}

func (v *violations) report(p string, b *ReportPublished) {
	if d := validID(b.ReportID); d != "" {
		v.add(join(p, "report_id"), "%s", d)
	}
	v.text(join(p, "title"), b.Title, maxTitleBytes, true, false)
	if len(b.Findings) == 0 && len(b.Accused) == 0 {
		v.add(join(p, "findings"), "at least one finding or accused party required")
	}
	v.stances(join(p, "findings"), b.Findings)
	v.parties(join(p, "accused"), b.Accused, "")
}

func (v *violations) statement(p, party string, b *StatementIssued) {
	if d := validID(b.StatementID); d != "" {
		v.add(join(p, "statement_id"), "%s", d)
	}
	v.text(join(p, "speaker"), b.Speaker, maxTitleBytes, false, false)
	v.text(join(p, "channel"), b.Channel, maxTitleBytes, false, false)
	if len(b.Stances) == 0 {
		v.add(join(p, "stances"), "at least one stance required")
	}
	v.stances(join(p, "stances"), b.Stances)
	rp := join(p, "responds_to")
	if len(b.RespondsTo) > maxRespondsTo {
		v.add(rp, "at most %d entries (got %d)", maxRespondsTo, len(b.RespondsTo))
	} else {
		seen := make(map[string]int, len(b.RespondsTo))
		for i, id := range b.RespondsTo {
			if d := validID(id); d != "" {
				v.add(index(rp, i), "%s", d)
			} else if j, dup := seen[id]; dup {
				v.add(index(rp, i), "duplicate of %s", index(rp, j))
			} else {
				seen[id] = i
			}
		}
	}
	v.parties(join(p, "co_signers"), b.CoSigners, party)
}

func (v *violations) veto(p, party string, b *MandateVetoed) {
	v.slug(join(p, "body"), b.Body)
	v.slug(join(p, "mandate"), b.Mandate)
	v.text(join(p, "draft_resolution"), b.DraftResolution, maxTitleBytes, false, false)
	vp := join(p, "votes")
	votes := make(map[string]Vote, len(b.Votes))
	switch {
	case len(b.Votes) == 0:
		v.add(vp, "at least one vote required")
	case len(b.Votes) > maxParties:
		v.add(vp, "at most %d votes (got %d)", maxParties, len(b.Votes))
	default:
		seen := make(map[string]int, len(b.Votes))
		for i, mv := range b.Votes {
			ip := index(vp, i)
			if v.slug(join(ip, "party"), mv.Party) {
				if j, dup := seen[mv.Party]; dup {
					v.add(join(ip, "party"), "duplicate of %s.party", index(vp, j))
				} else {
					seen[mv.Party] = i
					votes[mv.Party] = mv.Vote
				}
			}
			if !mv.Vote.Valid() {
				v.add(join(ip, "vote"), "must be VOTE_YES, VOTE_NO or VOTE_ABSTAIN (got %s)", mv.Vote)
			}
		}
	}
	bp := join(p, "vetoed_by")
	if len(b.VetoedBy) == 0 {
		v.add(bp, "at least one party required")
		return
	}
	if !v.parties(bp, b.VetoedBy, "") {
		return
	}
	for i, vb := range b.VetoedBy {
		if len(b.Votes) == 0 || len(b.Votes) > maxParties {
			break
		}
		switch got, ok := votes[vb]; {
		case !ok:
			v.add(index(bp, i), "%q must have voted VOTE_NO (no vote found)", vb)
		case got != VoteNo:
			v.add(index(bp, i), "%q must have voted VOTE_NO (voted %s)", vb, got)
		}
	}
	if IsSlug(party) && !contains(b.VetoedBy, party) {
		v.add(bp, "must include the record's party %q (a veto is recorded in the vetoing party's stream)", party)
	}
}

func (v *violations) correction(p string, b *RecordCorrected, now time.Time) {
	if d := validID(b.CorrectsEventID); d != "" {
		v.add(join(p, "corrects_event_id"), "%s", d)
	}
	v.text(join(p, "reason"), b.Reason, maxTextBytes, true, true)
	if !b.Withdraw && len(b.ReplacementStances) == 0 && b.CorrectedOccurredAt == nil && len(b.AddedSources) == 0 {
		v.add(p, "must set at least one of withdraw, replacement_stances, corrected_occurred_at, added_sources")
	}
	if b.Withdraw && len(b.ReplacementStances) > 0 {
		v.add(join(p, "replacement_stances"), "must be empty when withdraw is set")
	}
	v.stances(join(p, "replacement_stances"), b.ReplacementStances)
	if b.CorrectedOccurredAt != nil {
		v.timestamp(join(p, "corrected_occurred_at"), *b.CorrectedOccurredAt, now, true)
	}
	if len(b.AddedSources) > 0 {
		v.sources(join(p, "added_sources"), b.AddedSources)
	}
}

// stances checks a list of stances a client sent. ALIGNMENT_ABSTAINS is refused: it
// comes only from votes.
func (v *violations) stances(p string, list []Stance) {
	if len(list) > maxStances {
		v.add(p, "at most %d stances (got %d)", maxStances, len(list))
		return
	}
	seen := make(map[string]int, len(list))
	for i, s := range list {
		ip := index(p, i)
		if v.slug(join(ip, "topic"), s.Topic) {
			if j, dup := seen[s.Topic]; dup {
				v.add(join(ip, "topic"), "duplicate topic %q (also %s)", s.Topic, index(p, j))
			} else {
				seen[s.Topic] = i
			}
		}
		switch {
		case s.Alignment == AlignmentAbstains:
			v.add(join(ip, "alignment"), "ALIGNMENT_ABSTAINS comes only from votes")
		case !s.Alignment.Valid():
			v.add(join(ip, "alignment"), "must be ALIGNMENT_SUPPORTS, ALIGNMENT_OPPOSES or ALIGNMENT_NEUTRAL (got %s)", s.Alignment)
		}
		if !s.Act.Valid() {
			v.add(join(ip, "act"), "unknown act %s", s.Act)
		}
		v.text(join(ip, "summary"), s.Summary, maxTextBytes, false, true)
		v.text(join(ip, "quote"), s.Quote, maxTextBytes, false, true)
	}
}

func (v *violations) sources(p string, list []Source) {
	if len(list) > maxSources {
		v.add(p, "at most %d sources (got %d)", maxSources, len(list))
		return
	}
	for i, s := range list {
		ip := index(p, i)
		if d := validURL(s.URL); d != "" {
			v.add(join(ip, "url"), "%s", d)
		}
		v.text(join(ip, "publisher"), s.Publisher, maxTitleBytes, false, false)
		v.text(join(ip, "title"), s.Title, maxTitleBytes, false, false)
		if s.Language != "" && (len(s.Language) > maxLangBytes || !langRE.MatchString(s.Language)) {
			v.add(join(ip, "language"), "must be a BCP 47 language tag such as \"en\" or \"zh-Hans\"")
		}
	}
}

// parties checks a list of party slugs: no duplicates, none equal to self (when self
// is not ""). It reports whether the list was short enough to be checked entry by entry.
func (v *violations) parties(p string, list []string, self string) bool {
	if len(list) > maxParties {
		v.add(p, "at most %d parties (got %d)", maxParties, len(list))
		return false
	}
	seen := make(map[string]int, len(list))
	for i, s := range list {
		ip := index(p, i)
		if !v.slug(ip, s) {
			continue
		}
		if j, dup := seen[s]; dup {
			v.add(ip, "duplicate of %s", index(p, j))
			continue
		}
		seen[s] = i
		if self != "" && s == self {
			v.add(ip, "must not be the record's own party")
		}
	}
	return true
}

// slug reports whether s is a slug, adding a violation when it is not.
func (v *violations) slug(field, s string) bool {
	if s == "" {
		v.add(field, "required")
		return false
	}
	if !IsSlug(s) {
		v.add(field, "must be a slug (^[a-z0-9][a-z0-9-]{0,62}$)")
		return false
	}
	return true
}

// timestamp checks a time: set (when required), not before 1900, at most
// MaxFutureSkew after now.
func (v *violations) timestamp(field string, t, now time.Time, required bool) {
	switch {
	case t.IsZero():
		if required {
			v.add(field, "required")
		}
	case t.Before(minTime):
		v.add(field, "must not be before %s", minTime.Format(time.RFC3339))
	case t.After(now.Add(MaxFutureSkew)):
		v.add(field, "must not be more than %s after the server's clock (%s)", MaxFutureSkew, now.UTC().Format(time.RFC3339))
	}
}

// text checks free text: valid UTF-8, at most maxBytes, required if so asked, and no
// control characters except, in multi-line text, newline, carriage return and tab.
func (v *violations) text(field, s string, maxBytes int, required, multiline bool) {
	switch {
	case s == "":
		if required {
			v.add(field, "required")
		}
	case !utf8.ValidString(s):
		v.add(field, "must be valid UTF-8")
	case len(s) > maxBytes:
		v.add(field, "at most %d bytes (got %d)", maxBytes, len(s))
	default:
		for _, r := range s {
			if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\r' || r == '\t')) {
				v.add(field, "must not contain control characters (found %U)", r)
				return
			}
		}
	}
}

// validID describes what is wrong with an id (event_id, report_id, …), or returns "".
func validID(s string) string {
	switch {
	case s == "":
		return "required"
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case len(s) > 4*maxIDChars || utf8.RuneCountInString(s) > maxIDChars:
		return fmt.Sprintf("at most %d characters", maxIDChars)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("must not contain control characters (found %U)", r)
		}
	}
	return ""
}

// validURL describes what is wrong with a source URL, or returns "".
func validURL(s string) string {
	switch {
	case s == "":
		return "required"
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case len(s) > maxURLBytes:
		return fmt.Sprintf("at most %d bytes (got %d)", maxURLBytes, len(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		return "must be an absolute http or https URL"
	}
	if scheme := strings.ToLower(u.Scheme); (scheme != "http" && scheme != "https") || u.Host == "" {
		return "must be an absolute http or https URL"
	}
	return ""
}
