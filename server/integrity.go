package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/internal/wire"
	"github.com/stanceledger/ledger/projections/integrityview"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// IntegrityServiceName is the full name of the IntegrityService, as gRPC health reports it.
const IntegrityServiceName = "stanceledger.v1.IntegrityService"

// NewIntegrityService returns the IntegrityService over the integrity projection v,
// for registering on the server's gRPC server (GRPCServer) before Serve. Its handlers
// return domain errors, which the server's error interceptor maps to statuses.
func NewIntegrityService(v *integrityview.View, log *slog.Logger) ledgerv1.IntegrityServiceServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &integrityService{v: v, log: log}
}

// integrityService implements ledgerv1.IntegrityServiceServer.
type integrityService struct {
	ledgerv1.UnimplementedIntegrityServiceServer
	v   *integrityview.View
	log *slog.Logger
}

// GetCheckpoint returns the latest published checkpoint, publishing one first when
// records were applied but none is published yet; or, with covering set, waits for the
// view to apply that position and returns the smallest checkpoint covering it.
func (s *integrityService) GetCheckpoint(ctx context.Context, req *ledgerv1.GetCheckpointRequest) (*ledgerv1.GetCheckpointResponse, error) {
	var (
		cp  *integrity.Checkpoint
		err error
	)
	if req.GetCovering() != nil {
		pos := wire.PositionFromProto(req.GetCovering())
		if err := s.v.Progress().WaitFor(ctx, pos); err != nil {
			return nil, err
		}
		cp, err = s.v.Covering(pos)
	} else {
		cp, err = s.latest()
	}
	if err != nil {
		return nil, err
	}
	return &ledgerv1.GetCheckpointResponse{Checkpoint: checkpointToProto(cp)}, nil
}

// latest returns the latest published checkpoint; when none is published yet but
// records were applied, it publishes one first.
func (s *integrityService) latest() (*integrity.Checkpoint, error) {
	cp, err := s.v.Latest()
	if errors.Is(err, ledger.ErrNotFound) {
		cp, err = s.v.Publish()
		if err == nil && cp == nil {
			err = fmt.Errorf("%w: the log is empty, no checkpoint yet", ledger.ErrNotFound)
		}
	}
	return cp, err
}

// GetInclusionProof proves that a record (by event_id or leaf index) is in the tree of
// tree_size leaves, or of the latest checkpoint's size (publishing one that covers the
// record when the latest does not).
func (s *integrityService) GetInclusionProof(ctx context.Context, req *ledgerv1.GetInclusionProofRequest) (*ledgerv1.GetInclusionProofResponse, error) {
	if mp := req.GetMinPosition(); mp != nil {
		if err := s.v.Progress().WaitFor(ctx, wire.PositionFromProto(mp)); err != nil {
			return nil, err
		}
	}
	var (
		leaf integrityview.Leaf
		err  error
	)
	switch l := req.GetLeaf().(type) {
	case *ledgerv1.GetInclusionProofRequest_EventId:
		if l.EventId == "" {
			return nil, ledger.Invalid("event_id", "required")
		}
		leaf, err = s.v.LeafByEventID(l.EventId)
	case *ledgerv1.GetInclusionProofRequest_LeafIndex:
		leaf, err = s.v.LeafAt(l.LeafIndex)
	default:
		return nil, ledger.Invalid("leaf", "event_id or leaf_index is required")
	}
	if err != nil {
		return nil, err
	}
	size := req.GetTreeSize()
	var cp *integrity.Checkpoint
	if size == 0 {
		if cp, err = s.latest(); err != nil {
			return nil, err
		}
		if cp.Size <= leaf.Index {
			if cp, err = s.v.Publish(); err != nil {
				return nil, err
			}
		}
		size = cp.Size
	} else if leaf.Index >= size {
		return nil, ledger.Invalid("tree_size", "leaf %d is not in a tree of %d leaves", leaf.Index, size)
	}
	hashes, err := s.v.InclusionProof(ctx, leaf.Index, size)
	if err != nil {
		return nil, err
	}
	if cp == nil {
		cp = s.publishedOrNil(size)
	}
	return &ledgerv1.GetInclusionProofResponse{
		LeafIndex:  leaf.Index,
		TreeSize:   size,
		Hashes:     hashes,
		EventId:    leaf.EventID,
		Position:   wire.PositionToProto(leaf.Position),
		Checkpoint: checkpointToProto(cp),
	}, nil
}

// GetConsistencyProof proves that the tree of old_size leaves is a prefix of the tree
// of new_size (0: the latest checkpoint's size).
func (s *integrityService) GetConsistencyProof(ctx context.Context, req *ledgerv1.GetConsistencyProofRequest) (*ledgerv1.GetConsistencyProofResponse, error) {
	size1, size2 := req.GetOldSize(), req.GetNewSize()
	var cp *integrity.Checkpoint
	if size2 == 0 {
		var err error
		if cp, err = s.latest(); err != nil {
			return nil, err
		}
		size2 = cp.Size
	}
	if size1 > size2 {
		return nil, ledger.Invalid("old_size", "old size %d is larger than new size %d", size1, size2)
	}
	hashes, err := s.v.ConsistencyProof(ctx, size1, size2)
	if err != nil {
		return nil, err
	}
	if cp == nil {
		cp = s.publishedOrNil(size2)
	}
	return &ledgerv1.GetConsistencyProofResponse{
		OldSize: size1, NewSize: size2, Hashes: hashes, Checkpoint: checkpointToProto(cp),
	}, nil
}

// GetVerifierKey returns the log's verifier key and origin.
func (s *integrityService) GetVerifierKey(context.Context, *ledgerv1.GetVerifierKeyRequest) (*ledgerv1.GetVerifierKeyResponse, error) {
	return &ledgerv1.GetVerifierKeyResponse{VerifierKey: s.v.VerifierKey(), Origin: s.v.Origin()}, nil
}

// publishedOrNil returns the published checkpoint of exactly size leaves, if any.
func (s *integrityService) publishedOrNil(size uint64) *integrity.Checkpoint {
	cp, err := s.v.Checkpoint(size)
	if err != nil {
		if !errors.Is(err, ledger.ErrNotFound) {
			s.log.Warn("integrity: reading a published checkpoint failed", "size", size, "err", err)
		}
		return nil
	}
	return cp
}

func checkpointToProto(cp *integrity.Checkpoint) *ledgerv1.Checkpoint {
	if cp == nil {
		return nil
	}
	return &ledgerv1.Checkpoint{SignedNote: string(cp.Note), Origin: cp.Origin, Size: cp.Size, RootHash: cp.Root}
}

// WithSnapshotCheckpoints wraps a PositionService so that every snapshot it returns
// carries the smallest signed checkpoint covering the snapshot's log position P (DESIGN.md
// §1 rule 7), waiting within the call's deadline for the integrity view to reach P. An
// auditor checks the snapshot against it offline ("ledgerctl verify --snapshot").
func WithSnapshotCheckpoints(ps ledgerv1.PositionServiceServer, v *integrityview.View) ledgerv1.PositionServiceServer {
	return &snapshotCheckpoints{PositionServiceServer: ps, v: v}
}

type snapshotCheckpoints struct {
	ledgerv1.PositionServiceServer
	v *integrityview.View
}

// GetSnapshot adds the covering checkpoint to the wrapped service's snapshot.
func (s *snapshotCheckpoints) GetSnapshot(ctx context.Context, req *ledgerv1.GetSnapshotRequest) (*ledgerv1.GetSnapshotResponse, error) {
	resp, err := s.PositionServiceServer.GetSnapshot(ctx, req)
	if err != nil || resp.GetCheckpoint() != nil {
		return resp, err
	}
	pos := wire.PositionFromProto(resp.GetAsOfPosition())
	if err := s.v.Progress().WaitFor(ctx, pos); err != nil {
		return nil, err
	}
	cp, err := s.v.Covering(pos)
	if errors.Is(err, ledger.ErrNotFound) {
		return resp, nil // an empty log: nothing to cover
	}
	if err != nil {
		return nil, err
	}
	resp.Checkpoint = checkpointToProto(cp)
	return resp, nil
}
