package projections

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// DigestTimeFormat is how valid times appear in the canonical encoding: UTC, always
// nine fractional digits.
const DigestTimeFormat = "2006-01-02T15:04:05.000000000Z"

// Digest returns the hex SHA-256 of the canonical encoding of rows, which MUST be
// ordered by party then topic. The encoding (docs/snapshot-digest.md) is one line
// per row, fields separated by one TAB, each line ending in LF, UTF-8:
//
//	party topic alignment act occurred_at event_id commit prepare summary quote
//
// alignment and act are the proto enum names ("ALIGNMENT_OPPOSES", "ACT_DENY",
// "ACT_UNSPECIFIED"); occurred_at uses DigestTimeFormat; commit and prepare are the
// record's log position in decimal; summary and quote are escaped with Escape.
// An empty table hashes the empty string.
func Digest(rows []PartyPosition) string {
	h := sha256.New()
	for _, r := range rows {
		h.Write([]byte(CanonicalLine(r)))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CanonicalLine returns one row of the canonical snapshot encoding, LF included.
func CanonicalLine(r PartyPosition) string {
	var b strings.Builder
	for i, f := range []string{
		r.Party, r.Topic, r.Alignment.String(), r.Act.String(),
		r.OccurredAt.UTC().Format(DigestTimeFormat), r.EventID,
		strconv.FormatUint(r.Position.Commit, 10), strconv.FormatUint(r.Position.Prepare, 10),
		Escape(r.Summary), Escape(r.Quote),
	} {
		if i > 0 {
			b.WriteByte('\t')
		}
		b.WriteString(f)
	}
	b.WriteByte('\n')
	return b.String()
}

// Escape makes free text safe for one field of a canonical line: a backslash
// becomes `\\`, TAB `\t`, LF `\n`, CR `\r`; every other byte stays as it is.
func Escape(s string) string {
	if !strings.ContainsAny(s, "\\\t\n\r") {
		return s
	}
	return escaper.Replace(s)
}

var escaper = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`)
