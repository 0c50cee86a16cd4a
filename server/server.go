// Package server serves the ledger over gRPC: the LedgerService over a store, gRPC
// health and reflection, and the interceptors every service shares (panic recovery,
// request logging, and the one table in errors.go that maps domain errors to statuses).
//
// Handlers return the domain's sentinels and typed errors; they never build statuses
// for them. A Server is started in-process by tests and by cmd/ledgerd alike:
// New → Serve → Stop.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	"github.com/stanceledger/ledger/projections/integrityview"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/store"
)

// Config configures a Server. Only Store is required; zero fields mean defaults.
// Later services add their dependencies here as fields of their own.
type Config struct {
	// Store holds the log. Required. The Server does not close it.
	Store store.Store
	// Logger receives request logs (debug) and unexpected errors. Nil discards.
	Logger *slog.Logger
	// Limits bounds appends; zero fields take their value in ledger.DefaultLimits.
	Limits ledger.Limits
	// Now is the clock that stamps recorded_at and judges "not in the future". Nil means time.Now.
	Now func() time.Time
	// GRPCOptions are added after the server's own options (message size, interceptors),
	// e.g. transport credentials or more chained interceptors.
	GRPCOptions []grpc.ServerOption
	// Integrity, when set, is served as the IntegrityService (checkpoints and proofs).
	// The Server does not close it.
	Integrity *integrityview.View
	// Positions, when set, is served as the PositionService (positions.go).
	Positions PositionsView
	// Rebuilder, when set, is served as the AdminService (rebuild a projection).
	Rebuilder Rebuilder
	// Auth, when set, authenticates every call but health and reflection and checks
	// the caller's role (auth.go). Nil runs the ledger open: every caller may call every
	// method, as the client certificate's subject or as Anonymous.
	Auth *Auth
	// Traffic bounds request size, calls per connection, each principal's request rate
	// and slow consumers (limits.go); zero fields take defaults.
	Traffic TrafficLimits
	// Metrics, when set, receives the server's metrics (metrics.go); its interceptors
	// run outermost, so they see the status each client receives.
	Metrics *Metrics
}

// Server is the ledger's gRPC server. Its methods are safe for concurrent use.
type Server struct {
	store store.Store
	// recorded converts a stored record for the wire (wire.RecordToProto, or
	// VouchedRecordToProto for a store.ContentVoucher; see New). A record that does
	// not decode is the store's fault; wire's error then does not match
	// ledger.ErrInvalid, so the error table answers Internal.
	recorded func(store.Record) (*ledgerv1.RecordedEvent, error)
	log      *slog.Logger
	limits   ledger.Limits
	now      func() time.Time

	auth    *Auth
	traffic TrafficLimits
	rates   *rates
	calls   *connCalls
	codec   *lenientCodec

	grpc   *grpc.Server
	health *health.Server

	// stopping is closed when Stop begins; live subscriptions end on it so that a
	// graceful stop does not wait for them forever.
	stopping chan struct{}
	stopOnce sync.Once
}

// LedgerServiceName is the full name of the LedgerService, as gRPC health reports it.
const LedgerServiceName = "stanceledger.v1.LedgerService"

// New builds a Server over cfg.Store with the LedgerService, gRPC health (overall and
// LedgerServiceName, both SERVING) and reflection registered. It does not listen; call
// Serve. It fails when cfg.Store is nil.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: Config.Store is required")
	}
	s := &Server{
		store:    cfg.Store,
		log:      cfg.Logger,
		limits:   cfg.Limits,
		now:      cfg.Now,
		auth:     cfg.Auth,
		traffic:  cfg.Traffic.withDefaults(cfg.Limits),
		stopping: make(chan struct{}),
	}
	// A record is decoded for the wire with its content hash recomputed, unless the
	// store vouches for it (the embedded store: the ledger is its only writer); a
	// record that does not decode, or whose hash does not match, answers Internal.
	s.recorded = wire.RecordToProto
	if store.Vouches(cfg.Store) {
		s.recorded = wire.VouchedRecordToProto
	}
	s.rates = newRates(s.traffic.RatePerSecond, s.traffic.RateBurst)
	s.calls = &connCalls{max: s.traffic.MaxStreamsPerConn, n: map[string]int{}}
	s.codec = newLenientCodec()
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.traffic.MaxRequestBytes),
		grpc.MaxConcurrentStreams(transportStreams(s.traffic.MaxStreamsPerConn)),
		grpc.ForceServerCodecV2(s.codec),
		grpc.ChainUnaryInterceptor(append(cfg.Metrics.unaryInterceptors(), s.unaryInterceptors()...)...),
		grpc.ChainStreamInterceptor(append(cfg.Metrics.streamInterceptors(), s.streamInterceptors()...)...),
	}
	s.grpc = grpc.NewServer(append(opts, cfg.GRPCOptions...)...)
	ledgerv1.RegisterLedgerServiceServer(s.grpc, &ledgerService{s: s})
	if cfg.Integrity != nil {
		ledgerv1.RegisterIntegrityServiceServer(s.grpc, NewIntegrityService(cfg.Integrity, s.log))
	}
	if cfg.Positions != nil {
		ps := NewPositionService(cfg.Positions, s.log, s.stopping)
		if cfg.Integrity != nil {
			ps = WithSnapshotCheckpoints(ps, cfg.Integrity)
		}
		ledgerv1.RegisterPositionServiceServer(s.grpc, ps)
	}
	if cfg.Rebuilder != nil {
		ledgerv1.RegisterAdminServiceServer(s.grpc, NewAdminService(cfg.Rebuilder))
	}

	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(LedgerServiceName, healthpb.HealthCheckResponse_SERVING)
	if cfg.Integrity != nil {
		s.health.SetServingStatus(IntegrityServiceName, healthpb.HealthCheckResponse_SERVING)
	}
	if cfg.Positions != nil {
		s.health.SetServingStatus(PositionServiceName, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	cfg.Metrics.initialize(s.grpc)
	return s, nil
}

// maxRecvMsgSize lets a request of the largest allowed append through, plus room for
// the proto framing around its events, so that oversize appends are refused by
// validation (InvalidArgument naming the limit) rather than by the transport.
func maxRecvMsgSize(l ledger.Limits) int {
	n := l.MaxAppendBytes
	if n <= 0 {
		n = ledger.DefaultLimits.MaxAppendBytes
	}
	return n + n/4 + 64<<10
}

// GRPCServer returns the underlying gRPC server so that other services can register on
// it before Serve is called.
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// Health returns the gRPC health server, so that callers can report other services.
func (s *Server) Health() *health.Server { return s.health }

// Serve accepts connections on lis until Stop. It returns nil after Stop, and the
// listener's error otherwise.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("server: serve %s: %w", lis.Addr(), err)
	}
	return nil
}

// Stop reports NOT_SERVING, ends live subscriptions, and drains: it lets running
// calls finish and refuses new ones. When ctx ends first it closes every connection
// at once. It returns when the server has stopped; it does not close the store.
func (s *Server) Stop(ctx context.Context) {
	s.stopOnce.Do(func() {
		s.health.Shutdown()
		close(s.stopping)
	})
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
}
