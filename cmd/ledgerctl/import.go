package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/proto"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
	"github.com/stanceledger/ledger/internal/wire"
)

// maxLineBytes bounds one JSON line. An event is at most 64 KiB stored; its JSON line,
// with a replay export's base64 stored bytes, is a few times that.
const maxLineBytes = 16 << 20

func newImportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE|-",
		Short: "Import JSON Lines of events (one protojson Event per line)",
		Long: `Import reads JSON Lines, one event per line: the protojson of an Event with proto
field names, e.g.
  {"event_id":"…","party":"dprk","occurred_at":"2025-06-01T00:00:00Z","statement_issued":{…}}
Lines written by "replay -o jsonl" are accepted too; their record keys (revision,
position, recorded_at, recorded_by, stream, stored) are ignored. Blank lines are skipped.

Every line is validated before anything is sent; if any is invalid the whole file is
refused, naming each bad line and field. Consecutive lines of one party are appended
together. Importing a file again adds nothing: events whose event_id is already stored
with the same content count as already present.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, name, cleanup, err := openImport(cmd, args[0])
			if err != nil {
				return err
			}
			defer cleanup()
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			imp := &importer{c: c, name: name, now: time.Now()}
			n, err := imp.check(cmd.Context(), in)
			if err != nil {
				return err
			}
			if _, err := in.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if w, ok := terminal(cmd.ErrOrStderr()); ok && n > 0 {
				imp.bar = progressbar.NewOptions64(int64(n),
					progressbar.OptionSetWriter(w),
					progressbar.OptionSetDescription("importing"),
					progressbar.OptionShowCount(),
					progressbar.OptionClearOnFinish())
			}
			err = imp.load(cmd.Context(), in)
			if imp.bar != nil {
				imp.bar.Exit()
			}
			if err != nil {
				return fmt.Errorf("%s: %w (imported %d, already present %d before the failure)", name, err, imp.imported, imp.present)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d, already present %d\n", imp.imported, imp.present)
			return nil
		},
	}
}

// openImport opens the file to import. "-" is standard input, copied to a temporary
// file first: the import reads its input twice (validate, then append) and never holds
// it all in memory.
func openImport(cmd *cobra.Command, arg string) (f *os.File, name string, cleanup func(), err error) {
	if arg != "-" {
		f, err := os.Open(arg)
		if err != nil {
			return nil, "", nil, err
		}
		return f, arg, func() { f.Close() }, nil
	}
	f, err = os.CreateTemp("", "ledgerctl-import-*.jsonl")
	if err != nil {
		return nil, "", nil, err
	}
	cleanup = func() {
		f.Close()
		os.Remove(f.Name())
	}
	if _, err := io.Copy(f, cmd.InOrStdin()); err != nil {
		cleanup()
		return nil, "", nil, fmt.Errorf("read standard input: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return nil, "", nil, err
	}
	return f, "stdin", cleanup, nil
}

// terminal returns w as a file when it is a terminal.
func terminal(w io.Writer) (*os.File, bool) {
	f, ok := w.(*os.File)
	return f, ok && term.IsTerminal(int(f.Fd()))
}

// importer imports one JSON Lines input: check validates all of it, load appends it.
type importer struct {
	c    *client.Client
	name string
	now  time.Time
	bar  *progressbar.ProgressBar

	// seen maps each event_id of the input to where it is, for duplicates and for
	// corrections of earlier lines.
	seen map[string]seenEvent

	imported, present int
}

type seenEvent struct {
	line  int
	party string
	typ   ledger.RecordType
}

// check validates every line of r as the server would (ledger.ValidateEvent, then
// ledger.ValidateAppend for sizes and for what a correction names: an earlier line of
// the input or a record already in the ledger). It returns the number of events, or a
// *ledger.ValidationError whose fields name each bad line.
func (imp *importer) check(ctx context.Context, r io.Reader) (int, error) {
	imp.seen = make(map[string]seenEvent)
	verr := &ledger.ValidationError{}
	add := func(line int, err error) error {
		var v *ledger.ValidationError
		if !errors.As(err, &v) {
			return fmt.Errorf("line %d: %w", line, err)
		}
		for _, fv := range v.Violations {
			field := strings.TrimPrefix(strings.TrimPrefix(fv.Field, "events[0]"), ".")
			if field == "" {
				field = fmt.Sprintf("line %d", line)
			} else {
				field = fmt.Sprintf("line %d: %s", line, field)
			}
			verr.Violations = append(verr.Violations, ledger.FieldViolation{Field: field, Description: fv.Description})
		}
		return nil
	}
	n := 0
	err := eachLine(r, func(line int, text []byte) error {
		if len(verr.Violations) >= ledger.MaxViolations {
			return errStop
		}
		e, err := decodeLine(text)
		if err != nil {
			return add(line, err)
		}
		if prev, dup := imp.seen[e.EventID]; dup {
			return add(line, ledger.Invalid("event_id", "duplicate of line %d", prev.line))
		}
		if err := ledger.ValidateEvent(e, imp.now); err != nil {
			return add(line, err)
		}
		if err := ledger.ValidateAppend(ctx, e.Party, []*ledger.Event{e}, imp.now, ledger.DefaultLimits, imp.lookup); err != nil {
			return add(line, err)
		}
		imp.seen[e.EventID] = seenEvent{line: line, party: e.Party, typ: e.Type()}
		n++
		return nil
	})
	if err != nil && err != errStop {
		return 0, err
	}
	if len(verr.Violations) > 0 {
		return 0, fmt.Errorf("%s refused, nothing imported: %w", imp.name, verr)
	}
	return n, nil
}

// lookup resolves what a correction names: an earlier line of the input, else the ledger.
func (imp *importer) lookup(ctx context.Context, eventID string) (string, ledger.RecordType, bool, error) {
	if s, ok := imp.seen[eventID]; ok {
		return s.party, s.typ, true, nil
	}
	r, err := imp.c.GetEvent(ctx, eventID)
	if errors.Is(err, ledger.ErrNotFound) {
		return "", ledger.TypeUnspecified, false, nil
	}
	if err != nil {
		return "", ledger.TypeUnspecified, false, err
	}
	return r.Event.Party, r.Event.Type(), true, nil
}

// batch is a run of consecutive lines of one party, appended together. A correction
// may name an earlier event of its own batch: the server resolves it within the append.
type batch struct {
	party     string
	first     int // line of the first event
	last      int
	events    []*ledger.Event
	stored    int // the server's size measure (ledger.Limits)
	wireBytes int
}

// load appends the (checked) events of r: consecutive lines of one party together, in
// batches within ledger.DefaultLimits, each with AnyRevision.
func (imp *importer) load(ctx context.Context, r io.Reader) error {
	limits := ledger.DefaultLimits
	b := &batch{}
	err := eachLine(r, func(line int, text []byte) error {
		e, err := decodeLine(text)
		if err != nil {
			return fmt.Errorf("line %d changed since it was checked: %w", line, err)
		}
		enc, err := ledger.Encode(e, time.Time{}, "")
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		stored := len(enc.Data) + len(enc.Metadata)
		wireBytes := proto.Size(wire.EventToProto(e))
		if len(b.events) > 0 && (e.Party != b.party ||
			len(b.events) == limits.MaxEvents ||
			b.stored+stored > limits.MaxAppendBytes ||
			b.wireBytes+wireBytes > limits.MaxAppendBytes) {
			if err := imp.flush(ctx, b); err != nil {
				return err
			}
			b = &batch{}
		}
		if len(b.events) == 0 {
			b.party, b.first = e.Party, line
		}
		b.events = append(b.events, e)
		b.last = line
		b.stored += stored
		b.wireBytes += wireBytes
		return nil
	})
	if err != nil {
		return err
	}
	if len(b.events) > 0 {
		return imp.flush(ctx, b)
	}
	return nil
}

// flush appends b. An append refused because it mixes stored and new event_ids (an
// import that stopped half way, or a file that grew) is sent again one event at a time.
func (imp *importer) flush(ctx context.Context, b *batch) error {
	res, err := imp.c.Append(ctx, b.party, ledger.AnyRevision, b.events...)
	if errors.Is(err, ledger.ErrDuplicateEvent) && len(b.events) > 1 {
		for i, e := range b.events {
			res, err := imp.c.Append(ctx, b.party, ledger.AnyRevision, e)
			if err != nil {
				return fmt.Errorf("event %q (party %s, lines %d–%d, event %d): %w", e.EventID, b.party, b.first, b.last, i+1, err)
			}
			imp.count(res.AlreadyPresent, 1)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("lines %d–%d (party %s): %w", b.first, b.last, b.party, err)
	}
	imp.count(res.AlreadyPresent, len(b.events))
	return nil
}

func (imp *importer) count(present bool, n int) {
	if present {
		imp.present += n
	} else {
		imp.imported += n
	}
	if imp.bar != nil {
		imp.bar.Add(n)
	}
}

// errStop ends eachLine early without an error.
var errStop = errors.New("stop")

// eachLine calls fn with every non-blank line of r and its 1-based number, until fn
// fails.
func eachLine(r io.Reader, fn func(line int, text []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		if err := fn(line, text); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("line %d: longer than %d bytes", line+1, maxLineBytes)
		}
		return err
	}
	return nil
}

// decodeLine decodes one JSON line into an event. Errors match ledger.ErrInvalid.
func decodeLine(text []byte) (*ledger.Event, error) {
	pb, err := unmarshalEvent(text)
	if err != nil {
		return nil, err
	}
	return wire.EventFromProto(pb)
}
