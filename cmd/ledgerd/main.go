// Command ledgerd runs the Stance Ledger gRPC server.
//
// With no flags it keeps its data in ./data (the log in ./data/log) and listens on
// 127.0.0.1:7070. Every flag has an environment variable: --data LEDGER_DATA, --listen
// LEDGER_LISTEN, --store LEDGER_STORE, --log-level LEDGER_LOG_LEVEL, --log-format
// LEDGER_LOG_FORMAT; a flag wins over its variable. SIGINT or SIGTERM drains running
// calls and closes the store.
//
// On start it prints, on standard output:
//
//	ledgerd: listening on 127.0.0.1:7070
//	ledgerd: data directory /abs/path/data
//	ledgerd: verifier key stanceledger.example/…+…+…
//	ledgerd: ready
//
// The address is the one actually bound, so "--listen 127.0.0.1:0" prints the chosen port.
// The verifier key is the one checkpoints are signed with: give it to auditors
// ("ledgerctl verify --key", "ledgerctl audit --key"). The signing key is generated in
// <data>/keys/ on first start unless --signing-key names a file; --checkpoint-every and
// --checkpoint-interval say how often a signed checkpoint is published (also on stop).
// --metrics-listen ADDR serves Prometheus metrics on http://ADDR/metrics and prints
// "ledgerd: metrics on http://…/metrics" before "ready".
//
// Security (security.go): --tls-cert/--tls-key serve TLS, --client-ca adds mutual TLS;
// without TLS ledgerd refuses a non-loopback --listen unless --allow-plaintext.
// --tokens FILE ("NAME ROLE SHA256HEX" lines, reloaded on SIGHUP) and client
// certificates authenticate callers as writer, auditor or admin; with neither, ledgerd
// runs open, on loopback only, and says so at start. --max-request-bytes,
// --max-events-per-append, --max-streams-per-conn, --rate-per-principal/--rate-burst and
// --slow-consumer-timeout bound what callers can make it do.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "ledgerd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ledgerd:", err)
		os.Exit(1)
	}
}

// parseFlags reads the flags in args, each defaulting to its LEDGER_* variable from
// getenv, then to the built-in default. Usage goes to usage.
func parseFlags(args []string, getenv func(string) string, usage io.Writer) (config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("ledgerd", flag.ContinueOnError)
	fs.SetOutput(usage)
	var cfg config
	fs.StringVar(&cfg.Data, "data", env("LEDGER_DATA", "./data"), "data directory (env LEDGER_DATA)")
	fs.StringVar(&cfg.Listen, "listen", env("LEDGER_LISTEN", "127.0.0.1:7070"), "gRPC listen address (env LEDGER_LISTEN)")
	fs.StringVar(&cfg.Store, "store", env("LEDGER_STORE", "embedded"), "log store: embedded, or an EventStoreDB connection string such as esdb://localhost:2113?tls=false (env LEDGER_STORE)")
	fs.DurationVar(&cfg.ESDBConnectTimeout, "esdb-connect-timeout", 0, "with --store esdb://…: refuse to start when EventStoreDB does not answer within this (0: 10s)")
	fs.StringVar(&cfg.ESDBCompatListen, "esdb-compat-listen", env("LEDGER_ESDB_COMPAT_LISTEN", ""), "also serve EventStoreDB's client protocol (streams, $all, subscriptions) over the store on this address; unauthenticated: bind it to a trusted network (env LEDGER_ESDB_COMPAT_LISTEN)")
	level := fs.String("log-level", env("LEDGER_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env LEDGER_LOG_LEVEL)")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", env("LEDGER_METRICS_LISTEN", ""), "serve Prometheus metrics at http://ADDR/metrics (port 0 picks one; the bound address is printed); empty: no metrics (env LEDGER_METRICS_LISTEN)")
	format := fs.String("log-format", env("LEDGER_LOG_FORMAT", "text"), "log format: text or json (env LEDGER_LOG_FORMAT)")
	fs.StringVar(&cfg.Integrity.SigningKey, "signing-key", env("LEDGER_SIGNING_KEY", ""), "file holding the checkpoint signing key; default: generated in <data>/keys/ on first start (env LEDGER_SIGNING_KEY)")
	fs.StringVar(&cfg.Integrity.Origin, "origin", env("LEDGER_ORIGIN", ""), "the log's origin in checkpoints, e.g. stanceledger.example/prod; default: the signing key's name (env LEDGER_ORIGIN)")
	fs.Uint64Var(&cfg.Integrity.Every, "checkpoint-every", 0, "publish a signed checkpoint at least every N records (0: 1000)")
	fs.DurationVar(&cfg.Integrity.Interval, "checkpoint-interval", 0, "publish a signed checkpoint at least this often while records arrive (0: 10s)")
	addSecurityFlags(fs, env, &cfg.Security)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return config{}, fmt.Errorf("--log-level: %w", err)
	}
	switch *format {
	case "text", "json":
		cfg.LogFormat = *format
	default:
		return config{}, fmt.Errorf("--log-format: want text or json, not %q", *format)
	}
	return cfg, nil
}

// newLogger builds the process's logger on w.
func newLogger(w io.Writer, cfg config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
