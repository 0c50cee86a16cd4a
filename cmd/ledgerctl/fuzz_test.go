package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/stanceledger/ledger/internal/wire"
)

// FuzzDecodeLine feeds arbitrary lines to the import parser. It must never panic, and
// whatever it accepts must survive the trip back to a line unchanged: the import format
// written by replay is read back as the same event.
func FuzzDecodeLine(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "import.jsonl"))
	if err != nil {
		f.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		f.Add([]byte(l))
	}
	f.Add([]byte(`{"event_id":"x","party":"dprk","revision":3,"stored":{"data":"e30="}}`))
	f.Add([]byte(`{"occurred_at":"2025-13-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := decodeLine(line)
		if err != nil {
			return
		}
		pb := wire.EventToProto(e)
		text, err := eventJSON.Marshal(pb)
		if err != nil {
			t.Fatalf("accepted %q but cannot write it back: %v", line, err)
		}
		again, err := decodeLine(text)
		if err != nil {
			t.Fatalf("accepted %q but not its own output %q: %v", line, text, err)
		}
		if !proto.Equal(wire.EventToProto(again), pb) {
			t.Fatalf("round trip of %q changed the event:\n%v\n%v", line, pb, wire.EventToProto(again))
		}
	})
}
