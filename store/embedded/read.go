package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"

	"github.com/cockroachdb/pebble/v2"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// Reads hold Pebble (and the close lock) for one chunk at a time: at most chunkRecords
// records returned and chunkScan log entries examined.
const (
	chunkRecords = 256
	chunkScan    = 4096
)

// GetEvent implements store.EventGetter.
func (s *Store) GetEvent(ctx context.Context, eventID string) (store.Record, error) {
	if err := ctx.Err(); err != nil {
		return store.Record{}, err
	}
	var rec store.Record
	err := s.view(func(db *pebble.DB) error {
		v, closer, err := db.Get(eventKey(eventID))
		if errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("event %q: %w", eventID, ledger.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("embedded: read event index: %w", err)
		}
		pos, err := decodePos(v)
		closer.Close()
		if err != nil {
			return err
		}
		if pos > s.last.Load() {
			// Visible in Pebble but not synced yet: not stored as far as readers know.
			return fmt.Errorf("event %q: %w", eventID, ledger.ErrNotFound)
		}
		rec, err = getRecord(db, pos)
		return err
	})
	return rec, err
}

// ReadStream implements store.StreamReader.
func (s *Store) ReadStream(ctx context.Context, stream string, opts store.ReadStreamOptions) iter.Seq2[store.Record, error] {
	return func(yield func(store.Record, error) bool) {
		c := streamCursor{stream: stream, opts: opts, first: true}
		remaining := opts.Max
		var buf []store.Record
		for !c.done {
			if err := ctx.Err(); err != nil {
				yield(store.Record{}, err)
				return
			}
			n := uint64(chunkRecords)
			if opts.Max > 0 && remaining < n {
				n = remaining
			}
			var err error
			buf, err = s.readStreamChunk(buf[:0], &c, int(n))
			if err != nil {
				yield(store.Record{}, err)
				return
			}
			for _, r := range buf {
				if !yield(r, nil) {
					return
				}
			}
			if opts.Max > 0 {
				remaining -= uint64(len(buf))
				if remaining == 0 {
					return
				}
			}
		}
	}
}

// streamCursor is where a ReadStream continues.
type streamCursor struct {
	stream string
	opts   store.ReadStreamOptions
	first  bool   // no chunk read yet: check the stream exists, honour FromEnd
	next   uint64 // the next revision to read (after the first chunk)
	done   bool
}

// readStreamChunk appends up to n records of c's stream to dst and advances c.
//
// Pebble makes a batch visible before its WAL sync ends; like ReadAll, a stream read
// skips records past the last synced position, so it never returns a record a crash
// could still take back.
func (s *Store) readStreamChunk(dst []store.Record, c *streamCursor, n int) ([]store.Record, error) {
	last := s.last.Load()
	err := s.view(func(db *pebble.DB) error {
		p := streamPrefix(c.stream)
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return fmt.Errorf("embedded: read stream: %w", err)
		}
		defer it.Close()
		// entry decodes the iterator's stream index entry.
		entry := func() (rev, pos uint64, err error) {
			key := it.Key()
			if len(key) != len(p)+8 {
				return 0, 0, fmt.Errorf("embedded: malformed stream key %x", key)
			}
			pos, err = decodePos(it.Value())
			return binary.BigEndian.Uint64(key[len(p):]), pos, err
		}
		if c.first {
			// The stream exists when its revision 0 is synced.
			exists := it.First()
			if exists {
				_, pos, err := entry()
				if err != nil {
					return err
				}
				exists = pos <= last
			}
			if err := it.Error(); err != nil {
				return fmt.Errorf("embedded: read stream: %w", err)
			}
			if !exists {
				return fmt.Errorf("stream %q: %w", c.stream, ledger.ErrNotFound)
			}
		}
		var valid bool
		switch {
		case c.first && (c.opts.FromEnd || c.opts.Backwards && c.opts.From == math.MaxUint64):
			valid = it.Last()
		case c.first && c.opts.Backwards:
			valid = it.SeekLT(streamKey(c.stream, c.opts.From+1))
		case c.first:
			valid = it.SeekGE(streamKey(c.stream, c.opts.From))
		case c.opts.Backwards:
			valid = it.SeekLT(streamKey(c.stream, c.next+1))
		default:
			valid = it.SeekGE(streamKey(c.stream, c.next))
		}
		if c.first && c.opts.FromEnd || c.opts.Backwards {
			// Step back over the newest revisions if they are not synced yet.
			for valid {
				_, pos, err := entry()
				if err != nil {
					return err
				}
				if pos <= last {
					break
				}
				valid = it.Prev()
			}
		}
		c.first = false
		var positions [chunkRecords]uint64
		var revs [chunkRecords]uint64
		k := 0
		for ; valid && k < n; k++ {
			rev, pos, err := entry()
			if err != nil {
				return err
			}
			if pos > last {
				// Forwards: this and every later revision are not synced yet.
				valid = false
				break
			}
			revs[k], positions[k] = rev, pos
			if c.opts.Backwards {
				valid = it.Prev()
			} else {
				valid = it.Next()
			}
		}
		if err := it.Error(); err != nil {
			return fmt.Errorf("embedded: read stream: %w", err)
		}
		switch {
		case k == 0 || !valid:
			c.done = true
		case c.opts.Backwards:
			c.next = revs[k-1] - 1
		default:
			c.next = revs[k-1] + 1
		}
		for _, pos := range positions[:k] {
			rec, err := getRecord(db, pos)
			if err != nil {
				return err
			}
			dst = append(dst, rec)
		}
		return nil
	})
	return dst, err
}

// firstPosition returns the first dense position at or after from.
func firstPosition(from ledger.Position) uint64 {
	p := from.Commit
	if from.Prepare > from.Commit {
		// (p, p) < from: the record at p is before from.
		p++
	}
	return max(p, 1)
}

// ReadAll implements store.LogReader. It reads up to the last position committed when
// it reaches the end.
func (s *Store) ReadAll(ctx context.Context, from ledger.Position, filter store.Filter) iter.Seq2[store.Record, error] {
	return func(yield func(store.Record, error) bool) {
		pos := firstPosition(from)
		var buf []store.Record
		emit := func(r store.Record) bool { return yield(r, nil) }
		for {
			end := s.last.Load()
			if pos > end {
				if err := ctx.Err(); err != nil {
					yield(store.Record{}, err)
				} else if s.isClosed() {
					yield(store.Record{}, errClosed)
				}
				return
			}
			next, more, err := s.readRange(ctx, pos, end, &filter, &buf, emit)
			if err != nil {
				yield(store.Record{}, err)
			}
			if err != nil || !more {
				return
			}
			pos = next
		}
	}
}

// Subscribe implements store.Subscriber. A live subscriber waits for commits and reads
// the new records from Pebble, so it holds no queue and is never ended for being slow.
// Close ends it with an error matching ledger.ErrClosed.
func (s *Store) Subscribe(ctx context.Context, from ledger.Position, filter store.Filter) iter.Seq2[store.Message, error] {
	return func(yield func(store.Message, error) bool) {
		pos := firstPosition(from)
		var buf []store.Record
		emit := func(r store.Record) bool { return yield(store.Message{Record: r}, nil) }
		// Catch-up: everything committed when the subscription started.
		pos, more, err := s.readRange(ctx, pos, s.last.Load(), &filter, &buf, emit)
		switch {
		case err != nil:
			yield(store.Message{}, err)
			return
		case !more:
			return
		case s.isClosed():
			yield(store.Message{}, errClosed)
			return
		}
		if !yield(store.Message{CaughtUp: true}, nil) {
			return
		}
		// Live. The channel is taken before last is read, so a commit after the read
		// closes it and nothing is missed.
		for {
			changed := s.changedChan()
			end := s.last.Load()
			if pos > end {
				select {
				case <-changed:
					continue
				case <-ctx.Done():
					yield(store.Message{}, ctx.Err())
					return
				case <-s.quit:
					yield(store.Message{}, errClosed)
					return
				}
			}
			pos, more, err = s.readRange(ctx, pos, end, &filter, &buf, emit)
			if err != nil {
				yield(store.Message{}, err)
			}
			if err != nil || !more {
				return
			}
		}
	}
}

// readRange passes emit every record in positions [pos, end] that passes f, reading
// the log in chunks into *buf (reused), and returns the position after end. It stops
// early with more false when emit returns false, and with ctx's error, checked before
// each chunk, or the log's.
func (s *Store) readRange(ctx context.Context, pos, end uint64, f *store.Filter, buf *[]store.Record, emit func(store.Record) bool) (next uint64, more bool, err error) {
	for pos <= end {
		if err := ctx.Err(); err != nil {
			return pos, false, err
		}
		*buf, pos, err = s.readLog((*buf)[:0], pos, end, f)
		if err != nil {
			return pos, false, err
		}
		for _, r := range *buf {
			if !emit(r) {
				return pos, false, nil
			}
		}
	}
	return pos, true, nil
}

var partyPrefix = []byte(ledger.StreamPrefix)

// slabSize is the size of the allocations the records of one read (readLog) share
// for their Data and Metadata: one per record cost the rebuild of the positions view
// a malloc (and its share of garbage collection) per record. A record larger than a
// quarter of it gets its own. Whoever keeps one record's bytes keeps its slab.
const slabSize = 64 << 10

// readLog appends to dst the ledger records in positions [from, to] that pass f, at
// most chunkRecords of them after examining at most chunkScan entries, and returns the
// position to continue from.
func (s *Store) readLog(dst []store.Record, from, to uint64, f *store.Filter) ([]store.Record, uint64, error) {
	next := from
	err := s.view(func(db *pebble.DB) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: logKey(from), UpperBound: logKey(to + 1)})
		if err != nil {
			return fmt.Errorf("embedded: read log: %w", err)
		}
		defer it.Close()
		var slab []byte // see slabSize
		scanned := 0
		for valid := it.First(); valid && scanned < chunkScan && len(dst) < chunkRecords; valid = it.Next() {
			scanned++
			pos, err := logKeyPos(it.Key())
			if err != nil {
				return err
			}
			v, err := it.ValueAndErr()
			if err != nil {
				return fmt.Errorf("embedded: read log at %d: %w", pos, err)
			}
			rv, err := decodeRecordView(v)
			if err != nil {
				return fmt.Errorf("at position %d: %w", pos, err)
			}
			next = pos + 1
			if len(rv.stream) > len(partyPrefix) && bytes.HasPrefix(rv.stream, partyPrefix) && rv.match(f) {
				var prev *store.Record
				if len(dst) > 0 {
					prev = &dst[len(dst)-1]
				}
				dst = append(dst, rv.record(pos, prev, &slab))
			}
		}
		if err := it.Error(); err != nil {
			return fmt.Errorf("embedded: read log: %w", err)
		}
		if scanned == 0 {
			// A committed position is missing from the log: never skip it silently.
			return fmt.Errorf("embedded: read log: no record in positions %d..%d", from, to)
		}
		return nil
	})
	return dst, next, err
}

// match is store.Filter.Match on the encoded record, without copying it.
func (rv *recordView) match(f *store.Filter) bool {
	return matchBytes(f.Streams, rv.stream) && matchBytes(f.Types, rv.typ)
}

func matchBytes(list []string, b []byte) bool {
	if len(list) == 0 {
		return true
	}
	for _, s := range list {
		if s == string(b) {
			return true
		}
	}
	return false
}
