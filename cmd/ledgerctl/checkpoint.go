package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
	"github.com/stanceledger/ledger/integrity"
)

// auditor returns an Auditor trusting --key, or, without it, the server's own key (trust
// on first use, said on stderr).
func auditor(cmd *cobra.Command, c *client.Client, key string) (*client.Auditor, error) {
	if key == "" {
		k, err := c.VerifierKey(cmd.Context())
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "ledgerctl: no --key: trusting the server's own key %s\n", k)
		return c.Auditor(k, nil)
	}
	text, err := verifierText(key)
	if err != nil {
		return nil, err
	}
	return c.Auditor(text, nil)
}

// verifierText returns the key text of --key, which is the key or a file holding it.
func verifierText(key string) (string, error) {
	if _, err := integrity.NewVerifier(key); err == nil {
		return strings.TrimSpace(key), nil
	}
	b, err := os.ReadFile(key)
	if err != nil {
		return "", fmt.Errorf("%w: %q is neither a verifier key nor a readable file", integrity.ErrBadKey, key)
	}
	return strings.TrimSpace(string(b)), nil
}

func newCheckpointCmd() *cobra.Command {
	var output, key, covering string
	cmd := &cobra.Command{
		Use:   "checkpoint [-o FILE]",
		Short: "Fetch, verify and print the log's latest signed checkpoint",
		Long: `Checkpoint fetches the latest signed checkpoint (or, with --covering, the smallest
covering a log position), verifies its signature against --key (the log's verifier key,
or a file holding it; without --key, the server's own key is trusted), and prints the
signed note, or writes it to FILE. "ledgerctl verify" checks an export against it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			a, err := auditor(cmd, c, key)
			if err != nil {
				return err
			}
			var cp *integrity.Checkpoint
			if covering != "" {
				commit, err := strconv.ParseUint(covering, 10, 64)
				if err != nil {
					return ledger.Invalid("--covering", "not a commit number: %q", covering)
				}
				cp, err = a.Covering(cmd.Context(), commitPosition(commit))
				if err != nil {
					return err
				}
			} else if cp, err = a.Latest(cmd.Context()); err != nil {
				return err
			}
			if output == "" || output == "-" {
				_, err = cmd.OutOrStdout().Write(cp.Note)
				return err
			}
			if err := os.WriteFile(output, cp.Note, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "checkpoint of %d records written to %s\n", cp.Size, output)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the signed checkpoint to this file")
	cmd.Flags().StringVar(&key, "key", "", "the log's verifier key, or a file holding it")
	cmd.Flags().StringVar(&covering, "covering", "", "the smallest checkpoint covering this commit number")
	return cmd
}

func newVerifierKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verifier-key",
		Short: "Print the verifier key the server signs checkpoints with",
		Long: `Verifier-key prints the key the server says its checkpoints are signed with, in note
format. Compare it with the key ledgerd printed at start before trusting it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			k, err := c.VerifierKey(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), k)
			return nil
		},
	}
}
