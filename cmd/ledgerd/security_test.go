package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7070": true, "127.0.0.2:0": true, "[::1]:7070": true, "localhost:7070": true,
		":7070": false, "0.0.0.0:7070": false, "[::]:7070": false, "10.0.0.5:7070": false, "ledger.example:7070": false, "garbage": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestSecurityBuild(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	sum := sha256.Sum256([]byte("s3cret"))
	if err := os.WriteFile(tokens, []byte("# ops\nalice admin "+hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken")
	if err := os.WriteFile(broken, []byte("alice admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		listen string
		cfg    securityConfig
		err    string // "" for success
		open   bool
	}{
		{name: "loopback open", listen: "127.0.0.1:0", open: true},
		{name: "loopback with tokens", listen: "127.0.0.1:0", cfg: securityConfig{Tokens: tokens}},
		{name: "public plaintext refused", listen: "0.0.0.0:7070", cfg: securityConfig{Tokens: tokens}, err: "refusing to listen on 0.0.0.0:7070 without TLS"},
		{name: "public plaintext allowed", listen: ":7070", cfg: securityConfig{Tokens: tokens, AllowPlaintext: true}},
		{name: "public open refused", listen: ":7070", cfg: securityConfig{AllowPlaintext: true}, err: "refusing to serve :7070 open"},
		{name: "cert without key", listen: "127.0.0.1:0", cfg: securityConfig{TLSCert: "c.pem"}, err: "go together"},
		{name: "client CA without TLS", listen: "127.0.0.1:0", cfg: securityConfig{ClientCA: "ca.pem"}, err: "--client-ca needs TLS"},
		{name: "missing TLS files", listen: "127.0.0.1:0", cfg: securityConfig{TLSCert: filepath.Join(dir, "no.crt"), TLSKey: filepath.Join(dir, "no.key")}, err: "no.crt"},
		{name: "broken tokens file", listen: "127.0.0.1:0", cfg: securityConfig{Tokens: broken}, err: "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.cfg.build(tc.listen)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.open != tc.open || (s.auth == nil) != tc.open {
				t.Errorf("open %v (auth %v), want open %v", s.open, s.auth != nil, tc.open)
			}
		})
	}
}

func TestSecurityFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"--tokens", "/etc/ledger/tokens", "--max-events-per-append", "10", "--rate-per-principal", "-1", "--slow-consumer-timeout", "5s"},
		func(string) string { return "" }, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Security
	if s.Tokens != "/etc/ledger/tokens" || s.MaxEventsPerAppend != 10 || s.RatePerPrincipal != -1 || s.SlowConsumerTimeout.String() != "5s" || s.MaxStreamsPerConn != 0 {
		t.Errorf("parsed %+v", s)
	}
}
