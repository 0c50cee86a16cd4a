package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// basics is the part of config that TestParseFlags checks; the other flags have tests
// of their own.
type basics struct {
	Data, Listen, Store string
	LogLevel            slog.Level
	LogFormat           string
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    basics
		wantErr string
	}{
		{name: "defaults", want: basics{Data: "./data", Listen: "127.0.0.1:7070", Store: "embedded", LogLevel: slog.LevelInfo, LogFormat: "text"}},
		{
			name: "environment",
			env: map[string]string{"LEDGER_DATA": "/var/lib/ledger", "LEDGER_LISTEN": "127.0.0.1:9000", "LEDGER_STORE": "esdb://h:2113",
				"LEDGER_LOG_LEVEL": "debug", "LEDGER_LOG_FORMAT": "json"},
			want: basics{Data: "/var/lib/ledger", Listen: "127.0.0.1:9000", Store: "esdb://h:2113", LogLevel: slog.LevelDebug, LogFormat: "json"},
		},
		{
			name: "flags win over the environment",
			args: []string{"--data", "d", "--listen=127.0.0.1:0", "--log-level", "warn"},
			env:  map[string]string{"LEDGER_DATA": "/env", "LEDGER_LISTEN": "127.0.0.1:9000"},
			want: basics{Data: "d", Listen: "127.0.0.1:0", Store: "embedded", LogLevel: slog.LevelWarn, LogFormat: "text"},
		},
		{name: "bad level", args: []string{"--log-level", "loud"}, wantErr: "--log-level"},
		{name: "bad format", env: map[string]string{"LEDGER_LOG_FORMAT": "xml"}, wantErr: "--log-format"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "unexpected arguments: serve"},
		{name: "unknown flag", args: []string{"--port", "1"}, wantErr: "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b := (basics{got.Data, got.Listen, got.Store, got.LogLevel, got.LogFormat}); b != tc.want {
				t.Errorf("got %+v, want %+v", b, tc.want)
			}
		})
	}
}

func TestOpenStoreRefusesUnknownStores(t *testing.T) {
	for _, spec := range []string{"", "bolt", "esdb:/"} {
		if st, err := openStore(t.Context(), config{Store: spec}, t.TempDir(), slog.New(slog.DiscardHandler), nil); err == nil {
			st.Close()
			t.Errorf("openStore(%q) succeeded", spec)
		}
	}
}

// startRun runs ledgerd's wiring in-process on a free port and returns the address it
// printed, a function that stops it (like SIGTERM) and returns run's error, and its output.
func startRun(t *testing.T, data string) (addr string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, config{Data: data, Listen: "127.0.0.1:0", Store: "embedded", LogLevel: slog.LevelWarn, LogFormat: "text"}, pw, io.Discard)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if a, ok := strings.CutPrefix(line, "ledgerd: listening on "); ok {
			addr = a
		}
		if line == "ledgerd: ready" {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if addr == "" || lines[len(lines)-1] != "ledgerd: ready" {
		cancel()
		t.Fatalf("run printed %q and %v, want the address and ready", lines, <-done)
	}
	abs, _ := filepath.Abs(data)
	if want := "ledgerd: data directory " + abs; !containsLine(lines, want) {
		t.Errorf("run printed %q, want the line %q", lines, want)
	}
	var stopped bool
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("run did not return within 15s of its context ending")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return addr, stop
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestRunServesAndClosesCleanly(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	addr, stop := startRun(t, data)
	if strings.HasSuffix(addr, ":0") {
		t.Errorf("printed %s, want the bound port", addr)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "stanceledger.v1.LedgerService"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", resp, err)
	}
	_, err = ledgerv1.NewLedgerServiceClient(conn).GetEvent(t.Context(), &ledgerv1.GetEventRequest{EventId: "nothing-yet"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("GetEvent on an empty ledger: %v, want NotFound", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("run after its context ended: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(data, "log")); err != nil || !fi.IsDir() {
		t.Errorf("the embedded log is not in <data>/log: %v", err)
	}
	// The store was closed: a second life opens the same directory.
	_, stop = startRun(t, data)
	if err := stop(); err != nil {
		t.Fatalf("second run: %v", err)
	}
}

func TestRunFailsOnBusyAddress(t *testing.T) {
	addr, _ := startRun(t, t.TempDir())
	err := run(t.Context(), config{Data: t.TempDir(), Listen: addr, Store: "embedded", LogFormat: "text"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("run on a busy address: %v, want a listen error", err)
	}
}
