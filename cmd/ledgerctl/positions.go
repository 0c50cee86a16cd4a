package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// marshalResponse encodes a whole response as protojson with proto field names,
// indented two spaces; the whitespace is normalised (protojson varies it on purpose).
func marshalResponse(m proto.Message) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// parseAsOf reads an --as-of TIME: RFC 3339, or a plain date meaning the end of that
// day in UTC (its last nanosecond), so "--as-of 2025-06-01" includes that day.
func parseAsOf(flag, s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	t, dateOnly, err := parseTime(flag, s)
	if err != nil {
		return nil, err
	}
	if dateOnly {
		t = t.AddDate(0, 0, 1).Add(-time.Nanosecond)
	}
	return timestamppb.New(t), nil
}

// atPosition reads an --at-position commit number; 0 means the view's latest.
func atPosition(commit uint64) *ledgerv1.Position {
	if commit == 0 {
		return nil
	}
	return wire.PositionToProto(commitPosition(commit))
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := marshalResponse(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func newPositionsCmd() *cobra.Command {
	var (
		party, topic, asOf, output string
		at                         uint64
		timeout                    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "positions",
		Short: "Show each party's stance on each topic, now or as of a time and log position",
		Long: `Positions shows the stances of the positions view: the current ones, or those as
of a valid time (--as-of: RFC 3339, or a date meaning the end of that day in UTC)
and/or as the log stood at a position (--at-position: a commit number).

  -o table  without filters a party × topic matrix (SUP supports, OPP opposes,
            NEU neutral, ABS abstains, . none), topics numbered below it; with
            --party or --topic one line per stance
  -o json   the ListPositionsResponse as protojson with proto field names`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return ledger.Invalid("-o", "must be table or json, not %q", output)
			}
			t, err := parseAsOf("--as-of", asOf)
			if err != nil {
				return err
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			resp, err := c.AllPositions(ctx, &ledgerv1.ListPositionsRequest{
				Party: party, Topic: topic, AsOfTime: t, AsOfPosition: atPosition(at), PageSize: 1000,
			})
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintln(w, asOfLine(resp.GetAsOfPosition(), t))
			if party == "" && topic == "" {
				return writeMatrix(w, resp.GetPositions())
			}
			return writePositionList(w, resp.GetPositions())
		},
	}
	f := cmd.Flags()
	f.StringVar(&party, "party", "", "only this party")
	f.StringVar(&topic, "topic", "", "only this topic")
	f.StringVar(&asOf, "as-of", "", "valid time: RFC 3339 or YYYY-MM-DD (end of that day, UTC)")
	f.Uint64Var(&at, "at-position", 0, "log position (commit number); default the latest")
	f.StringVarP(&output, "output", "o", "table", "table or json")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait, e.g. for the view to reach --at-position")
	return cmd
}

// asOfLine says which (T, P) a table is for.
func asOfLine(p *ledgerv1.Position, t *timestamppb.Timestamp) string {
	valid := "latest"
	if t != nil {
		valid = "as of " + t.AsTime().UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("log position %d, valid time %s", p.GetCommit(), valid)
}

var alignmentCodes = map[ledgerv1.Alignment]string{
	ledgerv1.Alignment_ALIGNMENT_SUPPORTS: "SUP",
	ledgerv1.Alignment_ALIGNMENT_OPPOSES:  "OPP",
	ledgerv1.Alignment_ALIGNMENT_NEUTRAL:  "NEU",
	ledgerv1.Alignment_ALIGNMENT_ABSTAINS: "ABS",
}

// alignmentWord is the alignment without its prefix: "OPPOSES".
func alignmentWord(a ledgerv1.Alignment) string {
	return strings.TrimPrefix(a.String(), "ALIGNMENT_")
}

func actWord(a ledgerv1.Act) string {
	if a == ledgerv1.Act_ACT_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(a.String(), "ACT_")
}

// pad is fit (replay.go) padded with spaces to n runes.
func pad(s string, n int) string {
	s = fit(s, n)
	return s + strings.Repeat(" ", n-utf8.RuneCountInString(s))
}

// Matrix layout for 80 columns: a party column, then up to matrixTopics topic
// columns of 5 characters; more topics continue in another block.
const (
	matrixParty  = 18
	matrixTopics = 12
)

func writeMatrix(w io.Writer, rows []*ledgerv1.PartyPosition) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no positions")
		return err
	}
	var parties, topics []string
	cell := map[[2]string]string{}
	for _, r := range rows {
		if !slices.Contains(parties, r.GetParty()) {
			parties = append(parties, r.GetParty())
		}
		if !slices.Contains(topics, r.GetTopic()) {
			topics = append(topics, r.GetTopic())
		}
		cell[[2]string{r.GetParty(), r.GetTopic()}] = alignmentCodes[r.GetAlignment()]
	}
	slices.Sort(topics) // parties come sorted from the server
	var b strings.Builder
	for start := 0; start < len(topics); start += matrixTopics {
		block := topics[start:min(start+matrixTopics, len(topics))]
		b.WriteString("\n" + pad("", matrixParty))
		for i := range block {
			b.WriteString(fmt.Sprintf("%5s", strconv.Itoa(start+i+1)))
		}
		b.WriteString("\n")
		for _, p := range parties {
			line := pad(p, matrixParty)
			for _, t := range block {
				c := cell[[2]string{p, t}]
				if c == "" {
					c = "."
				}
				line += fmt.Sprintf("%5s", c)
			}
			b.WriteString(strings.TrimRight(line, " ") + "\n")
		}
	}
	b.WriteString("\ntopics:\n")
	for i, t := range topics {
		b.WriteString(fmt.Sprintf("%4d  %s\n", i+1, t))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writePositionList prints one stance per line in 80 columns.
func writePositionList(w io.Writer, rows []*ledgerv1.PartyPosition) error {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("%s %s %s %s %s\n", pad("PARTY", 16), pad("TOPIC", 28), pad("STANCE", 8), pad("SINCE", 10), "POSITION"))
	for _, r := range rows {
		b.WriteString(fmt.Sprintf("%s %s %s %s %d\n", pad(r.GetParty(), 16), pad(r.GetTopic(), 28),
			pad(alignmentWord(r.GetAlignment()), 8), r.GetOccurredAt().AsTime().UTC().Format(time.DateOnly), r.GetPosition().GetCommit()))
	}
	if len(rows) == 0 {
		b.WriteString("no positions\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func newHistoryCmd() *cobra.Command {
	var party, topic, output string
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Show how one party's stance on one topic changed, corrections included",
		Long: `History lists every contribution to (party, topic) in valid-time order: each
record's stance, its log position, the positions it counted between (a correction
ends a version and may start another), and whether the record was corrected.

  -o table  two lines per entry, 80 columns
  -o json   the GetHistoryResponse as protojson with proto field names`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if party == "" || topic == "" {
				return ledger.Invalid("--party/--topic", "both are required")
			}
			if output != "table" && output != "json" {
				return ledger.Invalid("-o", "must be table or json, not %q", output)
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.GetHistory(cmd.Context(), &ledgerv1.GetHistoryRequest{Party: party, Topic: topic})
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			return writeHistory(cmd.OutOrStdout(), party, topic, resp)
		},
	}
	f := cmd.Flags()
	f.StringVar(&party, "party", "", "the party (required)")
	f.StringVar(&topic, "topic", "", "the topic (required)")
	f.StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func writeHistory(w io.Writer, party, topic string, resp *ledgerv1.GetHistoryResponse) error {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("%s on %s, log position %d\n", party, topic, resp.GetAsOfPosition().GetCommit()))
	b.WriteString(fmt.Sprintf("%s %s %s %s %s %s\n", pad("VALID TIME", 10), pad("STANCE", 8), pad("ACT", 15), pad("RECORD", 6), pad("COUNTS", 11), "EVENT"))
	for _, e := range resp.GetEntries() {
		c := e.GetContribution()
		counts := fmt.Sprintf("%d-", c.GetSince().GetCommit())
		if e.GetUntil() != nil {
			counts += strconv.FormatUint(e.GetUntil().GetCommit(), 10)
		}
		ev := c.GetEventId()
		if e.GetCorrected() {
			ev += " *"
		}
		b.WriteString(fmt.Sprintf("%s %s %s %s %s %s\n",
			c.GetOccurredAt().AsTime().UTC().Format(time.DateOnly), pad(alignmentWord(c.GetAlignment()), 8),
			pad(actWord(c.GetAct()), 15), pad(strconv.FormatUint(c.GetPosition().GetCommit(), 10), 6),
			pad(counts, 11), strings.TrimRight(pad(ev, 25), " ")))
		if s := c.GetSummary(); s != "" {
			b.WriteString("  " + fit(s, 76) + "\n")
		}
		if u := e.GetUntilEventId(); u != "" {
			b.WriteString("  " + strings.TrimRight(pad("ended by "+u+" ("+effectWords(e.GetUntilEffects())+")", 76), " ") + "\n")
		}
	}
	b.WriteString("* the record was corrected; COUNTS: the log positions the version counts at\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func effectWords(es []ledgerv1.CorrectionEffect) string {
	var words []string
	for _, e := range es {
		words = append(words, strings.ToLower(strings.TrimPrefix(e.String(), "CORRECTION_EFFECT_")))
	}
	if len(words) == 0 {
		return "sources added"
	}
	return strings.Join(words, ", ")
}

func newSnapshotCmd() *cobra.Command {
	var (
		asOf, file string
		at         uint64
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Take the full party × topic table at (T, P) with its digest",
		Long: `Snapshot writes the GetSnapshotResponse as protojson with proto field names: the
table at valid time --as-of (default: no limit) and log position --at-position
(default: the view's latest), with its digest (docs/snapshot-digest.md) and, when
the server has one, the checkpoint covering the position. -o FILE writes it there
(and prints the digest on stderr); by default it goes to stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := parseAsOf("--as-of", asOf)
			if err != nil {
				return err
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			resp, err := c.GetSnapshot(ctx, &ledgerv1.GetSnapshotRequest{AsOfTime: t, AsOfPosition: atPosition(at)})
			if err != nil {
				return err
			}
			if file == "" || file == "-" {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			b, err := marshalResponse(resp)
			if err != nil {
				return err
			}
			if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "snapshot of %d rows at log position %d: sha256 %s\n",
				len(resp.GetRows()), resp.GetAsOfPosition().GetCommit(), resp.GetDigest())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&asOf, "as-of", "", "valid time: RFC 3339 or YYYY-MM-DD (end of that day, UTC)")
	f.Uint64Var(&at, "at-position", 0, "log position (commit number); default the latest")
	f.StringVarP(&file, "output", "o", "", "write to this file instead of stdout")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait, e.g. for the view to reach --at-position")
	return cmd
}

func newWatchCmd() *cobra.Command {
	var party, topic, output string
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Print changes of current stances as they happen, until interrupted",
		Long: `Watch prints one line per change of a current stance (optionally of one party
and/or topic) until interrupted: -o table a line for people, -o json one
WatchPositionsResponse per line (protojson, proto field names).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return ledger.Invalid("-o", "must be table or json, not %q", output)
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			w := cmd.OutOrStdout()
			for m, err := range c.WatchPositions(cmd.Context(), &ledgerv1.WatchPositionsRequest{Party: party, Topic: topic}) {
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil // interrupted
					}
					return err
				}
				if output == "json" {
					b, err := eventJSON.Marshal(m)
					if err != nil {
						return err
					}
					var line bytes.Buffer
					if err := json.Compact(&line, b); err != nil {
						return err
					}
					fmt.Fprintf(w, "%s\n", line.Bytes())
					continue
				}
				stance := "none"
				if p := m.GetPosition(); p != nil {
					stance = fmt.Sprintf("%s since %s (record %d)", alignmentWord(p.GetAlignment()),
						p.GetOccurredAt().AsTime().UTC().Format(time.DateOnly), p.GetPosition().GetCommit())
				}
				fmt.Fprintf(w, "%d %s %s %s\n", m.GetApplied().GetCommit(), pad(m.GetParty(), 16), pad(m.GetTopic(), 24), stance)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&party, "party", "", "only this party")
	f.StringVar(&topic, "topic", "", "only this topic")
	f.StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func newAdminCmd() *cobra.Command {
	admin := &cobra.Command{
		Use:   "admin",
		Short: "Administer the server's views",
	}
	admin.AddCommand(&cobra.Command{
		Use:   "rebuild PROJECTION",
		Short: "Rebuild a projection (\"positions\") from the log and switch over when done",
		Long: `Rebuild builds the named projection again from position 0 next to the live view,
which keeps serving, and switches over atomically once the build has caught up. It
waits until done; interrupting it abandons the build and leaves the live view.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			start := time.Now()
			applied, err := c.RebuildProjection(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rebuilt %s up to log position %d in %s\n", args[0], applied.Commit, time.Since(start).Round(time.Millisecond))
			return nil
		},
	})
	return admin
}
