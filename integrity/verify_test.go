package integrity

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestVerifyConsistencyNamesTheProblem(t *testing.T) {
	signer, _ := fixedKey(t, "stanceledger.example/test-log", "golden")
	_, nodes, leaves := buildTree(t, 20)
	sign := func(n int) *Checkpoint {
		cp, err := signer.Sign(uint64(n), leaves[:n].mth())
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
	cp7, cp13 := sign(7), sign(13)
	proof, err := ConsistencyProof(t.Context(), nodes, 7, 13)
	if err != nil {
		t.Fatal(err)
	}
	forked := append(naive(nil), leaves[:13]...)
	forked[9] = testLeafHash(1000)
	fork13, err := signer.Sign(13, forked.mth())
	if err != nil {
		t.Fatal(err)
	}
	otherProof, err := ConsistencyProof(t.Context(), nodes, 6, 13)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		old, new *Checkpoint
		proof    [][]byte
		msg      string // "" means the proof must verify
	}{
		{"consistent", cp7, cp13, proof, ""},
		{"consistent, given newest first", cp13, cp7, proof, ""},
		{"same checkpoint", cp13, cp13, nil, ""},
		{"fork at the same size", cp13, fork13, nil, "different roots at the same size 13 (a fork)"},
		{"fork at a larger size", cp7, fork13, proof, "consistency proof from size 7 to 13 does not match"},
		{"proof for other sizes", cp7, cp13, otherProof, "consistency proof from size 7 to 13 does not match"},
		{"truncated proof", cp7, cp13, proof[:len(proof)-1], "consistency proof from size 7 to 13 does not match"},
		{"short hash", cp7, cp13, [][]byte{proof[0][:8]}, "proof hash 0 is 8 bytes"},
		{"other log", cp7, &Checkpoint{Origin: "elsewhere", Size: 13, Root: cp13.Root}, proof, "different origins"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyConsistency(tc.old, tc.new, tc.proof)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("VerifyConsistency = %v, want success", err)
				}
				return
			}
			var ie *InconsistencyError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInconsistent) {
				t.Fatalf("VerifyConsistency = %v, want *InconsistencyError", err)
			}
			if ie.Old == nil || ie.New == nil || ie.Old.Size > ie.New.Size {
				t.Fatalf("evidence lacks the checkpoints in order: old %v new %v", ie.Old, ie.New)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

func TestVerifyInclusionRejectsOutOfRange(t *testing.T) {
	_, nodes, leaves := buildTree(t, 8)
	cp := &Checkpoint{Origin: "test", Size: 8, Root: leaves.mth()}
	p, err := InclusionProof(t.Context(), nodes, 3, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyInclusion(leaves[3], 8+3, p, cp); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("index beyond size = %v, want ErrInvalidProof", err)
	}
	if err := VerifyInclusion(leaves[3][:16], 3, p, cp); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("short leaf hash = %v, want ErrInvalidProof", err)
	}
}

// FuzzOpenCheckpoint: parsing never panics, and whatever opens re-signs to the same note.
func FuzzOpenCheckpoint(f *testing.F) {
	signer, vkey := fixedKey(f, "stanceledger.example/test-log", "golden")
	v, err := NewVerifier(vkey)
	if err != nil {
		f.Fatal(err)
	}
	cp, err := signer.Sign(5, hasher.HashLeaf([]byte("x")))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cp.Note)
	f.Add([]byte("stanceledger.example/test-log\n5\n\n— x y\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := OpenCheckpoint(b, v)
		if err != nil {
			return
		}
		again, err := signer.Sign(got.Size, got.Root)
		if err != nil {
			t.Fatalf("opened checkpoint does not re-sign: %v", err)
		}
		if !bytes.Equal(again.Body(), got.Body()) {
			t.Fatalf("opened %q, re-signed body %q", got.Body(), again.Body())
		}
	})
}

// FuzzVerifyProofs: a proof made of arbitrary bytes verifies only when it is the true
// proof.
func FuzzVerifyProofs(f *testing.F) {
	const size = 37
	_, nodes, leaves := buildTree(f, size)
	root := &Checkpoint{Origin: "test", Size: size, Root: leaves.mth()}
	f.Add(uint64(5), uint64(20), []byte{})
	f.Add(uint64(36), uint64(36), bytes.Repeat([]byte{7}, 6*HashSize))
	f.Fuzz(func(t *testing.T, index, old uint64, raw []byte) {
		var p [][]byte
		for len(raw) >= HashSize {
			p = append(p, raw[:HashSize])
			raw = raw[HashSize:]
		}
		if len(raw) > 0 {
			p = append(p, raw)
		}
		if index < size {
			want, err := InclusionProof(t.Context(), nodes, index, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(leaves[index], index, p, root); err == nil && !equalProofs(p, want) {
				t.Fatalf("forged inclusion proof of leaf %d verified", index)
			}
		} else if VerifyInclusion(leaves[0], index, p, root) == nil {
			t.Fatalf("inclusion of leaf %d outside the tree verified", index)
		}
		old %= size + 1
		oldCP := &Checkpoint{Origin: "test", Size: old, Root: leaves[:old].mth()}
		want, err := ConsistencyProof(t.Context(), nodes, old, size)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyConsistency(oldCP, root, p); err == nil && !equalProofs(p, want) {
			t.Fatalf("forged consistency proof from %d verified", old)
		}
	})
}
