package integrityview

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/store"
)

func testSigner(t testing.TB) *integrity.Signer {
	t.Helper()
	skey, _, err := integrity.GenerateKey("stanceledger.example/view-test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := integrity.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// record i sits at position (10i+5, 10i+3): sparse, like EventStoreDB's.
func record(i int) store.Record {
	return store.Record{
		Stream:   fmt.Sprintf("party-p%d", i%3),
		Revision: uint64(i / 3),
		Position: ledger.Position{Commit: uint64(10*i + 5), Prepare: uint64(10*i + 3)},
		EventID:  fmt.Sprintf("ev-%d", i),
		Type:     "StatementIssued",
		Data:     fmt.Appendf(nil, `{"statement_id":"s%d"}`, i),
		Metadata: fmt.Appendf(nil, `{"schema":1,"event_id":"ev-%d"}`, i),
	}
}

func records(from, to int) []store.Record {
	var out []store.Record
	for i := from; i < to; i++ {
		out = append(out, record(i))
	}
	return out
}

// reference builds the tree of the first n records with the integrity package alone.
func reference(t testing.TB, n int) *integrity.Tree {
	t.Helper()
	tr := integrity.NewTree()
	for _, r := range records(0, n) {
		h, err := integrity.Leaf{EventID: r.EventID, Stream: r.Stream, Type: r.Type, Data: r.Data, Metadata: r.Metadata}.Hash()
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Append(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func open(t *testing.T, dir string, s *integrity.Signer, every uint64) *View {
	t.Helper()
	v, err := Open(dir, s, nil, &Options{Every: every})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestViewBuildsTheTreeAndPublishes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "integrity")
	signer := testSigner(t)
	verifier, err := integrity.NewVerifier(signer.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	v := open(t, dir, signer, 10)
	if _, err := v.Latest(); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Latest on an empty view = %v, want ErrNotFound", err)
	}
	// Batches that straddle the publication interval.
	for _, b := range [][2]int{{0, 7}, {7, 8}, {8, 31}} {
		if err := v.Apply(records(b[0], b[1])); err != nil {
			t.Fatal(err)
		}
	}
	if got := v.Progress().Applied(); got != record(30).Position {
		t.Fatalf("applied %s, want %s", got, record(30).Position)
	}
	latest, err := v.Latest()
	if err != nil {
		t.Fatal(err)
	}
	if latest.Size != 30 || !bytes.Equal(latest.Root, reference(t, 30).Root()) {
		t.Fatalf("latest checkpoint %s, want size 30 with the reference root", latest)
	}
	for _, size := range []uint64{10, 20, 30} {
		cp, err := v.Checkpoint(size)
		if err != nil {
			t.Fatalf("Checkpoint(%d): %v", size, err)
		}
		if _, err := integrity.OpenCheckpoint(cp.Note, verifier); err != nil {
			t.Fatalf("checkpoint %d does not open: %v", size, err)
		}
		if !bytes.Equal(cp.Root, reference(t, int(size)).Root()) {
			t.Fatalf("checkpoint %d root differs from the reference tree", size)
		}
	}

	// Covering: record 12 (leaf 12) needs 13 leaves: the checkpoint of 20.
	tests := []struct {
		pos  ledger.Position
		want uint64
	}{
		{record(12).Position, 20},
		{ledger.Position{Commit: 126, Prepare: 0}, 20}, // between records 12 and 13
		{record(0).Position, 10},
		{ledger.Position{}, 10},
		{record(9).Position, 10},
		{record(29).Position, 30},
		{record(30).Position, 31}, // not published yet: Covering publishes it
	}
	for _, tc := range tests {
		cp, err := v.Covering(tc.pos)
		if err != nil {
			t.Fatalf("Covering(%s): %v", tc.pos, err)
		}
		if cp.Size != tc.want {
			t.Errorf("Covering(%s) = size %d, want %d", tc.pos, cp.Size, tc.want)
		}
	}
	if _, err := v.Covering(ledger.Position{Commit: 1000}); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Covering beyond the applied position = %v, want ErrNotFound", err)
	}

	// Proofs against every published checkpoint verify.
	cp20, err := v.Checkpoint(20)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := v.LeafByEventID("ev-13")
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Index != 13 || leaf.Position != record(13).Position {
		t.Fatalf("LeafByEventID(ev-13) = %+v", leaf)
	}
	p, err := v.InclusionProof(t.Context(), leaf.Index, cp20.Size)
	if err != nil {
		t.Fatal(err)
	}
	r := record(13)
	h, _ := integrity.Leaf{EventID: r.EventID, Stream: r.Stream, Type: r.Type, Data: r.Data, Metadata: r.Metadata}.Hash()
	if err := integrity.VerifyInclusion(h, leaf.Index, p, cp20); err != nil {
		t.Fatalf("inclusion proof: %v", err)
	}
	cp31, err := v.Latest()
	if err != nil {
		t.Fatal(err)
	}
	cons, err := v.ConsistencyProof(t.Context(), 20, 31)
	if err != nil {
		t.Fatal(err)
	}
	if err := integrity.VerifyConsistency(cp20, cp31, cons); err != nil {
		t.Fatalf("consistency proof: %v", err)
	}
	if _, err := v.InclusionProof(t.Context(), 3, 32); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("proof against a tree larger than applied = %v, want ErrInvalid", err)
	}
	if _, err := v.LeafByEventID("nope"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("LeafByEventID(unknown) = %v, want ErrNotFound", err)
	}
	if err := v.Apply(records(30, 31)); err == nil {
		t.Error("Apply of a record at the applied position succeeded")
	}

	// Reopen: the tree continues where it stood; checkpoints before and after agree.
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v = open(t, dir, signer, 10)
	defer v.Close()
	if v.Size() != 31 || v.Progress().Applied() != record(30).Position {
		t.Fatalf("reopened at size %d, applied %s", v.Size(), v.Progress().Applied())
	}
	if err := v.Apply(records(31, 45)); err != nil {
		t.Fatal(err)
	}
	cp45, err := v.Publish()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cp45.Root, reference(t, 45).Root()) {
		t.Fatal("root after reopening differs from the reference tree")
	}
	cons, err = v.ConsistencyProof(t.Context(), 31, 45)
	if err != nil {
		t.Fatal(err)
	}
	if err := integrity.VerifyConsistency(cp31, cp45, cons); err != nil {
		t.Fatalf("checkpoints before and after reopening: %v", err)
	}
}

// TestCheckpointsOfApplySurviveACrash crashes the view's file system, losing every
// unsynced write, right after Apply made and served checkpoints: the reopened view
// serves the latest of them still (or the log would seem to roll back to an auditor
// who saw it), though it may have to apply the records after it again.
func TestCheckpointsOfApplySurviveACrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	// The data directory exists, synced, as ledgerd's does once its store is open;
	// the views directory in it does not yet.
	if err := fs.MkdirAll("/data", 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := fs.OpenDir("/")
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(root.Sync(), root.Close()); err != nil {
		t.Fatal(err)
	}
	const dir = "/data/views/integrity"
	s := testSigner(t)
	v, err := openFS(fs, dir, s, nil, &Options{Every: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, batch := range [][2]int{{0, 7}, {7, 25}, {25, 28}} {
		if err := v.Apply(records(batch[0], batch[1])); err != nil {
			t.Fatal(err)
		}
	}
	served, err := v.Latest()
	if err != nil || served.Size != 20 {
		t.Fatalf("Latest() = %+v, %v; want the checkpoint of 20 records", served, err)
	}

	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	w, err := openFS(crashed, dir, s, nil, &Options{Every: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	got, err := w.Latest()
	if err != nil || got.Size != served.Size || !bytes.Equal(got.Note, served.Note) {
		t.Fatalf("after the crash Latest() = %+v, %v; want the checkpoint served before it, %+v", got, err, served)
	}
	if w.Size() < got.Size {
		t.Fatalf("after the crash the tree holds %d leaves, fewer than its checkpoint's %d", w.Size(), got.Size)
	}
}

func TestViewRefusesAnotherOrigin(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "integrity")
	v := open(t, dir, testSigner(t), 1)
	if err := v.Apply(records(0, 2)); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	skey, _, err := integrity.GenerateKey("stanceledger.example/another-log")
	if err != nil {
		t.Fatal(err)
	}
	other, err := integrity.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := Open(dir, other, nil, nil); err == nil {
		v.Close()
		t.Fatal("opened a view of one origin with the key of another")
	}
}

func BenchmarkViewApply(b *testing.B) {
	v, err := Open(filepath.Join(b.TempDir(), "integrity"), testSigner(b), nil, &Options{Every: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	const batch = 1000
	b.ReportAllocs()
	next := 0
	for b.Loop() {
		if err := v.Apply(records(next, next+batch)); err != nil {
			b.Fatal(err)
		}
		next += batch
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(next), "ns/record")
}

// BenchmarkViewInclusionProof builds proofs from the nodes stored in Pebble, against a
// tree of 100,000 leaves, as GetInclusionProof does.
func BenchmarkViewInclusionProof(b *testing.B) {
	const size = 100_000
	v, err := Open(filepath.Join(b.TempDir(), "integrity"), testSigner(b), nil, &Options{Every: 10_000})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	for i := 0; i < size; i += 1000 {
		if err := v.Apply(records(i, i+1000)); err != nil {
			b.Fatal(err)
		}
	}
	ctx := b.Context()
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		if _, err := v.InclusionProof(ctx, i%size, size); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}

// BenchmarkViewConsistencyProof builds consistency proofs between random sizes of a
// tree of 100,000 leaves.
func BenchmarkViewConsistencyProof(b *testing.B) {
	const size = 100_000
	v, err := Open(filepath.Join(b.TempDir(), "integrity"), testSigner(b), nil, &Options{Every: 10_000})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	for i := 0; i < size; i += 1000 {
		if err := v.Apply(records(i, i+1000)); err != nil {
			b.Fatal(err)
		}
	}
	ctx := b.Context()
	b.ReportAllocs()
	i := uint64(1)
	for b.Loop() {
		if _, err := v.ConsistencyProof(ctx, 1+i%(size-1), size); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}
