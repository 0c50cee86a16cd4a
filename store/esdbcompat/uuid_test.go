package esdbcompat

import (
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/google/uuid"

	"github.com/stanceledger/ledger/store"
)

// FuzzParseUUID checks the endpoint's UUID parser against github.com/google/uuid on
// the canonical form, and that both wire encodings round-trip.
func FuzzParseUUID(f *testing.F) {
	f.Add("5649a3fc-add6-55bf-90b9-997d4d907615")
	f.Add("5649A3FC-ADD6-55BF-90B9-997D4D907615")
	f.Add("5649a3fc-add6-55bf-90b9-997d4d90761")
	f.Add("5649a3fcxadd6-55bf-90b9-997d4d907615")
	f.Add("{5649a3fc-add6-55bf-90b9-997d4d907615}")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseUUID(s)
		want, werr := uuid.Parse(s)
		if len(s) == 36 && (err == nil) != (werr == nil) {
			t.Fatalf("parseUUID(%q) err %v, uuid.Parse err %v", s, err, werr)
		}
		if err != nil {
			return
		}
		if werr != nil || uuid.UUID(got) != want {
			t.Fatalf("parseUUID(%q) = %x, uuid.Parse = %v, %v", s, got, want, werr)
		}
		for _, asString := range []bool{false, true} {
			back, err := uuidOf(uuidMessage(got, asString))
			if err != nil || back != got {
				t.Fatalf("round trip (string %v) of %x = %x, %v", asString, got, back, err)
			}
		}
	})
}

func TestUUIDOfMissing(t *testing.T) {
	if _, err := uuidOf(nil); err == nil {
		t.Error("uuidOf(nil) succeeded")
	}
	if _, err := uuidOf(&shared.UUID{}); err == nil {
		t.Error("uuidOf(empty) succeeded")
	}
	if got, err := uuidOf(uuidMessage(store.EventUUID("x"), false)); err != nil || got != store.EventUUID("x") {
		t.Errorf("structured round trip = %x, %v", got, err)
	}
}
