package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/internal/wire"
	"github.com/stanceledger/ledger/store"
)

func newVerifyCmd() *cobra.Command {
	var exportFile, checkpointFile, key, snapshotFile string
	cmd := &cobra.Command{
		Use:   "verify --export replay.jsonl --checkpoint cp.txt --key KEY",
		Short: "Check an exported replay against a signed checkpoint, offline",
		Long: `Verify checks, with no server, that an export made with "replay -o jsonl" is exactly
the log a signed checkpoint commits to. It reads the export line by line (memory does
not grow with it), and for every line:

  - decodes the stored bytes and checks that the line's readable fields (the event,
    event_id, stream, recorded_at, recorded_by) say the same thing;
  - checks that positions increase and each stream's revisions follow each other;
  - recomputes the record's Merkle leaf (docs/integrity.md) and appends it to the tree.

Then the root of the recomputed tree must equal the checkpoint's, and the export must
hold exactly the checkpoint's number of records. With --snapshot (the GetSnapshot
response as protojson, e.g. from "ledgerctl snapshot -o json"), verify also folds the
export into a positions table at the snapshot's (T, P), in a temporary directory, and
checks that its rows and digest are the snapshot's, and that the snapshot's checkpoint,
when it carries one, is signed by KEY and matches the export. KEY is the log's verifier key
("<origin>+<hash>+<base64>") or a file holding it; the checkpoint must carry a valid
signature by it. The first bad record is named by line and event_id. Exit status 0
means all of it holds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := integrity.ParseVerifierKey(key)
			if err != nil {
				return err
			}
			note, err := os.ReadFile(checkpointFile)
			if err != nil {
				return err
			}
			cp, err := integrity.OpenCheckpoint(note, v)
			if err != nil {
				return fmt.Errorf("%s: %w", checkpointFile, err)
			}
			f, err := os.Open(exportFile)
			if err != nil {
				return err
			}
			defer f.Close()
			var in io.Reader = f
			if w, ok := terminal(cmd.ErrOrStderr()); ok {
				if st, err := f.Stat(); err == nil && st.Size() > 0 {
					bar := progressbar.NewOptions64(st.Size(),
						progressbar.OptionSetWriter(w),
						progressbar.OptionSetDescription("verifying"),
						progressbar.OptionShowBytes(true),
						progressbar.OptionClearOnFinish())
					defer bar.Exit()
					r := progressbar.NewReader(f, bar)
					in = &r
				}
			}
			// The live heap stays a few MiB whatever the export's size; collecting
			// less often buys CPU for the checks.
			defer debug.SetGCPercent(debug.SetGCPercent(400))
			start := time.Now()
			var snap *snapshotCheck
			opts := &verifyOptions{}
			if snapshotFile != "" {
				if snap, err = newSnapshotCheck(snapshotFile, v); err != nil {
					return err
				}
				defer snap.close()
				opts.sink = snap.add
				if snap.cp != nil {
					opts.also = append(opts.also, snap.cp)
				}
			}
			n, err := verifyExportWith(in, cp, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", exportFile, err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "OK: %d records of %s match checkpoint %s (%s)\n",
				n, exportFile, cp, time.Since(start).Round(time.Millisecond))
			if snap != nil {
				msg, err := snap.finish(cmd.Context())
				if err != nil {
					return fmt.Errorf("%s: %w", snapshotFile, err)
				}
				fmt.Fprintf(w, "OK: %s\n", msg)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&exportFile, "export", "", "the export to check (replay -o jsonl)")
	cmd.Flags().StringVar(&checkpointFile, "checkpoint", "", "the signed checkpoint (ledgerctl checkpoint -o FILE)")
	cmd.Flags().StringVar(&key, "key", "", "the log's verifier key, or a file holding it")
	cmd.Flags().StringVar(&snapshotFile, "snapshot", "", "also recompute this positions snapshot (GetSnapshot response as JSON) and check its digest")
	for _, f := range []string{"export", "checkpoint", "key"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

// maxLine bounds one export line; the server refuses appends far smaller.
const maxLine = 64 << 20

// ExportError names the first bad record of an export.
type ExportError struct {
	// Line is the 1-based line number; EventID the line's event_id, when it has one.
	Line    int64
	EventID string
	Problem string
}

// Error says "line N (event_id X): problem".
func (e *ExportError) Error() string {
	if e.EventID == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Problem)
	}
	return fmt.Sprintf("line %d (event_id %q): %s", e.Line, e.EventID, e.Problem)
}

// exportLine is what verify reads from a replay line besides the event itself.
type exportLine struct {
	EventID string `json:"event_id"`
	recordLine
}

// checkedLine is one export line after the per-line checks, which run in parallel.
type checkedLine struct {
	lineNo int64
	el     exportLine
	leaf   [integrity.HashSize]byte
	err    error // an *ExportError, or nil
	blank  bool
}

// verifyExport reads an export line by line and checks it against cp (already opened
// with the trusted key). It returns the number of records checked. The per-line work
// (parse, decode the stored bytes, compare with the readable fields, hash the leaf)
// runs on every CPU; the checks that need order (positions, revisions, the tree) run
// in line order. Memory stays flat: a bounded window of lines in flight, a compact
// range of at most 64 hashes, and one revision per stream.
func verifyExport(r io.Reader, cp *integrity.Checkpoint) (int64, error) {
	return verifyExportWith(r, cp, nil)
}

// verifyOptions add checks to verifyExport.
type verifyOptions struct {
	// also are more verified checkpoints whose roots the export's prefixes must match
	// (a snapshot's checkpoint).
	also []*integrity.Checkpoint
	// sink receives every record that passed its checks, in log order.
	sink func(store.Record) error
}

// verifyExportWith is verifyExport with the extra checks of opts (nil: none).
func verifyExportWith(r io.Reader, cp *integrity.Checkpoint, opts *verifyOptions) (int64, error) {
	if opts == nil {
		opts = &verifyOptions{}
	}
	for _, o := range opts.also {
		if o.Size > cp.Size {
			return 0, fmt.Errorf("a checkpoint of %d records is larger than the one the export is checked against (%d)", o.Size, cp.Size)
		}
	}
	workers := runtime.GOMAXPROCS(0)
	type job struct {
		lineNo int64
		line   []byte
		done   chan *checkedLine
	}
	jobs := make(chan job, 4*workers)
	order := make(chan job, 64*workers) // the window of lines in flight, in line order
	quit := make(chan struct{})
	var readErr error
	go func() {
		defer close(jobs)
		defer close(order)
		br := bufio.NewReaderSize(r, 1<<20)
		for lineNo := int64(1); ; lineNo++ {
			line, err := readLine(br)
			if err == io.EOF {
				return
			}
			if err != nil {
				readErr = &ExportError{Line: lineNo, Problem: err.Error()}
				return
			}
			j := job{lineNo: lineNo, line: bytes.Clone(line), done: make(chan *checkedLine, 1)}
			select {
			case order <- j:
			case <-quit:
				return
			}
			select {
			case jobs <- j:
			case <-quit:
				return
			}
		}
	}()
	for range workers {
		go func() {
			for j := range jobs {
				j.done <- checkLine(j.lineNo, j.line)
			}
		}()
	}
	defer close(quit)

	tree := integrity.NewTree()
	revisions := make(map[string]uint64)
	var (
		prev    ledger.Position
		records int64
	)
	for j := range order {
		c := <-j.done
		if c.blank {
			continue
		}
		if c.err != nil {
			return records, c.err
		}
		el := &c.el
		bad := func(format string, args ...any) error {
			return &ExportError{Line: c.lineNo, EventID: el.EventID, Problem: fmt.Sprintf(format, args...)}
		}
		if uint64(records) >= cp.Size {
			return records, bad("record not covered by the checkpoint, which covers %d records", cp.Size)
		}
		pos := ledger.Position{Commit: el.Position.Commit, Prepare: el.Position.Prepare}
		if records > 0 && !prev.Less(pos) {
			return records, bad("position %s does not follow %s: records are out of log order", pos, prev)
		}
		prev = pos
		if want := revisions[el.Stream]; el.Revision != want {
			return records, bad("%s revision %d, expected %d: a record of this stream is missing or out of order", el.Stream, el.Revision, want)
		}
		revisions[el.Stream]++
		if err := tree.Append(c.leaf[:], nil); err != nil {
			return records, bad("%v", err)
		}
		records++
		if opts.sink != nil {
			rec := store.Record{
				Stream: el.Stream, Revision: el.Revision, Position: pos, EventID: el.EventID,
				Type: el.Stored.EventType, Data: el.Stored.Data, Metadata: el.Stored.Metadata,
			}
			if err := opts.sink(rec); err != nil {
				return records, bad("%v", err)
			}
		}
		for _, o := range opts.also {
			if o.Size == uint64(records) && !bytes.Equal(tree.Root(), o.Root) {
				return records, fmt.Errorf("the root of the first %d records differs from checkpoint %s", records, o)
			}
		}
		if uint64(records) == cp.Size {
			if root := tree.Root(); !bytes.Equal(root, cp.Root) {
				return records, fmt.Errorf("the root of the first %d records differs from the checkpoint's (%x, checkpoint %x): a record was changed, removed, reordered or inserted",
					records, root, cp.Root)
			}
		}
	}
	if readErr != nil {
		return records, readErr
	}
	if uint64(records) < cp.Size {
		return records, fmt.Errorf("the export holds %d records, the checkpoint covers %d: records are missing", records, cp.Size)
	}
	for _, o := range append([]*integrity.Checkpoint{cp}, opts.also...) {
		if o.Size == 0 && !bytes.Equal(o.Root, integrity.EmptyRoot()) {
			return records, fmt.Errorf("checkpoint of size 0 with a root other than the empty tree's")
		}
	}
	return records, nil
}

// checkLine runs the checks of one line that need no other line.
func checkLine(lineNo int64, line []byte) *checkedLine {
	c := &checkedLine{lineNo: lineNo}
	if len(bytes.TrimSpace(line)) == 0 {
		c.blank = true
		return c
	}
	if canonicalLine(line, &c.el) {
		l := integrity.Leaf{EventID: c.el.EventID, Stream: c.el.Stream, Type: c.el.Stored.EventType, Data: c.el.Stored.Data, Metadata: c.el.Stored.Metadata}
		if err := l.HashInto(&c.leaf); err == nil {
			return c
		}
	}
	c.el = exportLine{}
	if err := json.Unmarshal(line, &c.el); err != nil {
		c.err = &ExportError{Line: lineNo, Problem: "not a replay line: " + err.Error()}
		return c
	}
	fail := func(err error) *checkedLine {
		c.err = &ExportError{Line: lineNo, EventID: c.el.EventID, Problem: err.Error()}
		return c
	}
	if err := checkReadable(line, &c.el); err != nil {
		return fail(err)
	}
	l := integrity.Leaf{EventID: c.el.EventID, Stream: c.el.Stream, Type: c.el.Stored.EventType, Data: c.el.Stored.Data, Metadata: c.el.Stored.Metadata}
	if err := l.HashInto(&c.leaf); err != nil {
		return fail(err)
	}
	return c
}

// readLine returns the next line without its newline; io.EOF after the last.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		buf := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			if len(buf) > maxLine {
				return nil, fmt.Errorf("line longer than %d bytes", maxLine)
			}
			line, err = br.ReadSlice('\n')
			buf = append(buf, line...)
		}
		line = buf
	}
	if err == io.EOF && len(line) > 0 {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(line, []byte("\n")), nil
}

// checkReadable checks that the readable fields of line say what its stored bytes say.
// The fast path re-encodes the record from its stored bytes as replay writes it and
// compares bytes; only when they differ does it compare field by field, so a line
// written by another tool with other spacing still passes when it means the same.
func checkReadable(line []byte, el *exportLine) error {
	ev, md, err := ledger.Decode(el.Stored.EventType, el.Stored.Data, el.Stored.Metadata)
	if err != nil {
		return fmt.Errorf("stored bytes do not decode: %v", err)
	}
	if md.EventID != el.EventID {
		return fmt.Errorf("stored metadata names event_id %q", md.EventID)
	}
	if want := ledger.StreamOf(md.Party); el.Stream != want {
		return fmt.Errorf("stream %q, the stored party's stream is %q", el.Stream, want)
	}
	rec := client.Recorded{
		Event:      ev,
		Stream:     el.Stream,
		Revision:   el.Revision,
		Position:   ledger.Position{Commit: el.Position.Commit, Prepare: el.Position.Prepare},
		RecordedBy: md.RecordedBy,
		Stored:     client.Stored{Type: el.Stored.EventType, Data: el.Stored.Data, Metadata: el.Stored.Metadata},
	}
	if md.RecordedAt != nil {
		rec.RecordedAt = *md.RecordedAt
	}
	if again, err := marshalRecord(rec); err == nil && bytes.Equal(again, bytes.TrimSpace(line)) {
		return nil
	}
	// Slow path: compare meaning.
	pb, err := unmarshalEvent(line)
	if err != nil {
		return fmt.Errorf("readable event: %v", err)
	}
	if !proto.Equal(pb, wire.EventToProto(ev)) {
		return errors.New("the readable event differs from the stored bytes")
	}
	if el.RecordedBy != md.RecordedBy {
		return fmt.Errorf("recorded_by %q, stored %q", el.RecordedBy, md.RecordedBy)
	}
	var storedAt string
	if md.RecordedAt != nil {
		storedAt = formatTimestamp(*md.RecordedAt)
	}
	if el.RecordedAt != storedAt {
		if t, err := time.Parse(time.RFC3339Nano, el.RecordedAt); err != nil || md.RecordedAt == nil || !t.Equal(*md.RecordedAt) {
			return fmt.Errorf("recorded_at %q, stored %q", el.RecordedAt, storedAt)
		}
	}
	return nil
}
