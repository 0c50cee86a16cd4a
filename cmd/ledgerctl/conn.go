package main

import (
	"context"
	"os"
	"time"

	"github.com/spf13/cobra"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
)

// Persistent flags shared by every subcommand.
const (
	flagAddr        = "addr"
	flagDialTimeout = "dial-timeout"
	flagTLSCA       = "tls-ca"
	flagTLSCert     = "tls-cert"
	flagTLSKey      = "tls-key"
	flagInsecure    = "insecure"
	flagToken       = "token"
	// envToken is read when --token is not given. Its value is never a flag default,
	// so that --help does not print it.
	envToken = "LEDGER_TOKEN"

	defaultAddr = "127.0.0.1:7070"
	// envAddr overrides defaultAddr; --addr overrides both.
	envAddr = "LEDGER_ADDR"
)

// appendRetry is how ledgerctl retries an append the server could not take (Unavailable).
// Safe: every event keeps its event_id across retries.
var appendRetry = client.RetryPolicy{MaxAttempts: 5, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}

// addConnFlags adds the connection flags to root as persistent flags.
func addConnFlags(root *cobra.Command) {
	addr := defaultAddr
	if v := os.Getenv(envAddr); v != "" {
		addr = v
	}
	pf := root.PersistentFlags()
	pf.String(flagAddr, addr, "server address host:port (env "+envAddr+")")
	pf.Duration(flagDialTimeout, 5*time.Second, "how long to wait for the connection")
	pf.String(flagTLSCA, "", "PEM CA bundle that signs the server's certificate (TLS; default: the system's roots)")
	pf.String(flagTLSCert, "", "PEM client certificate for mutual TLS (with --tls-key)")
	pf.String(flagTLSKey, "", "PEM key of --tls-cert")
	pf.Bool(flagInsecure, false, "plaintext, no TLS: only to a loopback address (the default for one)")
	pf.String(flagToken, "", "bearer token sent on every call (env "+envToken+")")
}

// connOptions turns the security flags into client options. Without --tls-* or
// --insecure, a loopback address gets plaintext and any other TLS with the system's roots.
func connOptions(cmd *cobra.Command, addr string) ([]client.Option, error) {
	f := cmd.Flags()
	ca, _ := f.GetString(flagTLSCA)
	cert, _ := f.GetString(flagTLSCert)
	key, _ := f.GetString(flagTLSKey)
	plain, _ := f.GetBool(flagInsecure)
	token, _ := f.GetString(flagToken)
	if token == "" {
		token = os.Getenv(envToken)
	}
	var opts []client.Option
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	useTLS := ca != "" || cert != "" || key != ""
	switch {
	case plain && useTLS:
		return nil, ledger.Invalid("--"+flagInsecure, "contradicts --%s/--%s/--%s", flagTLSCA, flagTLSCert, flagTLSKey)
	case plain && !client.IsLoopback(addr):
		return nil, ledger.Invalid("--"+flagInsecure, "only allowed for a loopback address, not %s", addr)
	case plain:
	case useTLS || !client.IsLoopback(addr):
		opts = append(opts, client.WithTLS(client.TLSOptions{CAFile: ca, CertFile: cert, KeyFile: key}))
	}
	return opts, nil
}

// dial connects to the server the persistent flags name. The caller closes the client.
func dial(cmd *cobra.Command) (*client.Client, error) {
	addr, err := cmd.Flags().GetString(flagAddr)
	if err != nil {
		return nil, err
	}
	timeout, err := cmd.Flags().GetDuration(flagDialTimeout)
	if err != nil {
		return nil, err
	}
	opts, err := connOptions(cmd, addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	return client.Dial(ctx, addr, append(opts, client.WithAppendRetry(appendRetry))...)
}
