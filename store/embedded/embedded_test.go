package embedded_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/embedded"
	"github.com/stanceledger/ledger/store/storetest"
)

func open(t testing.TB, dir string, opts *embedded.Options) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, t.TempDir(), nil)
	})
}

// rec is a small record with a known event_id; content is fixed by id and body.
func rec(id, body string) store.Proposed {
	return store.Proposed{
		EventID:     id,
		Type:        "StatementIssued",
		Data:        []byte(`{"statement_id":"` + body + `"}`),
		Metadata:    []byte(`{"schema":1,"event_id":"` + id + `"}`),
		ContentHash: "hash-" + id + "-" + body,
	}
}

func readAll(t *testing.T, s store.LogReader) []store.Record {
	t.Helper()
	var out []store.Record
	for r, err := range s.ReadAll(t.Context(), ledger.Position{}, store.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestReopen: a reopened store holds every record, continues positions and stream
// revisions where they stopped, and still recognises retries.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Append(t.Context(), "party-a", ledger.NoStream, []store.Proposed{rec("a1", "x"), rec("a2", "x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(t.Context(), "party-b", ledger.NoStream, []store.Proposed{rec("b1", "x")}); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, nil)
	after := readAll(t, s)
	if len(after) != len(before) {
		t.Fatalf("reopened log holds %d records, want %d", len(after), len(before))
	}
	for i := range before {
		if after[i].EventID != before[i].EventID || after[i].Position != before[i].Position || string(after[i].Data) != string(before[i].Data) {
			t.Errorf("record %d: %+v, want %+v", i, after[i], before[i])
		}
	}
	if got := s.Stats().LastPosition; got != 3 {
		t.Errorf("LastPosition = %d, want 3", got)
	}
	// Stream heads came back: a stale expectation conflicts, the right one appends.
	_, err = s.Append(t.Context(), "party-a", ledger.NoStream, []store.Proposed{rec("a3", "x")})
	var ce *ledger.ConflictError
	if !errors.As(err, &ce) || ce.Actual != 1 {
		t.Fatalf("NoStream on a reopened stream: err = %v, want a conflict with actual 1", err)
	}
	res, err := s.Append(t.Context(), "party-a", ledger.ExactRevision(1), []store.Proposed{rec("a3", "x")})
	if err != nil {
		t.Fatal(err)
	}
	if want := (ledger.Position{Commit: 4, Prepare: 4}); res.Position != want || res.NextExpectedRevision != 2 {
		t.Errorf("append after reopen: position %v revision %d, want %v and 2", res.Position, res.NextExpectedRevision, want)
	}
	retry, err := s.Append(t.Context(), "party-a", ledger.NoStream, []store.Proposed{rec("a1", "x"), rec("a2", "x")})
	if err != nil || !retry.AlreadyPresent || retry.Position != first.Position {
		t.Errorf("retry after reopen: %+v, %v; want AlreadyPresent at %v", retry, err, first.Position)
	}
}

// TestDensePositions: the embedded store numbers records 1, 2, 3, … with Commit ==
// Prepare, across streams and appends.
func TestDensePositions(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	for i := range 5 {
		stream := fmt.Sprintf("party-%d", i%2)
		if _, err := s.Append(t.Context(), stream, ledger.AnyRevision, []store.Proposed{rec(fmt.Sprint(i), "x"), rec(fmt.Sprint(i)+"b", "x")}); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range readAll(t, s) {
		if want := uint64(i + 1); r.Position.Commit != want || r.Position.Prepare != want {
			t.Errorf("record %d at %v, want %d/%d", i, r.Position, want, want)
		}
	}
}

// TestRecordsOwnTheirBytes: records read together share allocations (slabSize),
// but each record's Data and Metadata are its own: appending to one, or writing
// into it, changes no other record.
func TestRecordsOwnTheirBytes(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	for i := range 20 {
		if _, err := s.Append(t.Context(), "party-a", ledger.AnyRevision, []store.Proposed{rec(fmt.Sprint(i), fmt.Sprint("body-", i))}); err != nil {
			t.Fatal(err)
		}
	}
	want := readAll(t, s)
	got := readAll(t, s)
	for i := range got {
		got[i].Data = append(got[i].Data, "!!!!"...)
		got[i].Metadata = append(got[i].Metadata, "!!!!"...)
		got[i].Data[0], got[i].Metadata[0] = '#', '#'
	}
	for i := range got {
		d, m := got[i].Data, got[i].Metadata
		if string(d[1:len(d)-4]) != string(want[i].Data[1:]) || string(m[1:len(m)-4]) != string(want[i].Metadata[1:]) {
			t.Errorf("record %d: %q / %q after writing to every record; want %q / %q with the writes", i, d, m, want[i].Data, want[i].Metadata)
		}
	}
}

// TestGroupCommit: many concurrent appenders share syncs; with groups of one, each
// append pays its own.
func TestGroupCommit(t *testing.T) {
	const appenders, each = 32, 10
	tests := []struct {
		name     string
		maxGroup int
		grouped  bool
	}{
		{"default", 0, true},
		{"groups of one", 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, t.TempDir(), &embedded.Options{MaxGroup: tc.maxGroup})
			var wg sync.WaitGroup
			errs := make([]error, appenders)
			for a := range appenders {
				wg.Go(func() {
					for i := range each {
						id := fmt.Sprintf("%d-%d", a, i)
						if _, err := s.Append(t.Context(), fmt.Sprintf("party-%d", a), ledger.AnyRevision, []store.Proposed{rec(id, "x")}); err != nil {
							errs[a] = err
							return
						}
					}
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			if st.Appends != appenders*each || st.Records != appenders*each {
				t.Fatalf("stats %+v, want %d appends and records", st, appenders*each)
			}
			if grouped := st.Syncs < st.Appends/2; grouped != tc.grouped || st.Syncs > st.Appends {
				t.Errorf("%d syncs for %d concurrent appends; want grouped = %v", st.Syncs, st.Appends, tc.grouped)
			}
			t.Logf("%d appends, %d syncs", st.Appends, st.Syncs)
		})
	}
}

// TestCloseDuringAppends: appends racing Close either succeed or fail with
// ErrClosed; after reopening, every acknowledged append is stored exactly once and
// whole, and nothing else is.
func TestCloseDuringAppends(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	const appenders = 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked = map[string]bool{}
		bad   []error
	)
	started := make(chan struct{}, appenders)
	for a := range appenders {
		wg.Go(func() {
			for i := 0; ; i++ {
				ids := []string{fmt.Sprintf("%d-%d-a", a, i), fmt.Sprintf("%d-%d-b", a, i)}
				_, err := s.Append(t.Context(), fmt.Sprintf("party-%d", a), ledger.AnyRevision, []store.Proposed{rec(ids[0], "x"), rec(ids[1], "x")})
				if i == 3 {
					started <- struct{}{}
				}
				mu.Lock()
				switch {
				case err == nil:
					acked[ids[0]], acked[ids[1]] = true, true
				case !errors.Is(err, ledger.ErrClosed):
					bad = append(bad, err)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	for range appenders {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := errors.Join(bad...); err != nil {
		t.Fatalf("appends racing Close failed with other errors: %v", err)
	}

	s = open(t, dir, nil)
	recs := readAll(t, s)
	seen := map[string]bool{}
	for i, r := range recs {
		if r.Position.Commit != uint64(i+1) {
			t.Fatalf("record %d at %v: positions are not dense", i, r.Position)
		}
		if seen[r.EventID] {
			t.Fatalf("%s stored twice", r.EventID)
		}
		seen[r.EventID] = true
		if !acked[r.EventID] {
			// Stored but never acknowledged is allowed only for an append taken into
			// the last batch; Close waits for that batch, so it was acknowledged.
			t.Errorf("%s stored but its append was not acknowledged", r.EventID)
		}
	}
	for id := range acked {
		if !seen[id] {
			t.Errorf("acknowledged %s is missing after reopen", id)
		}
	}
	t.Logf("%d records acknowledged before Close", len(acked))
}

// TestOpenRefusesOtherData: a directory written with another layout version, or a
// Pebble database that is not a ledger log, is refused rather than misread.
func TestOpenRefusesOtherData(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(dir string) error
	}{
		{"layout version 99", func(dir string) error {
			s, err := embedded.Open(dir, nil)
			if err != nil {
				return err
			}
			if err := s.Close(); err != nil {
				return err
			}
			return embedded.SetLayoutVersionForTest(dir, 99)
		}},
		{"foreign database", embedded.WriteForeignKeyForTest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tc.prepare(dir); err != nil {
				t.Fatal(err)
			}
			if s, err := embedded.Open(dir, nil); err == nil {
				s.Close()
				t.Fatal("Open accepted the directory")
			}
		})
	}
}
