package embedded

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// gateFS holds every WAL sync while armed, until the gate opens.
type gateFS struct {
	vfs.FS
	armed   atomic.Bool
	syncing chan struct{} // receives when a held sync starts
	gate    chan struct{}
}

func (g *gateFS) wrap(f vfs.File, name string, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &gateFile{File: f, g: g}, nil
}

func (g *gateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.Create(name, c)
	return g.wrap(f, name, err)
}

func (g *gateFS) ReuseForWrite(old, name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.ReuseForWrite(old, name, c)
	return g.wrap(f, name, err)
}

func (g *gateFS) hold() {
	if g.armed.Load() {
		select {
		case g.syncing <- struct{}{}:
		default:
		}
		<-g.gate
	}
}

type gateFile struct {
	vfs.File
	g *gateFS
}

func (f *gateFile) Sync() error     { f.g.hold(); return f.File.Sync() }
func (f *gateFile) SyncData() error { f.g.hold(); return f.File.SyncData() }
func (f *gateFile) SyncTo(n int64) (bool, error) {
	f.g.hold()
	return f.File.SyncTo(n)
}

// TestUnsyncedRecordsAreInvisible: Pebble makes a batch readable before its WAL sync
// ends. Until the sync ends (and Append returns), no read of the store returns the
// batch's records: a crash could still take them back.
func TestUnsyncedRecordsAreInvisible(t *testing.T) {
	g := &gateFS{FS: vfs.Default, syncing: make(chan struct{}, 1)}
	s, err := Open(t.TempDir(), &Options{fs: g})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if _, err := s.Append(ctx, "party-a", ledger.NoStream, []store.Proposed{proposal("a0", "x")}); err != nil {
		t.Fatal(err)
	}

	// held appends p while the test runs check, then lets the sync finish.
	held := func(stream string, p store.Proposed, check func()) {
		t.Helper()
		g.gate = make(chan struct{})
		g.armed.Store(true)
		done := make(chan error, 1)
		go func() {
			_, err := s.Append(ctx, stream, ledger.AnyRevision, []store.Proposed{p})
			done <- err
		}()
		select {
		case <-g.syncing:
		case <-time.After(10 * time.Second):
			t.Fatal("the append never synced")
		}
		// Wait until Pebble shows the batch to its own readers.
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, closer, err := s.db.Get(eventKey(p.EventID))
			if err == nil {
				closer.Close()
				break
			}
			if !errors.Is(err, pebble.ErrNotFound) || time.Now().After(deadline) {
				t.Fatalf("Pebble never showed the unsynced batch: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
		check()
		g.armed.Store(false)
		close(g.gate)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	events := func(seq func(func(store.Record, error) bool)) []string {
		var ids []string
		for r, err := range seq {
			if err != nil {
				return append(ids, err.Error())
			}
			ids = append(ids, r.EventID)
		}
		return ids
	}
	expect := func(what string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}

	held("party-b", proposal("b0", "x"), func() {
		if _, err := s.GetEvent(ctx, "b0"); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("GetEvent(unsynced) = %v, want ErrNotFound", err)
		}
		expect("ReadStream(new stream)", events(s.ReadStream(ctx, "party-b", store.ReadStreamOptions{})), `stream "party-b": not found`)
		expect("ReadAll", events(s.ReadAll(ctx, ledger.Position{}, store.Filter{})), "a0")
	})
	held("party-a", proposal("a1", "x"), func() {
		if _, err := s.GetEvent(ctx, "a1"); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("GetEvent(unsynced) = %v, want ErrNotFound", err)
		}
		expect("ReadStream forwards", events(s.ReadStream(ctx, "party-a", store.ReadStreamOptions{})), "a0")
		expect("ReadStream from end", events(s.ReadStream(ctx, "party-a", store.ReadStreamOptions{FromEnd: true})), "a0")
		expect("ReadStream backwards", events(s.ReadStream(ctx, "party-a", store.ReadStreamOptions{Backwards: true, FromEnd: true})), "a0")
		expect("ReadAll", events(s.ReadAll(ctx, ledger.Position{}, store.Filter{})), "a0", "b0")
	})
	// Synced: everything is visible.
	expect("ReadStream after the sync", events(s.ReadStream(ctx, "party-a", store.ReadStreamOptions{Backwards: true, FromEnd: true})), "a1", "a0")
	expect("ReadAll after the sync", events(s.ReadAll(ctx, ledger.Position{}, store.Filter{})), "a0", "b0", "a1")
	if _, err := s.GetEvent(ctx, "a1"); err != nil {
		t.Errorf("GetEvent after the sync: %v", err)
	}
}
