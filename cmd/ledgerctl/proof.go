package main

import (
	"encoding/base64"
	"fmt"

	"github.com/spf13/cobra"
)

func newProofCmd() *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "proof EVENT_ID",
		Short: "Prove that a record is in the log, and verify the proof",
		Long: `Proof fetches the record stored under EVENT_ID, recomputes its Merkle leaf from its
stored bytes, fetches an inclusion proof into a signed checkpoint that covers it, and
verifies the checkpoint's signature (against --key, the log's verifier key or a file
holding it; without --key, the server's own key is trusted) and the proof. It prints
the leaf index, the checkpoint and the audit path.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			a, err := auditor(cmd, c, key)
			if err != nil {
				return err
			}
			inc, err := a.ProveEvent(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "event_id %s is leaf %d (position %s) of %s: proof verified\n",
				args[0], inc.LeafIndex, inc.Record.Position, inc.Checkpoint)
			fmt.Fprintf(w, "audit path (%d hashes, leaf to root):\n", len(inc.Proof))
			for _, h := range inc.Proof {
				fmt.Fprintf(w, "  %s\n", base64.StdEncoding.EncodeToString(h))
			}
			fmt.Fprintf(w, "checkpoint:\n%s", inc.Checkpoint.Note)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the log's verifier key, or a file holding it")
	return cmd
}
