package embedded_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/embedded"
)

// killChildDir is set in the environment of the child process TestKillRecovery starts.
const killChildDir = "EMBEDDED_KILL_TEST_DIR"

// TestKillRecovery appends from a child process with concurrent appenders, kills it
// with SIGKILL in the middle of the load, and checks on reopening that every
// acknowledged append is stored exactly once and whole, that no append is stored in
// part, and that positions stay dense. It repeats the kill several times on one
// directory.
func TestKillRecovery(t *testing.T) {
	if os.Getenv(killChildDir) != "" {
		t.Skip("running as the child")
	}
	rounds := 4
	if testing.Short() {
		rounds = 2
	}
	dir := t.TempDir()
	acked := map[string]bool{} // acknowledged event_ids
	for round := range rounds {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestKillChild$", "-test.v")
		cmd.Env = append(os.Environ(), killChildDir+"="+dir, fmt.Sprintf("EMBEDDED_KILL_TEST_ROUND=%d", round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		n := 0
		killed := false
		for sc.Scan() {
			a, b, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "ACK "), " ")
			if !ok || !strings.HasPrefix(sc.Text(), "ACK ") {
				continue
			}
			acked[a], acked[b] = true, true
			n++
			if n == 150 && !killed {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("round %d: the child ended before it was killed: %v", round, err)
		}

		s, err := embedded.Open(dir, nil)
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		at := map[string]uint64{}
		var last uint64
		for r, err := range s.ReadAll(t.Context(), ledger.Position{}, store.Filter{}) {
			if err != nil {
				t.Fatal(err)
			}
			if r.Position.Commit != last+1 {
				t.Fatalf("round %d: position %v follows %d", round, r.Position, last)
			}
			last = r.Position.Commit
			if _, dup := at[r.EventID]; dup {
				t.Fatalf("round %d: %s stored twice", round, r.EventID)
			}
			at[r.EventID] = r.Position.Commit
		}
		for id := range acked {
			if _, ok := at[id]; !ok {
				t.Errorf("round %d: acknowledged %s lost", round, id)
			}
		}
		// Every append wrote "<x>-a" and "<x>-b" at consecutive positions: a stored
		// half means an append was split.
		for id, pos := range at {
			base, ok := strings.CutSuffix(id, "-a")
			if !ok {
				continue
			}
			if pb, ok := at[base+"-b"]; !ok || pb != pos+1 {
				t.Errorf("round %d: append %s stored in part (b at %d, a at %d)", round, base, pb, pos)
			}
		}
		if len(at)%2 != 0 {
			t.Errorf("round %d: odd number of records (%d): some append is split", round, len(at))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d records stored, %d acknowledged", round, len(at), len(acked))
	}
}

// TestKillChild is the child of TestKillRecovery: it appends until it is killed,
// printing each acknowledged append.
func TestKillChild(t *testing.T) {
	dir := os.Getenv(killChildDir)
	if dir == "" {
		t.Skip("only runs as the child of TestKillRecovery")
	}
	round := os.Getenv("EMBEDDED_KILL_TEST_ROUND")
	s, err := embedded.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				a, b := fmt.Sprintf("r%s-g%d-%d-a", round, g, i), fmt.Sprintf("r%s-g%d-%d-b", round, g, i)
				if _, err := s.Append(t.Context(), fmt.Sprintf("party-g%d", g%4), ledger.AnyRevision, []store.Proposed{benchRecord(a), benchRecord(b)}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				fmt.Fprintf(w, "ACK %s %s\n", a, b)
				w.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
