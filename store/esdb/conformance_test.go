package esdb_test

import (
	"os"
	"testing"
	"time"

	"github.com/stanceledger/ledger/store"
	"github.com/stanceledger/ledger/store/esdb"
	"github.com/stanceledger/ledger/store/storetest"
)

// TestConformanceOverCompat runs the store contract's suite on store/esdb talking
// EventStoreDB's wire protocol to esdbcompat over an embedded store, in process. It
// needs no EventStoreDB and always runs.
func TestConformanceOverCompat(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		// The suite stores contract-level records (foreign streams, corrections of
		// absent records), so the endpoint maps the contract without ledger validation.
		return openStore(t, newEndpoint(t, true))
	})
}

// TestConformanceRealESDB runs the suite against the EventStoreDB named by
// LEDGER_TEST_ESDB_URL (e.g. esdb://localhost:2113?tls=false). Every subtest uses
// streams of its own, so a database that already holds data is fine.
func TestConformanceRealESDB(t *testing.T) {
	url := os.Getenv("LEDGER_TEST_ESDB_URL")
	if url == "" {
		t.Skip("LEDGER_TEST_ESDB_URL is not set: no real EventStoreDB to test against (the suite ran over esdbcompat in TestConformanceOverCompat)")
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		st, err := esdb.Open(t.Context(), url, &esdb.Options{Logger: quiet(t), ConnectTimeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("esdb.Open(%s): %v", url, err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	})
}
