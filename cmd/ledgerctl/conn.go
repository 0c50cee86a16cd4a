package main

import (
	"context"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/stanceledger/ledger/client"
)

// Persistent flags shared by every subcommand.
const (
	flagAddr        = "addr"
	flagDialTimeout = "dial-timeout"

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
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	return client.Dial(ctx, addr, client.WithAppendRetry(appendRetry))
}
