package ledger

import (
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// unmarshalFast decodes b into v — a *Metadata or a body — the way unmarshalStrict
// does, for the JSON Encode writes and whatever reads like it, in about half the
// time (BenchmarkDecode/trusted): objects whose members have exactly the field names, once
// each; strings with the escapes Encode writes; the schema's digits; true and false;
// times in RFC 3339 in UTC ("Z"). It reports false for anything else (other spellings
// of a name, a repeated member, null, other numbers or times, escaped surrogates,
// invalid UTF-8, an unknown member, an error) and then v may hold part of b: the
// caller decodes a fresh value with unmarshalStrict, which decides (and words the
// error). What it accepts, it decodes to what unmarshalStrict does
// (FuzzJSONAgreement). Each string is its own allocation (strings cut from one copy
// of b would keep all of b alive as long as any of them: the positions view keeps a
// few of each recent record, and its peak memory grew by 15 MiB).
func unmarshalFast(b []byte, v any) bool {
	return unmarshalFastAs(b, v, false)
}

// unmarshalLean is unmarshalFast for DecodeForFold: what folding does not read
// (leaveOut) it checks as unmarshalFast does and leaves out of v.
func unmarshalLean(b []byte, v any) bool {
	return unmarshalFastAs(b, v, true)
}

func unmarshalFastAs(b []byte, v any, lean bool) bool {
	s := &scanner{b: b, lean: lean}
	switch v := v.(type) {
	case *Metadata:
		s.metadata(v)
	case *StatementIssued:
		s.statement(v)
	case *ReportPublished:
		s.report(v)
	case *MandateVetoed:
		s.veto(v)
	case *RecordCorrected:
		s.correction(v)
	default:
		return false
	}
	s.space()
	return !s.bad && s.i == len(s.b)
}

// scanner reads JSON from b at i; bad is set at the first thing it does not read,
// after which every method returns at once. A lean scanner reads what folding
// does not read (the unread methods) without keeping it.
type scanner struct {
	b    []byte
	i    int
	bad  bool
	lean bool
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next consumes c (after white space) and reports whether it was there.
func (s *scanner) next(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// begin consumes the open bracket of an object or an array ('{' or '[') and reports
// whether a member or an element follows (not the close bracket). Read an object as
//
//	for ok := s.begin('{', '}'); ok; ok = s.more('}') {
//		switch string(s.name()) { ... } // each case reads the value
//	}
func (s *scanner) begin(open, close byte) bool {
	if s.bad || !s.next(open) {
		s.bad = true
		return false
	}
	return !s.next(close)
}

// more consumes what follows a member or an element: a comma (true: another
// follows) or the close bracket (false).
func (s *scanner) more(close byte) bool {
	switch {
	case s.bad:
	case s.next(','):
		return true
	case s.next(close):
		return false
	default:
		s.bad = true
	}
	return false
}

// name reads a member's name and its colon. Names are compared as they stand: one
// with an escape is not read.
func (s *scanner) name() []byte {
	from, to, ok := s.raw()
	if s.bad || !ok || !s.next(':') {
		s.bad = true
		return nil
	}
	return s.b[from:to]
}

// raw reads a string without escapes and returns where its bytes are in b (ok
// false, and nothing consumed, for a string with escapes: escaped reads those).
func (s *scanner) raw() (from, to int, ok bool) {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return 0, 0, false
	}
	var high byte // the bits of every byte: below 0x80, ASCII
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			from, to = s.i+1, j
			if high >= 0x80 && !utf8.Valid(s.b[from:to]) {
				return 0, 0, false
			}
			s.i = j + 1
			return from, to, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		default:
			high |= c
		}
	}
	return 0, 0, false
}

// str reads a string.
func (s *scanner) str() string {
	if s.bad {
		return ""
	}
	if from, to, ok := s.raw(); ok {
		return string(s.b[from:to])
	}
	if v, ok := s.escaped(); ok {
		return v
	}
	s.bad = true
	return ""
}

// unread reads a string that folding does not read: as str does, but a lean
// scanner only checks it and returns "".
func (s *scanner) unread() string {
	if !s.lean {
		return s.str()
	}
	if s.bad {
		return ""
	}
	if _, _, ok := s.raw(); !ok {
		s.str() // escapes (or not a string): read, or refused, as str does
	}
	return ""
}

// unreadStrs is strs for strings folding does not read (see unread): nil when lean.
func (s *scanner) unreadStrs() []string {
	if !s.lean {
		return s.strs()
	}
	for ok := s.begin('[', ']'); ok; ok = s.more(']') {
		s.unread()
	}
	return nil
}

// unreadTime is timePtr for a time folding does not read: nil when lean.
func (s *scanner) unreadTime() *time.Time {
	if !s.lean {
		return s.timePtr()
	}
	s.time()
	return nil
}

// escaped reads a string with escapes: the short ones, and \uXXXX but surrogates.
func (s *scanner) escaped() (string, bool) {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return "", false
	}
	out := make([]byte, 0, 64)
	for j := s.i + 1; j < len(s.b); {
		c := s.b[j]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return "", false
			}
			s.i = j + 1
			return string(out), true
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			j++
		case j+1 >= len(s.b):
			return "", false
		default:
			if e, ok := shortEscape(s.b[j+1]); ok {
				out = append(out, e)
				j += 2
				continue
			}
			if s.b[j+1] != 'u' || j+6 > len(s.b) {
				return "", false
			}
			r, err := strconv.ParseUint(string(s.b[j+2:j+6]), 16, 16)
			if err != nil || utf16.IsSurrogate(rune(r)) {
				return "", false
			}
			out = utf8.AppendRune(out, rune(r))
			j += 6
		}
	}
	return "", false
}

func shortEscape(e byte) (byte, bool) {
	switch e {
	case '"', '\\', '/':
		return e, true
	case 'b':
		return '\b', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	}
	return 0, false
}

// strs reads an array of strings.
func (s *scanner) strs() []string {
	out := []string{}
	for ok := s.begin('[', ']'); ok; ok = s.more(']') {
		out = append(grow(out), s.str())
	}
	return out
}

// grow returns out, or room for four elements when it has none (arrays here are
// short; an empty array stays empty and not nil, as encoding/json decodes it).
func grow[T any](out []T) []T {
	if cap(out) == 0 {
		return make([]T, 0, 4)
	}
	return out
}

// enum reads a proto enum name of names, as the enums' UnmarshalText do.
func (s *scanner) enum(names []string, what string) int {
	from, to, ok := s.raw()
	if s.bad || !ok {
		s.bad = true
		return 0
	}
	n, err := enumParse(names, what, s.b[from:to])
	if err != nil {
		s.bad = true
	}
	return n
}

// time reads a time in RFC 3339 in UTC, e.g. "2025-06-01T00:00:00.5Z", as
// time.Time's UnmarshalJSON does.
func (s *scanner) time() time.Time {
	from, to, ok := s.raw()
	if s.bad || !ok || !utcTime(s.b[from:to]) {
		s.bad = true
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, string(s.b[from:to]))
	if err != nil {
		s.bad = true
	}
	return t
}

// utcTime reports whether v is YYYY-MM-DDTHH:MM:SS, then optionally a dot and one to
// nine digits, then Z.
func utcTime(v []byte) bool {
	const layout = "0000-00-00T00:00:00"
	if len(v) < len(layout)+1 || v[len(v)-1] != 'Z' {
		return false
	}
	for i := range len(layout) {
		if layout[i] == '0' {
			if v[i] < '0' || v[i] > '9' {
				return false
			}
		} else if v[i] != layout[i] {
			return false
		}
	}
	frac := v[len(layout) : len(v)-1]
	if len(frac) == 0 {
		return true
	}
	if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
		return false
	}
	for _, c := range frac[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (s *scanner) timePtr() *time.Time {
	t := s.time()
	return &t
}

// small reads a JSON integer of at most nine digits.
func (s *scanner) small() int {
	s.space()
	j := s.i
	if j < len(s.b) && s.b[j] == '-' {
		j++
	}
	start := j
	for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
		j++
	}
	digits := s.b[start:j]
	if s.bad || len(digits) == 0 || len(digits) > 9 || (len(digits) > 1 && digits[0] == '0') {
		s.bad = true
		return 0
	}
	if j < len(s.b) && (s.b[j] == '.' || s.b[j] == 'e' || s.b[j] == 'E') {
		s.bad = true
		return 0
	}
	n, err := strconv.Atoi(string(s.b[s.i:j]))
	if err != nil {
		s.bad = true
	}
	s.i = j
	return n
}

func (s *scanner) boolean() bool {
	s.space()
	switch {
	case s.bad:
	case len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "true":
		s.i += 4
		return true
	case len(s.b)-s.i >= 5 && string(s.b[s.i:s.i+5]) == "false":
		s.i += 5
		return false
	}
	s.bad = true
	return false
}

// once marks member bit of seen, and s bad when it was marked: a repeated member is
// left to unmarshalStrict.
func (s *scanner) once(seen *uint16, bit int) {
	if *seen&(1<<bit) != 0 {
		s.bad = true
	}
	*seen |= 1 << bit
}

func (s *scanner) metadata(m *Metadata) {
	var seen uint16
	for ok := s.begin('{', '}'); ok; ok = s.more('}') {
		switch string(s.name()) {
		case "schema":
			s.once(&seen, 0)
			m.Schema = s.small()
		case "event_id":
			s.once(&seen, 1)
			m.EventID = s.str()
		case "party":
			s.once(&seen, 2)
			m.Party = s.str()
		case "occurred_at":
			s.once(&seen, 3)
			m.OccurredAt = s.time()
		case "reported_at":
			s.once(&seen, 4)
			m.ReportedAt = s.timePtr()
		case "sources":
			s.once(&seen, 5)
			m.Sources = s.sources()
		case "content_sha256":
			s.once(&seen, 6)
			m.ContentSHA256 = s.unread()
		case "recorded_at":
			s.once(&seen, 7)
			m.RecordedAt = s.unreadTime()
		case "recorded_by":
			s.once(&seen, 8)
			m.RecordedBy = s.unread()
		default:
			s.bad = true
		}
	}
}

// sources reads sources, which folding does not read: a lean scanner returns nil.
func (s *scanner) sources() []Source {
	out := []Source{}
	for ok := s.begin('[', ']'); ok; ok = s.more(']') {
		var src Source
		var seen uint16
		for ok := s.begin('{', '}'); ok; ok = s.more('}') {
			switch string(s.name()) {
			case "url":
				s.once(&seen, 0)
				src.URL = s.unread()
			case "publisher":
				s.once(&seen, 1)
				src.Publisher = s.unread()
			case "title":
				s.once(&seen, 2)
				src.Title = s.unread()
			case "language":
				s.once(&seen, 3)
				src.Language = s.unread()
			default:
				s.bad = true
			}
		}
		if !s.lean {
			out = append(grow(out), src)
		}
	}
	if s.lean {
		return nil
	}
	return out
}

func (s *scanner) stances() []Stance {
	out := []Stance{}
	for ok := s.begin('[', ']'); ok; ok = s.more(']') {
		var st Stance
		var seen uint16
		for ok := s.begin('{', '}'); ok; ok = s.more('}') {
			switch string(s.name()) {
			case "topic":
				s.once(&seen, 0)
				st.Topic = s.str()
			case "alignment":
				s.once(&seen, 1)
				st.Alignment = Alignment(s.enum(alignmentNames, "alignment"))
			case "act":
				s.once(&seen, 2)
				st.Act = Act(s.enum(actNames, "act"))
			case "summary":
				s.once(&seen, 3)
				st.Summary = s.str()
			case "quote":
				s.once(&seen, 4)
				st.Quote = s.str()
			default:
				s.bad = true
			}
		}
		out = append(grow(out), st)
	}
	return out
}

func (s *scanner) votes() []MemberVote {
	out := []MemberVote{}
	for ok := s.begin('[', ']'); ok; ok = s.more(']') {
		var v MemberVote
		var seen uint16
		for ok := s.begin('{', '}'); ok; ok = s.more('}') {
			switch string(s.name()) {
			case "party":
				s.once(&seen, 0)
				v.Party = s.str()
			case "vote":
				s.once(&seen, 1)
				v.Vote = Vote(s.enum(voteNames, "vote"))
			default:
				s.bad = true
			}
		}
		out = append(grow(out), v)
	}
	return out
}

func (s *scanner) statement(b *StatementIssued) {
	var seen uint16
	for ok := s.begin('{', '}'); ok; ok = s.more('}') {
		switch string(s.name()) {
		case "statement_id":
			s.once(&seen, 0)
			b.StatementID = s.unread()
		case "speaker":
			s.once(&seen, 1)
			b.Speaker = s.unread()
		case "channel":
			s.once(&seen, 2)
			b.Channel = s.unread()
		case "stances":
			s.once(&seen, 3)
			b.Stances = s.stances()
		case "responds_to":
			s.once(&seen, 4)
			b.RespondsTo = s.unreadStrs()
		case "co_signers":
			s.once(&seen, 5)
			b.CoSigners = s.strs()
		default:
			s.bad = true
		}
	}
}

func (s *scanner) report(b *ReportPublished) {
	var seen uint16
	for ok := s.begin('{', '}'); ok; ok = s.more('}') {
		switch string(s.name()) {
		case "report_id":
			s.once(&seen, 0)
			b.ReportID = s.unread()
		case "title":
			s.once(&seen, 1)
			b.Title = s.unread()
		case "findings":
			s.once(&seen, 2)
			b.Findings = s.stances()
		case "accused":
			s.once(&seen, 3)
			b.Accused = s.unreadStrs()
		default:
			s.bad = true
		}
	}
}

func (s *scanner) veto(b *MandateVetoed) {
	var seen uint16
	for ok := s.begin('{', '}'); ok; ok = s.more('}') {
		switch string(s.name()) {
		case "body":
			s.once(&seen, 0)
			b.Body = s.unread()
		case "mandate":
			s.once(&seen, 1)
			b.Mandate = s.str()
		case "draft_resolution":
			s.once(&seen, 2)
			b.DraftResolution = s.unread()
		case "votes":
			s.once(&seen, 3)
			b.Votes = s.votes()
		case "vetoed_by":
			s.once(&seen, 4)
			b.VetoedBy = s.unreadStrs()
		default:
			s.bad = true
		}
	}
}

func (s *scanner) correction(b *RecordCorrected) {
	var seen uint16
	for ok := s.begin('{', '}'); ok; ok = s.more('}') {
		switch string(s.name()) {
		case "corrects_event_id":
			s.once(&seen, 0)
			b.CorrectsEventID = s.str()
		case "reason":
			s.once(&seen, 1)
			b.Reason = s.str()
		case "withdraw":
			s.once(&seen, 2)
			b.Withdraw = s.boolean()
		case "replacement_stances":
			s.once(&seen, 3)
			b.ReplacementStances = s.stances()
		case "corrected_occurred_at":
			s.once(&seen, 4)
			b.CorrectedOccurredAt = s.timePtr()
		case "added_sources":
			s.once(&seen, 5)
			b.AddedSources = s.sources()
		default:
			s.bad = true
		}
	}
}

// marshalMetadata encodes md as marshal does, quickly (appendMetadata) when it can.
func marshalMetadata(md *Metadata) ([]byte, error) {
	if b, ok := appendMetadata(make([]byte, 0, 512), md); ok {
		return b, nil
	}
	return marshal(md)
}

// appendMetadata appends md to b in exactly the bytes marshal writes (encoding/json,
// without HTML escaping), and reports false for a time that is not in UTC or not in
// the years 0–9999, which it leaves to marshal (MarshalJSON writes an offset, or
// fails). FuzzMetadataJSON checks it against marshal.
func appendMetadata(b []byte, md *Metadata) ([]byte, bool) {
	b = append(b, `{"schema":`...)
	b = strconv.AppendInt(b, int64(md.Schema), 10)
	b = append(b, `,"event_id":`...)
	b = appendJSONString(b, md.EventID)
	b = append(b, `,"party":`...)
	b = appendJSONString(b, md.Party)
	b = append(b, `,"occurred_at":`...)
	b, ok := appendJSONTime(b, md.OccurredAt)
	if md.ReportedAt != nil && ok {
		b = append(b, `,"reported_at":`...)
		b, ok = appendJSONTime(b, *md.ReportedAt)
	}
	if len(md.Sources) > 0 {
		b = append(b, `,"sources":[`...)
		for i, s := range md.Sources {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			n := len(b)
			b = appendMember(b, n, `"url":`, s.URL)
			b = appendMember(b, n, `"publisher":`, s.Publisher)
			b = appendMember(b, n, `"title":`, s.Title)
			b = appendMember(b, n, `"language":`, s.Language)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendMember(b, 0, `"content_sha256":`, md.ContentSHA256)
	if md.RecordedAt != nil && ok {
		b = append(b, `,"recorded_at":`...)
		b, ok = appendJSONTime(b, *md.RecordedAt)
	}
	b = appendMember(b, 0, `"recorded_by":`, md.RecordedBy)
	return append(b, '}'), ok
}

// appendMember appends name and the string v, after a comma unless the object
// began at first (len(b) == first), when v is not empty (omitempty).
func appendMember(b []byte, first int, name, v string) []byte {
	if v == "" {
		return b
	}
	if len(b) != first {
		b = append(b, ',')
	}
	return appendJSONString(append(b, name...), v)
}

// appendJSONTime appends t as time.Time's MarshalJSON does, for a time in UTC in
// the years 0–9999 (ok false otherwise).
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	if t.Location() != time.UTC || t.Year() < 0 || t.Year() > 9999 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// appendJSONString appends s quoted as encoding/json writes it without HTML
// escaping: \" and \\, \b \f \n \r \t, other control characters as \u00XX, invalid
// UTF-8 as \ufffd, and U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(append(b, s[start:]...), '"')
}
