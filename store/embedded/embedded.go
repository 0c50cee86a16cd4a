// Package embedded is the ledger's log in one github.com/cockroachdb/pebble/v2
// directory. It implements store.Store and passes store/storetest.
//
// # Layout
//
// All keys live in one Pebble keyspace; the first byte says what a key is:
//
//	'l' position(8, big endian)                       → record (see below)
//	's' len(stream)(4, big endian) stream revision(8) → position(8)
//	'e' event_id                                      → position(8)
//	'm' "layout"                                      → layout version (1 byte)
//
// The global log ('l') sorts by position, a dense sequence from 1; a record's
// Position has Commit == Prepare == that number. A record value is a format byte
// (1), the stream revision (8 bytes, big endian), then stream, event_id, type, content
// hash, metadata and data, each as a uvarint length and the bytes. The appender's
// goroutine encodes its records; the writer only fills in the revision. The stream index ('s')
// gives a stream's records in revision order; a stream's head is its last index key.
// The event index ('e') makes event_ids unique across the log and answers GetEvent
// and idempotent retries. One append writes all three for each of its records in one
// Pebble batch, so it is atomic.
//
// # Writes
//
// One sequencing goroutine owns every write. It takes every waiting append (up to
// Options.MaxGroup) into one Pebble batch, checks each append in arrival order against
// the stream heads and event_ids already stored plus those written by earlier appends
// of the same group, commits the batch with one WAL sync (pebble.Sync), and only then
// answers each appender. An append that fails its checks fails alone; the others of
// its group commit. So concurrent appenders share one fdatasync, and a nil error from
// Append means the records are on stable storage.
//
// # Reads and subscriptions
//
// Reads iterate Pebble in chunks of at most a few hundred records and never hold an
// iterator while the caller's loop body runs, so a slow consumer pins no memtable and
// nothing loads the whole log. A subscription catches up from the log, then waits on a
// channel that every commit closes and replaces, and reads the new records from Pebble:
// its memory stays bounded however far it falls behind, and it never needs to be ended
// for falling behind.
//
// # Recovery
//
// After a crash Pebble replays its WAL; a batch is one WAL record, so an append is
// recovered whole or not at all. Open reads the next position from the last log key;
// stream heads are read from the stream index when first needed.
package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// Options configures a Store. A nil *Options means the defaults.
type Options struct {
	// Logger receives the store's and Pebble's messages. Nil discards them.
	Logger *slog.Logger
	// MaxGroup is the most appends committed together with one sync; 0 means 1024.
	MaxGroup int
	// MaxGroupBytes bounds the encoded size of one group; 0 means 64 MiB. A single
	// larger append is still committed, alone.
	MaxGroupBytes int
	// MemTableSize is Pebble's memtable size; 0 means 32 MiB.
	MemTableSize uint64
	// CacheSize is Pebble's block cache size in bytes; 0 means 64 MiB.
	CacheSize int64
	// OnCommit, when set, is called by the sequencing writer after every group it
	// commits (metrics.go). It runs on the writer's goroutine: it must be quick.
	OnCommit func(CommitInfo)

	// fs replaces the file system, for tests that delay syncs.
	fs vfs.FS
}

// Stats counts the work of the sequencing writer since Open.
type Stats struct {
	// Appends is the number of appends that stored records.
	Appends uint64
	// Records is the number of records stored.
	Records uint64
	// Syncs is the number of batches committed with a WAL sync; with concurrent
	// appenders it is smaller than Appends.
	Syncs uint64
	// LastPosition is the position of the last committed record (0 when empty).
	LastPosition uint64
}

// Store is the embedded log. It is safe for concurrent use. Open returns it; Close
// releases it.
type Store struct {
	log  *slog.Logger
	opts Options

	// dbMu guards db against Close: readers hold it shared for one chunk at a time.
	dbMu     sync.RWMutex
	db       *pebble.DB
	dbClosed bool

	reqs       chan *appendReq
	quit       chan struct{}
	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error

	// last is the position of the last committed (synced) record. Readers never go
	// past it, so they see only acknowledged records.
	last atomic.Uint64
	// changedMu guards changed, which is closed and replaced after every commit.
	changedMu sync.Mutex
	changed   chan struct{}

	// Owned by the writer goroutine.
	next  uint64           // position of the next record
	heads map[string]int64 // committed stream heads loaded so far

	appends, records, syncs atomic.Uint64
}

var _ store.Store = (*Store)(nil)

// errClosed is returned by every call after Close.
var errClosed = fmt.Errorf("embedded store: %w", ledger.ErrClosed)

// maxHeads bounds the stream-head cache; past it the cache starts over (heads are
// reloaded from the stream index when next needed).
const maxHeads = 1 << 16

// Open opens (creating if needed) the log in dir. opts may be nil. The directory must
// not be used by another process; Pebble locks it.
func Open(dir string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxGroup <= 0 {
		o.MaxGroup = 1024
	}
	if o.MaxGroupBytes <= 0 {
		o.MaxGroupBytes = 64 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 32 << 20
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 64 << 20
	}
	log := o.Logger.With("component", "store/embedded")

	cache := pebble.NewCache(o.CacheSize)
	defer cache.Unref()
	po := &pebble.Options{
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log},
		MemTableSize:       o.MemTableSize,
		FS:                 o.fs,
	}
	// Most event_id lookups are for new ids: bloom filters answer them without
	// reading data blocks. The log is mostly read in order (replay, subscriptions,
	// rebuilds): 32 KiB blocks cost an eighth of the block reads of Pebble's 4 KiB
	// default for that, and little for the point reads of records.
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		po.Levels[i].BlockSize = 32 << 10
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", dir, err)
	}
	s := &Store{
		log:        log,
		opts:       o,
		db:         db,
		reqs:       make(chan *appendReq, o.MaxGroup),
		quit:       make(chan struct{}),
		writerDone: make(chan struct{}),
		changed:    make(chan struct{}),
		heads:      make(map[string]int64),
	}
	last, err := s.recover()
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	s.next = last + 1
	s.last.Store(last)
	log.Info("opened", "dir", dir, "last_position", last)
	go s.run()
	return s, nil
}

// VouchesForContent implements store.ContentVoucher: ledgerd is the only writer of
// its directory, every append's content hash was computed or checked by the ledger,
// and Pebble checksums every block it stores.
func (s *Store) VouchesForContent() bool { return true }

// recover checks the layout version (writing it into a new directory) and returns the
// last position in the log.
func (s *Store) recover() (uint64, error) {
	v, closer, err := s.db.Get(layoutKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if empty, err := s.isEmpty(); err != nil || !empty {
			return 0, errors.Join(errors.New("embedded: the directory holds a Pebble database that is not a ledger log"), err)
		}
		if err := s.db.Set(layoutKey, []byte{layoutVersion}, pebble.Sync); err != nil {
			return 0, fmt.Errorf("embedded: write layout version: %w", err)
		}
	case err != nil:
		return 0, fmt.Errorf("embedded: read layout version: %w", err)
	default:
		ok := len(v) == 1 && v[0] == layoutVersion
		closer.Close()
		if !ok {
			return 0, fmt.Errorf("embedded: unsupported layout version %x", v)
		}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixLog}, UpperBound: []byte{prefixLog + 1}})
	if err != nil {
		return 0, fmt.Errorf("embedded: recover: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	return logKeyPos(it.Key())
}

// isEmpty reports whether the database holds no key at all.
func (s *Store) isEmpty() (bool, error) {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return false, err
	}
	defer it.Close()
	return !it.First(), it.Error()
}

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Appends:      s.appends.Load(),
		Records:      s.records.Load(),
		Syncs:        s.syncs.Load(),
		LastPosition: s.last.Load(),
	}
}

// Close stops the writer, fails appends still waiting with ledger.ErrClosed, ends
// subscriptions (they yield ledger.ErrClosed) and closes Pebble. Appends already taken
// into a batch finish first. Later calls of any method fail with ledger.ErrClosed;
// Close itself returns nil after the first call.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.writerDone
		s.dbMu.Lock()
		s.dbClosed = true
		s.closeErr = s.db.Close()
		s.dbMu.Unlock()
		s.log.Info("closed")
	})
	return s.closeErr
}

// view runs f with the database open, or returns errClosed.
func (s *Store) view(f func(db *pebble.DB) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.dbClosed {
		return errClosed
	}
	return f(s.db)
}

// changedChan returns the channel the next commit closes.
func (s *Store) changedChan() chan struct{} {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	return s.changed
}

// publish makes positions up to last visible to readers and wakes subscribers.
func (s *Store) publish(last uint64) {
	s.last.Store(last)
	s.changedMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.changedMu.Unlock()
}

func (s *Store) isClosed() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// pebbleLogger sends Pebble's messages to slog. Pebble's Fatalf reports a broken
// invariant (e.g. a failed WAL write) after which the database must not be used; the
// default logger exits the process, this one logs and panics.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "source", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "source", "pebble")
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg, "source", "pebble", "fatal", true)
	panic("pebble: " + msg)
}
