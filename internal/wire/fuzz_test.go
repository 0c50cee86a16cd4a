package wire_test

import (
	"errors"
	"testing"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// FuzzEventFromProto feeds the proto → domain conversion events decoded from arbitrary
// wire bytes, as the server receives them, and from arbitrary protojson, as ledgerctl
// import reads them. Conversion and validation must never panic and must fail only
// with a *ledger.ValidationError; an event that converts and validates must convert
// back to the same message, and its stored bytes must decode to the same event.
//
// Seeds: testdata/fuzz/FuzzEventFromProto and the samples of wire_test.go.
func FuzzEventFromProto(f *testing.F) {
	for _, pe := range protoEvents() {
		b, err := proto.Marshal(pe)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		j, err := protojson.Marshal(pe)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(j, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		pe := new(ledgerv1.Event)
		var err error
		if isJSON {
			err = protojson.Unmarshal(data, pe)
		} else {
			err = proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, pe)
		}
		if err != nil {
			return
		}
		e, err := wire.EventFromProto(pe)
		if err != nil {
			var ve *ledger.ValidationError
			if !errors.As(err, &ve) || len(ve.Violations) == 0 {
				t.Fatalf("EventFromProto error %v (%T) is not a *ValidationError", err, err)
			}
			return
		}
		verr := ledger.ValidateAppend(t.Context(), e.Party, []*ledger.Event{e}, now, ledger.DefaultLimits, nil)
		if verr != nil {
			var ve *ledger.ValidationError
			if !errors.As(verr, &ve) || len(ve.Violations) == 0 {
				t.Fatalf("validation error %v (%T) is not a *ValidationError", verr, verr)
			}
		}
		if ledger.ValidateEvent(e, now) != nil {
			return
		}
		if back := wire.EventToProto(e); !proto.Equal(back, pe) {
			t.Fatalf("round trip changed the event:\n got %v\nwant %v", back, pe)
		}
		enc, err := ledger.Encode(e, now, "fuzz")
		if err != nil {
			t.Fatalf("valid event does not encode: %v", err)
		}
		dec, _, err := ledger.Decode(enc.Type, enc.Data, enc.Metadata)
		if err != nil {
			t.Fatalf("stored bytes do not decode: %v", err)
		}
		if back := wire.EventToProto(dec); !proto.Equal(back, pe) {
			t.Fatalf("the store changed the event:\n got %v\nwant %v", back, pe)
		}
	})
}
