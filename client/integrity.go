package client

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/note"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// VerifierKey returns the verifier key the server says its checkpoints are signed with.
// It is not verified: trusting it is trust on first use. Prefer a key obtained out of
// band (the one ledgerd prints at start) and pass it to Auditor.
func (c *Client) VerifierKey(ctx context.Context) (string, error) {
	resp, err := ledgerv1.NewIntegrityServiceClient(c.conn).GetVerifierKey(ctx, &ledgerv1.GetVerifierKeyRequest{})
	if err != nil {
		return "", fromStatus(err)
	}
	return resp.GetVerifierKey(), nil
}

// Auditor checks what the server's IntegrityService says against a verifier key the
// caller trusts: every checkpoint's signature and every proof. It keeps the largest
// checkpoint it has verified and proves every later checkpoint consistent with it, so a
// server that forks its log or rolls it back is caught. It is safe for concurrent use.
type Auditor struct {
	svc      ledgerv1.IntegrityServiceClient
	c        *Client
	verifier note.Verifier

	mu   sync.Mutex
	last *integrity.Checkpoint
}

// Auditor returns an Auditor that trusts verifierKey (note format, see
// integrity.NewVerifier) and starts from last, a checkpoint verified before (for
// instance saved by a previous run), or nil. last must open with the key.
func (c *Client) Auditor(verifierKey string, last *integrity.Checkpoint) (*Auditor, error) {
	v, err := integrity.NewVerifier(verifierKey)
	if err != nil {
		return nil, err
	}
	a := &Auditor{svc: ledgerv1.NewIntegrityServiceClient(c.conn), c: c, verifier: v}
	if last != nil {
		if a.last, err = integrity.OpenCheckpoint(last.Note, v); err != nil {
			return nil, fmt.Errorf("the starting checkpoint: %w", err)
		}
	}
	return a, nil
}

// Last returns the largest checkpoint verified so far, or nil.
func (a *Auditor) Last() *integrity.Checkpoint {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// Latest fetches the server's latest checkpoint, verifies its signature and its
// consistency with Last, and returns it; it becomes Last. Errors:
//   - integrity.ErrBadSignature, ErrOriginMismatch, ErrMalformedCheckpoint: the
//     checkpoint is not the log's;
//   - *integrity.InconsistencyError: it contradicts Last (a fork or a rewritten history);
//   - integrity.ErrRollback: it is older than Last (consistent, but the server went back).
func (a *Auditor) Latest(ctx context.Context) (*integrity.Checkpoint, error) {
	resp, err := a.svc.GetCheckpoint(ctx, &ledgerv1.GetCheckpointRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	cp, err := a.open(resp.GetCheckpoint())
	if err != nil {
		return nil, err
	}
	// A server that went back cannot prove consistency with what it no longer has.
	if last := a.Last(); last != nil && last.Size > cp.Size {
		return nil, fmt.Errorf("%w: the latest checkpoint (%s) is older than one verified before (%s)", integrity.ErrRollback, cp, last)
	}
	if err := a.accept(ctx, cp); err != nil {
		return nil, err
	}
	return cp, nil
}

// Covering fetches the smallest checkpoint covering every record at or before pos,
// verifies it and its consistency with Last (the larger of the two becomes Last), and
// returns it. Errors as Latest, without ErrRollback.
func (a *Auditor) Covering(ctx context.Context, pos ledger.Position) (*integrity.Checkpoint, error) {
	resp, err := a.svc.GetCheckpoint(ctx, &ledgerv1.GetCheckpointRequest{Covering: wire.PositionToProto(pos)})
	if err != nil {
		return nil, fromStatus(err)
	}
	cp, err := a.open(resp.GetCheckpoint())
	if err != nil {
		return nil, err
	}
	return cp, a.accept(ctx, cp)
}

// Inclusion is a verified proof that a record is in the log.
type Inclusion struct {
	// Record is the record as the server returned it; its stored bytes are the leaf.
	Record Recorded
	// LeafIndex is the record's place in the log, from 0.
	LeafIndex uint64
	// Checkpoint is the verified checkpoint the proof leads to.
	Checkpoint *integrity.Checkpoint
	// Proof is the RFC 6962 audit path.
	Proof [][]byte
}

// ProveEvent fetches the record stored under eventID, computes its leaf hash from its
// stored bytes, fetches an inclusion proof into a checkpoint that covers it, and
// verifies the checkpoint (signature, consistency with Last) and the proof. Errors:
// ledger.ErrNotFound for an unknown event_id; integrity.ErrInvalidProof when the proof
// does not lead to the checkpoint; the errors of Covering for the checkpoint.
func (a *Auditor) ProveEvent(ctx context.Context, eventID string) (Inclusion, error) {
	rec, err := a.c.GetEvent(ctx, eventID)
	if err != nil {
		return Inclusion{}, err
	}
	leaf := integrity.Leaf{EventID: rec.Event.EventID, Stream: rec.Stream, Type: rec.Stored.Type, Data: rec.Stored.Data, Metadata: rec.Stored.Metadata}
	h, err := leaf.Hash()
	if err != nil {
		return Inclusion{}, err
	}
	resp, err := a.svc.GetInclusionProof(ctx, &ledgerv1.GetInclusionProofRequest{
		Leaf:        &ledgerv1.GetInclusionProofRequest_EventId{EventId: eventID},
		MinPosition: wire.PositionToProto(rec.Position),
	})
	if err != nil {
		return Inclusion{}, fromStatus(err)
	}
	cp, err := a.open(resp.GetCheckpoint())
	if err != nil {
		return Inclusion{}, err
	}
	if cp.Size != resp.GetTreeSize() {
		return Inclusion{}, fmt.Errorf("%w: proof against %d records comes with a checkpoint of %d", integrity.ErrInvalidProof, resp.GetTreeSize(), cp.Size)
	}
	if err := a.accept(ctx, cp); err != nil {
		return Inclusion{}, err
	}
	if err := integrity.VerifyInclusion(h, resp.GetLeafIndex(), resp.GetHashes(), cp); err != nil {
		return Inclusion{}, fmt.Errorf("event_id %q: %w", eventID, err)
	}
	return Inclusion{Record: rec, LeafIndex: resp.GetLeafIndex(), Checkpoint: cp, Proof: resp.GetHashes()}, nil
}

// open verifies a checkpoint from the wire with the trusted key.
func (a *Auditor) open(pb *ledgerv1.Checkpoint) (*integrity.Checkpoint, error) {
	if pb == nil {
		return nil, fmt.Errorf("%w: the server sent no checkpoint", integrity.ErrMalformedCheckpoint)
	}
	return integrity.OpenCheckpoint([]byte(pb.GetSignedNote()), a.verifier)
}

// accept proves cp consistent with Last, fetching the consistency proof between the
// two, and makes cp Last when it is larger.
func (a *Auditor) accept(ctx context.Context, cp *integrity.Checkpoint) error {
	last := a.Last()
	if last == nil {
		a.setLast(cp)
		return nil
	}
	old, new := last, cp
	if old.Size > new.Size {
		old, new = new, old
	}
	var proof [][]byte
	if old.Size != new.Size {
		resp, err := a.svc.GetConsistencyProof(ctx, &ledgerv1.GetConsistencyProofRequest{OldSize: old.Size, NewSize: new.Size})
		if err != nil {
			return fmt.Errorf("consistency of %d and %d records: %w", old.Size, new.Size, fromStatus(err))
		}
		proof = resp.GetHashes()
	}
	if err := integrity.VerifyConsistency(old, new, proof); err != nil {
		return err
	}
	a.setLast(cp)
	return nil
}

// setLast makes cp Last when it is larger than Last.
func (a *Auditor) setLast(cp *integrity.Checkpoint) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last == nil || cp.Size > a.last.Size {
		a.last = cp
	}
}
