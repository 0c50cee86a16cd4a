package embedded

import (
	"errors"
	"log/slog"
	"testing"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func proposal(id, body string) store.Proposed {
	return store.Proposed{EventID: id, Type: "StatementIssued", Data: []byte(body), Metadata: []byte(id), ContentHash: id + "/" + body}
}

// TestGroupSemantics runs one group through the writer's commit directly: each append
// is checked against the stored log and the appends before it in the group, a failing
// append fails alone, and the whole group costs one sync.
func TestGroupSemantics(t *testing.T) {
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Append(t.Context(), "party-a", ledger.NoStream, []store.Proposed{proposal("a0", "x")}); err != nil {
		t.Fatal(err)
	}
	req := func(stream string, expected ledger.ExpectedRevision, ps ...store.Proposed) *appendReq {
		r := &appendReq{stream: stream, expected: expected, records: ps, reply: make(chan appendReply, 1)}
		for i := range ps {
			r.encoded = append(r.encoded, encodeRecord(stream, &ps[i]))
		}
		return r
	}
	abandoned := make(chan struct{})
	close(abandoned)
	gone := req("party-a", ledger.AnyRevision, proposal("gone", "x"))
	gone.abandoned = abandoned
	group := []*appendReq{
		0: req("party-a", ledger.ExactRevision(0), proposal("a1", "x"), proposal("a2", "x")), // revisions 1, 2
		1: req("party-a", ledger.ExactRevision(0), proposal("c1", "x")),                      // conflict: a is at 2 now
		2: req("party-a", ledger.ExactRevision(2), proposal("a3", "x")),                      // sees append 0: revision 3
		3: req("party-a", ledger.NoStream, proposal("a2", "x")),                              // retry of part of append 0
		4: req("party-a", ledger.AnyRevision, proposal("a2", "y")),                           // a2 with other content
		5: req("party-b", ledger.NoStream, proposal("a3", "x")),                              // a3 is in party-a
		6: req("party-b", ledger.NoStream, proposal("b0", "x")),                              // new stream
		7: req("party-b", ledger.NoStream, proposal("b1", "x")),                              // party-b exists now
		8: gone,                                                                              // caller gone: skipped
		9: req("party-a", ledger.AnyRevision, proposal("a0", "x")),                           // retry of a stored record
	}
	syncs := s.syncs.Load()
	s.commitGroup(group)
	if got := s.syncs.Load() - syncs; got != 1 {
		t.Errorf("group committed with %d syncs, want 1", got)
	}
	rep := make([]appendReply, len(group))
	for i, r := range group {
		rep[i] = <-r.reply
	}
	var ce *ledger.ConflictError
	var de *ledger.DuplicateEventError
	checks := []struct {
		name string
		ok   bool
	}{
		{"append 0 stored at 2..3", rep[0].err == nil && !rep[0].res.AlreadyPresent && rep[0].res.Records[0].Position.Commit == 2 && rep[0].res.NextExpectedRevision == 2},
		{"append 1 conflicts with actual 2", errors.As(rep[1].err, &ce) && ce.Actual == 2},
		{"append 2 stored at revision 3", rep[2].err == nil && rep[2].res.NextExpectedRevision == 3 && rep[2].res.Position.Commit == 4},
		{"append 3 already present", rep[3].err == nil && rep[3].res.AlreadyPresent && rep[3].res.Position.Commit == 3 && rep[3].res.Records[0].Revision == 2},
		{"append 4 duplicate a2", errors.As(rep[4].err, &de) && de.EventID == "a2"},
		{"append 5 duplicate a3", errors.As(rep[5].err, &de) && de.EventID == "a3"},
		{"append 6 stored at 5", rep[6].err == nil && rep[6].res.Position.Commit == 5 && rep[6].res.NextExpectedRevision == 0},
		{"append 7 conflicts with actual 0", errors.As(rep[7].err, &ce) && ce.Actual == 0 && ce.Stream == "party-b"},
		{"append 8 abandoned", rep[8].err == errAbandoned},
		{"append 9 already present at 1", rep[9].err == nil && rep[9].res.AlreadyPresent && rep[9].res.Position.Commit == 1},
	}
	for i, c := range checks {
		if !c.ok {
			t.Errorf("%s: got %+v", c.name, rep[i])
		}
	}
	if got := s.Stats().LastPosition; got != 5 {
		t.Errorf("LastPosition = %d, want 5", got)
	}
	// The committed heads are what later appends see.
	if _, err := s.Append(t.Context(), "party-a", ledger.ExactRevision(3), []store.Proposed{proposal("a4", "x")}); err != nil {
		t.Errorf("append after the group: %v", err)
	}
	if _, err := s.Append(t.Context(), "party-b", ledger.ExactRevision(0), []store.Proposed{proposal("b1", "x")}); err != nil {
		t.Errorf("append after the group: %v", err)
	}
}

// TestRecordEncoding: records survive encoding byte for byte, and truncated values
// are refused.
func TestRecordEncoding(t *testing.T) {
	tests := []store.Record{
		{Stream: "party-a", Revision: 0, EventID: "e", Type: "T", Data: []byte("{}"), Metadata: []byte("{\"a\":1}"), ContentHash: "h"},
		{Stream: "party-\x00", Revision: 1 << 40, EventID: "", Type: "", ContentHash: ""},
		{Stream: "s", Revision: 7, EventID: "id", Type: "ReportPublished", Data: make([]byte, 70000), Metadata: []byte{0xff, 0}},
	}
	for i, want := range tests {
		p := store.Proposed{EventID: want.EventID, Type: want.Type, Data: want.Data, Metadata: want.Metadata, ContentHash: want.ContentHash}
		enc := encodeRecord(want.Stream, &p)
		enc.setRevision(want.Revision)
		if string(enc.data) != string(want.Data) || string(enc.metadata) != string(want.Metadata) {
			t.Errorf("record %d: encoded data/metadata slices are wrong", i)
		}
		v := enc.value
		rv, err := decodeRecordView(v)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		got := rv.record(42, nil, nil)
		want.Position = ledger.Position{Commit: 42, Prepare: 42}
		if got.Stream != want.Stream || got.Revision != want.Revision || got.EventID != want.EventID || got.Type != want.Type ||
			got.ContentHash != want.ContentHash || string(got.Data) != string(want.Data) || string(got.Metadata) != string(want.Metadata) || got.Position != want.Position {
			t.Errorf("record %d: round trip gave %+v", i, got)
		}
		for cut := range len(v) {
			if _, err := decodeRecordView(v[:cut]); err == nil {
				t.Fatalf("record %d: truncated to %d bytes decodes", i, cut)
			}
		}
		if _, err := decodeRecordView(append(v, 0)); err == nil {
			t.Errorf("record %d: trailing byte decodes", i)
		}
	}
}
