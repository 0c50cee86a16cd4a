package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/stanceledger/ledger/store"
)

// Key prefixes; see the package documentation for the layout.
const (
	prefixLog    = 'l'
	prefixStream = 's'
	prefixEvent  = 'e'
	prefixMeta   = 'm'
)

// layoutKey holds the layout version, written when a directory is first opened.
var layoutKey = []byte{prefixMeta, 'l', 'a', 'y', 'o', 'u', 't'}

// layoutVersion is the version of the key layout and the record encoding below.
const layoutVersion = 1

// logKey is 'l' + position (8 bytes, big endian), so the log sorts by position.
func logKey(pos uint64) []byte {
	return appendLogKey(make([]byte, 0, 9), pos)
}

func appendLogKey(dst []byte, pos uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, prefixLog), pos)
}

// logKeyPos returns the position of a log key.
func logKeyPos(k []byte) (uint64, error) {
	if len(k) != 9 || k[0] != prefixLog {
		return 0, fmt.Errorf("embedded: malformed log key %x", k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

// streamPrefix is 's' + len(stream) (4 bytes, big endian) + stream. Every stream's
// keys are exactly this prefix + 8 bytes, so no stream's range holds another's keys.
func streamPrefix(stream string) []byte {
	return appendStreamPrefix(make([]byte, 0, 5+len(stream)+8), stream)
}

func appendStreamPrefix(dst []byte, stream string) []byte {
	dst = append(dst, prefixStream)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(stream)))
	return append(dst, stream...)
}

// streamKey is streamPrefix(stream) + revision (8 bytes, big endian).
func streamKey(stream string, rev uint64) []byte {
	return binary.BigEndian.AppendUint64(streamPrefix(stream), rev)
}

// eventKey is 'e' + event_id.
func eventKey(eventID string) []byte {
	return append([]byte{prefixEvent}, eventID...)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

func encodePos(pos uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), pos)
}

func decodePos(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("embedded: malformed position value %x", v)
	}
	return binary.BigEndian.Uint64(v), nil
}

// recordFormat is the first byte of every encoded record.
const recordFormat = 1

// revisionAt is the offset of the fixed-width revision in an encoded record, so the
// appender can encode a record before the writer knows its revision.
const revisionAt = 1

// encodedRecord is a record encoded by its appender; the writer fills in the revision.
type encodedRecord struct {
	value          []byte
	metadata, data []byte // alias value
}

// encodeRecord encodes p, stored in stream, without its position (the key holds it):
// format byte, revision (8 bytes, big endian; zero until setRevision), then stream,
// event_id, type, content hash, metadata and data, each as uvarint length + bytes.
func encodeRecord(stream string, p *store.Proposed) encodedRecord {
	v := make([]byte, 0, encodedRecordSize(stream, p))
	v = append(v, recordFormat)
	v = binary.BigEndian.AppendUint64(v, 0)
	for _, s := range [...]string{stream, p.EventID, p.Type, p.ContentHash} {
		v = binary.AppendUvarint(v, uint64(len(s)))
		v = append(v, s...)
	}
	v = binary.AppendUvarint(v, uint64(len(p.Metadata)))
	metaAt := len(v)
	v = append(v, p.Metadata...)
	v = binary.AppendUvarint(v, uint64(len(p.Data)))
	dataAt := len(v)
	v = append(v, p.Data...)
	return encodedRecord{
		value:    v,
		metadata: v[metaAt : metaAt+len(p.Metadata) : metaAt+len(p.Metadata)],
		data:     v[dataAt:len(v):len(v)],
	}
}

func (e *encodedRecord) setRevision(rev uint64) {
	binary.BigEndian.PutUint64(e.value[revisionAt:], rev)
}

func encodedRecordSize(stream string, p *store.Proposed) int {
	return 1 + 8 + 6*binary.MaxVarintLen32 + len(stream) + len(p.EventID) + len(p.Type) + len(p.ContentHash) + len(p.Metadata) + len(p.Data)
}

var errCorrupt = errors.New("embedded: corrupt record")

// recordView is a decoded record whose byte fields alias the encoded value.
type recordView struct {
	revision                          uint64
	stream, eventID, typ, contentHash []byte
	metadata, data                    []byte
}

func decodeRecordView(v []byte) (recordView, error) {
	var rv recordView
	if len(v) == 0 || v[0] != recordFormat {
		return rv, errCorrupt
	}
	v = v[1:]
	if len(v) < 8 {
		return rv, errCorrupt
	}
	rv.revision = binary.BigEndian.Uint64(v)
	v = v[8:]
	fields := [...]*[]byte{&rv.stream, &rv.eventID, &rv.typ, &rv.contentHash, &rv.metadata, &rv.data}
	for _, f := range fields {
		l, n := binary.Uvarint(v)
		if n <= 0 || l > uint64(len(v)-n) {
			return rv, errCorrupt
		}
		*f = v[n : n+int(l)]
		v = v[n+int(l):]
	}
	if len(v) != 0 {
		return rv, errCorrupt
	}
	return rv, nil
}

// record copies the view into a Record at pos. Data and Metadata get memory of
// their own, since the view aliases Pebble's buffers: cut from *slab when slab is
// not nil (a new slab of slabSize is allocated when it has too little left), else
// one allocation. Stream and Type reuse prev's strings when equal (prev may be
// nil): a run of records of one stream then costs no string allocations for them.
func (rv *recordView) record(pos uint64, prev *store.Record, slab *[]byte) store.Record {
	n := len(rv.metadata) + len(rv.data)
	var buf []byte
	switch {
	case slab == nil || n > slabSize/4:
		buf = make([]byte, n)
	default:
		if len(*slab) < n {
			*slab = make([]byte, slabSize)
		}
		buf, *slab = (*slab)[:n:n], (*slab)[n:]
	}
	copy(buf, rv.metadata)
	copy(buf[len(rv.metadata):], rv.data)
	r := store.Record{
		Revision:    rv.revision,
		EventID:     string(rv.eventID),
		ContentHash: string(rv.contentHash),
		Metadata:    buf[:len(rv.metadata):len(rv.metadata)],
		Data:        buf[len(rv.metadata):],
	}
	r.Position.Commit, r.Position.Prepare = pos, pos
	if prev != nil && prev.Stream == string(rv.stream) {
		r.Stream = prev.Stream
	} else {
		r.Stream = string(rv.stream)
	}
	if prev != nil && prev.Type == string(rv.typ) {
		r.Type = prev.Type
	} else {
		r.Type = string(rv.typ)
	}
	if len(rv.metadata) == 0 {
		r.Metadata = nil
	}
	if len(rv.data) == 0 {
		r.Data = nil
	}
	return r
}
