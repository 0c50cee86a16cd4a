package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	ledger "github.com/stanceledger/ledger"
)

// view is a consistent read of the model: a Pebble snapshot and the checkpoint it
// holds (or, for notify, the DB itself, which Apply holds still meanwhile).
type view struct {
	r       pebble.Reader
	applied ledger.Position
	// current says the model has its current table; a bulk build has none (see
	// applier), and answers current queries from the versions, as of applied.
	current bool
	vit     *pebble.Iterator // over every version; opened by the first as-of read
	unlock  func()           // releases what open took; nil for notify's view
}

// open takes a snapshot and resolves q's log position against it. The view holds
// p.mu for reading until close, so a rebuild's switch-over waits for it.
func (p *Positions) open(q Query) (*view, ledger.Position, error) {
	p.mu.RLock()
	if p.db == nil {
		p.mu.RUnlock()
		return nil, ledger.Position{}, ledger.ErrClosed
	}
	snap := p.db.NewSnapshot()
	applied, err := readApplied(snap)
	if err != nil {
		snap.Close()
		p.mu.RUnlock()
		return nil, ledger.Position{}, err
	}
	at := q.AsOfPosition
	if at.IsZero() {
		at = applied
	}
	if applied.Less(at) {
		snap.Close()
		p.mu.RUnlock()
		return nil, ledger.Position{}, &LagError{View: PositionsName, Want: at, Applied: applied, Cause: ledger.ErrUnavailable}
	}
	unlock := func() {
		snap.Close()
		p.mu.RUnlock()
	}
	return &view{r: snap, applied: applied, current: !p.bulk, unlock: unlock}, at, nil
}

func (v *view) close() {
	if v.vit != nil {
		v.vit.Close()
	}
	if v.unlock != nil {
		v.unlock()
	}
}

// Get returns the stance of (party, topic) at q: the contribution with the latest
// valid time (then the later record, then the later index in the record) among
// those that count at q. It also returns the log position the answer is for. With
// no such contribution it returns an error matching ledger.ErrNotFound.
func (p *Positions) Get(ctx context.Context, party, topic string, q Query) (PartyPosition, ledger.Position, error) {
	v, at, err := p.open(q)
	if err != nil {
		return PartyPosition{}, ledger.Position{}, err
	}
	defer v.close()
	pp, ok, err := v.get(party, topic, q.AsOfTime, at)
	if err != nil {
		return PartyPosition{}, at, err
	}
	if !ok {
		return PartyPosition{}, at, fmt.Errorf("%w: no stance of %q on %q", ledger.ErrNotFound, party, topic)
	}
	return pp, at, nil
}

// get answers one pair at (t, at) from the current table when it can, else from
// the pair's versions.
func (v *view) get(party, topic string, t time.Time, at ledger.Position) (PartyPosition, bool, error) {
	if t.IsZero() && at == v.applied && v.current {
		return getCurrent(v.r, party, topic, v.version)
	}
	it, err := v.versions()
	if err != nil {
		return PartyPosition{}, false, err
	}
	return asOf(it, party, topic, t, at)
}

// versions returns the view's iterator over the version keys, opened on first use.
func (v *view) versions() (*pebble.Iterator, error) {
	if v.vit == nil {
		it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixVersion}, UpperBound: []byte{prefixVersion + 1}})
		if err != nil {
			return nil, err
		}
		v.vit = it
	}
	return v.vit, nil
}

// version returns the value of the version key k (valid until the view reads
// again), by a seek of the view's version iterator: cheaper than a Get.
func (v *view) version(k []byte) ([]byte, error) {
	it, err := v.versions()
	if err != nil {
		return nil, err
	}
	if !it.SeekGE(k) || !bytes.Equal(it.Key(), k) {
		return nil, errors.Join(it.Error(), pebble.ErrNotFound)
	}
	return it.Value(), nil
}

// getCurrent reads the current stance of a pair from r; version reads a version's
// value (see decodeCurrent).
func getCurrent(r pebble.Reader, party, topic string, version func(k []byte) ([]byte, error)) (PartyPosition, bool, error) {
	val, closer, err := r.Get(pairKey(prefixCurrent, party, topic))
	if errors.Is(err, pebble.ErrNotFound) {
		return PartyPosition{}, false, nil
	}
	if err != nil {
		return PartyPosition{}, false, err
	}
	defer closer.Close()
	pp, err := decodeCurrent(party, topic, val, version)
	return pp, err == nil, err
}

// decodeCurrent decodes the value of a pair's current key: the current version's
// suffix and value, or its suffix alone (see applier.promote), when the value is
// read from the version with version.
func decodeCurrent(party, topic string, val []byte, version func(k []byte) ([]byte, error)) (PartyPosition, error) {
	switch {
	case len(val) < suffixLen:
		return PartyPosition{}, errCorrupt
	case len(val) > suffixLen:
		pp, _, err := decodeVersion(party, topic, val[:suffixLen], val[suffixLen:])
		return pp, err
	}
	row, err := version(append(versionPrefix(party, topic), val...))
	if err != nil {
		return PartyPosition{}, fmt.Errorf("current version of (%s, %s): %w", party, topic, err)
	}
	pp, _, err := decodeVersion(party, topic, val, row)
	return pp, err
}

// asOf scans the versions of one pair with valid time <= t (all when t is zero)
// from the greatest down, with it (an iterator over the version keys), and returns
// the first that counts at log position at.
func asOf(it *pebble.Iterator, party, topic string, t time.Time, at ledger.Position) (PartyPosition, bool, error) {
	prefix := versionPrefix(party, topic)
	upper := prefixEnd(prefix)
	if !t.IsZero() {
		upper = putOcc(bytes.Clone(prefix), t.Add(time.Nanosecond))
	}
	for ok := it.SeekLT(upper); ok && bytes.HasPrefix(it.Key(), prefix); ok = it.Prev() {
		suf := it.Key()[len(prefix):]
		s, err := parseSuffix(suf)
		if err != nil {
			return PartyPosition{}, false, err
		}
		if at.Less(s.from) {
			continue
		}
		val := it.Value()
		until, err := rowUntil(val)
		if err != nil {
			return PartyPosition{}, false, err
		}
		if !until.IsZero() && !at.Less(until) {
			continue
		}
		pp, _, err := decodeVersion(party, topic, suf, val)
		return pp, err == nil, err
	}
	return PartyPosition{}, false, it.Error()
}

// decodeVersion turns a version key suffix and value into a PartyPosition.
func decodeVersion(party, topic string, suf, val []byte) (PartyPosition, rowValue, error) {
	s, err := parseSuffix(suf)
	if err != nil {
		return PartyPosition{}, rowValue{}, err
	}
	row, err := parseRow(val)
	if err != nil {
		return PartyPosition{}, rowValue{}, err
	}
	return PartyPosition{
		Party: party, Topic: topic,
		Alignment: row.alignment, Act: row.act, Summary: row.summary, Quote: row.quote,
		OccurredAt: s.occ, EventID: row.eventID, Position: s.rec,
		Since: s.from, SinceEventID: row.sinceEventID, Index: s.idx,
	}, row, nil
}

// ListFilter narrows List. Empty fields match everything.
type ListFilter struct {
	Party, Topic string
	// After resumes a listing after this (party, topic), exclusive; empty starts at the beginning.
	AfterParty, AfterTopic string
	// Limit is the most positions to return; 0 means no limit.
	Limit int
}

// List returns the stances at q of every pair matching f, ordered by party then
// topic, and the log position they are for. more is true when Limit cut the list.
func (p *Positions) List(ctx context.Context, f ListFilter, q Query) (list []PartyPosition, at ledger.Position, more bool, err error) {
	v, at, err := p.open(q)
	if err != nil {
		return nil, ledger.Position{}, false, err
	}
	defer v.close()
	if q.AsOfTime.IsZero() && at == v.applied && f.Topic == "" && v.current {
		list, more, err = v.listCurrent(ctx, f)
		return list, at, more, err
	}
	for pp, err := range v.pairs(ctx, f.Party, f.Topic, f.AfterParty, f.AfterTopic) {
		if err != nil {
			return nil, at, false, err
		}
		got, ok, err := v.get(pp.party, pp.topic, q.AsOfTime, at)
		if err != nil {
			return nil, at, false, err
		}
		if !ok {
			continue
		}
		if f.Limit > 0 && len(list) == f.Limit {
			return list, at, true, nil
		}
		list = append(list, got)
	}
	return list, at, false, nil
}

// listCurrent lists current stances by one range scan of the current table (for
// every party, or one).
func (v *view) listCurrent(ctx context.Context, f ListFilter) ([]PartyPosition, bool, error) {
	lower := []byte{prefixCurrent}
	if f.Party != "" {
		lower = pairKey(prefixCurrent, f.Party, "")
	}
	upper := prefixEnd(lower)
	if f.AfterParty != "" {
		if after := append(pairKey(prefixCurrent, f.AfterParty, f.AfterTopic), 0); bytes.Compare(after, lower) > 0 {
			lower = after
		}
	}
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	var list []PartyPosition
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		if f.Limit > 0 && len(list) == f.Limit {
			return list, true, nil
		}
		party, topic, err := splitPair(it.Key())
		if err != nil {
			return nil, false, err
		}
		pp, err := decodeCurrent(party, topic, it.Value(), v.version)
		if err != nil {
			return nil, false, err
		}
		list = append(list, pp)
	}
	return list, false, it.Error()
}

// pairs yields every (party, topic) that has ever had a contribution, matching
// party and topic ("" matches any), after (afterParty, afterTopic), in (party,
// topic) order.
func (v *view) pairs(ctx context.Context, party, topic, afterParty, afterTopic string) func(func(contribKey, error) bool) {
	return func(yield func(contribKey, error) bool) {
		if party != "" && topic != "" {
			if afterParty != "" && (party < afterParty || party == afterParty && topic <= afterTopic) {
				return
			}
			_, closer, err := v.r.Get(pairKey(prefixPair, party, topic))
			if errors.Is(err, pebble.ErrNotFound) {
				return
			}
			if err == nil {
				closer.Close()
				yield(contribKey{party, topic}, nil)
				return
			}
			yield(contribKey{}, err)
			return
		}
		var lower, upper []byte
		var swap bool
		switch {
		case topic != "":
			lower = pairKey(prefixTopic, topic, "")
			swap = true
		case party != "":
			lower = pairKey(prefixPair, party, "")
		default:
			lower = []byte{prefixPair}
		}
		upper = prefixEnd(lower)
		if afterParty != "" {
			var after []byte
			if swap {
				after = pairKey(prefixTopic, topic, afterParty)
			} else {
				after = pairKey(prefixPair, afterParty, afterTopic)
			}
			after = append(after, 0) // the smallest key after it
			if bytes.Compare(after, lower) > 0 {
				lower = after
			}
		}
		it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			yield(contribKey{}, err)
			return
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			if err := ctx.Err(); err != nil {
				yield(contribKey{}, err)
				return
			}
			a, b, err := splitPair(it.Key())
			if err != nil {
				yield(contribKey{}, err)
				return
			}
			ck := contribKey{a, b}
			if swap {
				ck = contribKey{b, a}
			}
			if !yield(ck, nil) {
				return
			}
		}
		if err := it.Error(); err != nil {
			yield(contribKey{}, err)
		}
	}
}

// History returns every version of every contribution to (party, topic), in
// valid-time order (then record position, index, and the position it counts from),
// each with the corrections of its record, and the log position the answer is for.
// A pair with no contribution gives an error matching ledger.ErrNotFound.
func (p *Positions) History(ctx context.Context, party, topic string) ([]HistoryEntry, ledger.Position, error) {
	v, at, err := p.open(Query{})
	if err != nil {
		return nil, ledger.Position{}, err
	}
	defer v.close()
	prefix := versionPrefix(party, topic)
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, at, err
	}
	defer it.Close()
	var out []HistoryEntry
	fixes := make(map[string][]Correction)
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, at, err
		}
		pp, row, err := decodeVersion(party, topic, it.Key()[len(prefix):], it.Value())
		if err != nil {
			return nil, at, err
		}
		h := HistoryEntry{Contribution: pp, Until: row.until, UntilEventID: row.untilEventID, UntilEffect: row.untilEffect}
		cs, seen := fixes[pp.EventID]
		if !seen {
			cs, err = recordCorrections(v.r, pp.EventID)
			if err != nil {
				return nil, at, err
			}
			fixes[pp.EventID] = cs
		}
		h.RecordCorrections = cs
		out = append(out, h)
	}
	if err := it.Error(); err != nil {
		return nil, at, err
	}
	if len(out) == 0 {
		return nil, at, fmt.Errorf("%w: no contribution of %q on %q", ledger.ErrNotFound, party, topic)
	}
	return out, at, nil
}

// recordCorrections returns the corrections of the record eventID: none when the
// model keeps no row of it (a model that keeps rows of corrected records only).
func recordCorrections(r pebble.Reader, eventID string) ([]Correction, error) {
	val, closer, err := r.Get(recordKey(eventID))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("record %q: %w", eventID, err)
	}
	defer closer.Close()
	ri, err := parseRecordInfo(val)
	if err != nil {
		return nil, err
	}
	var out []Correction
	for _, f := range ri.fixes {
		out = append(out, Correction{EventID: f.eventID, Position: f.pos, Effect: f.effect, RedatedTo: f.redatedTo, Reason: f.reason})
	}
	return out, nil
}

// Snapshot is the full party × topic table at one (T, P).
type Snapshot struct {
	// AsOfTime is T; the zero time means no valid-time limit.
	AsOfTime time.Time
	// AsOfPosition is P: the table counts records and corrections at positions <= P.
	AsOfPosition ledger.Position
	// Rows are ordered by party, then topic (bytewise).
	Rows []PartyPosition
	// Digest is the hex SHA-256 of the rows' canonical encoding (see Digest).
	Digest string
}

// Snapshot returns the whole table at q. P defaults to the view's applied position.
func (p *Positions) Snapshot(ctx context.Context, q Query) (Snapshot, error) {
	rows, at, _, err := p.List(ctx, ListFilter{}, q)
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{AsOfTime: q.AsOfTime, AsOfPosition: at, Rows: rows, Digest: Digest(rows)}, nil
}
