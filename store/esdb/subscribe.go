package esdb

import (
	"context"
	"errors"
	"io"
	"iter"
	"math/rand/v2"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// ReadAll implements store.LogReader: a catch-up subscription to $all, filtered on the
// server by the "party-" stream prefix (or the filter's stream names), that ends at
// CaughtUp. Type filters apply here, after the server's filter.
func (s *Store) ReadAll(ctx context.Context, from ledger.Position, filter store.Filter) iter.Seq2[store.Record, error] {
	return func(yield func(store.Record, error) bool) {
		st := followState{last: from, includeLast: !from.IsZero(), haveLast: !from.IsZero()}
		done, err := s.followOnce(ctx, &st, filter, false, func(m store.Message, err error) bool {
			return yield(m.Record, err)
		})
		if err != nil && !done {
			yield(store.Record{}, err)
		}
	}
}

// Subscribe implements store.Subscriber on a catch-up subscription to $all with the
// same server-side filter as ReadAll. When the subscription drops (the node went away,
// a leader change), it resumes after the last position it delivered or the last
// checkpoint the server sent, waiting between attempts from MinBackoff doubling up to
// MaxBackoff with jitter, so no record is lost or repeated; CaughtUp is delivered once.
func (s *Store) Subscribe(ctx context.Context, from ledger.Position, filter store.Filter) iter.Seq2[store.Message, error] {
	return func(yield func(store.Message, error) bool) {
		st := followState{last: from, includeLast: !from.IsZero(), haveLast: !from.IsZero()}
		backoff := s.opts.MinBackoff
		for {
			st.progressed = false
			done, err := s.followOnce(ctx, &st, filter, true, yield)
			if done {
				return
			}
			switch {
			case ctx.Err() != nil:
				yield(store.Message{}, ctx.Err())
				return
			case s.closed.Load():
				yield(store.Message{}, ledger.ErrClosed)
				return
			case err != nil && !errors.Is(err, ledger.ErrUnavailable):
				yield(store.Message{}, err)
				return
			}
			if st.progressed {
				backoff = s.opts.MinBackoff
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			s.log.Warn("esdb: subscription dropped; resuming", "after", st.last.String(), "in", wait, "err", err)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			case <-s.base.Done():
				t.Stop()
			}
			backoff = min(2*backoff, s.opts.MaxBackoff)
		}
	}
}

// followState is where a subscription stands across reconnections.
type followState struct {
	// last is the position to resume after; includeLast says the record at last has
	// not been delivered yet (a subscription's own from is inclusive).
	last        ledger.Position
	includeLast bool
	haveLast    bool
	caughtUp    bool
	progressed  bool
}

// prefixes is the server-side stream filter for f.
func prefixes(f store.Filter) []string {
	var out []string
	for _, name := range f.Streams {
		if _, ok := ledger.PartyOf(name); ok {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return []string{ledger.StreamPrefix}
	}
	return out
}

// followOnce runs one subscription to $all from st. With live false it returns at
// CaughtUp. done is true when the consumer stopped or the read completed; otherwise
// err says why the subscription ended.
func (s *Store) followOnce(ctx context.Context, st *followState, filter store.Filter, live bool, yield func(store.Message, error) bool) (done bool, err error) {
	if s.closed.Load() {
		return false, ledger.ErrClosed
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()

	if st.includeLast {
		r, ok, err := s.readAllAt(ctx, st.last)
		if err != nil {
			return false, err
		}
		st.includeLast = false
		if ok && filter.Match(r) {
			if !yield(store.Message{Record: r}, nil) {
				return true, nil
			}
		}
	}

	opts := esdbclient.SubscribeToAllOptions{
		From:   esdbclient.Start{},
		Filter: &esdbclient.SubscriptionFilter{Type: esdbclient.StreamFilterType, Prefixes: prefixes(filter)},
	}
	if st.haveLast {
		opts.From = esdbclient.Position{Commit: st.last.Commit, Prepare: st.last.Prepare}
	}
	var sub *esdbclient.Subscription
	if err := s.do(ctx, "subscribe $all", func(ctx context.Context) error {
		var err error
		sub, err = s.client.SubscribeToAll(ctx, opts)
		return err
	}); err != nil {
		return false, err
	}
	s.inflight.Add(1)
	defer s.inflight.Done()
	stop := context.AfterFunc(ctx, func() { _ = sub.Close() })
	defer stop()
	defer sub.Close()
	for {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, s.mapErr("subscribe $all", ev.SubscriptionDropped.Error)
		case ev.EventAppeared != nil:
			re := ev.EventAppeared.OriginalEvent()
			pos := ledger.Position{Commit: re.Position.Commit, Prepare: re.Position.Prepare}
			if st.haveLast && !st.last.Less(pos) {
				continue // already delivered before a reconnection
			}
			st.last, st.haveLast, st.progressed = pos, true, true
			if _, ok := ledger.PartyOf(re.StreamID); !ok {
				continue
			}
			r, err := toRecord(re)
			if err != nil {
				yield(store.Message{}, err)
				return true, nil
			}
			if !filter.Match(r) {
				continue
			}
			if !yield(store.Message{Record: r}, nil) {
				return true, nil
			}
		case ev.CheckPointReached != nil:
			p := ledger.Position{Commit: ev.CheckPointReached.Commit, Prepare: ev.CheckPointReached.Prepare}
			if !st.haveLast || st.last.Less(p) {
				st.last, st.haveLast = p, true
			}
			st.progressed = true
		case ev.CaughtUp != nil:
			if !live {
				return true, nil
			}
			if !st.caughtUp {
				st.caughtUp = true
				if !yield(store.Message{CaughtUp: true}, nil) {
					return true, nil
				}
			}
		}
	}
}

// readAllAt reads the ledger record at exactly p, if there is one.
func (s *Store) readAllAt(ctx context.Context, p ledger.Position) (store.Record, bool, error) {
	var (
		r  store.Record
		ok bool
	)
	err := s.do(ctx, "read $all", func(ctx context.Context) error {
		rs, err := s.client.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: esdbclient.Forwards, From: esdbclient.Position{Commit: p.Commit, Prepare: p.Prepare}}, 1)
		if err != nil {
			return err
		}
		defer rs.Close()
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		re := ev.OriginalEvent()
		if re.Position.Commit != p.Commit || re.Position.Prepare != p.Prepare {
			return nil
		}
		if _, isLedger := ledger.PartyOf(re.StreamID); !isLedger {
			return nil
		}
		r, err = toRecord(re)
		ok = err == nil
		return err
	})
	return r, ok, err
}
