package store

import (
	"crypto/sha1"
	"encoding/hex"
)

// This file holds the conventions that put ledger records into EventStoreDB's model.
// Both store/esdb (the backend on EventStoreDB) and store/esdbcompat (EventStoreDB's
// protocol over any store) follow them, and neither may import the other, so they
// live here, next to the contract they extend.

// EventUUIDNamespace is the UUIDv5 namespace of EventStoreDB event ids derived from
// ledger event_ids: 5649a3fc-add6-55bf-90b9-997d4d907615, itself the UUIDv5 of
// "https://github.com/stanceledger/ledger#esdb-event-id" in the URL namespace of
// RFC 9562. It never changes: every stored EventStoreDB event id depends on it.
var EventUUIDNamespace = [16]byte{
	0x56, 0x49, 0xa3, 0xfc, 0xad, 0xd6, 0x55, 0xbf,
	0x90, 0xb9, 0x99, 0x7d, 0x4d, 0x90, 0x76, 0x15,
}

// EventUUID returns the EventStoreDB event id of the ledger record eventID: the UUIDv5
// (RFC 9562, SHA-1) of eventID in EventUUIDNamespace. A retry of an append carries the
// same ids, so EventStoreDB's own idempotency check recognises it.
func EventUUID(eventID string) [16]byte {
	h := sha1.New()
	h.Write(EventUUIDNamespace[:])
	h.Write([]byte(eventID))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return u
}

// FormatUUID formats u in the canonical 8-4-4-4-12 hex form.
func FormatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}

// EventIndexPrefix begins the name of the index stream of one event_id in EventStoreDB:
// "ledger-event-<event_id>". store/esdb writes one EventIndexType event there after
// each record it appends; store/esdbcompat serves these streams from the underlying
// store's own event_id index. They are not ledger streams ("party-…"), so reads of the
// ledger's log never see them.
const EventIndexPrefix = "ledger-event-"

// EventIndexType is the EventStoreDB event type of an index entry.
const EventIndexType = "LedgerEventIndexed"

// EventIndexStream returns the index stream of eventID.
func EventIndexStream(eventID string) string { return EventIndexPrefix + eventID }

// EventIndexEntry is the JSON data of an index entry: where the record with EventID
// is stored, and its content hash (so an idempotency check needs no second read).
type EventIndexEntry struct {
	EventID     string `json:"event_id"`
	Stream      string `json:"stream"`
	Revision    uint64 `json:"revision"`
	ContentHash string `json:"content_sha256"`
}
