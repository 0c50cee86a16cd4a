package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/esdb"
	"github.com/stanceledger/ledger/store/esdbcompat"
)

// openESDB opens the EventStoreDB backend. It refuses to start when no node answers
// within timeout, and warns when the connection's user looks able to delete.
func openESDB(ctx context.Context, conn string, timeout time.Duration, log *slog.Logger) (store.Store, error) {
	st, err := esdb.Open(ctx, conn, &esdb.Options{Logger: log, ConnectTimeout: timeout})
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	risks, err := st.DeleteRisks(ctx)
	if err != nil {
		log.Warn("could not check whether the EventStoreDB user may delete streams", "err", err)
	}
	for _, r := range risks {
		log.Warn("EventStoreDB user may delete ledger streams; see docs/eventstoredb.md (locking EventStoreDB down)", "why", r)
	}
	return st, nil
}

// serveESDBCompat serves the EventStoreDB-compatible endpoint over st on addr, when
// addr is set, and prints the bound address on out. The returned function stops it.
func serveESDBCompat(addr string, st store.Store, log *slog.Logger, out io.Writer) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--esdb-compat-listen: %w", err)
	}
	// A panic in a handler becomes Internal for that call instead of ending ledgerd.
	recovered := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.Error("panic in an EventStoreDB-compatible handler", "panic", p)
		return status.Error(codes.Internal, "internal error")
	})
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(recovered)),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(recovered)),
	)
	esdbcompat.New(st, &esdbcompat.Options{Logger: log}).Register(g)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := g.Serve(lis); err != nil {
			log.Error("EventStoreDB-compatible endpoint stopped", "err", err)
		}
	}()
	fmt.Fprintf(out, "ledgerd: esdb-compat listening on %s\n", lis.Addr())
	log.Info("EventStoreDB-compatible endpoint serving", "addr", lis.Addr().String())
	return func() {
		// Subscriptions never end by themselves: a graceful stop would wait forever.
		g.Stop()
		<-done
	}, nil
}
