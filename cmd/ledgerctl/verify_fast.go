package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
)

// recordKeysStart begins the record fields replay appends after the event's.
var recordKeysStart = []byte(`,"revision":`)

// canonicalLine is the fast path of checkLine. It reports whether line is byte for byte
// what "replay -o jsonl" writes for the stored bytes it carries; then every readable
// field agrees with them and el holds what the leaf needs. Anything else (other spacing,
// key order, escapes) is left to the slow path, which compares meanings.
//
// A JSON string cannot hold an unescaped quote, so the last `,"revision":` of a line is
// where the record fields begin. They are parsed exactly as marshalRecord lays them out,
// so they cannot be ambiguous (no duplicate or unknown keys); the event before them must
// be exactly the compact protojson of the event decoded from the stored bytes.
func canonicalLine(line []byte, el *exportLine) bool {
	i := bytes.LastIndex(line, recordKeysStart)
	if i < 0 {
		return false
	}
	p := tailParser{b: line[i:]}
	var recordedAt, recordedBy string
	var hasAt, hasBy bool
	ok := p.lit(`,"revision":`) && p.uint(&el.Revision) &&
		p.lit(`,"position":{"commit":`) && p.uint(&el.Position.Commit) &&
		p.lit(`,"prepare":`) && p.uint(&el.Position.Prepare) && p.lit(`}`)
	if ok && p.lit(`,"recorded_at":`) {
		hasAt = true
		ok = p.str(&recordedAt)
	}
	if ok && p.lit(`,"recorded_by":`) {
		hasBy = true
		ok = p.str(&recordedBy)
	}
	var data, metadata string
	ok = ok && p.lit(`,"stream":`) && p.str(&el.Stream) &&
		p.lit(`,"stored":{"event_type":`) && p.str(&el.Stored.EventType) &&
		p.lit(`,"data":`) && p.str(&data) &&
		p.lit(`,"metadata":`) && p.str(&metadata) &&
		p.lit(`}}`) && len(p.b) == 0
	if !ok {
		return false
	}
	// Strict: one byte string has one encoding (str has refused line breaks).
	var err error
	if el.Stored.Data, err = strictBase64.DecodeString(data); err != nil {
		return false
	}
	if el.Stored.Metadata, err = strictBase64.DecodeString(metadata); err != nil {
		return false
	}
	ev, md, err := ledger.Decode(el.Stored.EventType, el.Stored.Data, el.Stored.Metadata)
	if err != nil {
		return false
	}
	// What marshalRecord writes: recorded_at and recorded_by only when set, and the
	// event exactly as eventJSON encodes it, compacted.
	if hasAt != (md.RecordedAt != nil) || hasAt && recordedAt != formatTimestamp(*md.RecordedAt) {
		return false
	}
	if hasBy != (md.RecordedBy != "") || recordedBy != md.RecordedBy {
		return false
	}
	evJSON, err := eventJSON.Marshal(wire.EventToProto(ev))
	if err != nil {
		return false
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, evJSON); err != nil {
		return false
	}
	want := compact.Bytes()
	if len(want) < 3 || want[len(want)-1] != '}' || !bytes.Equal(line[:i], want[:len(want)-1]) {
		return false
	}
	el.EventID = md.EventID
	return true
}

var strictBase64 = base64.StdEncoding.Strict()

// tailParser reads the record fields of a replay line in the one layout json.Marshal
// gives recordLine. Each method consumes what it read and reports whether it matched.
type tailParser struct{ b []byte }

func (p *tailParser) lit(s string) bool {
	if !bytes.HasPrefix(p.b, []byte(s)) {
		return false
	}
	p.b = p.b[len(s):]
	return true
}

// uint reads a decimal without leading zeros, as json.Marshal writes a uint64.
func (p *tailParser) uint(dst *uint64) bool {
	n := 0
	for n < len(p.b) && p.b[n] >= '0' && p.b[n] <= '9' {
		n++
	}
	if n == 0 || n > 1 && p.b[0] == '0' {
		return false
	}
	v, err := strconv.ParseUint(string(p.b[:n]), 10, 64)
	if err != nil {
		return false
	}
	*dst, p.b = v, p.b[n:]
	return true
}

// str reads a JSON string that json.Marshal would write without any escape: no
// backslash, no control character, none of <, > and & (which it escapes), valid UTF-8
// without U+2028 and U+2029. Anything else is not canonical here.
func (p *tailParser) str(dst *string) bool {
	if len(p.b) == 0 || p.b[0] != '"' {
		return false
	}
	end := bytes.IndexByte(p.b[1:], '"')
	if end < 0 {
		return false
	}
	s := p.b[1 : 1+end]
	for _, c := range s {
		if c < 0x20 || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	if !utf8.Valid(s) || bytes.Contains(s, []byte("\u2028")) || bytes.Contains(s, []byte("\u2029")) {
		return false
	}
	*dst, p.b = string(s), p.b[2+end:]
	return true
}
