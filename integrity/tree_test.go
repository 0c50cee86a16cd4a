package integrity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync"
	"testing"

	ledger "github.com/stanceledger/ledger"
)

// memNodes is a NodeReader over a map, filled by Tree.Append's visit function.
type memNodes map[NodeID][]byte

func (m memNodes) visit(id NodeID, h []byte) { m[id] = append([]byte(nil), h...) }

func (m memNodes) ReadNodes(_ context.Context, ids []NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h, ok := m[id]
		if !ok {
			return nil, fmt.Errorf("node %d/%d: %w", id.Level, id.Index, ledger.ErrNotFound)
		}
		out[i] = append([]byte(nil), h...)
	}
	return out, nil
}

func testLeafHash(i int) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return hasher.HashLeaf(b[:])
}

// naive is RFC 6962 §2.1 written out recursively, independent of the merkle library.
type naive [][]byte

func split(n int) int { return 1 << (bits.Len(uint(n-1)) - 1) } // largest power of 2 < n

func node(l, r []byte) []byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l)
	h.Write(r)
	return h.Sum(nil)
}

// mthMemo caches MTH of subslices by their first element and length: the random
// sizes of one test share most of their subtrees.
var mthMemo sync.Map // naiveKey → []byte

type naiveKey struct {
	first *[]byte
	n     int
}

// mth is MTH(D[n]).
func (d naive) mth() []byte {
	switch len(d) {
	case 0:
		return EmptyRoot()
	case 1:
		return d[0]
	}
	key := naiveKey{&d[0], len(d)}
	if h, ok := mthMemo.Load(key); ok {
		return h.([]byte)
	}
	k := split(len(d))
	h := node(d[:k].mth(), d[k:].mth())
	mthMemo.Store(key, h)
	return h
}

// path is PATH(m, D[n]).
func (d naive) path(m int) [][]byte {
	if len(d) <= 1 {
		return nil
	}
	k := split(len(d))
	if m < k {
		return append(d[:k].path(m), d[k:].mth())
	}
	return append(d[k:].path(m-k), d[:k].mth())
}

// subproof is SUBPROOF(m, D[n], b).
func (d naive) subproof(m int, complete bool) [][]byte {
	n := len(d)
	if m == n {
		if complete {
			return nil
		}
		return [][]byte{d.mth()}
	}
	k := split(n)
	if m <= k {
		return append(d[:k].subproof(m, complete), d[k:].mth())
	}
	return append(d[k:].subproof(m-k, false), d[:k].mth())
}

func (d naive) proof(m int) [][]byte {
	if m == 0 || m == len(d) {
		return nil
	}
	return d.subproof(m, true)
}

func equalProofs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func buildTree(t testing.TB, n int) (*Tree, memNodes, naive) {
	t.Helper()
	tr, nodes, leaves := NewTree(), memNodes{}, make(naive, n)
	for i := range n {
		leaves[i] = testLeafHash(i)
		if err := tr.Append(leaves[i], nodes.visit); err != nil {
			t.Fatal(err)
		}
	}
	return tr, nodes, leaves
}

func TestTreeRootsMatchNaive(t *testing.T) {
	tr, leaves := NewTree(), naive{}
	if !bytes.Equal(tr.Root(), leaves.mth()) {
		t.Fatalf("empty root %x, want %x", tr.Root(), leaves.mth())
	}
	for i := range 300 {
		leaves = append(leaves, testLeafHash(i))
		if err := tr.Append(leaves[i], nil); err != nil {
			t.Fatal(err)
		}
		if got, want := tr.Root(), leaves.mth(); !bytes.Equal(got, want) {
			t.Fatalf("size %d: root %x, want %x", tr.Size(), got, want)
		}
		restored, err := RestoreTree(tr.Size(), tr.Hashes())
		if err != nil {
			t.Fatalf("size %d: restore: %v", tr.Size(), err)
		}
		if !bytes.Equal(restored.Root(), tr.Root()) {
			t.Fatalf("size %d: restored root differs", tr.Size())
		}
	}
}

func TestRestoreTreeRejects(t *testing.T) {
	tr, _, _ := buildTree(t, 5) // two perfect subtrees: 4 and 1
	tests := []struct {
		name   string
		size   uint64
		hashes [][]byte
	}{
		{"too few hashes", 5, tr.Hashes()[:1]},
		{"too many hashes", 4, tr.Hashes()},
		{"short hash", 5, [][]byte{tr.Hashes()[0], tr.Hashes()[1][:31]}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := RestoreTree(tc.size, tc.hashes); !errors.Is(err, ledger.ErrInvalid) {
				t.Fatalf("RestoreTree = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestProofsMatchNaive compares proofs built from stored nodes with RFC 6962's
// recursive definitions, and checks each verifies while every forgery and truncation
// does not, for thousands of random sizes.
func TestProofsMatchNaive(t *testing.T) {
	const maxSize = 1500
	rounds := 3000
	if testing.Short() {
		rounds = 500
	}
	_, nodes, all := buildTree(t, maxSize)
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := t.Context()
	for range rounds {
		size := 1 + rng.IntN(maxSize)
		leaves := all[:size]
		cp := &Checkpoint{Origin: "test", Size: uint64(size), Root: leaves.mth()}

		index := rng.IntN(size)
		got, err := InclusionProof(ctx, nodes, uint64(index), uint64(size))
		if err != nil {
			t.Fatalf("InclusionProof(%d, %d): %v", index, size, err)
		}
		if want := leaves.path(index); !equalProofs(got, want) {
			t.Fatalf("InclusionProof(%d, %d) differs from RFC 6962 PATH", index, size)
		}
		if err := VerifyInclusion(leaves[index], uint64(index), got, cp); err != nil {
			t.Fatalf("VerifyInclusion(%d, %d): %v", index, size, err)
		}
		for _, forged := range forgeries(rng, got) {
			if err := VerifyInclusion(leaves[index], uint64(index), forged, cp); !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("forged inclusion proof (%d, %d) verified: %v", index, size, err)
			}
		}
		if size > 1 {
			other := (index + 1 + rng.IntN(size-1)) % size
			if err := VerifyInclusion(leaves[other], uint64(index), got, cp); !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("proof of leaf %d verified leaf %d in size %d", index, other, size)
			}
		}

		old := rng.IntN(size + 1)
		oldCP := &Checkpoint{Origin: "test", Size: uint64(old), Root: all[:old].mth()}
		cons, err := ConsistencyProof(ctx, nodes, uint64(old), uint64(size))
		if err != nil {
			t.Fatalf("ConsistencyProof(%d, %d): %v", old, size, err)
		}
		if want := leaves.proof(old); !equalProofs(cons, want) {
			t.Fatalf("ConsistencyProof(%d, %d) differs from RFC 6962 PROOF", old, size)
		}
		if err := VerifyConsistency(oldCP, cp, cons); err != nil {
			t.Fatalf("VerifyConsistency(%d, %d): %v", old, size, err)
		}
		for _, forged := range forgeries(rng, cons) {
			err := VerifyConsistency(oldCP, cp, forged)
			if len(forged) == 0 && (old == 0 || old == size) {
				continue // an empty proof is the right proof here
			}
			var ie *InconsistencyError
			if !errors.As(err, &ie) || ie.Old != oldCP || ie.New != cp {
				t.Fatalf("forged consistency proof (%d, %d) gave %v, want *InconsistencyError", old, size, err)
			}
		}
	}
}

// forgeries returns altered copies of p: each element flipped, each truncation, one
// element cut short, an extra element, and elements swapped.
func forgeries(rng *rand.Rand, p [][]byte) [][][]byte {
	clone := func() [][]byte {
		c := make([][]byte, len(p))
		for i := range p {
			c[i] = append([]byte(nil), p[i]...)
		}
		return c
	}
	var out [][][]byte
	for i := range p {
		c := clone()
		c[i][rng.IntN(HashSize)] ^= 1 << rng.IntN(8)
		out = append(out, c)
		out = append(out, clone()[:i])
		c = clone()
		c[i] = c[i][:HashSize-1]
		out = append(out, c)
	}
	out = append(out, append(clone(), testLeafHash(-1)))
	if len(p) > 1 {
		c := clone()
		i := rng.IntN(len(p) - 1)
		if !bytes.Equal(c[i], c[i+1]) {
			c[i], c[i+1] = c[i+1], c[i]
			out = append(out, c)
		}
	}
	return out
}

func TestProofArgumentErrors(t *testing.T) {
	_, nodes, _ := buildTree(t, 10)
	ctx := t.Context()
	if _, err := InclusionProof(ctx, nodes, 10, 10); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("InclusionProof(10, 10) = %v, want ErrInvalid", err)
	}
	if _, err := ConsistencyProof(ctx, nodes, 11, 10); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("ConsistencyProof(11, 10) = %v, want ErrInvalid", err)
	}
	if _, err := InclusionProof(ctx, nodes, 3, 20); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("InclusionProof beyond the stored nodes = %v, want ErrNotFound", err)
	}
	if err := NewTree().Append(make([]byte, 31), nil); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("Append(31 bytes) = %v, want ErrInvalid", err)
	}
}

func BenchmarkTreeAppend(b *testing.B) {
	b.ReportAllocs()
	tr, nodes := NewTree(), memNodes{}
	leaf := testLeafHash(7)
	for b.Loop() {
		if err := tr.Append(leaf, func(id NodeID, h []byte) {
			if id.Level > 0 {
				nodes[id] = h
			}
		}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInclusionProof(b *testing.B) {
	const size = 1 << 16
	_, nodes, _ := buildTree(b, size)
	ctx := b.Context()
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		if _, err := InclusionProof(ctx, nodes, i%size, size); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}
