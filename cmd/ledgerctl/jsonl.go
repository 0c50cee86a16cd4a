package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// The JSON Lines format (DESIGN.md §3). An import line is the protojson of one Event with
// proto field names. A replay line (`replay -o jsonl`, `get`) is the same object with the
// keys of recordKeys added:
//
//	"revision":    the stream revision, a JSON number
//	"position":    {"commit": N, "prepare": N}, JSON numbers
//	"recorded_at": transaction time, RFC 3339 UTC as protojson writes timestamps
//	"recorded_by": the principal that appended it
//	"stream":      "party-<party>"
//	"stored":      {"event_type": "...", "data": base64, "metadata": base64}: the exact
//	               stored bytes, which Merkle leaves hash (standard base64, as protojson
//	               writes bytes)
//
// Import ignores exactly these keys, so an export re-imports cleanly; any other unknown
// key is an error.
var recordKeys = []string{"revision", "position", "recorded_at", "recorded_by", "stream", "stored"}

var eventJSON = protojson.MarshalOptions{UseProtoNames: true}

// recordLine is the part of a replay line that is not the event.
type recordLine struct {
	Revision   uint64       `json:"revision"`
	Position   linePosition `json:"position"`
	RecordedAt string       `json:"recorded_at,omitempty"`
	RecordedBy string       `json:"recorded_by,omitempty"`
	Stream     string       `json:"stream"`
	Stored     lineStored   `json:"stored"`
}

type linePosition struct {
	Commit  uint64 `json:"commit"`
	Prepare uint64 `json:"prepare"`
}

type lineStored struct {
	EventType string `json:"event_type"`
	Data      []byte `json:"data"`
	Metadata  []byte `json:"metadata"`
}

// marshalRecord encodes r as one replay line, without the trailing newline. The output
// is deterministic (protojson's whitespace is compacted away).
func marshalRecord(r client.Recorded) ([]byte, error) {
	ev, err := eventJSON.Marshal(wire.EventToProto(r.Event))
	if err != nil {
		return nil, fmt.Errorf("encode event %q: %w", r.Event.EventID, err)
	}
	var line bytes.Buffer
	if err := json.Compact(&line, ev); err != nil {
		return nil, err
	}
	rec := recordLine{
		Revision:   r.Revision,
		Position:   linePosition{Commit: r.Position.Commit, Prepare: r.Position.Prepare},
		RecordedBy: r.RecordedBy,
		Stream:     r.Stream,
		Stored:     lineStored{EventType: r.Stored.Type, Data: r.Stored.Data, Metadata: r.Stored.Metadata},
	}
	if !r.RecordedAt.IsZero() {
		rec.RecordedAt = formatTimestamp(r.RecordedAt)
	}
	extra, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	// Splice: {event fields} + {record fields} → {event fields, record fields}.
	out := line.Bytes()
	out = out[:len(out)-1]
	if len(out) > 1 {
		out = append(out, ',')
	}
	return append(out, extra[1:]...), nil
}

// formatTimestamp writes t as protojson writes a Timestamp, so every time on a line has
// the same shape.
func formatTimestamp(t time.Time) string {
	b, err := protojson.Marshal(timestamppb.New(t))
	if err != nil {
		// Only times outside years 1–9999 fail; RFC 3339 is the next best thing.
		return t.UTC().Format(time.RFC3339Nano)
	}
	var s string
	_ = json.Unmarshal(b, &s)
	return s
}

// unmarshalEvent decodes one line (an import line or a replay line) into an Event proto.
// Errors match ledger.ErrInvalid and name the offending field where protojson does.
func unmarshalEvent(line []byte) (*ledgerv1.Event, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil {
		return nil, ledger.Invalid("", "not a JSON object: %v", err)
	}
	stripped := false
	for _, k := range recordKeys {
		if _, ok := fields[k]; ok {
			delete(fields, k)
			stripped = true
		}
	}
	if stripped {
		var err error
		if line, err = json.Marshal(fields); err != nil {
			return nil, ledger.Invalid("", "%v", err)
		}
	}
	pb := new(ledgerv1.Event)
	if err := protojson.Unmarshal(line, pb); err != nil {
		return nil, ledger.Invalid("", "%s", bytes.TrimPrefix([]byte(err.Error()), []byte("proto: ")))
	}
	return pb, nil
}
