package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
)

func newAppendCmd() *cobra.Command {
	var file, expected string
	cmd := &cobra.Command{
		Use:   "append",
		Short: "Append one event (JSON from --file or standard input)",
		Long: `Append sends one event: a JSON object in the import format (protojson of an Event with
proto field names), read from --file or standard input. An event without event_id gets a
fresh UUID, kept across retries. On success it prints the recorded event as one JSON line
(the replay -o jsonl format); "already present" on stderr means the ledger held it already.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exp, err := client.ParseExpectedRevision(expected)
			if err != nil {
				return ledger.Invalid("--expected-revision", "%v", err)
			}
			var in io.Reader = cmd.InOrStdin()
			if file != "" && file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			text, err := io.ReadAll(io.LimitReader(in, maxLineBytes+1))
			if err != nil {
				return err
			}
			if len(text) > maxLineBytes {
				return ledger.Invalid("", "input longer than %d bytes", maxLineBytes)
			}
			e, err := decodeLine(text)
			if err != nil {
				return err
			}
			if e.EventID == "" {
				e.EventID = client.NewEventID()
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.Append(cmd.Context(), e.Party, exp, e)
			if err != nil {
				return err
			}
			if res.AlreadyPresent {
				fmt.Fprintln(cmd.ErrOrStderr(), "already present")
			}
			for _, r := range res.Records {
				if err := writeRecord(cmd.OutOrStdout(), r); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "read the event from this file (default standard input)")
	cmd.Flags().StringVar(&expected, "expected-revision", "any", "any, no_stream, exists, or the stream's exact last revision")
	return cmd
}

// writeRecord writes r to w as one replay line.
func writeRecord(w io.Writer, r client.Recorded) error {
	line, err := marshalRecord(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(line, '\n'))
	return err
}
