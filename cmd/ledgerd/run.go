package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stanceledger/ledger/projections"
	"github.com/stanceledger/ledger/projections/integrityview"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/embedded"
)

// config is ledgerd's configuration after flags and environment.
type config struct {
	// Data is the data directory; the embedded log lives in Data/log.
	Data string
	// Listen is the gRPC listen address; port 0 picks a free port.
	Listen string
	// Store chooses the log backend: "embedded", or an EventStoreDB connection string
	// ("esdb://host:2113?tls=false", "esdb+discover://…").
	Store string
	// ESDBConnectTimeout bounds the wait for EventStoreDB at start (0: 10s).
	ESDBConnectTimeout time.Duration
	// ESDBCompatListen, when set, is the address of the EventStoreDB-compatible
	// endpoint over the store (store/esdbcompat).
	ESDBCompatListen string
	LogLevel         slog.Level
	LogFormat        string
	// MetricsListen, when set, is the address of the Prometheus /metrics endpoint.
	MetricsListen string
	// Integrity configures the integrity projection and its checkpoints.
	Integrity integrityConfig
	// Security configures TLS, authentication and limits (security.go).
	Security securityConfig
}

// drainTimeout bounds the graceful stop; calls still running after it are cut off.
const drainTimeout = 10 * time.Second

// run wires the store and the server, prints the bound address, the data directory and
// "ready" on out, serves until ctx ends, then drains and closes. Logs go to logw.
func run(ctx context.Context, cfg config, out, logw io.Writer) error {
	log := newLogger(logw, cfg)
	sec, err := cfg.Security.build(cfg.Listen)
	if err != nil {
		return err
	}
	data, err := filepath.Abs(cfg.Data)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(data, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	tel, err := newTelemetry(cfg.MetricsListen != "")
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, data, log, tel.onCommit())
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing the store", "err", err)
		}
	}()

	signer, err := loadSigner(data, cfg.Integrity, log)
	if err != nil {
		return err
	}
	iview, err := integrityview.Open(filepath.Join(data, "views", integrityview.Name), signer, log,
		&integrityview.Options{Every: cfg.Integrity.Every, Interval: cfg.Integrity.Interval})
	if err != nil {
		return err
	}
	// Runs after the runner has stopped (below): publishes the last checkpoint.
	defer func() {
		if err := iview.Close(); err != nil {
			log.Error("closing the integrity view", "err", err)
		}
	}()
	positions, err := projections.OpenPositions(filepath.Join(data, "views", projections.PositionsName), log)
	if err != nil {
		return err
	}
	if store.Vouches(st) {
		positions.TrustContent() // the embedded store; EventStoreDB's records are checked
	}
	positions.LookUpRecordsIn(st) // corrections of records it no longer holds read them from the log
	// Runs after the runner has stopped (below).
	defer func() {
		if err := positions.Close(); err != nil {
			log.Error("closing the positions view", "err", err)
		}
	}()
	// The runner reports projection health to the server once the server exists.
	var srvHealth atomic.Pointer[server.Server]
	onHealth := func(name string, serving bool) {
		if s := srvHealth.Load(); s != nil {
			s.ReportProjection(name, serving)
		}
	}
	runner, err := projections.NewRunner(st, log, &projections.RunnerOptions{OnHealth: onHealth, Registerer: tel.registerer()}, iview, positions)
	if err != nil {
		return err
	}
	if err := tel.registerLag(runner, st); err != nil {
		return err
	}
	viewsCtx, stopViews := context.WithCancel(context.WithoutCancel(ctx))
	viewsDone := make(chan struct{})
	go func() {
		defer close(viewsDone)
		done := make(chan struct{})
		go func() { iview.Run(viewsCtx); close(done) }()
		runner.Run(viewsCtx)
		<-done
	}()
	defer func() {
		stopViews()
		<-viewsDone
	}()

	srv, err := server.New(server.Config{Store: st, Logger: log, Integrity: iview, Positions: positions, Rebuilder: runner, Metrics: tel.serverMetrics(),
		Auth: sec.auth, Traffic: sec.traffic, Limits: sec.limits, GRPCOptions: sec.opts})
	if err != nil {
		return err
	}
	srvHealth.Store(srv)
	for _, h := range runner.Health() {
		srv.ReportProjection(h.Name, h.Serving)
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	compat, err := serveESDBCompat(cfg.ESDBCompatListen, st, log, out)
	if err != nil {
		srv.Stop(ctx)
		<-served
		return err
	}
	defer compat()
	stopMetrics, err := tel.serve(cfg.MetricsListen, out, log)
	if err != nil {
		srv.Stop(ctx)
		<-served
		return err
	}
	defer stopMetrics()

	fmt.Fprintf(out, "ledgerd: listening on %s\n", lis.Addr())
	fmt.Fprintf(out, "ledgerd: data directory %s\n", data)
	fmt.Fprintf(out, "ledgerd: verifier key %s\n", signer.VerifierKey())
	sec.announce(out, log, cfg.Security)
	sec.reloadOnHUP(ctx, log)
	fmt.Fprintf(out, "ledgerd: ready\n")
	log.Info("ledgerd ready", "addr", lis.Addr().String(), "data", data, "store", cfg.Store)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("ledgerd stopping: draining calls", "timeout", drainTimeout)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	srv.Stop(stopCtx)
	if err := <-served; err != nil {
		return err
	}
	log.Info("ledgerd stopped")
	return nil
}

// openStore opens the log backend named by cfg.Store. This is the one place that knows
// the backends.
func openStore(ctx context.Context, cfg config, data string, log *slog.Logger, onCommit func(embedded.CommitInfo)) (store.Store, error) {
	spec := cfg.Store
	switch {
	case spec == "embedded":
		st, err := embedded.Open(filepath.Join(data, "log"), &embedded.Options{Logger: log, OnCommit: onCommit})
		if err != nil {
			return nil, fmt.Errorf("open the embedded store: %w", err)
		}
		return st, nil
	case strings.HasPrefix(spec, "esdb://"), strings.HasPrefix(spec, "esdb+discover://"):
		return openESDB(ctx, spec, cfg.ESDBConnectTimeout, log)
	}
	return nil, fmt.Errorf("--store: unknown store %q (want embedded or esdb://…)", spec)
}
