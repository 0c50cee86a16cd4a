package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// appendReq is one Append waiting for the writer.
type appendReq struct {
	stream   string
	expected ledger.ExpectedRevision
	records  []store.Proposed
	// encoded holds the records' values, encoded by the appender. The writer reads
	// only these and the records' strings, never the caller's byte slices, so an
	// appender that gives up (ctx ended) may reuse its buffers at once.
	encoded []encodedRecord
	size    int
	// abandoned is the appender's ctx.Done(): the writer skips an append whose caller
	// has already gone.
	abandoned <-chan struct{}
	reply     chan appendReply // buffered, so the writer never blocks on it
}

type appendReply struct {
	res store.AppendResult
	err error
}

// errAbandoned tells Append that the writer skipped its request because ctx ended.
var errAbandoned = errors.New("embedded: append abandoned")

// Append implements store.Appender. The records are stored by the sequencing writer in
// one batch with other waiting appends and synced before Append returns.
//
// If ctx ends while the append waits, Append returns ctx's error; the records may or
// may not have been stored then, and a retry with the same event_ids tells which.
func (s *Store) Append(ctx context.Context, stream string, expected ledger.ExpectedRevision, records []store.Proposed) (store.AppendResult, error) {
	if len(records) == 0 {
		return store.AppendResult{}, ledger.Invalid("records", "at least one record is required")
	}
	if err := ctx.Err(); err != nil {
		return store.AppendResult{}, err
	}
	if s.isClosed() {
		return store.AppendResult{}, errClosed
	}
	r := &appendReq{
		stream:    stream,
		expected:  expected,
		records:   records,
		encoded:   make([]encodedRecord, len(records)),
		abandoned: ctx.Done(),
		reply:     make(chan appendReply, 1),
	}
	for i := range records {
		r.encoded[i] = encodeRecord(stream, &records[i])
		r.size += len(r.encoded[i].value)
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return store.AppendResult{}, ctx.Err()
	case <-s.quit:
		return store.AppendResult{}, errClosed
	}
	select {
	case rep := <-r.reply:
		return replyOf(ctx, rep)
	case <-ctx.Done():
		return store.AppendResult{}, ctx.Err()
	case <-s.writerDone:
		// The writer has answered everything it took; anything else it never will.
		select {
		case rep := <-r.reply:
			return replyOf(ctx, rep)
		default:
			return store.AppendResult{}, errClosed
		}
	}
}

func replyOf(ctx context.Context, rep appendReply) (store.AppendResult, error) {
	if rep.err == errAbandoned {
		if err := ctx.Err(); err != nil {
			return store.AppendResult{}, err
		}
		return store.AppendResult{}, context.Canceled
	}
	return rep.res, rep.err
}

// run is the sequencing writer.
func (s *Store) run() {
	defer close(s.writerDone)
	group := make([]*appendReq, 0, s.opts.MaxGroup)
	for {
		select {
		case <-s.quit:
			s.failWaiting()
			return
		case r := <-s.reqs:
			group = append(group[:0], r)
			size := r.size
		gather:
			for len(group) < s.opts.MaxGroup && size < s.opts.MaxGroupBytes {
				select {
				case r := <-s.reqs:
					group = append(group, r)
					size += r.size
				default:
					break gather
				}
			}
			s.commitGroup(group)
			clear(group)
		}
	}
}

// failWaiting answers every append still queued with errClosed.
func (s *Store) failWaiting() {
	for {
		select {
		case r := <-s.reqs:
			r.reply <- appendReply{err: errClosed}
		default:
			return
		}
	}
}

// groupState is what the appends of one group have written so far, seen by the later
// appends of the same group.
type groupState struct {
	heads map[string]int64
	ids   map[string]store.Record
	next  uint64
}

// commitGroup checks every append of group in order, writes those that pass into one
// batch, syncs it, and answers each appender.
func (s *Store) commitGroup(group []*appendReq) {
	g := groupState{heads: make(map[string]int64), ids: make(map[string]store.Record), next: s.next}
	replies := make([]appendReply, len(group))
	size := 0
	for _, r := range group {
		size += r.size
	}
	b := s.db.NewBatchWithSize(size + 64*len(group))
	defer b.Close()
	wrote := 0
	for i, r := range group {
		select {
		case <-r.abandoned:
			replies[i].err = errAbandoned
			continue
		default:
		}
		replies[i].res, replies[i].err = s.prepare(b, &g, r)
		if replies[i].err == nil && !replies[i].res.AlreadyPresent {
			wrote++
		}
	}
	if !b.Empty() {
		start := time.Now()
		err := b.Commit(pebble.Sync)
		s.observeCommit(start, len(group), wrote, int(g.next-s.next), err)
		if err != nil {
			err = fmt.Errorf("embedded: commit: %w", errors.Join(ledger.ErrUnavailable, err))
			s.log.Error("commit failed", "err", err)
			for i := range replies {
				if replies[i].err == nil {
					replies[i] = appendReply{err: err}
				}
			}
			// The heads of this group were never stored; forget nothing committed.
			s.reply(group, replies)
			return
		}
		s.syncs.Add(1)
		s.appends.Add(uint64(wrote))
		s.records.Add(g.next - s.next)
		if len(s.heads)+len(g.heads) > maxHeads {
			clear(s.heads)
		}
		for stream, h := range g.heads {
			s.heads[stream] = h
		}
		s.next = g.next
		s.publish(g.next - 1)
	}
	s.reply(group, replies)
}

func (s *Store) reply(group []*appendReq, replies []appendReply) {
	for i, r := range group {
		r.reply <- replies[i]
	}
}

// prepare checks r against what is stored and what g has written, and adds its
// records to b when it passes.
func (s *Store) prepare(b *pebble.Batch, g *groupState, r *appendReq) (store.AppendResult, error) {
	if id, ok := repeatedID(r.records); ok {
		return store.AppendResult{}, &ledger.DuplicateEventError{EventID: id, Reason: "appears twice in one append"}
	}
	var present []store.Record
	for i := range r.records {
		p := &r.records[i]
		rec, ok, err := s.lookup(g, p.EventID)
		if err != nil {
			return store.AppendResult{}, err
		}
		if !ok {
			continue
		}
		switch {
		case rec.Stream != r.stream:
			return store.AppendResult{}, &ledger.DuplicateEventError{EventID: p.EventID, Reason: "stored in " + rec.Stream}
		case rec.ContentHash != p.ContentHash:
			return store.AppendResult{}, &ledger.DuplicateEventError{EventID: p.EventID, Reason: "stored with different content"}
		}
		present = append(present, rec)
	}
	if len(present) == len(r.records) {
		last := present[len(present)-1]
		return store.AppendResult{
			Records:              present,
			NextExpectedRevision: last.Revision,
			Position:             last.Position,
			AlreadyPresent:       true,
		}, nil
	}
	if len(present) > 0 {
		return store.AppendResult{}, &ledger.DuplicateEventError{EventID: present[0].EventID, Reason: "already stored, but other event_ids of the append are not"}
	}

	head, err := s.head(g, r.stream)
	if err != nil {
		return store.AppendResult{}, err
	}
	if !r.expected.Check(head) {
		return store.AppendResult{}, &ledger.ConflictError{Stream: r.stream, Expected: r.expected, Actual: head}
	}
	out := make([]store.Record, len(r.records))
	for i := range r.records {
		p, enc := &r.records[i], &r.encoded[i]
		pos := g.next
		g.next++
		rev := uint64(head + 1 + int64(i))
		enc.setRevision(rev)
		out[i] = store.Record{
			Stream:      r.stream,
			Revision:    rev,
			Position:    ledger.Position{Commit: pos, Prepare: pos},
			EventID:     p.EventID,
			Type:        p.Type,
			Data:        enc.data,
			Metadata:    enc.metadata,
			ContentHash: p.ContentHash,
		}
		g.ids[p.EventID] = out[i]
		pk := encodePos(pos)
		// Batch.Set copies key and value into the batch.
		if err := errors.Join(
			b.Set(logKey(pos), enc.value, nil),
			b.Set(streamKey(r.stream, rev), pk, nil),
			b.Set(eventKey(p.EventID), pk, nil),
		); err != nil {
			return store.AppendResult{}, fmt.Errorf("embedded: batch: %w", err)
		}
	}
	g.heads[r.stream] = head + int64(len(r.records))
	last := out[len(out)-1]
	return store.AppendResult{Records: out, NextExpectedRevision: last.Revision, Position: last.Position}, nil
}

// repeatedID returns an EventID that appears more than once in records.
func repeatedID(records []store.Proposed) (string, bool) {
	if len(records) <= 16 {
		for i := range records {
			for j := range i {
				if records[j].EventID == records[i].EventID {
					return records[i].EventID, true
				}
			}
		}
		return "", false
	}
	seen := make(map[string]struct{}, len(records))
	for i := range records {
		if _, ok := seen[records[i].EventID]; ok {
			return records[i].EventID, true
		}
		seen[records[i].EventID] = struct{}{}
	}
	return "", false
}

// lookup finds the record stored (or written earlier in this group) under eventID.
func (s *Store) lookup(g *groupState, eventID string) (store.Record, bool, error) {
	if rec, ok := g.ids[eventID]; ok {
		// Another appender's record: give this one its own copy of the bytes.
		rec.Data = bytes.Clone(rec.Data)
		rec.Metadata = bytes.Clone(rec.Metadata)
		return rec, true, nil
	}
	v, closer, err := s.db.Get(eventKey(eventID))
	if errors.Is(err, pebble.ErrNotFound) {
		return store.Record{}, false, nil
	}
	if err != nil {
		return store.Record{}, false, fmt.Errorf("embedded: read event index: %w", err)
	}
	pos, err := decodePos(v)
	closer.Close()
	if err != nil {
		return store.Record{}, false, err
	}
	rec, err := getRecord(s.db, pos)
	if err != nil {
		return store.Record{}, false, err
	}
	return rec, true, nil
}

// head returns the last revision of stream, or ledger.NoRevision.
func (s *Store) head(g *groupState, stream string) (int64, error) {
	if h, ok := g.heads[stream]; ok {
		return h, nil
	}
	if h, ok := s.heads[stream]; ok {
		return h, nil
	}
	h, err := readHead(s.db, stream)
	if err != nil {
		return 0, err
	}
	s.heads[stream] = h
	return h, nil
}

// readHead reads the last revision of stream from the stream index.
func readHead(db *pebble.DB, stream string) (int64, error) {
	p := streamPrefix(stream)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, fmt.Errorf("embedded: read stream head: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		if err := it.Error(); err != nil {
			return 0, fmt.Errorf("embedded: read stream head: %w", err)
		}
		return ledger.NoRevision, nil
	}
	k := it.Key()
	if len(k) != len(p)+8 {
		return 0, fmt.Errorf("embedded: malformed stream key %x", k)
	}
	return int64(binary.BigEndian.Uint64(k[len(p):])), nil
}

// getRecord reads the record at pos.
func getRecord(db *pebble.DB, pos uint64) (store.Record, error) {
	v, closer, err := db.Get(logKey(pos))
	if err != nil {
		return store.Record{}, fmt.Errorf("embedded: read log at %d: %w", pos, err)
	}
	defer closer.Close()
	rv, err := decodeRecordView(v)
	if err != nil {
		return store.Record{}, fmt.Errorf("at position %d: %w", pos, err)
	}
	return rv.record(pos, nil, nil), nil
}
