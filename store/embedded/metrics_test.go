package embedded_test

import (
	"fmt"
	"sync"
	"testing"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/embedded"
)

// TestOnCommit checks that every committed group is reported with its appends,
// records and a sync time, and that the reports add up to what was stored.
func TestOnCommit(t *testing.T) {
	var mu sync.Mutex
	var infos []embedded.CommitInfo
	s, err := embedded.Open(t.TempDir(), &embedded.Options{OnCommit: func(c embedded.CommitInfo) {
		mu.Lock()
		infos = append(infos, c)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const appenders, each = 8, 5
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("e-%d-%d", a, i)
				ps := []store.Proposed{benchRecord(id + "-0"), benchRecord(id + "-1")}
				if _, err := s.Append(t.Context(), fmt.Sprintf("party-%d", a), ledger.AnyRevision, ps); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// A refused append (a conflict) stores nothing and still belongs to a group.
	if _, err := s.Append(t.Context(), "party-0", ledger.NoStream, []store.Proposed{benchRecord("conflict")}); err == nil {
		t.Fatal("append to an existing stream with NoStream succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	var appends, records int
	for _, c := range infos {
		if c.Err != nil || c.Group < c.Appends || c.Sync <= 0 || c.Records < c.Appends {
			t.Errorf("implausible commit report %+v", c)
		}
		appends += c.Appends
		records += c.Records
	}
	st := s.Stats()
	if appends != appenders*each || records != 2*appenders*each {
		t.Errorf("reports add up to %d appends, %d records; want %d, %d", appends, records, appenders*each, 2*appenders*each)
	}
	if uint64(len(infos)) != st.Syncs {
		t.Errorf("%d reports for %d syncs", len(infos), st.Syncs)
	}
}
