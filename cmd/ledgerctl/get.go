package main

import (
	"github.com/spf13/cobra"
)

func newGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get EVENT_ID",
		Short: "Print the recorded event with this event_id as JSON",
		Long: `Get prints one recorded event as one JSON line, in the replay -o jsonl format: the
event in the import format plus revision, position, recorded_at, recorded_by, stream and
the stored bytes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.GetEvent(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return writeRecord(cmd.OutOrStdout(), r)
		},
	}
}
