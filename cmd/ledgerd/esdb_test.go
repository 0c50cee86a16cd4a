package main

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// TestRunRefusesUnreachableESDB: with --store esdb:// and no node answering, ledgerd
// refuses to start within its bound, naming the address.
func TestRunRefusesUnreachableESDB(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	start := time.Now()
	err = run(t.Context(), config{
		Data: t.TempDir(), Listen: "127.0.0.1:0", Store: "esdb://" + addr + "?tls=false",
		ESDBConnectTimeout: time.Second, LogLevel: slog.LevelError, LogFormat: "text",
	}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("run = %v, want a refusal naming %s", err, addr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("refusal took %s with a 1s bound", d)
	}
}
