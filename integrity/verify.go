package integrity

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/transparency-dev/merkle/proof"
)

// InconsistencyError is the evidence that a log is not append-only, or that two
// parties were shown different logs: two checkpoints, each validly signed, and the
// consistency proof that fails to connect them (empty for a fork at equal sizes). It
// matches ErrInconsistent.
type InconsistencyError struct {
	// Old is the smaller (or, for a fork, the first seen) checkpoint.
	Old *Checkpoint
	// New is the larger (or, for a fork, the second) checkpoint.
	New *Checkpoint
	// Proof is the consistency proof from Old.Size to New.Size that did not verify.
	Proof [][]byte
	// Reason says what failed, e.g. "different roots at the same size".
	Reason string
}

// Error names both checkpoints and the reason.
func (e *InconsistencyError) Error() string {
	return fmt.Sprintf("checkpoints are inconsistent: %s: old %s, new %s", e.Reason, e.Old, e.New)
}

// Is makes errors.Is(err, ErrInconsistent) true.
func (e *InconsistencyError) Is(target error) bool { return target == ErrInconsistent }

// VerifyInclusion checks that leafHash is leaf number index of the tree cp commits to,
// using an RFC 6962 inclusion proof. cp must already be verified (OpenCheckpoint); this
// function checks no signature. Any failure (index outside the tree, a proof element
// that is not HashSize bytes, a proof of the wrong length, a root that does not match)
// is an error matching ErrInvalidProof.
func VerifyInclusion(leafHash []byte, index uint64, inclusion [][]byte, cp *Checkpoint) error {
	if cp == nil {
		return fmt.Errorf("%w: no checkpoint", ErrInvalidProof)
	}
	if index >= cp.Size {
		return fmt.Errorf("%w: leaf %d is not in a tree of %d leaves", ErrInvalidProof, index, cp.Size)
	}
	if err := checkSizes(leafHash, inclusion); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidProof, err)
	}
	if err := proof.VerifyInclusion(hasher, index, cp.Size, leafHash, inclusion, cp.Root); err != nil {
		return fmt.Errorf("%w: leaf %d in %s: %v", ErrInvalidProof, index, cp, err)
	}
	return nil
}

// VerifyConsistency checks that the log old commits to is a prefix of the log new
// commits to, using an RFC 6962 consistency proof. Both checkpoints must already be
// verified (OpenCheckpoint); this function checks no signature. The two may come in
// either order of size: the smaller is taken as old. Any failure (different origins,
// a fork at equal sizes, a malformed or non-matching proof) is an
// *InconsistencyError carrying both checkpoints and the proof.
func VerifyConsistency(old, new *Checkpoint, consistency [][]byte) error {
	if old == nil || new == nil {
		return &InconsistencyError{Old: old, New: new, Proof: consistency, Reason: "missing checkpoint"}
	}
	if old.Size > new.Size {
		old, new = new, old
	}
	fail := func(format string, args ...any) error {
		return &InconsistencyError{Old: old, New: new, Proof: consistency, Reason: fmt.Sprintf(format, args...)}
	}
	if old.Origin != new.Origin {
		return fail("different origins %q and %q", old.Origin, new.Origin)
	}
	if old.Size == new.Size && !bytes.Equal(old.Root, new.Root) {
		return fail("different roots at the same size %d (a fork)", old.Size)
	}
	if err := checkSizes(nil, consistency); err != nil {
		return fail("%v", err)
	}
	if old.Size == 0 && !bytes.Equal(old.Root, EmptyRoot()) {
		return fail("size 0 with a root other than the empty root")
	}
	if err := proof.VerifyConsistency(hasher, old.Size, new.Size, consistency, old.Root, new.Root); err != nil {
		return fail("consistency proof from size %d to %d does not match: %v", old.Size, new.Size, err)
	}
	return nil
}

func checkSizes(leafHash []byte, hashes [][]byte) error {
	if leafHash != nil && len(leafHash) != HashSize {
		return fmt.Errorf("leaf hash is %d bytes, want %d", len(leafHash), HashSize)
	}
	if len(hashes) > 65 {
		return fmt.Errorf("proof has %d hashes; no proof in a tree of 2^64 leaves has more than 65", len(hashes))
	}
	for i, h := range hashes {
		if len(h) != HashSize {
			return fmt.Errorf("proof hash %d is %d bytes, want %d", i, len(h), HashSize)
		}
	}
	return nil
}

// FormatProof encodes a proof as base64 hashes, one a line, for humans and files.
func FormatProof(hashes [][]byte) string {
	var b strings.Builder
	for _, h := range hashes {
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	return b.String()
}
