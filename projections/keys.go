package projections

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	ledger "github.com/stanceledger/ledger"
)

// Key layout of the positions read model (one Pebble DB, docs/positions-view.md):
//
//	m/schema                                  schema version (decimal)
//	m/applied                                 checkpoint: position of the last applied record (16 bytes)
//	m/records-by-log                          present (empty) when r rows are kept of corrected records only
//	r<event_id>                               recordInfo of every stance-bearing record, or with
//	                                          m/records-by-log of every corrected one (the others
//	                                          are read from the log: Positions.LookUpRecordsIn)
//	v<party>\x00<topic>\x00<occ><rec><idx><from>  one version of one contribution (rowValue)
//	c<party>\x00<topic>                       the current contribution: its version suffix + rowValue,
//	                                          or the suffix alone (then read the version; see applier.promote);
//	                                          a bulk build has none until it settles (see applier)
//	p<party>\x00<topic>                       the pair has had a contribution (empty value)
//	t<topic>\x00<party>                       the same pair, indexed by topic
//
// Parties and topics are slugs ([a-z0-9-]), so 0x00 separates them unambiguously and
// byte order is the order of (party, topic). <occ> is valid time as 8 bytes of
// seconds (sign bit flipped, big-endian) and 4 bytes of nanoseconds, so byte order is
// time order; <rec> and <from> are log positions as 16 bytes (commit, prepare,
// big-endian); <idx> is the contribution's index in its record (4 bytes).
// A version counts for queries at log positions P with from <= P < until (until
// stored in the value; zero means it still counts).
const (
	prefixMeta    = 'm'
	prefixRecord  = 'r'
	prefixVersion = 'v'
	prefixCurrent = 'c'
	prefixPair    = 'p'
	prefixTopic   = 't'
)

var (
	keySchema  = []byte("m/schema")
	keyApplied = []byte("m/applied")
	// keyRecordsByLog marks a model that keeps record rows of corrected records
	// only (Positions.LookUpRecordsIn).
	keyRecordsByLog = []byte("m/records-by-log")
)

const (
	posLen    = 16
	occLen    = 12
	suffixLen = occLen + posLen + 4 + posLen
)

func putPos(b []byte, p ledger.Position) []byte {
	b = binary.BigEndian.AppendUint64(b, p.Commit)
	return binary.BigEndian.AppendUint64(b, p.Prepare)
}

func getPos(b []byte) ledger.Position {
	return ledger.Position{Commit: binary.BigEndian.Uint64(b), Prepare: binary.BigEndian.Uint64(b[8:])}
}

func putOcc(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix())^(1<<63))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

func getOcc(b []byte) time.Time {
	return time.Unix(int64(binary.BigEndian.Uint64(b)^(1<<63)), int64(binary.BigEndian.Uint32(b[8:]))).UTC()
}

// pairKey returns prefix + a + 0x00 + b.
func pairKey(prefix byte, a, b string) []byte {
	return appendPairKey(make([]byte, 0, 2+len(a)+len(b)+suffixLen+1), prefix, a, b)
}

// appendPairKey appends prefix + a + 0x00 + b to k.
func appendPairKey(k []byte, prefix byte, a, b string) []byte {
	k = append(k, prefix)
	k = append(k, a...)
	k = append(k, 0)
	return append(k, b...)
}

// splitPair splits a 'c', 'p' or 't' key into its two slugs.
func splitPair(k []byte) (string, string, error) {
	for i := 1; i < len(k); i++ {
		if k[i] == 0 {
			return string(k[1:i]), string(k[i+1:]), nil
		}
	}
	return "", "", fmt.Errorf("malformed pair key %q", k)
}

// versionPrefix is the prefix of every version of (party, topic).
func versionPrefix(party, topic string) []byte {
	k := pairKey(prefixVersion, party, topic)
	return append(k, 0)
}

// suffix identifies one version within its (party, topic): it orders versions by
// valid time, then record position, then index in the record, then from-position.
type suffix struct {
	occ  time.Time
	rec  ledger.Position
	idx  uint32
	from ledger.Position
}

func (s suffix) append(b []byte) []byte {
	b = putOcc(b, s.occ)
	b = putPos(b, s.rec)
	b = binary.BigEndian.AppendUint32(b, s.idx)
	return putPos(b, s.from)
}

func parseSuffix(b []byte) (suffix, error) {
	if len(b) != suffixLen {
		return suffix{}, fmt.Errorf("version suffix of %d bytes, want %d", len(b), suffixLen)
	}
	return suffix{
		occ:  getOcc(b),
		rec:  getPos(b[occLen:]),
		idx:  binary.BigEndian.Uint32(b[occLen+posLen:]),
		from: getPos(b[occLen+posLen+4:]),
	}, nil
}

// Effect says what a correction did to a record. Several effects may combine.
type Effect uint8

// Correction effects.
const (
	// EffectWithdraw: the record no longer contributes anything.
	EffectWithdraw Effect = 1 << iota
	// EffectReplace: the record's stances were replaced.
	EffectReplace
	// EffectRedate: the record's valid time was moved.
	EffectRedate
)

// rowValue is the value of a version key.
type rowValue struct {
	until        ledger.Position // zero: still counts
	untilEventID string          // the correction that ended it
	untilEffect  Effect
	sinceEventID string // the correction that produced it; "" for the record itself
	alignment    ledger.Alignment
	act          ledger.Act
	eventID      string
	summary      string
	quote        string
}

// append encodes v: a byte that says whether the version still counts (0) or
// was ended (1, then until: posLen bytes), then untilEffect, alignment and act,
// then the strings. Most versions still count, and their until costs one byte.
func (v *rowValue) append(b []byte) []byte {
	if v.until.IsZero() {
		b = append(b, 0)
	} else {
		b = putPos(append(b, 1), v.until)
	}
	b = append(b, byte(v.untilEffect), byte(v.alignment), byte(v.act))
	b = appendString(b, v.untilEventID)
	b = appendString(b, v.sinceEventID)
	b = appendString(b, v.eventID)
	b = appendString(b, v.summary)
	return appendString(b, v.quote)
}

var errCorrupt = errors.New("corrupt read model value")

// rowUntil returns the until position of an encoded rowValue without decoding the
// rest: zero while the version still counts.
func rowUntil(b []byte) (ledger.Position, error) {
	switch {
	case len(b) > 0 && b[0] == 0:
		return ledger.Position{}, nil
	case len(b) > posLen && b[0] == 1:
		return getPos(b[1:]), nil
	}
	return ledger.Position{}, errCorrupt
}

func parseRow(b []byte) (rowValue, error) {
	var v rowValue
	until, err := rowUntil(b)
	if err != nil {
		return v, err
	}
	v.until = until
	r := reader{b: b[1:]}
	if b[0] == 1 { // ended: until follows
		r.take(posLen)
	}
	h := r.take(3)
	v.untilEffect, v.alignment, v.act = Effect(h[0]), ledger.Alignment(h[1]), ledger.Act(h[2])
	v.untilEventID = r.string()
	v.sinceEventID = r.string()
	v.eventID = r.string()
	v.summary = r.string()
	v.quote = r.string()
	return v, r.err()
}

// correction is one correction of a record, as kept in its recordInfo.
type correction struct {
	pos       ledger.Position
	eventID   string
	effect    Effect
	redatedTo time.Time // set with EffectRedate
	reason    string
}

// contribKey names one current contribution of a record: (party, topic) and its
// index; the stance itself is in the version row.
type contribKey struct {
	party, topic string
}

// recordInfo is what the view keeps about a stance-bearing record so corrections can
// be applied to it without reading the log.
type recordInfo struct {
	pos     ledger.Position
	party   string
	parties []string // who its stances count for (ledger.Attribute): replacements go to them
	occ     time.Time
	from    ledger.Position // where its current versions start
	current []contribKey    // its current contributions; index = idx; empty when withdrawn
	fixes   []correction
}

func (ri *recordInfo) append(b []byte) []byte {
	b = putPos(b, ri.pos)
	b = putPos(b, ri.from)
	b = putOcc(b, ri.occ)
	b = appendString(b, ri.party)
	b = binary.AppendUvarint(b, uint64(len(ri.parties)))
	for _, p := range ri.parties {
		b = appendString(b, p)
	}
	b = binary.AppendUvarint(b, uint64(len(ri.current)))
	for _, c := range ri.current {
		b = appendString(b, c.party)
		b = appendString(b, c.topic)
	}
	b = binary.AppendUvarint(b, uint64(len(ri.fixes)))
	for _, f := range ri.fixes {
		b = putPos(b, f.pos)
		b = append(b, byte(f.effect))
		b = appendString(b, f.eventID)
		b = appendString(b, f.reason)
		if f.effect&EffectRedate != 0 {
			b = putOcc(b, f.redatedTo)
		}
	}
	return b
}

func parseRecordInfo(b []byte) (recordInfo, error) {
	var ri recordInfo
	if len(b) < 2*posLen+occLen {
		return ri, errCorrupt
	}
	ri.pos, ri.from, ri.occ = getPos(b), getPos(b[posLen:]), getOcc(b[2*posLen:])
	r := reader{b: b[2*posLen+occLen:]}
	ri.party = r.string()
	ri.parties = make([]string, r.uvarint())
	for i := range ri.parties {
		ri.parties[i] = r.string()
	}
	if n := r.uvarint(); n > 0 {
		ri.current = make([]contribKey, n)
		for i := range ri.current {
			ri.current[i] = contribKey{party: r.string(), topic: r.string()}
		}
	}
	if n := r.uvarint(); n > 0 {
		ri.fixes = make([]correction, n)
		for i := range ri.fixes {
			f := &ri.fixes[i]
			f.pos = getPos(r.take(posLen))
			f.effect = Effect(r.take(1)[0])
			f.eventID = r.string()
			f.reason = r.string()
			if f.effect&EffectRedate != 0 {
				f.redatedTo = getOcc(r.take(occLen))
			}
		}
	}
	return ri, r.err()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes what append* wrote. After the first error every read returns zero
// values and err reports it.
type reader struct {
	b   []byte
	bad bool
}

var zeros [posLen]byte

func (r *reader) uvarint() uint64 {
	if r.bad {
		return 0
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)) {
		r.bad = true
		return 0
	}
	r.b = r.b[k:]
	return n
}

func (r *reader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		if n > len(zeros) {
			return nil
		}
		return zeros[:n]
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) string() string { return string(r.take(int(r.uvarint()))) }

func (r *reader) err() error {
	if r.bad || len(r.b) != 0 {
		return errCorrupt
	}
	return nil
}
