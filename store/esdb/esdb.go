// Package esdb is the store contract on EventStoreDB, through
// github.com/EventStore/EventStore-Client-Go/v4.
//
// Layout in EventStoreDB:
//   - Each party's records are in stream "party-<party>", as JSON data and JSON
//     metadata exactly as the server encoded them (ledger.Encode), with the record type
//     as the event type. Stream revisions are the ledger's revisions; positions are
//     EventStoreDB's $all positions {commit, prepare}.
//   - The EventStoreDB event id of a record is store.EventUUID(event_id) (UUIDv5), so
//     a retried append carries the same ids and EventStoreDB deduplicates it.
//   - After each append, the store writes one index event per record to stream
//     "ledger-event-<event_id>" (store.EventIndexStream): where the record is and its
//     content hash. GetEvent and the idempotency check of Append read it: one read per
//     event_id, whatever the size of the log. Cost: an append of n records makes n index
//     reads before and n index writes after the append, plus one read-back of the
//     appended records (EventStoreDB's append answer carries the position of the last
//     record only). The index write is not atomic with the append: after a crash in
//     between, GetEvent misses the record until the append is retried (a retry of an
//     unacknowledged append is what clients do; EventStoreDB's id deduplication then
//     stores nothing twice and the index is written). Two concurrent appends of one
//     event_id to two different streams can both pass the check; the second index
//     write then finds the first and the conflict is logged.
//   - Reads of the global log are catch-up subscriptions to $all with a server-side
//     stream-prefix filter ("party-"), ended at CaughtUp; EventStoreDB 23.10 or later
//     sends CaughtUp.
//
// Connection loss: operations fail with an error matching ledger.ErrUnavailable
// (within Options.OpTimeout while no node answers) and succeed again once the node is
// back; subscriptions resume by themselves from the last position they delivered.
package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// Options configures a Store. A nil *Options means defaults.
type Options struct {
	// Logger receives connection events and the client library's messages (at debug
	// level); nil means slog.Default().
	Logger *slog.Logger
	// ConnectTimeout bounds how long Open waits for a node to answer; default 10s.
	ConnectTimeout time.Duration
	// OpTimeout bounds how long one operation waits for a connection while no node
	// answers, before it fails with ledger.ErrUnavailable; default 5s.
	OpTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between a subscription's attempts to
	// resume after its connection dropped; defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
}

// Store is a store.Store on EventStoreDB. It is safe for concurrent use.
type Store struct {
	cfg    *esdbclient.Configuration
	client *esdbclient.Client
	log    *slog.Logger
	opts   Options

	// base ends at Close; every operation's context is tied to it.
	base       context.Context
	cancelBase context.CancelFunc
	closed     atomic.Bool
	inflight   sync.WaitGroup
}

var _ store.Store = (*Store)(nil)

// readAllCount is the count of a read with no limit.
const readAllCount = math.MaxInt64

// Open connects to the EventStoreDB named by connString (an esdb:// or esdb+discover://
// connection string, e.g. "esdb://localhost:2113?tls=false"; node preference, TLS and
// credentials come from it). It waits at most opts.ConnectTimeout for a node to answer
// and returns an error naming the address when none does.
func Open(ctx context.Context, connString string, opts *Options) (*Store, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 5 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	cfg, err := esdbclient.ParseConnectionString(connString)
	if err != nil {
		return nil, fmt.Errorf("esdb: bad connection string: %w", err)
	}
	log := o.Logger.With("component", "esdb")
	cfg.Logger = func(level esdbclient.LogLevel, format string, args ...any) {
		log.Debug(fmt.Sprintf(format, args...), "client_level", level)
	}
	if cfg.DiscoveryInterval <= 0 {
		cfg.DiscoveryInterval = 100
	}

	// The probe client gives up after a bounded number of discovery attempts, which
	// ends its connection goroutine, so it can be closed safely whatever happened.
	probe := *cfg
	probe.GossipTimeout = max(1, min(cfg.GossipTimeout, int(o.ConnectTimeout/time.Second)))
	probe.MaxDiscoverAttempts = max(1, int(o.ConnectTimeout/(time.Duration(cfg.DiscoveryInterval)*time.Millisecond+50*time.Millisecond)))
	if err := probeNode(ctx, &probe, o.ConnectTimeout); err != nil {
		return nil, fmt.Errorf("esdb: EventStoreDB at %s did not answer within %s: %w", describe(cfg), o.ConnectTimeout, err)
	}

	// The working client never gives up discovering: a client whose discovery failed
	// is closed for good and leaves callers blocked, so it keeps looking, and every
	// operation here bounds its own wait (OpTimeout).
	cfg.MaxDiscoverAttempts = math.MaxInt32
	client, err := esdbclient.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("esdb: %w", err)
	}
	s := &Store{cfg: cfg, client: client, log: log, opts: o}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	return s, nil
}

func describe(cfg *esdbclient.Configuration) string {
	if len(cfg.GossipSeeds) > 0 {
		seeds := make([]string, len(cfg.GossipSeeds))
		for i, s := range cfg.GossipSeeds {
			seeds[i] = s.String()
		}
		return strings.Join(seeds, ",")
	}
	return cfg.Address
}

func probeNode(ctx context.Context, cfg *esdbclient.Configuration, wait time.Duration) error {
	c, err := esdbclient.NewClient(cfg)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		// The first operation runs discovery; reading the server version needs no ACL.
		_, err := c.GetServerVersion()
		done <- err
		c.Close()
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return errors.New("timed out")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close ends subscriptions and releases the connection. Later calls fail with
// ledger.ErrClosed. If an operation is still stuck waiting for an unreachable node
// after a grace period, the connection is left to the process's exit rather than
// closed under it (the client library would panic).
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.cancelBase()
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return s.client.Close()
	case <-time.After(2 * time.Second):
		s.log.Warn("esdb: operations still waiting for EventStoreDB at close; leaving the connection open")
		return nil
	}
}

// opContext ties ctx to the store's life: it ends when ctx ends or the store closes.
func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.base, cancel)
	return ctx, func() { stop(); cancel() }
}

// do runs fn, which talks to EventStoreDB, and waits for it at most OpTimeout beyond
// what fn itself bounds: the client library waits for a connection without looking at
// ctx, so fn runs in its own goroutine and is abandoned, its context cancelled, when no
// node answers in time. When fn returns in time its context stays alive as long as
// ctx, so fn may open a stream on it.
func (s *Store) do(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if s.closed.Load() {
		return ledger.ErrClosed
	}
	fctx, fcancel := context.WithCancel(ctx)
	gaveUp := false
	defer func() {
		if gaveUp {
			fcancel()
		}
	}()
	t := time.NewTimer(s.opts.OpTimeout)
	defer t.Stop()
	done := make(chan error, 1)
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		done <- fn(fctx)
	}()
	select {
	case err := <-done:
		return s.mapErr(op, err)
	case <-ctx.Done():
		gaveUp = true
		if s.closed.Load() {
			return ledger.ErrClosed
		}
		return ctx.Err()
	case <-s.base.Done():
		gaveUp = true
		return ledger.ErrClosed
	case <-t.C:
		gaveUp = true
		return fmt.Errorf("esdb %s: no answer from EventStoreDB at %s within %s: %w", op, describe(s.cfg), s.opts.OpTimeout, ledger.ErrUnavailable)
	}
}

// mapErr turns the client library's errors into the ledger's sentinels.
func (s *Store) mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return fmt.Errorf("esdb %s: %w", op, ledger.ErrClosed)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ee *esdbclient.Error
	if errors.As(err, &ee) {
		switch ee.Code() {
		case esdbclient.ErrorCodeResourceNotFound:
			return fmt.Errorf("esdb %s: %w", op, ledger.ErrNotFound)
		case esdbclient.ErrorUnavailable, esdbclient.ErrorCodeConnectionClosed, esdbclient.ErrorCodeNotLeader, esdbclient.ErrorCodeDeadlineExceeded:
			return fmt.Errorf("esdb %s: %w: %v", op, ledger.ErrUnavailable, err)
		case esdbclient.ErrorCodeResourceAlreadyExists:
			return fmt.Errorf("esdb %s: %w: %v", op, ledger.ErrDuplicateEvent, err)
		}
	}
	if st, ok := grpcStatus(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.Canceled:
			return fmt.Errorf("esdb %s: %w: %v", op, ledger.ErrUnavailable, err)
		case codes.InvalidArgument:
			return fmt.Errorf("esdb %s: %w: %s", op, ledger.ErrInvalid, st.Message())
		}
	}
	return fmt.Errorf("esdb %s: %w", op, err)
}

// grpcStatus finds a gRPC status anywhere in err's chain.
func grpcStatus(err error) (*status.Status, bool) {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if se, ok := e.(interface{ GRPCStatus() *status.Status }); ok {
			return se.GRPCStatus(), true
		}
	}
	return nil, false
}

// recordMetadata is the part of the stored metadata the store itself needs.
type recordMetadata struct {
	EventID     string `json:"event_id"`
	ContentHash string `json:"content_sha256"`
}

// toRecord converts an EventStoreDB event of a ledger stream into a store.Record.
func toRecord(ev *esdbclient.RecordedEvent) (store.Record, error) {
	var md recordMetadata
	if err := json.Unmarshal(ev.UserMetadata, &md); err != nil || md.EventID == "" {
		return store.Record{}, fmt.Errorf("esdb: %s@%d is not a ledger record (metadata without event_id)", ev.StreamID, ev.EventNumber)
	}
	return store.Record{
		Stream:      ev.StreamID,
		Revision:    ev.EventNumber,
		Position:    ledger.Position{Commit: ev.Position.Commit, Prepare: ev.Position.Prepare},
		EventID:     md.EventID,
		Type:        ev.EventType,
		Data:        ev.Data,
		Metadata:    ev.UserMetadata,
		ContentHash: md.ContentHash,
	}, nil
}

func expectedOf(e ledger.ExpectedRevision) esdbclient.ExpectedRevision {
	switch {
	case e.IsNoStream():
		return esdbclient.NoStream{}
	case e.IsStreamExists():
		return esdbclient.StreamExists{}
	}
	if rev, ok := e.Exact(); ok {
		return esdbclient.Revision(rev)
	}
	return esdbclient.Any{}
}

// shortRead is the largest read that runs whole under do's bound: index lookups,
// single records, the read-back of an append (at most ledger.DefaultLimits.MaxEvents).
const shortRead = 1024

// readEvents reads up to count events of stream from `from` in direction dir and
// passes each to f; f returns false to stop. A missing stream is ledger.ErrNotFound.
//
// A read of at most shortRead events runs whole in do, bounded by OpTimeout: the
// client library's error handling inside a read can wait for a reconnection without
// looking at ctx, and these reads back appends and lookups that must not hang.
// Longer reads stream, and are bounded by ctx.
func (s *Store) readEvents(ctx context.Context, stream string, dir esdbclient.Direction, from esdbclient.StreamPosition, count uint64, f func(*esdbclient.RecordedEvent) (bool, error)) error {
	if s.closed.Load() {
		return ledger.ErrClosed
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	op := "read " + stream
	if count <= shortRead {
		var evs []*esdbclient.RecordedEvent
		err := s.do(ctx, op, func(ctx context.Context) error {
			rs, err := s.client.ReadStream(ctx, stream, esdbclient.ReadStreamOptions{Direction: dir, From: from}, count)
			if err != nil {
				return err
			}
			defer rs.Close()
			for {
				ev, err := rs.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				evs = append(evs, ev.OriginalEvent())
			}
		})
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if more, err := f(ev); err != nil || !more {
				return err
			}
		}
		return nil
	}
	var rs *esdbclient.ReadStream
	err := s.do(ctx, op, func(ctx context.Context) error {
		var err error
		rs, err = s.client.ReadStream(ctx, stream, esdbclient.ReadStreamOptions{Direction: dir, From: from}, count)
		return err
	})
	if err != nil {
		return err
	}
	s.inflight.Add(1)
	defer s.inflight.Done()
	defer rs.Close()
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil && !s.closed.Load() {
				return ctx.Err()
			}
			return s.mapErr(op, err)
		}
		more, err := f(ev.OriginalEvent())
		if err != nil || !more {
			return err
		}
	}
}

// ReadStream implements store.StreamReader.
func (s *Store) ReadStream(ctx context.Context, stream string, opts store.ReadStreamOptions) iter.Seq2[store.Record, error] {
	return func(yield func(store.Record, error) bool) {
		dir := esdbclient.Forwards
		if opts.Backwards {
			dir = esdbclient.Backwards
		}
		var from esdbclient.StreamPosition = esdbclient.Revision(opts.From)
		count := uint64(readAllCount)
		if opts.Max > 0 {
			count = opts.Max
		}
		if opts.FromEnd {
			from = esdbclient.End{}
			if !opts.Backwards {
				// Forwards from the last revision yields that record alone; EventStoreDB's
				// forwards read from End yields nothing, so read it backwards.
				dir, count = esdbclient.Backwards, 1
			}
		}
		stopped := false
		err := s.readEvents(ctx, stream, dir, from, count, func(ev *esdbclient.RecordedEvent) (bool, error) {
			r, err := toRecord(ev)
			if err != nil {
				return false, err
			}
			if !yield(r, nil) {
				stopped = true
				return false, nil
			}
			return true, nil
		})
		if err != nil && !stopped {
			yield(store.Record{}, err)
		}
	}
}

// lastRevision is the last revision of stream, or ledger.NoRevision.
func (s *Store) lastRevision(ctx context.Context, stream string) (int64, error) {
	rev := ledger.NoRevision
	err := s.readEvents(ctx, stream, esdbclient.Backwards, esdbclient.End{}, 1, func(ev *esdbclient.RecordedEvent) (bool, error) {
		rev = int64(ev.EventNumber)
		return false, nil
	})
	if errors.Is(err, ledger.ErrNotFound) {
		return ledger.NoRevision, nil
	}
	return rev, err
}

// readAt reads the record at revision rev of stream.
func (s *Store) readAt(ctx context.Context, stream string, rev uint64) (store.Record, error) {
	var (
		r     store.Record
		found bool
	)
	err := s.readEvents(ctx, stream, esdbclient.Forwards, esdbclient.Revision(rev), 1, func(ev *esdbclient.RecordedEvent) (bool, error) {
		var err error
		r, err = toRecord(ev)
		found = err == nil && ev.EventNumber == rev
		return false, err
	})
	if err != nil {
		return store.Record{}, err
	}
	if !found {
		return store.Record{}, fmt.Errorf("esdb: %s has no revision %d: %w", stream, rev, ledger.ErrNotFound)
	}
	return r, nil
}

// indexEntry reads the index entry of eventID; found is false when there is none.
func (s *Store) indexEntry(ctx context.Context, eventID string) (store.EventIndexEntry, bool, error) {
	var (
		e     store.EventIndexEntry
		found bool
	)
	err := s.readEvents(ctx, store.EventIndexStream(eventID), esdbclient.Forwards, esdbclient.Start{}, 1, func(ev *esdbclient.RecordedEvent) (bool, error) {
		if ev.EventType != store.EventIndexType {
			return false, fmt.Errorf("esdb: %s holds a %q event, not %s", ev.StreamID, ev.EventType, store.EventIndexType)
		}
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return false, fmt.Errorf("esdb: %s: %w", ev.StreamID, err)
		}
		found = true
		return false, nil
	})
	if errors.Is(err, ledger.ErrNotFound) {
		return e, false, nil
	}
	return e, found, err
}

// GetEvent implements store.EventGetter: two reads, the index entry and the record.
func (s *Store) GetEvent(ctx context.Context, eventID string) (store.Record, error) {
	e, found, err := s.indexEntry(ctx, eventID)
	if err != nil {
		return store.Record{}, err
	}
	if !found {
		return store.Record{}, fmt.Errorf("event %q: %w", eventID, ledger.ErrNotFound)
	}
	r, err := s.readAt(ctx, e.Stream, e.Revision)
	if err != nil {
		return store.Record{}, err
	}
	if r.EventID != eventID {
		return store.Record{}, fmt.Errorf("esdb: index of event %q points at %s@%d, which holds %q", eventID, e.Stream, e.Revision, r.EventID)
	}
	return r, nil
}

// forEach runs f for each index of n with at most 8 running at once and returns the
// first error.
func forEach(n int, f func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Append implements store.Appender. See the package comment for what it costs.
func (s *Store) Append(ctx context.Context, stream string, expected ledger.ExpectedRevision, records []store.Proposed) (store.AppendResult, error) {
	if len(records) == 0 {
		return store.AppendResult{}, ledger.Invalid("events", "at least one record required")
	}
	seen := make(map[string]bool, len(records))
	for _, p := range records {
		if seen[p.EventID] {
			return store.AppendResult{}, &ledger.DuplicateEventError{EventID: p.EventID, Reason: "appears twice in the append"}
		}
		seen[p.EventID] = true
	}

	if res, present, err := s.existing(ctx, stream, records); err != nil || present {
		return res, err
	}

	events := make([]esdbclient.EventData, len(records))
	for i, p := range records {
		events[i] = esdbclient.EventData{
			EventID:     uuid.UUID(store.EventUUID(p.EventID)),
			EventType:   p.Type,
			ContentType: esdbclient.ContentTypeJson,
			Data:        p.Data,
			Metadata:    p.Metadata,
		}
	}
	var wr *esdbclient.WriteResult
	err := s.do(ctx, "append "+stream, func(ctx context.Context) error {
		var err error
		wr, err = s.client.AppendToStream(ctx, stream, esdbclient.AppendToStreamOptions{ExpectedRevision: expectedOf(expected)}, events...)
		return err
	})
	var ee *esdbclient.Error
	if errors.As(err, &ee) && ee.Code() == esdbclient.ErrorCodeWrongExpectedVersion {
		// The client's error says expected and actual in text only: read the actual
		// revision instead of parsing a message.
		// A concurrent identical append may have stored the records first.
		if res, present, err := s.existing(ctx, stream, records); err != nil || present {
			return res, err
		}
		actual, rerr := s.lastRevision(ctx, stream)
		if rerr != nil {
			return store.AppendResult{}, rerr
		}
		return store.AppendResult{}, &ledger.ConflictError{Stream: stream, Expected: expected, Actual: actual}
	}
	if err != nil {
		return store.AppendResult{}, err
	}

	// Read the records back for their positions (the answer has the last one only).
	// EventStoreDB answers a write it recognised as a retry (same event ids at the
	// same place) without a position: then another append stored these records.
	alreadyPresent := wr.CommitPosition == 0 && wr.PreparePosition == 0
	n := uint64(len(records))
	if wr.NextExpectedVersion+1 < n {
		return store.AppendResult{}, fmt.Errorf("esdb: append to %s answered revision %d for %d records", stream, wr.NextExpectedVersion, n)
	}
	first := wr.NextExpectedVersion + 1 - n
	res := store.AppendResult{Records: make([]store.Record, 0, n), AlreadyPresent: alreadyPresent}
	err = s.readEvents(ctx, stream, esdbclient.Forwards, esdbclient.Revision(first), n, func(ev *esdbclient.RecordedEvent) (bool, error) {
		r, err := toRecord(ev)
		if err != nil {
			return false, err
		}
		res.Records = append(res.Records, r)
		return true, nil
	})
	if err != nil {
		return store.AppendResult{}, err
	}
	for i, r := range res.Records {
		if i >= len(records) || r.EventID != records[i].EventID {
			return store.AppendResult{}, fmt.Errorf("esdb: append to %s: revisions %d.. do not hold the appended records", stream, first)
		}
	}
	if uint64(len(res.Records)) != n {
		return store.AppendResult{}, fmt.Errorf("esdb: append to %s: read back %d of %d records", stream, len(res.Records), n)
	}
	last := res.Records[n-1]
	res.NextExpectedRevision, res.Position = last.Revision, last.Position

	if err := forEach(len(res.Records), func(i int) error { return s.writeIndex(ctx, res.Records[i]) }); err != nil {
		// The records are stored: report success and let a later retry of the same
		// append write the missing index entries.
		s.log.Error("esdb: index write failed after append", "stream", stream, "err", err)
	}
	return res, nil
}

// existing finds out from the index whether records are stored already. present is
// true when every record is stored in stream with the same content (res then holds the
// stored records); a record stored elsewhere or with other content, or a mix of stored
// and new records, is a *ledger.DuplicateEventError. Some of the records may be
// indexed and others not yet while a concurrent identical append writes its index:
// when the indexed ones sit where one append of all the records would have put them,
// and the stream holds the others next to them, the records are present.
func (s *Store) existing(ctx context.Context, stream string, records []store.Proposed) (res store.AppendResult, present bool, err error) {
	entries := make([]store.EventIndexEntry, len(records))
	found := make([]bool, len(records))
	if err := forEach(len(records), func(i int) error {
		var err error
		entries[i], found[i], err = s.indexEntry(ctx, records[i].EventID)
		return err
	}); err != nil {
		return res, false, err
	}
	nFound, first := 0, -1
	for i, p := range records {
		if !found[i] {
			continue
		}
		nFound++
		if first < 0 {
			first = i
		}
		switch e := entries[i]; {
		case e.Stream != stream:
			return res, false, &ledger.DuplicateEventError{EventID: p.EventID, Reason: "stored in " + e.Stream}
		case e.ContentHash != p.ContentHash:
			return res, false, &ledger.DuplicateEventError{EventID: p.EventID, Reason: "different content"}
		}
	}
	if nFound == 0 {
		return res, false, nil
	}
	res = store.AppendResult{Records: make([]store.Record, len(records)), AlreadyPresent: true}
	if nFound == len(records) {
		for i, e := range entries {
			if res.Records[i], err = s.readAt(ctx, e.Stream, e.Revision); err != nil {
				return store.AppendResult{}, false, err
			}
		}
	} else {
		mixed := &ledger.DuplicateEventError{EventID: records[first].EventID, Reason: "already stored, while other event_ids of the append are not"}
		if entries[first].Revision < uint64(first) {
			return store.AppendResult{}, false, mixed
		}
		base := entries[first].Revision - uint64(first)
		n := 0
		err := s.readEvents(ctx, stream, esdbclient.Forwards, esdbclient.Revision(base), uint64(len(records)), func(ev *esdbclient.RecordedEvent) (bool, error) {
			r, err := toRecord(ev)
			if err != nil {
				return false, err
			}
			if r.EventID != records[n].EventID || r.ContentHash != records[n].ContentHash {
				return false, mixed
			}
			res.Records[n] = r
			n++
			return true, nil
		})
		if err != nil {
			return store.AppendResult{}, false, err
		}
		if n != len(records) {
			return store.AppendResult{}, false, mixed
		}
	}
	last := res.Records[len(records)-1]
	res.NextExpectedRevision, res.Position = last.Revision, last.Position
	return res, true, nil
}

// writeIndex writes the index entry of r, once.
func (s *Store) writeIndex(ctx context.Context, r store.Record) error {
	entry := store.EventIndexEntry{EventID: r.EventID, Stream: r.Stream, Revision: r.Revision, ContentHash: r.ContentHash}
	data, err := json.Marshal(entry)
	if err != nil {
		return err
	}
	name := store.EventIndexStream(r.EventID)
	err = s.do(ctx, "index "+r.EventID, func(ctx context.Context) error {
		_, err := s.client.AppendToStream(ctx, name, esdbclient.AppendToStreamOptions{ExpectedRevision: esdbclient.NoStream{}}, esdbclient.EventData{
			EventID:     uuid.UUID(store.EventUUID(name)),
			EventType:   store.EventIndexType,
			ContentType: esdbclient.ContentTypeJson,
			Data:        data,
		})
		return err
	})
	var ee *esdbclient.Error
	if errors.As(err, &ee) && ee.Code() == esdbclient.ErrorCodeWrongExpectedVersion {
		got, found, rerr := s.indexEntry(ctx, r.EventID)
		if rerr != nil {
			return rerr
		}
		if !found || got != entry {
			return fmt.Errorf("event_id %q is indexed at %s@%d, also stored at %s@%d", r.EventID, got.Stream, got.Revision, r.Stream, r.Revision)
		}
		return nil
	}
	return err
}
