package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
)

// SchemaVersion is the version of the stored metadata layout written by Encode.
const SchemaVersion = 1

// Metadata is the JSON metadata stored with every record. Field names are fixed: tools
// outside the repository (EventStoreDB's UI, auditors) read them.
type Metadata struct {
	Schema     int        `json:"schema"`
	EventID    string     `json:"event_id"`
	Party      string     `json:"party"`
	OccurredAt time.Time  `json:"occurred_at"`
	ReportedAt *time.Time `json:"reported_at,omitempty"`
	Sources    []Source   `json:"sources,omitempty"`
	// ContentSHA256 is the hex SHA-256 of the record's content (see Encode): equal for a
	// retry of the same event, different for other content under the same event_id.
	ContentSHA256 string `json:"content_sha256,omitempty"`
	// RecordedAt is transaction time, set by the server when it appends.
	RecordedAt *time.Time `json:"recorded_at,omitempty"`
	// RecordedBy is the principal that appended the record.
	RecordedBy string `json:"recorded_by,omitempty"`
}

// Encoded is an event in exactly the bytes the ledger stores. The server produces it
// once, at append; every backend stores and returns these bytes unchanged, so the same
// log hashes to the same Merkle tree on any backend.
type Encoded struct {
	EventID string
	// Type is the stored event type, e.g. "StatementIssued".
	Type string
	// Data is the body as JSON with proto field names and enum names (protojson can read it).
	Data []byte
	// Metadata is the JSON encoding of Metadata.
	Metadata []byte
	// ContentHash is Metadata.ContentSHA256.
	ContentHash string
}

// Encode produces the stored bytes of e, recorded at recordedAt by recordedBy.
//
// The content hash is SHA-256 over Type, "\n", Data, "\n", and the metadata JSON without
// content_sha256, recorded_at and recorded_by: it depends only on what the client sent,
// so a retry has the same hash whenever and by whomever it is sent. Times are stored in
// UTC with RFC 3339 nanosecond precision. Encode does not validate; call Validate first.
func Encode(e *Event, recordedAt time.Time, recordedBy string) (Encoded, error) {
	enc, _, err := encode(e, recordedAt, recordedBy)
	return enc, err
}

// contentHashField is what the content hash adds to the content's metadata JSON,
// besides the 64 hex digits: the member, its comma and quotes (Metadata's field order
// puts it after every content field).
const contentHashField = `,"content_sha256":""`

// content is what of an event's stored bytes does not depend on when and by whom it
// is recorded.
type content struct {
	typ  string
	data []byte
	md   Metadata // content_sha256 set; recorded_at and recorded_by not
	// size is what the size limits measure: the stored bytes without recorded_at and
	// recorded_by, i.e. Encode(e, time.Time{}, "")'s Data and Metadata, worked out
	// from the content's JSON rather than encoded again.
	size int
}

// encodeContent encodes e's body and the metadata its content hash covers.
func encodeContent(e *Event) (content, error) {
	if e.Body == nil {
		return content{}, Invalid("body", "required")
	}
	data, err := marshal(utcBody(e.Body))
	if err != nil {
		return content{}, fmt.Errorf("encode %s body: %w", e.Type(), err)
	}
	md := Metadata{
		Schema:     SchemaVersion,
		EventID:    e.EventID,
		Party:      e.Party,
		OccurredAt: e.OccurredAt.UTC(),
		Sources:    e.Sources,
	}
	if !e.ReportedAt.IsZero() {
		t := e.ReportedAt.UTC()
		md.ReportedAt = &t
	}
	meta, err := marshalMetadata(&md)
	if err != nil {
		return content{}, fmt.Errorf("encode metadata: %w", err)
	}
	typ := e.Type().String()
	md.ContentSHA256 = contentHash(typ, data, meta)
	size := len(data) + len(meta) + len(contentHashField) + len(md.ContentSHA256)
	return content{typ: typ, data: data, md: md, size: size}, nil
}

// encode is Encode, and also returns the size the size limits measure (content.size).
func encode(e *Event, recordedAt time.Time, recordedBy string) (Encoded, int, error) {
	c, err := encodeContent(e)
	if err != nil {
		return Encoded{}, 0, err
	}
	md := c.md
	if !recordedAt.IsZero() {
		t := recordedAt.UTC()
		md.RecordedAt = &t
	}
	md.RecordedBy = recordedBy
	meta, err := marshalMetadata(&md)
	if err != nil {
		return Encoded{}, 0, fmt.Errorf("encode metadata: %w", err)
	}
	return Encoded{EventID: e.EventID, Type: c.typ, Data: c.data, Metadata: meta, ContentHash: md.ContentSHA256}, c.size, nil
}

func contentHash(typ string, data, content []byte) string {
	h := sha256.New()
	h.Write([]byte(typ))
	h.Write([]byte{'\n'})
	h.Write(data)
	h.Write([]byte{'\n'})
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}

// marshal is json.Marshal without HTML escaping, so quotes with <, > and & stay readable.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

func utcBody(b Body) Body {
	if c, ok := b.(*RecordCorrected); ok && c.CorrectedOccurredAt != nil {
		cc := *c
		t := c.CorrectedOccurredAt.UTC()
		cc.CorrectedOccurredAt = &t
		return &cc
	}
	return b
}

// Decode parses stored bytes back into an event and its metadata. It is strict:
// unknown event types, unknown fields, unknown enum names, a content hash that does
// not match the bytes, and trailing data are errors matching ErrInvalid. It does not
// validate the event's content; call Validate for that.
func Decode(eventType string, data, metadata []byte) (*Event, *Metadata, error) {
	return decode(eventType, data, metadata, true)
}

// DecodeTrusted is Decode without recomputing content_sha256: for readers of a log
// whose records were decoded and checked when they were appended (the read models),
// where the check would only repeat work. Everything else Decode refuses it refuses
// too. Auditors and anything reading bytes from outside use Decode.
func DecodeTrusted(eventType string, data, metadata []byte) (*Event, *Metadata, error) {
	return decode(eventType, data, metadata, false)
}

// DecodeForFold is DecodeTrusted for a reader that folds records into positions
// (the positions view): it accepts and refuses what DecodeTrusted does, and returns
// the event without what folding does not read, which it checks but does not keep:
// Sources, a correction's AddedSources, a statement's StatementID, Speaker, Channel
// and RespondsTo, a report's ReportID, Title and Accused, and a veto's Body,
// DraftResolution and VetoedBy. Not keeping them spares most of a record's
// allocations.
func DecodeForFold(eventType string, data, metadata []byte) (*Event, error) {
	e, _, err := decodeAs(eventType, data, metadata, false, true)
	return e, err
}

func decode(eventType string, data, metadata []byte, checkContent bool) (*Event, *Metadata, error) {
	return decodeAs(eventType, data, metadata, checkContent, false)
}

// decodeAs is decode, lean or not (DecodeForFold; then without checkContent).
func decodeAs(eventType string, data, metadata []byte, checkContent, lean bool) (*Event, *Metadata, error) {
	typ, ok := ParseRecordType(eventType)
	if !ok {
		return nil, nil, Invalid("type", "unknown record type %q", eventType)
	}
	// The fast path reads what Encode writes; whatever it does not read, it leaves to
	// unmarshalStrict, on a fresh value.
	fast := unmarshalFast
	if lean {
		fast = unmarshalLean
	}
	body := newBody(typ)
	if !fast(data, body) {
		body = newBody(typ)
		if err := unmarshalStrict(data, body); err != nil {
			return nil, nil, Invalid("data", "%v", err)
		}
	}
	md := new(Metadata)
	if !fast(metadata, md) {
		md = new(Metadata)
		if err := unmarshalStrict(metadata, md); err != nil {
			return nil, nil, Invalid("metadata", "%v", err)
		}
	}
	if lean {
		leaveOut(body)
		leaveOut(md) // what the strict path read
	}
	if md.Schema != SchemaVersion {
		return nil, nil, Invalid("metadata.schema", "unsupported schema version %d", md.Schema)
	}
	if checkContent && md.ContentSHA256 != "" {
		content := *md
		content.ContentSHA256, content.RecordedAt, content.RecordedBy = "", nil, ""
		cb, err := marshalMetadata(&content)
		if err != nil {
			return nil, nil, Invalid("metadata", "%v", err)
		}
		if got := contentHash(eventType, data, cb); got != md.ContentSHA256 {
			return nil, nil, Invalid("metadata.content_sha256", "does not match the record's content (computed %s)", got)
		}
	}
	e := &Event{EventID: md.EventID, Party: md.Party, OccurredAt: md.OccurredAt, Sources: md.Sources, Body: body}
	if md.ReportedAt != nil {
		e.ReportedAt = *md.ReportedAt
	}
	return e, md, nil
}

// leaveOut clears what folding does not read (DecodeForFold) from v, a body or
// *Metadata.
func leaveOut(v any) {
	switch v := v.(type) {
	case *Metadata:
		v.Sources, v.ContentSHA256, v.RecordedAt, v.RecordedBy = nil, "", nil, ""
	case *StatementIssued:
		v.StatementID, v.Speaker, v.Channel, v.RespondsTo = "", "", "", nil
	case *ReportPublished:
		v.ReportID, v.Title, v.Accused = "", "", nil
	case *MandateVetoed:
		v.Body, v.DraftResolution, v.VetoedBy = "", "", nil
	case *RecordCorrected:
		v.AddedSources = nil
	}
}

// newBody returns a new, empty body of a record type.
func newBody(typ RecordType) Body {
	switch typ {
	case TypeReportPublished:
		return new(ReportPublished)
	case TypeStatementIssued:
		return new(StatementIssued)
	case TypeMandateVetoed:
		return new(MandateVetoed)
	case TypeRecordCorrected:
		return new(RecordCorrected)
	}
	return nil
}

// unmarshalStrict decodes the one JSON value in b into v (a pointer), refusing
// unknown fields and trailing data. It reads with the JSON v2 decoder
// (github.com/go-json-experiment/json), several times faster than encoding/json; what
// that stricter decoder refuses (duplicate or differently cased names, invalid UTF-8,
// ...) is read again by unmarshalV1, so Decode accepts exactly what encoding/json
// accepts, decodes it to the same value (FuzzJSONAgreement checks both) and reports
// encoding/json's errors.
func unmarshalStrict(b []byte, v any) error {
	if jsonv2.Unmarshal(b, v, jsonv2.RejectUnknownMembers(true)) == nil {
		return nil
	}
	reflect.ValueOf(v).Elem().SetZero() // what v2 decoded before it stopped
	return unmarshalV1(b, v)
}

// unmarshalV1 is unmarshalStrict with encoding/json alone.
func unmarshalV1(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after JSON value")
	}
	return nil
}
