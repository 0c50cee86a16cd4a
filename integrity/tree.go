package integrity

import (
	"bytes"
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	ledger "github.com/stanceledger/ledger"
)

// hasher is the RFC 6962 SHA-256 tree hasher every tree and proof here uses.
var hasher = rfc6962.DefaultHasher

var rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}

// NodeID names a node of the tree: a perfect subtree of 2^Level leaves starting at leaf
// Index·2^Level. Leaves are level 0.
type NodeID = compact.NodeID

// EmptyRoot is the root hash of the empty tree: SHA-256 of nothing (RFC 6962 §2.1).
func EmptyRoot() []byte { return hasher.EmptyRoot() }

// Tree is the growing right edge of the Merkle tree: a compact range over leaves
// [0, Size). It holds O(log Size) hashes; the hashes of all nodes it completes are
// reported to the caller, who stores what proofs need. A Tree is not safe for
// concurrent use.
type Tree struct {
	r *compact.Range
}

// NewTree returns the empty tree.
func NewTree() *Tree { return &Tree{r: rangeFactory.NewEmptyRange(0)} }

// RestoreTree rebuilds a tree of size leaves from the hashes its Hashes method returned
// at that size. It fails with an error matching ledger.ErrInvalid when the number or
// length of the hashes does not fit size.
func RestoreTree(size uint64, hashes [][]byte) (*Tree, error) {
	for i, h := range hashes {
		if len(h) != HashSize {
			return nil, ledger.Invalid(fmt.Sprintf("hashes[%d]", i), "%d bytes, want %d", len(h), HashSize)
		}
	}
	r, err := rangeFactory.NewRange(0, size, cloneHashes(hashes))
	if err != nil {
		return nil, ledger.Invalid("hashes", "%v", err)
	}
	return &Tree{r: r}, nil
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return t.r.End() }

// Hashes returns a copy of the roots of the perfect subtrees that make up the tree,
// left to right (at most 64): with Size, all RestoreTree needs.
func (t *Tree) Hashes() [][]byte { return cloneHashes(t.r.Hashes()) }

// Append adds a leaf hash as leaf number Size. Every node it completes (the leaf itself
// and each perfect subtree it closes) is passed to visit, when visit is not nil; those
// are exactly the nodes proofs are built from. It fails with an error matching
// ledger.ErrInvalid when leafHash is not HashSize bytes. The caller may reuse leafHash
// after Append returns.
func (t *Tree) Append(leafHash []byte, visit func(id NodeID, hash []byte)) error {
	if len(leafHash) != HashSize {
		return ledger.Invalid("leaf_hash", "%d bytes, want %d", len(leafHash), HashSize)
	}
	// The range keeps the slice it is given; the caller may reuse leafHash.
	return t.r.Append(bytes.Clone(leafHash), visit)
}

// Root returns the RFC 6962 root hash of the tree; EmptyRoot for the empty tree.
func (t *Tree) Root() []byte {
	if t.r.End() == 0 {
		return EmptyRoot()
	}
	// What compact.Range.GetRootHash does, without its error for ranges not at 0.
	hs := t.r.Hashes()
	root := hs[len(hs)-1]
	for i := len(hs) - 2; i >= 0; i-- {
		root = hasher.HashChildren(hs[i], root)
	}
	return root
}

func cloneHashes(hs [][]byte) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = append([]byte(nil), h...)
	}
	return out
}

// NodeReader reads stored node hashes: those a Tree passed to its visit function.
type NodeReader interface {
	// ReadNodes returns the hash of each node in ids, in the same order. A node that is
	// not stored is an error matching ledger.ErrNotFound.
	ReadNodes(ctx context.Context, ids []NodeID) ([][]byte, error)
}

// InclusionProof returns the RFC 6962 inclusion proof of leaf index in the tree of
// size leaves, built from the nodes r holds. It requires index < size and every node of
// the first size leaves stored in r; otherwise the error matches ledger.ErrInvalid
// (index out of range) or is the reader's error.
func InclusionProof(ctx context.Context, r NodeReader, index, size uint64) ([][]byte, error) {
	if index >= size {
		return nil, ledger.Invalid("leaf_index", "leaf %d is not in a tree of %d leaves", index, size)
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, ledger.Invalid("leaf_index", "%v", err)
	}
	return fetch(ctx, r, nodes)
}

// ConsistencyProof returns the RFC 6962 consistency proof between the trees of size1 and
// size2 leaves, built from the nodes r holds. It requires size1 <= size2 (otherwise the
// error matches ledger.ErrInvalid). The proof is empty when size1 is 0 or equals size2.
func ConsistencyProof(ctx context.Context, r NodeReader, size1, size2 uint64) ([][]byte, error) {
	if size1 > size2 {
		return nil, ledger.Invalid("old_size", "old size %d is larger than new size %d", size1, size2)
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, ledger.Invalid("old_size", "%v", err)
	}
	return fetch(ctx, r, nodes)
}

func fetch(ctx context.Context, r NodeReader, nodes proof.Nodes) ([][]byte, error) {
	if len(nodes.IDs) == 0 {
		return [][]byte{}, nil
	}
	hashes, err := r.ReadNodes(ctx, nodes.IDs)
	if err != nil {
		return nil, err
	}
	if len(hashes) != len(nodes.IDs) {
		return nil, fmt.Errorf("node reader returned %d hashes for %d nodes", len(hashes), len(nodes.IDs))
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}
