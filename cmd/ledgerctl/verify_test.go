package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/internal/wire"
	"github.com/stanceledger/ledger/projections"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store"
)

var parties = []string{"dprk", "russia", "msmt", "unsc", "usa"}

// exportRecord is record i of a synthetic log: a statement by one of five parties, at
// position i+1, as replay -o jsonl writes it.
func exportRecord(tb testing.TB, i int, revs map[string]uint64) (client.Recorded, []byte) {
	tb.Helper()
	party := parties[i%len(parties)]
	e := &ledger.Event{
		EventID:    fmt.Sprintf("ev-%07d", i),
		Party:      party,
		OccurredAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute),
		Sources:    []ledger.Source{{URL: fmt.Sprintf("https://example.org/%d", i), Publisher: "Example", Language: "en"}},
		Body: &ledger.StatementIssued{
			StatementID: fmt.Sprintf("st-%d", i),
			Speaker:     party + " foreign ministry",
			Stances: []ledger.Stance{{
				Topic: "msmt-legitimacy", Alignment: ledger.AlignmentOpposes, Act: ledger.ActReject,
				Quote: fmt.Sprintf("statement number %d", i),
			}},
		},
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	enc, err := ledger.Encode(e, at, "importer")
	if err != nil {
		tb.Fatal(err)
	}
	stream := ledger.StreamOf(party)
	r := client.Recorded{
		Event: e, Stream: stream, Revision: revs[stream],
		Position:   ledger.Position{Commit: uint64(i + 1), Prepare: uint64(i + 1)},
		RecordedAt: at, RecordedBy: "importer",
		Stored: client.Stored{Type: enc.Type, Data: enc.Data, Metadata: enc.Metadata},
	}
	revs[stream]++
	line, err := marshalRecord(r)
	if err != nil {
		tb.Fatal(err)
	}
	return r, line
}

func leafOf(tb testing.TB, r client.Recorded) []byte {
	tb.Helper()
	h, err := integrity.Leaf{EventID: r.Event.EventID, Stream: r.Stream, Type: r.Stored.Type, Data: r.Stored.Data, Metadata: r.Stored.Metadata}.Hash()
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

type testLog struct {
	lines   [][]byte
	recs    []client.Recorded
	signer  *integrity.Signer
	vkey    string
	cp      *integrity.Checkpoint
	hashes  [][]byte
	keyFile string
}

func newTestLog(t *testing.T, n int) *testLog {
	t.Helper()
	skey, vkey, err := integrity.GenerateKey("stanceledger.example/verify-test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := integrity.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l := &testLog{signer: signer, vkey: vkey}
	tree, revs := integrity.NewTree(), map[string]uint64{}
	for i := range n {
		r, line := exportRecord(t, i, revs)
		l.recs, l.lines = append(l.recs, r), append(l.lines, line)
		h := leafOf(t, r)
		l.hashes = append(l.hashes, h)
		if err := tree.Append(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	if l.cp, err = signer.Sign(tree.Size(), tree.Root()); err != nil {
		t.Fatal(err)
	}
	return l
}

func join(lines [][]byte) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// editLine rewrites one JSON line through a map.
func editLine(t *testing.T, line []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func clone(lines [][]byte) [][]byte {
	out := make([][]byte, len(lines))
	for i, l := range lines {
		out[i] = bytes.Clone(l)
	}
	return out
}

// TestVerifyTamper is the list of tampering, each caught with a message
// naming the problem (and the first bad record when there is one).
func TestVerifyTamper(t *testing.T) {
	l := newTestLog(t, 40)
	if n, err := verifyExport(bytes.NewReader(join(l.lines)), l.cp); err != nil || n != 40 {
		t.Fatalf("untouched export: %d records, %v", n, err)
	}

	// A record rewritten consistently: new stored bytes (with their own content hash),
	// readable fields to match. Only the Merkle root can tell.
	rewritten := func() [][]byte {
		lines := clone(l.lines)
		r := l.recs[17]
		e := *r.Event
		e.Body = &ledger.StatementIssued{StatementID: "st-17", Speaker: "someone else"}
		enc, err := ledger.Encode(&e, r.RecordedAt, r.RecordedBy)
		if err != nil {
			t.Fatal(err)
		}
		r.Event, r.Stored = &e, client.Stored{Type: enc.Type, Data: enc.Data, Metadata: enc.Metadata}
		if lines[17], err = marshalRecord(r); err != nil {
			t.Fatal(err)
		}
		return lines
	}

	tests := []struct {
		name  string
		lines func() [][]byte
		cp    func() *integrity.Checkpoint
		want  string
	}{
		{"one byte of stored data changed", func() [][]byte {
			lines := clone(l.lines)
			lines[12] = editLine(t, lines[12], func(m map[string]any) {
				st := m["stored"].(map[string]any)
				data := []byte(l.recs[12].Stored.Data)
				data[bytes.Index(data, []byte("number"))] = 'N'
				st["data"] = data
			})
			return lines
		}, nil, `line 13 (event_id "ev-0000012"): stored bytes do not decode`},
		{"one byte of a readable field changed", func() [][]byte {
			lines := clone(l.lines)
			lines[5] = bytes.Replace(lines[5], []byte("statement number 5"), []byte("statement number 6"), 1)
			return lines
		}, nil, `line 6 (event_id "ev-0000005"): the readable event differs from the stored bytes`},
		{"recorded_at changed", func() [][]byte {
			lines := clone(l.lines)
			lines[8] = editLine(t, lines[8], func(m map[string]any) { m["recorded_at"] = "2027-01-01T00:00:00Z" })
			return lines
		}, nil, `line 9 (event_id "ev-0000008"): recorded_at "2027-01-01T00:00:00Z"`},
		{"stream changed", func() [][]byte {
			lines := clone(l.lines)
			lines[3] = editLine(t, lines[3], func(m map[string]any) { m["stream"] = "party-usa" })
			return lines
		}, nil, `line 4 (event_id "ev-0000003"): stream "party-usa"`},
		{"record rewritten with its own content hash", rewritten, nil,
			"the root of the first 40 records differs from the checkpoint's"},
		{"a record removed", func() [][]byte {
			lines := clone(l.lines)
			return append(lines[:20], lines[21:]...)
		}, nil, `line 25 (event_id "ev-0000025"): party-dprk revision 5, expected 4: a record of this stream is missing`},
		{"the last record removed", func() [][]byte { return clone(l.lines)[:39] }, nil,
			"the export holds 39 records, the checkpoint covers 40: records are missing"},
		{"two records swapped", func() [][]byte {
			lines := clone(l.lines)
			lines[30], lines[31] = lines[31], lines[30]
			return lines
		}, nil, `line 32 (event_id "ev-0000030"): position 31/31 does not follow 32/32: records are out of log order`},
		{"a record appended that the checkpoint does not cover", func() [][]byte {
			revs := map[string]uint64{}
			var extra []byte
			for i := range 41 {
				_, extra = exportRecord(t, i, revs)
			}
			return append(clone(l.lines), extra)
		}, nil, `line 41 (event_id "ev-0000040"): record not covered by the checkpoint, which covers 40 records`},
		{"a fork: another root at the same size", func() [][]byte { return clone(l.lines) }, func() *integrity.Checkpoint {
			cp, err := l.signer.Sign(40, l.hashes[0])
			if err != nil {
				t.Fatal(err)
			}
			return cp
		}, "the root of the first 40 records differs from the checkpoint's"},
		{"not JSON", func() [][]byte {
			lines := clone(l.lines)
			lines[2] = lines[2][:len(lines[2])/2]
			return lines
		}, nil, "line 3: not a replay line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cp := l.cp
			if tc.cp != nil {
				cp = tc.cp()
			}
			_, err := verifyExport(bytes.NewReader(join(tc.lines())), cp)
			if err == nil {
				t.Fatal("tampered export verified")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\ndoes not say %q", err, tc.want)
			}
		})
	}
}

// TestVerifyCommand runs ledgerctl verify end to end on files, including a checkpoint
// signed by another key.
func TestVerifyCommand(t *testing.T) {
	l := newTestLog(t, 12)
	dir := t.TempDir()
	export := filepath.Join(dir, "replay.jsonl")
	cpFile := filepath.Join(dir, "cp.txt")
	keyFile := filepath.Join(dir, "key.pub")
	write := func(name string, b []byte) {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(export, join(l.lines))
	write(cpFile, l.cp.Note)
	write(keyFile, []byte(l.vkey+"\n"))

	other := newTestLog(t, 12) // same records, another key
	otherCP := filepath.Join(dir, "other-cp.txt")
	write(otherCP, other.cp.Note)

	tests := []struct {
		name string
		args []string
		want string // "" means success
	}{
		{"key file", []string{"--export", export, "--checkpoint", cpFile, "--key", keyFile}, ""},
		{"key text", []string{"--export", export, "--checkpoint", cpFile, "--key", l.vkey}, ""},
		{"checkpoint signed by another key", []string{"--export", export, "--checkpoint", otherCP, "--key", keyFile},
			"checkpoint not signed by the trusted key"},
		{"not a key", []string{"--export", export, "--checkpoint", cpFile, "--key", "nonsense"}, "invalid note key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			root := newRootCmd()
			root.SetOut(&out)
			root.SetErr(&errOut)
			root.SetArgs(append([]string{"verify"}, tc.args...))
			err := root.ExecuteContext(t.Context())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("verify failed: %v", err)
				}
				if !strings.HasPrefix(out.String(), "OK: 12 records") {
					t.Fatalf("output %q", out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("verify = %v, want an error saying %q", err, tc.want)
			}
			if tc.name == "checkpoint signed by another key" && !errors.Is(err, integrity.ErrBadSignature) {
				t.Fatalf("error %v does not match ErrBadSignature", err)
			}
		})
	}
}

var (
	benchLines = flag.Int("verify-lines", 100_000, "records in the export BenchmarkVerifyExport checks (the issue's figure: 1000000)")
	benchKeep  = flag.String("verify-keep", "", "directory where BenchmarkVerifyExport leaves its export, cp.txt and key.pub, to time the ledgerctl binary on them")
)

// writeExport writes an export of n synthetic records to a file and returns its name and
// the checkpoint of all of them.
func writeExport(b *testing.B, n int) (string, *integrity.Checkpoint) {
	b.Helper()
	skey, vkey, err := integrity.GenerateKey("stanceledger.example/bench")
	if err != nil {
		b.Fatal(err)
	}
	signer, err := integrity.NewSigner(skey)
	if err != nil {
		b.Fatal(err)
	}
	dir := *benchKeep
	if dir == "" {
		dir = b.TempDir()
	}
	name := filepath.Join(dir, "replay.jsonl")
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	tree, revs := integrity.NewTree(), map[string]uint64{}
	for i := range n {
		r, line := exportRecord(b, i, revs)
		w.Write(line)
		w.WriteByte('\n')
		if err := tree.Append(leafOf(b, r), nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	cp, err := signer.Sign(tree.Size(), tree.Root())
	if err != nil {
		b.Fatal(err)
	}
	if *benchKeep != "" {
		if err := os.WriteFile(filepath.Join(dir, "cp.txt"), cp.Note, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "key.pub"), []byte(vkey+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return name, cp
}

// BenchmarkVerifyExport verifies an export of -verify-lines records from a file, as
// ledgerctl verify does. It reports the time per record and the heap in use at the end
// (which does not grow with the export: compare -verify-lines 100000 with 1000000).
func BenchmarkVerifyExport(b *testing.B) {
	name, cp := writeExport(b, *benchLines)
	st, err := os.Stat(name)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	b.ReportAllocs()
	defer debug.SetGCPercent(debug.SetGCPercent(400)) // as ledgerctl verify runs
	var peak uint64
	for b.Loop() {
		f, err := os.Open(name)
		if err != nil {
			b.Fatal(err)
		}
		stop := sampleHeap(&peak)
		n, err := verifyExport(f, cp)
		stop()
		f.Close()
		if err != nil || n != int64(*benchLines) {
			b.Fatalf("verified %d records: %v", n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(*benchLines), "ns/record")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// sampleHeap records the largest live heap seen every 50 ms until stop is called.
func sampleHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			*peak = max(*peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

// TestVerifySnapshot recomputes a positions snapshot from an export, and catches a
// snapshot whose digest, rows or checkpoint do not match it.
func TestVerifySnapshot(t *testing.T) {
	l := newTestLog(t, 30)
	dir := t.TempDir()
	// The snapshot at P = record 20 (position 20), T = the 15th minute of occurred time.
	const p = 20
	at := ledger.Position{Commit: p, Prepare: p}
	asOf := time.Date(2025, 1, 1, 0, 15, 0, 0, time.UTC)
	view, err := projections.OpenPositions(filepath.Join(dir, "positions"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []store.Record
	for _, r := range l.recs[:p] {
		recs = append(recs, store.Record{Stream: r.Stream, Revision: r.Revision, Position: r.Position,
			EventID: r.Event.EventID, Type: r.Stored.Type, Data: r.Stored.Data, Metadata: r.Stored.Metadata})
	}
	if err := view.Apply(recs); err != nil {
		t.Fatal(err)
	}
	snap, err := view.Snapshot(t.Context(), projections.Query{AsOfTime: asOf, AsOfPosition: at})
	if err != nil {
		t.Fatal(err)
	}
	// The same P with no valid-time limit: the view answers it from its current table.
	snapAll, err := view.Snapshot(t.Context(), projections.Query{AsOfPosition: at})
	if err != nil {
		t.Fatal(err)
	}
	view.Close()
	if len(snap.Rows) == 0 || len(snapAll.Rows) == 0 {
		t.Fatal("the test snapshot is empty; it would prove nothing")
	}
	tree := integrity.NewTree()
	for _, h := range l.hashes[:p] {
		tree.Append(h, nil)
	}
	snapCP, err := l.signer.Sign(p, tree.Root())
	if err != nil {
		t.Fatal(err)
	}
	base := func() *ledgerv1.GetSnapshotResponse {
		s := &ledgerv1.GetSnapshotResponse{
			AsOfTime: timestamppb.New(asOf), AsOfPosition: wire.PositionToProto(at), Digest: snap.Digest,
			Checkpoint: &ledgerv1.Checkpoint{SignedNote: string(snapCP.Note), Origin: snapCP.Origin, Size: snapCP.Size, RootHash: snapCP.Root},
		}
		for _, r := range snap.Rows {
			s.Rows = append(s.Rows, server.PartyPositionToProto(r))
		}
		return s
	}
	export := filepath.Join(dir, "replay.jsonl")
	cpFile := filepath.Join(dir, "cp.txt")
	if err := os.WriteFile(export, join(l.lines), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cpFile, l.cp.Note, 0o644); err != nil {
		t.Fatal(err)
	}
	otherSigner := newTestLog(t, 1).signer

	tests := []struct {
		name string
		edit func(s *ledgerv1.GetSnapshotResponse)
		want string
	}{
		{"genuine", func(*ledgerv1.GetSnapshotResponse) {}, ""},
		{"genuine, no valid-time limit", func(s *ledgerv1.GetSnapshotResponse) {
			s.AsOfTime, s.Digest, s.Rows = nil, snapAll.Digest, nil
			for _, r := range snapAll.Rows {
				s.Rows = append(s.Rows, server.PartyPositionToProto(r))
			}
		}, ""},
		{"digest changed", func(s *ledgerv1.GetSnapshotResponse) { s.Digest = strings.Repeat("0", 64) }, "but the export folds to"},
		{"a row changed", func(s *ledgerv1.GetSnapshotResponse) { s.Rows[0].Quote = "something else" }, "not the digest it states"},
		{"a row removed", func(s *ledgerv1.GetSnapshotResponse) { s.Rows = s.Rows[1:] }, "not the digest it states"},
		{"checkpoint of another key", func(s *ledgerv1.GetSnapshotResponse) {
			cp, err := otherSigner.Sign(p, tree.Root())
			if err != nil {
				t.Fatal(err)
			}
			s.Checkpoint.SignedNote = string(cp.Note)
		}, "checkpoint not signed by the trusted key"},
		{"checkpoint with another root", func(s *ledgerv1.GetSnapshotResponse) {
			cp, err := l.signer.Sign(p, l.hashes[0])
			if err != nil {
				t.Fatal(err)
			}
			s.Checkpoint.SignedNote = string(cp.Note)
		}, "the root of the first 20 records differs from checkpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.edit(s)
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			snapFile := filepath.Join(t.TempDir(), "snap.json")
			if err := os.WriteFile(snapFile, b, 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			root := newRootCmd()
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs([]string{"verify", "--export", export, "--checkpoint", cpFile, "--key", l.vkey, "--snapshot", snapFile})
			err = root.ExecuteContext(t.Context())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("verify --snapshot: %v", err)
				}
				if !strings.Contains(out.String(), "digest "+s.Digest+" recomputed from the export") {
					t.Fatalf("output %q", out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("verify --snapshot = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestVerifyAcceptsReformattedLines: replay's own lines take the fast path; the same
// records written with other key order and escapes take the slow path and still verify.
func TestVerifyAcceptsReformattedLines(t *testing.T) {
	l := newTestLog(t, 10)
	for i, line := range l.lines {
		var el exportLine
		if !canonicalLine(line, &el) {
			t.Fatalf("line %d as replay writes it is not canonical", i+1)
		}
		if el.EventID != l.recs[i].Event.EventID || el.Stream != l.recs[i].Stream || !bytes.Equal(el.Stored.Data, l.recs[i].Stored.Data) {
			t.Fatalf("line %d parsed as %+v", i+1, el)
		}
	}
	reformatted := clone(l.lines)
	for i := range reformatted {
		reformatted[i] = editLine(t, reformatted[i], func(map[string]any) {}) // keys sorted
		var el exportLine
		if canonicalLine(reformatted[i], &el) {
			t.Fatalf("reformatted line %d taken as canonical", i+1)
		}
	}
	reformatted[3] = bytes.ReplaceAll(reformatted[3], []byte(`"party-`), []byte(`"\u0070arty-`))
	if n, err := verifyExport(bytes.NewReader(join(reformatted)), l.cp); err != nil || n != 10 {
		t.Fatalf("reformatted export: %d records, %v", n, err)
	}
}
