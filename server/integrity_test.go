package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/projections/integrityview"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/store"
)

func integrityRecord(i int) store.Record {
	return store.Record{
		Stream:   fmt.Sprintf("party-p%d", i%3),
		Revision: uint64(i / 3),
		Position: ledger.Position{Commit: uint64(i + 1), Prepare: uint64(i + 1)},
		EventID:  fmt.Sprintf("ev-%d", i),
		Type:     "StatementIssued",
		Data:     fmt.Appendf(nil, `{"statement_id":"s%d"}`, i),
		Metadata: fmt.Appendf(nil, `{"schema":1,"event_id":"ev-%d"}`, i),
	}
}

// startIntegrity serves the IntegrityService over a view holding n records, on a real
// gRPC server on loopback with the server's error table.
func startIntegrity(t *testing.T, n int) (ledgerv1.IntegrityServiceClient, *integrityview.View, string) {
	t.Helper()
	skey, vkey, err := integrity.GenerateKey("stanceledger.example/server-test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := integrity.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := integrityview.Open(filepath.Join(t.TempDir(), "integrity"), signer, nil, &integrityview.Options{Every: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	var recs []store.Record
	for i := range n {
		recs = append(recs, integrityRecord(i))
	}
	if err := v.Apply(recs); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		return resp, toStatus(ctx, log, info.FullMethod, err)
	}))
	ledgerv1.RegisterIntegrityServiceServer(gs, NewIntegrityService(v, log))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return ledgerv1.NewIntegrityServiceClient(conn), v, vkey
}

func leafHashOf(t *testing.T, r store.Record) []byte {
	t.Helper()
	h, err := integrity.Leaf{EventID: r.EventID, Stream: r.Stream, Type: r.Type, Data: r.Data, Metadata: r.Metadata}.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestIntegrityService(t *testing.T) {
	svc, _, vkey := startIntegrity(t, 25)
	ctx := t.Context()
	verifier, err := integrity.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	open := func(pb *ledgerv1.Checkpoint) *integrity.Checkpoint {
		t.Helper()
		cp, err := integrity.OpenCheckpoint([]byte(pb.GetSignedNote()), verifier)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size != pb.GetSize() || cp.Origin != pb.GetOrigin() || string(cp.Root) != string(pb.GetRootHash()) {
			t.Fatalf("checkpoint fields %v do not match its note %s", pb, cp)
		}
		return cp
	}

	key, err := svc.GetVerifierKey(ctx, &ledgerv1.GetVerifierKeyRequest{})
	if err != nil || key.GetVerifierKey() != vkey || key.GetOrigin() != "stanceledger.example/server-test" {
		t.Fatalf("GetVerifierKey = %v, %v", key, err)
	}

	latest, err := svc.GetCheckpoint(ctx, &ledgerv1.GetCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cp20 := open(latest.GetCheckpoint())
	if cp20.Size != 20 {
		t.Fatalf("latest checkpoint has size %d, want 20 (published every 10)", cp20.Size)
	}
	cov, err := svc.GetCheckpoint(ctx, &ledgerv1.GetCheckpointRequest{Covering: &ledgerv1.Position{Commit: 5, Prepare: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if cp := open(cov.GetCheckpoint()); cp.Size != 10 {
		t.Fatalf("checkpoint covering position 5 has size %d, want 10", cp.Size)
	}

	// By event_id against the latest checkpoint, which does not cover leaf 22: the
	// service publishes one that does.
	incl, err := svc.GetInclusionProof(ctx, &ledgerv1.GetInclusionProofRequest{Leaf: &ledgerv1.GetInclusionProofRequest_EventId{EventId: "ev-22"}})
	if err != nil {
		t.Fatal(err)
	}
	cp25 := open(incl.GetCheckpoint())
	if incl.GetLeafIndex() != 22 || incl.GetTreeSize() != 25 || cp25.Size != 25 || incl.GetPosition().GetCommit() != 23 {
		t.Fatalf("inclusion of ev-22: leaf %d, tree %d, checkpoint %d", incl.GetLeafIndex(), incl.GetTreeSize(), cp25.Size)
	}
	if err := integrity.VerifyInclusion(leafHashOf(t, integrityRecord(22)), 22, incl.GetHashes(), cp25); err != nil {
		t.Fatal(err)
	}
	// By leaf index against a published size.
	incl, err = svc.GetInclusionProof(ctx, &ledgerv1.GetInclusionProofRequest{Leaf: &ledgerv1.GetInclusionProofRequest_LeafIndex{LeafIndex: 3}, TreeSize: 20})
	if err != nil {
		t.Fatal(err)
	}
	if incl.GetEventId() != "ev-3" {
		t.Fatalf("leaf 3 is %q", incl.GetEventId())
	}
	if err := integrity.VerifyInclusion(leafHashOf(t, integrityRecord(3)), 3, incl.GetHashes(), open(incl.GetCheckpoint())); err != nil {
		t.Fatal(err)
	}

	cons, err := svc.GetConsistencyProof(ctx, &ledgerv1.GetConsistencyProofRequest{OldSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	cp10 := open(cov.GetCheckpoint())
	if err := integrity.VerifyConsistency(cp10, open(cons.GetCheckpoint()), cons.GetHashes()); err != nil {
		t.Fatal(err)
	}

	bad := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"unknown event", func() error {
			_, err := svc.GetInclusionProof(ctx, &ledgerv1.GetInclusionProofRequest{Leaf: &ledgerv1.GetInclusionProofRequest_EventId{EventId: "nope"}})
			return err
		}, codes.NotFound},
		{"no leaf", func() error {
			_, err := svc.GetInclusionProof(ctx, &ledgerv1.GetInclusionProofRequest{})
			return err
		}, codes.InvalidArgument},
		{"leaf beyond tree size", func() error {
			_, err := svc.GetInclusionProof(ctx, &ledgerv1.GetInclusionProofRequest{Leaf: &ledgerv1.GetInclusionProofRequest_LeafIndex{LeafIndex: 12}, TreeSize: 10})
			return err
		}, codes.InvalidArgument},
		{"tree larger than the log", func() error {
			_, err := svc.GetInclusionProof(ctx, &ledgerv1.GetInclusionProofRequest{Leaf: &ledgerv1.GetInclusionProofRequest_LeafIndex{LeafIndex: 1}, TreeSize: 26})
			return err
		}, codes.InvalidArgument},
		{"old size above new", func() error {
			_, err := svc.GetConsistencyProof(ctx, &ledgerv1.GetConsistencyProofRequest{OldSize: 20, NewSize: 10})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(tc.call()); got != tc.want {
				t.Fatalf("code %v, want %v", got, tc.want)
			}
		})
	}
}

func TestIntegrityServiceEmptyLog(t *testing.T) {
	svc, _, _ := startIntegrity(t, 0)
	_, err := svc.GetCheckpoint(t.Context(), &ledgerv1.GetCheckpointRequest{})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetCheckpoint on an empty log = %v, want NotFound", err)
	}
}
