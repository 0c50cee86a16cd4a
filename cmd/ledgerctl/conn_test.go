package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestConnSecurityFlags checks the refusals that happen before any dial: plaintext off
// loopback, --insecure with TLS files, and that --help never prints LEDGER_TOKEN.
func TestConnSecurityFlags(t *testing.T) {
	t.Setenv(envToken, "t0ken-fr0m-the-envir0nment")
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--addr", "192.0.2.1:7070", "--insecure", "get", "x"}, "only allowed for a loopback address"},
		{[]string{"--addr", "127.0.0.1:1", "--insecure", "--tls-ca", "ca.pem", "get", "x"}, "contradicts"},
		{[]string{"--addr", "127.0.0.1:1", "--tls-ca", "/nonexistent/ca.pem", "get", "x"}, "/nonexistent/ca.pem"},
	} {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(tc.args)
		err := cmd.ExecuteContext(t.Context())
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.err)
		}
	}
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "t0ken-fr0m") || !strings.Contains(out.String(), "--token") {
		t.Errorf("help prints the token, or no --token flag:\n%s", out.String())
	}
}
