package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store/embedded"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// startServer runs a real ledger server on the embedded store, on a random loopback
// port, for the duration of the test, and returns its address.
func startServer(t *testing.T) string {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), &embedded.Options{MemTableSize: 4 << 20, CacheSize: 8 << 20})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	srv, err := server.New(server.Config{Store: st})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		st.Close()
	})
	return lis.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ledgerctl runs the command tree in-process against addr, as main does, and returns
// what it wrote to stdout and stderr and whether it failed.
func ledgerctl(ctx context.Context, addr, stdin string, args ...string) (stdout, stderr string, err error) {
	var out, errOut syncBuffer
	err = runCtl(ctx, &out, &errOut, addr, stdin, args...)
	return out.String(), errOut.String(), err
}

func runCtl(ctx context.Context, out, errOut *syncBuffer, addr, stdin string, args ...string) error {
	root := newRootCmd()
	root.SetArgs(append([]string{"--addr", addr}, args...))
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.ExecuteContext(ctx)
	if err != nil {
		printError(errOut, err)
	}
	return err
}

// mustCtl runs ledgerctl and fails the test if it fails.
func mustCtl(t *testing.T, addr, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := ledgerctl(t.Context(), addr, stdin, args...)
	if err != nil {
		t.Fatalf("ledgerctl %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// countRecords counts the records in the log at addr.
func countRecords(t *testing.T, addr string) int {
	t.Helper()
	c, err := client.Dial(t.Context(), addr)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	n := 0
	for _, err := range c.ReadAll(t.Context(), ledger.Position{}, client.Filter{}) {
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		n++
	}
	return n
}

// importFiles are the inputs imported by the tests: the small fixture of this package
// and, once it exists, the repository's seed story.
func importFiles(t *testing.T) []string {
	files := []string{filepath.Join("testdata", "import.jsonl")}
	seed := filepath.Join("..", "..", "testdata", "seed.jsonl")
	if _, err := os.Stat(seed); err == nil {
		files = append(files, seed)
	} else {
		t.Logf("no %s yet; importing the fixture only", seed)
	}
	return files
}

func nonBlankLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for l := range strings.Lines(string(b)) {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

func TestImportTwice(t *testing.T) {
	for _, file := range importFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			addr := startServer(t)
			n := nonBlankLines(t, file)
			if got, want := mustCtl(t, addr, "", "import", file), fmt.Sprintf("imported %d, already present 0\n", n); got != want {
				t.Errorf("first import printed %q; want %q", got, want)
			}
			if got, want := mustCtl(t, addr, "", "import", file), fmt.Sprintf("imported 0, already present %d\n", n); got != want {
				t.Errorf("second import printed %q; want %q", got, want)
			}
			if got := countRecords(t, addr); got != n {
				t.Errorf("log holds %d records; want %d", got, n)
			}
		})
	}
}

func TestImportResumesAfterPartialImport(t *testing.T) {
	addr := startServer(t)
	full := filepath.Join("testdata", "import.jsonl")
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSpace(string(b)), "\n")
	// Import stops after line 2, in the middle of the dprk run of lines 2–3: the full
	// file's dprk append then mixes a stored and a new event_id, which the server
	// refuses, and import falls back to one event per append.
	part := filepath.Join(t.TempDir(), "part.jsonl")
	if err := os.WriteFile(part, []byte(strings.Join(lines[:2], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := mustCtl(t, addr, "", "import", part); got != "imported 2, already present 0\n" {
		t.Fatalf("partial import printed %q", got)
	}
	want := fmt.Sprintf("imported %d, already present 2\n", len(lines)-2)
	if got := mustCtl(t, addr, "", "import", full); got != want {
		t.Errorf("full import after partial printed %q; want %q", got, want)
	}
	if got := countRecords(t, addr); got != len(lines) {
		t.Errorf("log holds %d records; want %d", got, len(lines))
	}
}

func TestImportStdin(t *testing.T) {
	addr := startServer(t)
	b, err := os.ReadFile(filepath.Join("testdata", "import.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustCtl(t, addr, string(b), "import", "-"); got != "imported 6, already present 0\n" {
		t.Errorf("import - printed %q", got)
	}
}

// validLine returns a valid import line of party with the given event_id.
func validLine(id, party string) string {
	return `{"event_id":"` + id + `","party":"` + party + `","occurred_at":"2025-06-01T00:00:00Z",` +
		`"sources":[{"url":"https://example.org/` + id + `"}],` +
		`"statement_issued":{"statement_id":"s-` + id + `","stances":[{"topic":"msmt-legitimacy","alignment":"ALIGNMENT_OPPOSES"}]}}`
}

func correctionLine(id, party, target string) string {
	return `{"event_id":"` + id + `","party":"` + party + `","occurred_at":"2025-06-02T00:00:00Z",` +
		`"sources":[{"url":"https://example.org/` + id + `"}],` +
		`"record_corrected":{"corrects_event_id":"` + target + `","reason":"wrong","withdraw":true}}`
}

func TestImportRefusesInvalidFile(t *testing.T) {
	addr := startServer(t)
	// One record is in the ledger already, so corrections may name it.
	mustCtl(t, addr, validLine("stored-russia", "russia")+"\n", "import", "-")

	tests := []struct {
		name  string
		lines []string
		want  []string // fragments of stderr
	}{
		{"bad slug", []string{validLine("a", "dprk"), validLine("b", "dprk"), strings.Replace(validLine("c", "dprk"), "msmt-legitimacy", "MSMT legitimacy", 1)},
			[]string{"ledgerctl: InvalidArgument: ", "line 3: statement_issued.stances[0].topic: must be a slug"}},
		{"two bad lines", []string{strings.Replace(validLine("a", "dprk"), `"party":"dprk"`, `"party":"North Korea"`, 1), validLine("b", "dprk"), strings.Replace(validLine("c", "dprk"), `"occurred_at":"2025-06-01T00:00:00Z",`, "", 1)},
			[]string{"line 1: party: must be a slug", "line 3: occurred_at: required"}},
		{"not JSON", []string{validLine("a", "dprk"), `{"event_id":`},
			[]string{"line 2: not a JSON object"}},
		{"unknown field", []string{strings.Replace(validLine("a", "dprk"), `"party"`, `"partyy":"x","party"`, 1)},
			[]string{"line 1: ", `unknown field "partyy"`}},
		{"duplicate event_id", []string{validLine("a", "dprk"), validLine("b", "dprk"), validLine("a", "dprk")},
			[]string{"line 3: event_id: duplicate of line 1"}},
		{"correction of nothing", []string{validLine("a", "dprk"), correctionLine("c", "dprk", "no-such-event")},
			[]string{"line 2: record_corrected.corrects_event_id: no record with this event_id"}},
		{"correction of a later line", []string{correctionLine("c", "dprk", "a"), validLine("a", "dprk")},
			[]string{"line 1: record_corrected.corrects_event_id: no record with this event_id"}},
		{"correction of another party's line", []string{validLine("a", "dprk"), correctionLine("c", "russia", "a")},
			[]string{"line 2: record_corrected.corrects_event_id: names a record of party \"dprk\""}},
		{"correction of another party's stored record", []string{correctionLine("c", "dprk", "stored-russia")},
			[]string{"line 1: record_corrected.corrects_event_id: names a record of party \"russia\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "bad.jsonl")
			if err := os.WriteFile(file, []byte(strings.Join(tt.lines, "\n")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out, errOut, err := ledgerctl(t.Context(), addr, "", "import", file)
			if err == nil {
				t.Fatalf("import succeeded (%q); want it refused", out)
			}
			if !errors.Is(err, ledger.ErrInvalid) || !strings.Contains(errOut, "InvalidArgument: ") {
				t.Errorf("err = %v, stderr %q; want InvalidArgument", err, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr = %q; want it to contain %q", errOut, w)
				}
			}
			if out != "" {
				t.Errorf("stdout = %q; want nothing", out)
			}
			if got := countRecords(t, addr); got != 1 {
				t.Errorf("log holds %d records after a refused import; want 1 (unchanged)", got)
			}
		})
	}
}

// maskVolatile replaces what differs between runs in a replay line: recorded_at and
// the stored metadata (which holds recorded_at).
var maskVolatile = regexp.MustCompile(`"(recorded_at|metadata)":"[^"]*"`)

func TestReplayGolden(t *testing.T) {
	addr := startServer(t)
	mustCtl(t, addr, "", "import", filepath.Join("testdata", "import.jsonl"))
	tests := []struct {
		golden string
		args   []string
		mask   bool
	}{
		{"replay.table.golden", []string{"replay"}, false},
		{"replay.filtered.table.golden", []string{"replay", "--party", "dprk", "--party", "russia", "--type", "statement", "--since", "2025-01-01", "--until", "2025-06-01"}, false},
		{"replay.jsonl.golden", []string{"replay", "-o", "jsonl"}, true},
		{"replay.from.jsonl.golden", []string{"replay", "-o", "jsonl", "--from", "5"}, true},
		{"get.golden", []string{"get", "ctl-russia-veto-2024"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			out := mustCtl(t, addr, "", tt.args...)
			for l := range strings.Lines(out) {
				if n := len([]rune(strings.TrimSuffix(l, "\n"))); !tt.mask && n > 80 {
					t.Errorf("table line has %d columns; want at most 80: %q", n, l)
				}
			}
			if tt.mask {
				out = maskVolatile.ReplaceAllString(out, `"$1":"…"`)
			}
			golden := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s:\n got:\n%s\nwant:\n%s", golden, out, want)
			}
		})
	}
}

// TestExportReimportsAndVerifies checks the promise of -o jsonl: the export imports
// cleanly into another ledger, which stores the same data bytes, and every line's stored
// bytes decode (ledger.Decode checks their content hash) to the event on the line.
func TestExportReimportsAndVerifies(t *testing.T) {
	a, b := startServer(t), startServer(t)
	mustCtl(t, a, "", "import", filepath.Join("testdata", "import.jsonl"))
	export := mustCtl(t, a, "", "replay", "-o", "jsonl")
	if got := mustCtl(t, b, export, "import", "-"); got != "imported 6, already present 0\n" {
		t.Fatalf("import of the export printed %q", got)
	}
	if got := mustCtl(t, a, export, "import", "-"); got != "imported 0, already present 6\n" {
		t.Errorf("import of the export into its own ledger printed %q", got)
	}
	again := mustCtl(t, b, "", "replay", "-o", "jsonl")
	if x, y := maskVolatile.ReplaceAllString(export, ""), maskVolatile.ReplaceAllString(again, ""); x != y {
		t.Errorf("re-imported log replays differently:\n%s\nvs\n%s", x, y)
	}
	for i, line := range strings.Split(strings.TrimSpace(export), "\n") {
		var rec recordLine
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		e, md, err := ledger.Decode(rec.Stored.EventType, rec.Stored.Data, rec.Stored.Metadata)
		if err != nil {
			t.Fatalf("line %d: stored bytes do not decode: %v", i+1, err)
		}
		pe, err := unmarshalEvent([]byte(line))
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if pe.GetEventId() != e.EventID || pe.GetParty() != e.Party || md.RecordedAt == nil ||
			formatTimestamp(*md.RecordedAt) != rec.RecordedAt || rec.Position.Commit != uint64(i+1) {
			t.Errorf("line %d: stored bytes say %s/%s recorded %v; the line says %s/%s recorded %s at %d",
				i+1, e.EventID, e.Party, md.RecordedAt, pe.GetEventId(), pe.GetParty(), rec.RecordedAt, rec.Position.Commit)
		}
	}
}

func TestAppendAndGet(t *testing.T) {
	addr := startServer(t)
	event := validLine("appended-1", "dprk")
	out := mustCtl(t, addr, event, "append", "--expected-revision", "no_stream")
	var rec recordLine
	if err := json.Unmarshal([]byte(out), &rec); err != nil || rec.Stream != "party-dprk" || rec.Revision != 0 || rec.Position.Commit != 1 {
		t.Fatalf("append printed %q (%v); want the recorded event at revision 0, position 1", out, err)
	}
	if got := mustCtl(t, addr, "", "get", "appended-1"); got != out {
		t.Errorf("get printed %q; want what append printed, %q", got, out)
	}

	// Retrying the same event is answered with the original record.
	file := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(file, []byte(event), 0o600); err != nil {
		t.Fatal(err)
	}
	outAgain, errAgain, err := ledgerctl(t.Context(), addr, "", "append", "--file", file, "--expected-revision", "no_stream")
	if err != nil || outAgain != out || errAgain != "already present\n" {
		t.Errorf("append again: out %q, stderr %q, err %v; want the original record and \"already present\"", outAgain, errAgain, err)
	}

	// An event without event_id gets one.
	noID := strings.Replace(validLine("x", "dprk"), `"event_id":"x",`, "", 1)
	out = mustCtl(t, addr, noID, "append", "--expected-revision", "0")
	if err := json.Unmarshal([]byte(out), &rec); err != nil || rec.Revision != 1 {
		t.Fatalf("append without event_id printed %q (%v); want revision 1", out, err)
	}
	if !regexp.MustCompile(`^\{"event_id":"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-`).MatchString(out) {
		t.Errorf("append without event_id printed %q; want a UUIDv4 event_id", out)
	}

	tests := []struct {
		name   string
		stdin  string
		args   []string
		stderr string
	}{
		{"conflict", validLine("appended-2", "dprk"), []string{"append", "--expected-revision", "no_stream"},
			"ledgerctl: Aborted: wrong expected revision on party-dprk: expected no_stream, actual 1\n"},
		{"invalid", validLine("appended-3", "North Korea"), []string{"append"},
			"ledgerctl: InvalidArgument: "},
		{"duplicate", strings.Replace(event, "example.org", "example.com", 1), []string{"append"},
			"ledgerctl: AlreadyExists: event_id \"appended-1\" already used"},
		{"bad expected revision", event, []string{"append", "--expected-revision", "latest"},
			"ledgerctl: InvalidArgument: --expected-revision: "},
		{"not found", "", []string{"get", "no-such-event"},
			"ledgerctl: NotFound: "},
		{"bad output", "", []string{"replay", "-o", "yaml"},
			"ledgerctl: InvalidArgument: -o: must be jsonl or table"},
		{"bad time", "", []string{"replay", "--since", "yesterday"},
			"ledgerctl: InvalidArgument: --since: \"yesterday\" is neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, err := ledgerctl(t.Context(), addr, tt.stdin, tt.args...)
			if err == nil || !strings.HasPrefix(errOut, tt.stderr) {
				t.Errorf("stderr = %q (err %v); want it to start with %q", errOut, err, tt.stderr)
			}
		})
	}
	if got := countRecords(t, addr); got != 2 {
		t.Errorf("log holds %d records; want 2", got)
	}
}

func TestUnreachableServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	_, errOut, err := ledgerctl(t.Context(), addr, "", "replay")
	if err == nil || !strings.HasPrefix(errOut, "ledgerctl: Unavailable: ") {
		t.Errorf("stderr = %q (err %v); want an Unavailable error", errOut, err)
	}
}

func TestReplayFollow(t *testing.T) {
	addr := startServer(t)
	mustCtl(t, addr, validLine("before", "dprk")+"\n", "import", "-")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- runCtl(ctx, &out, &errOut, addr, "", "replay", "--follow", "-o", "jsonl") }()

	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("replay --follow printed %q; never %q (stderr %q)", out.String(), what, errOut.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(`"event_id":"before"`)
	mustCtl(t, addr, validLine("after", "russia"), "append")
	waitFor(`"event_id":"after"`)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("replay --follow ended with %v after an interrupt; want success", err)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Errorf("replay --follow printed %d lines; want 2:\n%s", n, out.String())
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		in           string
		since, until time.Time
	}{
		{"2024-03-28", time.Date(2024, 3, 28, 0, 0, 0, 0, time.UTC), time.Date(2024, 3, 29, 0, 0, 0, 0, time.UTC)},
		{"2024-03-28T15:04:05Z", time.Date(2024, 3, 28, 15, 4, 5, 0, time.UTC), time.Date(2024, 3, 28, 15, 4, 5, 0, time.UTC)},
		{"2024-03-28T18:04:05.5+03:00", time.Date(2024, 3, 28, 15, 4, 5, 5e8, time.UTC), time.Date(2024, 3, 28, 15, 4, 5, 5e8, time.UTC)},
	}
	for _, tt := range tests {
		since, err := parseSince("--since", tt.in)
		if err != nil || !since.Equal(tt.since) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", tt.in, since, err, tt.since)
		}
		until, err := parseUntil("--until", tt.in)
		if err != nil || !until.Equal(tt.until) {
			t.Errorf("parseUntil(%q) = %v, %v; want %v", tt.in, until, err, tt.until)
		}
	}
	for _, in := range []string{"", "2024-3-28", "28.03.2024", "2024-03-28 15:04"} {
		if _, err := parseSince("--since", in); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("parseSince(%q): err = %v; want ErrInvalid", in, err)
		}
	}
}

func TestParseRecordType(t *testing.T) {
	for in, want := range map[string]ledger.RecordType{
		"StatementIssued": ledger.TypeStatementIssued, "statement_issued": ledger.TypeStatementIssued,
		"statement": ledger.TypeStatementIssued, "VETO": ledger.TypeMandateVetoed,
		"record_corrected": ledger.TypeRecordCorrected, "ReportPublished": ledger.TypeReportPublished,
	} {
		if got, err := parseRecordType("--type", in); err != nil || got != want {
			t.Errorf("parseRecordType(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseRecordType("--type", "tweet"); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("parseRecordType(tweet): err = %v; want ErrInvalid", err)
	}
}

// TestImportSplitsLargeRuns imports runs of one party that exceed one append's limits
// (1,000 events; 4 MiB): the server refuses such appends, so the import succeeds only
// if it splits them.
func TestImportSplitsLargeRuns(t *testing.T) {
	quote := strings.Repeat("q", 7<<10)
	tests := []struct {
		name  string
		count int
		line  func(i int) string
	}{
		{"more than 1000 events", ledger.DefaultLimits.MaxEvents + 1, func(i int) string {
			return validLine(fmt.Sprintf("small-%d", i), "dprk")
		}},
		{"more than 4 MiB", 90, func(i int) string {
			var stances []string
			for j := range 7 {
				stances = append(stances, fmt.Sprintf(`{"topic":"topic-%d","alignment":"ALIGNMENT_OPPOSES","quote":%q}`, j, quote))
			}
			return fmt.Sprintf(`{"event_id":"big-%d","party":"dprk","occurred_at":"2025-06-01T00:00:00Z","sources":[{"url":"https://example.org/%d"}],"statement_issued":{"statement_id":"s-%d","stances":[%s]}}`,
				i, i, i, strings.Join(stances, ","))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startServer(t)
			var b strings.Builder
			for i := range tt.count {
				b.WriteString(tt.line(i))
				b.WriteByte('\n')
			}
			want := fmt.Sprintf("imported %d, already present 0\n", tt.count)
			if got := mustCtl(t, addr, b.String(), "import", "-"); got != want {
				t.Errorf("import printed %q; want %q", got, want)
			}
		})
	}
}

// TestImportCorrectionInSameRun imports a correction right after the record it corrects,
// in one append: the server resolves what it names within the append.
func TestImportCorrectionInSameRun(t *testing.T) {
	addr := startServer(t)
	in := validLine("a", "dprk") + "\n" + correctionLine("c", "dprk", "a") + "\n"
	if got := mustCtl(t, addr, in, "import", "-"); got != "imported 2, already present 0\n" {
		t.Errorf("import printed %q", got)
	}
}
