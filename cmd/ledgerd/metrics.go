package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stanceledger/ledger/projections"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/embedded"
)

// telemetry is ledgerd's metrics: one registry of its own (never the global one)
// with the process and Go runtime collectors, the server's metrics, the store's
// group commits and the projections'. A nil *telemetry (no --metrics-listen) records
// nothing.
type telemetry struct {
	reg    *prometheus.Registry
	server *server.Metrics
}

func newTelemetry(enabled bool) (*telemetry, error) {
	if !enabled {
		return nil, nil
	}
	reg := prometheus.NewRegistry()
	if err := errors.Join(
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
		reg.Register(collectors.NewGoCollector()),
	); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m, err := server.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &telemetry{reg: reg, server: m}, nil
}

// serverMetrics returns the server's metrics, nil when disabled.
func (t *telemetry) serverMetrics() *server.Metrics {
	if t == nil {
		return nil
	}
	return t.server
}

// onCommit is the embedded store's group-commit hook, nil when disabled.
func (t *telemetry) onCommit() func(embedded.CommitInfo) {
	if t == nil {
		return nil
	}
	return func(c embedded.CommitInfo) {
		if c.Err == nil {
			t.server.ObserveGroupCommit(c.Appends, c.Records, c.Sync)
		}
	}
}

// registerer is where the projection runner registers, nil when disabled.
func (t *telemetry) registerer() prometheus.Registerer {
	if t == nil {
		return nil
	}
	return t.reg
}

// registerLag adds the projections' lag behind the log head, when the store can say
// where its head is (the embedded store: dense positions, so the lag is in records).
func (t *telemetry) registerLag(r *projections.Runner, st store.Store) error {
	if t == nil {
		return nil
	}
	es, ok := st.(*embedded.Store)
	if !ok {
		return nil
	}
	return r.RegisterLag(t.reg, func() uint64 { return es.Stats().LastPosition })
}

// serveMetrics serves /metrics on addr, prints the bound address on out, and returns
// a function that stops the HTTP server.
func (t *telemetry) serve(addr string, out io.Writer, log *slog.Logger) (stop func(), err error) {
	if t == nil {
		return func() {}, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{Registry: t.reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	fmt.Fprintf(out, "ledgerd: metrics on http://%s/metrics\n", lis.Addr())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
