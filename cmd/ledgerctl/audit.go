package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/stanceledger/ledger/integrity"
)

func newAuditCmd() *cobra.Command {
	var key, state string
	cmd := &cobra.Command{
		Use:   "audit --key KEY --state FILE",
		Short: "Check that the log only grew since the checkpoint saved in FILE",
		Long: `Audit is what a witness or a cron job runs. It fetches the server's latest signed
checkpoint, verifies its signature against KEY (the log's verifier key, or a file
holding it), proves it consistent with the checkpoint saved in FILE by the previous
run, and saves the new one in FILE. A log that rewrote, removed or forked its history
since then fails with the evidence (both checkpoints); so does a server that went back
to an older checkpoint. The first run (FILE absent) only saves.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			text, err := verifierText(key)
			if err != nil {
				return err
			}
			v, err := integrity.NewVerifier(text)
			if err != nil {
				return err
			}
			var last *integrity.Checkpoint
			saved, err := os.ReadFile(state)
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				return err
			default:
				if last, err = integrity.OpenCheckpoint(saved, v); err != nil {
					return fmt.Errorf("%s: %w", state, err)
				}
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			a, err := c.Auditor(text, last)
			if err != nil {
				return err
			}
			cp, err := a.Latest(cmd.Context())
			if err != nil {
				return err
			}
			if err := writeFileAtomic(state, cp.Note); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if last == nil {
				fmt.Fprintf(w, "first checkpoint saved: %s\n", cp)
			} else {
				fmt.Fprintf(w, "consistent: %d → %d records; saved %s\n", last.Size, cp.Size, cp)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the log's verifier key, or a file holding it")
	cmd.Flags().StringVar(&state, "state", "", "the file holding the last verified checkpoint")
	for _, f := range []string{"key", "state"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

// writeFileAtomic replaces name with b so that a crash leaves the old or the new file.
func writeFileAtomic(name string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), filepath.Base(name)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
