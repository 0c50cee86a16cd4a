package store_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/stanceledger/ledger/store"
)

// TestEventUUID checks the stdlib UUIDv5 against github.com/google/uuid, and the
// namespace against its documented derivation.
func TestEventUUID(t *testing.T) {
	ns := uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/stanceledger/ledger#esdb-event-id"))
	if ns != uuid.UUID(store.EventUUIDNamespace) {
		t.Fatalf("namespace = %s, want %s", uuid.UUID(store.EventUUIDNamespace), ns)
	}
	for _, id := range []string{"", "a", "0b9c6a52-0e64-4a7e-9d8f-2b3c1e6b7a10", "dprk/2025-05-29/kcna", "ünïcödé"} {
		want := uuid.NewSHA1(ns, []byte(id))
		got := store.EventUUID(id)
		if uuid.UUID(got) != want {
			t.Errorf("EventUUID(%q) = %s, want %s", id, uuid.UUID(got), want)
		}
		if store.FormatUUID(got) != want.String() {
			t.Errorf("FormatUUID = %s, want %s", store.FormatUUID(got), want)
		}
	}
}
