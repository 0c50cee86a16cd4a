// Command ledgerctl talks to a Stance Ledger server: it imports and appends records,
// gets one by event_id, and replays the log.
//
// Every subcommand lives in its own file and is added to the root in newRootCmd; the
// persistent flags and the dial helper shared by all of them are in conn.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		printError(os.Stderr, err)
		os.Exit(1)
	}
}

// newRootCmd builds the ledgerctl command tree. Each subcommand comes from its own file.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "ledgerctl",
		Short: "Talk to a Stance Ledger server",
		Long: `ledgerctl talks to a Stance Ledger server (ledgerd): import JSON Lines of records,
append one record, get a record by event_id, and replay the log.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addConnFlags(root)
	root.AddCommand(
		newImportCmd(),
		newAppendCmd(),
		newGetCmd(),
		newReplayCmd(),
		newCheckpointCmd(),
		newProofCmd(),
		newVerifierKeyCmd(),
		newVerifyCmd(),
		newAuditCmd(),
		newPositionsCmd(),
		newHistoryCmd(),
		newSnapshotCmd(),
		newWatchCmd(),
		newAdminCmd(),
		newBenchCmd(),
		newSoakCmd(),
	)
	return root
}

// printError writes err to w as "ledgerctl: Code: message". Errors from the server carry
// their gRPC code already (client.Error); local errors get the code the server would
// have answered, when there is one.
func printError(w io.Writer, err error) {
	msg := err.Error()
	var ce *client.Error
	if !errors.As(err, &ce) {
		if code := localCode(err); code != "" {
			msg = code + ": " + msg
		}
	}
	fmt.Fprintln(w, "ledgerctl: "+msg)
}

// localCode names the gRPC code of the same kind as an error raised by ledgerctl
// itself, or "" when there is none. (Only server and client may import gRPC; the names
// are codes.Code's.)
func localCode(err error) string {
	switch {
	case errors.Is(err, ledger.ErrInvalid):
		return "InvalidArgument"
	case errors.Is(err, ledger.ErrUnavailable):
		return "Unavailable"
	case errors.Is(err, ledger.ErrNotFound):
		return "NotFound"
	case errors.Is(err, context.DeadlineExceeded):
		return "DeadlineExceeded"
	case errors.Is(err, context.Canceled):
		return "Canceled"
	}
	return ""
}
