package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
)

func newReplayCmd() *cobra.Command {
	var (
		from           uint64
		parties, types []string
		since, until   string
		follow         bool
		output         string
	)
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Print the log in order, optionally following it",
		Long: `Replay prints the ledger's records in log order.

  -o table  one record per line, 80 columns: position, occurred date, party, type, gist
  -o jsonl  one JSON object per line: the event in the import format plus revision,
            position {"commit","prepare"}, recorded_at, recorded_by, stream and stored
            {event_type, data, metadata} (the exact stored bytes, base64). An export
            re-imports cleanly and lets an auditor recompute the Merkle leaves.

--from is a commit number (inclusive). --since and --until bound occurred_at (valid
time) and take RFC 3339 times or dates; --until is exclusive, but a date includes its
whole day. --follow keeps printing new records until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var f client.Filter
			f.Parties = parties
			for _, t := range types {
				rt, err := parseRecordType("--type", t)
				if err != nil {
					return err
				}
				f.Types = append(f.Types, rt)
			}
			var err error
			if since != "" {
				if f.Since, err = parseSince("--since", since); err != nil {
					return err
				}
			}
			if until != "" {
				if f.Until, err = parseUntil("--until", until); err != nil {
					return err
				}
			}
			var out recordWriter
			switch output {
			case "jsonl":
				out = &jsonlWriter{w: cmd.OutOrStdout()}
			case "table":
				out = &tableWriter{w: cmd.OutOrStdout()}
			default:
				return ledger.Invalid("-o", "must be jsonl or table, not %q", output)
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			var pos ledger.Position
			if from > 0 {
				pos = commitPosition(from)
			}
			if !follow {
				for r, err := range c.ReadAll(ctx, pos, f) {
					if err != nil {
						return err
					}
					if err := out.write(r); err != nil {
						return err
					}
				}
				return out.done()
			}
			for m, err := range c.Subscribe(ctx, pos, f) {
				if err != nil {
					if ctx.Err() != nil && errors.Is(err, context.Canceled) {
						return out.done() // interrupted: the normal end of --follow
					}
					return err
				}
				if m.CaughtUp {
					continue
				}
				if err := out.write(m.Record); err != nil {
					return err
				}
			}
			return out.done()
		},
	}
	fl := cmd.Flags()
	fl.Uint64Var(&from, "from", 0, "first log position (commit number, inclusive)")
	fl.StringArrayVar(&parties, "party", nil, "only this party (repeatable)")
	fl.StringArrayVar(&types, "type", nil, "only this record type: report_published, statement_issued, mandate_vetoed, record_corrected (repeatable)")
	fl.StringVar(&since, "since", "", "only events that occurred at or after TIME (RFC 3339 or YYYY-MM-DD)")
	fl.StringVar(&until, "until", "", "only events that occurred before TIME (RFC 3339, or YYYY-MM-DD: through that day)")
	fl.BoolVar(&follow, "follow", false, "after the stored records, print new ones as they are appended, until interrupted")
	fl.StringVarP(&output, "output", "o", "table", "output format: table or jsonl")
	return cmd
}

// recordWriter prints replayed records in one output format.
type recordWriter interface {
	write(client.Recorded) error
	// done is called once after the last record.
	done() error
}

type jsonlWriter struct{ w io.Writer }

func (j *jsonlWriter) write(r client.Recorded) error { return writeRecord(j.w, r) }
func (j *jsonlWriter) done() error                   { return nil }

// tableWriter prints an 80-column list. The header goes out with the first record, so
// a follower shows it once; an empty replay prints "no records".
type tableWriter struct {
	w    io.Writer
	rows int
}

// Column widths of the table; the gist takes what is left of 80 columns.
const (
	colPos   = 7
	colDate  = 10
	colParty = 12
	colType  = 10
	colGist  = 80 - colPos - colDate - colParty - colType - 4
)

func (t *tableWriter) write(r client.Recorded) error {
	if t.rows == 0 {
		if err := t.line("POS", "OCCURRED", "PARTY", "TYPE", "GIST"); err != nil {
			return err
		}
	}
	t.rows++
	return t.line(fmt.Sprint(r.Position.Commit), r.Event.OccurredAt.UTC().Format("2006-01-02"),
		r.Event.Party, shortType(r.Event.Type()), gist(r.Event))
}

func (t *tableWriter) line(pos, date, party, typ, g string) error {
	s := fmt.Sprintf("%-*s %-*s %-*s %-*s %s",
		colPos, fit(pos, colPos), colDate, fit(date, colDate), colParty, fit(party, colParty),
		colType, fit(typ, colType), fit(g, colGist))
	_, err := fmt.Fprintln(t.w, strings.TrimRight(s, " "))
	return err
}

func (t *tableWriter) done() error {
	if t.rows == 0 {
		_, err := fmt.Fprintln(t.w, "no records")
		return err
	}
	return nil
}

func shortType(t ledger.RecordType) string {
	switch t {
	case ledger.TypeReportPublished:
		return "report"
	case ledger.TypeStatementIssued:
		return "statement"
	case ledger.TypeMandateVetoed:
		return "veto"
	case ledger.TypeRecordCorrected:
		return "correction"
	}
	return "?"
}

// gist says in a few words what a record is about.
func gist(e *ledger.Event) string {
	switch b := e.Body.(type) {
	case *ledger.ReportPublished:
		if b.Title != "" {
			return b.Title
		}
		return b.ReportID
	case *ledger.StatementIssued:
		return stancesGist(b.Stances)
	case *ledger.MandateVetoed:
		return "vetoed " + b.Mandate
	case *ledger.RecordCorrected:
		verb := "corrects "
		if b.Withdraw {
			verb = "withdraws "
		}
		return verb + b.CorrectsEventID + ": " + b.Reason
	}
	return ""
}

// stancesGist names the first stance ("opposes msmt-legitimacy") and how many follow.
func stancesGist(list []ledger.Stance) string {
	if len(list) == 0 {
		return ""
	}
	s := strings.ToLower(strings.TrimPrefix(list[0].Alignment.String(), "ALIGNMENT_")) + " " + list[0].Topic
	if len(list) > 1 {
		s += fmt.Sprintf(" +%d", len(list)-1)
	}
	return s
}

// fit cuts s to at most n runes, marking a cut with "…", and removes line breaks.
func fit(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
