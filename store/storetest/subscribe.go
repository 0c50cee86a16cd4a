package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// sub runs a subscription in a goroutine and hands its items to the test, so every
// wait is bounded.
type sub struct {
	items  chan subItem
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

type subItem struct {
	m   store.Message
	err error
}

// subscribe starts s.Subscribe(from, filter); the test's cleanup stops it.
func subscribe(t *testing.T, s store.Store, from ledger.Position, filter store.Filter) *sub {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	x := &sub{items: make(chan subItem), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(x.done)
		defer close(x.items)
		for m, err := range s.Subscribe(ctx, from, filter) {
			select {
			case x.items <- subItem{m, err}:
			case <-time.After(Wait):
				// Nobody reads any more: the test has failed or stopped early.
				return
			}
		}
	}()
	t.Cleanup(func() { x.stop(t) })
	return x
}

// next returns the next message, failing the test on an error, the end of the
// subscription, or a wait longer than Wait.
func (x *sub) next(t *testing.T) store.Message {
	t.Helper()
	it, ok := x.nextItem(t)
	if !ok {
		t.Fatal("subscription ended")
	}
	if it.err != nil {
		t.Fatalf("subscription: %v", it.err)
	}
	return it.m
}

func (x *sub) nextItem(t *testing.T) (subItem, bool) {
	t.Helper()
	select {
	case it, ok := <-x.items:
		return it, ok
	case <-time.After(Wait):
		t.Fatalf("no subscription message within %v", Wait)
		return subItem{}, false
	}
}

// records reads n records, skipping the CaughtUp mark.
func (x *sub) records(t *testing.T, n int) []store.Record {
	t.Helper()
	var out []store.Record
	for len(out) < n {
		if m := x.next(t); !m.CaughtUp {
			out = append(out, m.Record)
		}
	}
	return out
}

// stop cancels the subscription and waits for its goroutine.
func (x *sub) stop(t *testing.T) {
	x.once.Do(func() {
		x.cancel()
		timeout := time.After(Wait)
		for {
			select {
			case _, ok := <-x.items:
				if !ok {
					<-x.done
					return
				}
			case <-timeout:
				t.Errorf("subscription did not end within %v of its context's end", Wait)
				return
			}
		}
	})
}

// expectEnd reads until the subscription ends and returns its error. It fails the
// test if a record follows the error, or if it does not end within Wait.
func (x *sub) expectEnd(t *testing.T) error {
	t.Helper()
	var end error
	for {
		it, ok := x.nextItem(t)
		if !ok {
			return end
		}
		switch {
		case end != nil:
			t.Errorf("subscription yielded %+v after its error %v", it, end)
		case it.err != nil:
			end = it.err
		}
	}
}

// testSubscribe: catch-up from a position (inclusive), exactly one CaughtUp, then
// live records, then the context's error when it ends.
func testSubscribe(t *testing.T, e *env) {
	tests := []struct {
		name string
		from int // index of the stored record to start at; -1 for the zero position
	}{
		{"from the first", 0},
		{"from zero", -1},
		{"from the third", 2},
		{"from the last", 3},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("sub%d", i)
			s := e.stream(name)
			filter := store.Filter{Streams: []string{s}}
			stored := e.mustAppend(t, s, ledger.NoStream, e.recs(t, name, 4)...).Records
			var from ledger.Position
			want := stored
			if tc.from >= 0 {
				from, want = stored[tc.from].Position, stored[tc.from:]
			}
			x := subscribe(t, e.s, from, filter)
			for i, w := range want {
				m := x.next(t)
				if m.CaughtUp {
					t.Fatalf("CaughtUp after %d of %d stored records", i, len(want))
				}
				sameRecord(t, fmt.Sprintf("catch-up record %d", i), m.Record, w)
			}
			if m := x.next(t); !m.CaughtUp {
				t.Fatalf("after the stored records: %s, want CaughtUp", describe(m.Record))
			}
			live := e.mustAppend(t, s, ledger.AnyRevision, e.recs(t, name, 2)...).Records
			for i, want := range live {
				m := x.next(t)
				if m.CaughtUp {
					t.Fatal("a second CaughtUp")
				}
				sameRecord(t, fmt.Sprintf("live record %d", i), m.Record, want)
			}
			x.cancel()
			if err := x.expectEnd(t); !errors.Is(err, context.Canceled) {
				t.Errorf("after cancel: err = %v, want context.Canceled", err)
			}
		})
	}
}

// testSubscribeFilter: a live subscription yields only the records its filter
// passes.
func testSubscribeFilter(t *testing.T, e *env) {
	a, b := e.stream("fa"), e.stream("fb")
	start := e.mustAppend(t, a, ledger.NoStream, e.recs(t, "fa", 1)...).Position
	x := subscribe(t, e.s, start, store.Filter{Streams: []string{a, b}, Types: []string{"MandateVetoed"}})
	if m := x.next(t); !m.CaughtUp {
		t.Fatalf("got %s, want CaughtUp (the stored record is a StatementIssued)", describe(m.Record))
	}
	var want []store.Record
	for i, name := range []string{"fa", "fb", "fc", "fa"} {
		typ := ledger.TypeStatementIssued
		if i != 2 {
			typ = ledger.TypeMandateVetoed
		}
		for _, ty := range []ledger.RecordType{ledger.TypeStatementIssued, typ} {
			p := proposed(t, e.event(t, e.party(name), e.id(fmt.Sprintf("f-%d-%d", i, ty)), ty, "filter"), recordedAt)
			r := e.mustAppend(t, e.stream(name), ledger.AnyRevision, p).Records[0]
			if r.Type == "MandateVetoed" && (r.Stream == a || r.Stream == b) {
				want = append(want, r)
			}
		}
	}
	for i, w := range want {
		m := x.next(t)
		if m.CaughtUp {
			t.Fatal("a second CaughtUp")
		}
		sameRecord(t, fmt.Sprintf("live record %d", i), m.Record, w)
	}
	// Nothing else passes: the next record seen is the next one that does.
	w := e.mustAppend(t, b, ledger.AnyRevision, proposed(t, e.event(t, e.party("fb"), e.id("f-last"), ledger.TypeMandateVetoed, "filter"), recordedAt)).Records[0]
	sameRecord(t, "last record", x.next(t).Record, w)
}

// testSubscribeWhileAppending: while several goroutines keep appending, a subscription
// started in the middle sees every record exactly once, in log order, across the
// catch-up/live switch, with exactly one CaughtUp after every record acknowledged
// before it started.
func testSubscribeWhileAppending(t *testing.T, e *env) {
	const writers = 4
	perWriter := 60 // a multiple of 3: writers append 1, 2, 3, 1, 2, 3, … records
	if testing.Short() {
		perWriter = 24
	}
	var streams []string
	for w := range writers {
		streams = append(streams, e.stream(fmt.Sprintf("w%d", w)))
	}
	streams = append(streams, e.stream("end"))
	start := e.mustAppend(t, streams[0], ledger.NoStream, e.recs(t, "w0", 1)...)

	var (
		mu    sync.Mutex
		acked = map[string]store.Record{start.Records[0].EventID: start.Records[0]}
		errs  []error
		wg    sync.WaitGroup
		half  = make(chan struct{})
		once  sync.Once
	)
	for w := range writers {
		name := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for i := range perWriter {
				res, err := e.s.Append(ctxWait(t), e.stream(name), ledger.AnyRevision, e.recs(t, name, 1+i%3))
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, r := range res.Records {
					acked[r.EventID] = r
				}
				mu.Unlock()
				if err != nil {
					return
				}
				if i == perWriter/3 {
					once.Do(func() { close(half) })
				}
			}
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-half:
	case <-done: // every writer failed early; the loop below reports why
	}
	mu.Lock()
	ackedBefore := make(map[string]bool, len(acked))
	for id := range acked {
		ackedBefore[id] = true
	}
	mu.Unlock()
	x := subscribe(t, e.s, start.Position, store.Filter{Streams: streams})

	var (
		seen     = map[string]bool{}
		last     store.Record
		caughtUp = 0
		end      store.Record
		endID    string
	)
	for {
		var m store.Message
		select {
		case <-done:
			// Writers finished: one more record marks the end of what to expect.
			done = nil
			mu.Lock()
			err := errors.Join(errs...)
			mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			end = e.mustAppend(t, e.stream("end"), ledger.NoStream, e.recs(t, "end", 1)...).Records[0]
			endID = end.EventID
			continue
		case it, ok := <-x.items:
			if !ok || it.err != nil {
				t.Fatalf("subscription ended: %v", it.err)
			}
			m = it.m
		case <-time.After(Wait):
			t.Fatalf("no subscription message within %v", Wait)
		}
		if m.CaughtUp {
			caughtUp++
			if caughtUp > 1 {
				t.Fatal("a second CaughtUp")
			}
			for id := range ackedBefore {
				if !seen[id] {
					t.Fatalf("CaughtUp before %s, acknowledged before the subscription started", id)
				}
			}
			continue
		}
		r := m.Record
		if seen[r.EventID] {
			t.Fatalf("record %s seen twice", describe(r))
		}
		seen[r.EventID] = true
		if !last.Position.IsZero() && !last.Position.Less(r.Position) {
			t.Fatalf("record %s after %s: positions do not grow", describe(r), describe(last))
		}
		last = r
		if endID != "" && r.EventID == endID {
			break
		}
	}
	if caughtUp != 1 {
		t.Fatalf("%d CaughtUp messages, want 1", caughtUp)
	}
	mu.Lock()
	defer mu.Unlock()
	acked[end.EventID] = end
	if len(seen) != len(acked) {
		t.Errorf("subscription saw %d records, %d were acknowledged", len(seen), len(acked))
	}
	for id, r := range acked {
		if !seen[id] {
			t.Errorf("acknowledged record %s never seen", describe(r))
		}
	}
	if want := 1 + writers*perWriter*2 + 1; len(acked) != want {
		t.Errorf("%d records acknowledged, want %d", len(acked), want)
	}
	sameRecord(t, "last record", last, end)
}

// testSubscribeCancel: a subscription ends with its context's error, whether it is
// waiting for live records or still catching up.
func testSubscribeCancel(t *testing.T, e *env) {
	s := e.stream("cancel")
	start := e.mustAppend(t, s, ledger.NoStream, e.recs(t, "cancel", 3)...).Records[0].Position
	tests := []struct {
		name  string
		reads int // messages read before cancelling
	}{
		{"before reading", 0},
		{"during catch-up", 1},
		{"live", 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := subscribe(t, e.s, start, store.Filter{Streams: []string{s}})
			for range tc.reads {
				x.next(t)
			}
			x.cancel()
			if err := x.expectEnd(t); !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
		})
	}
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		n := 0
		for m, err := range e.s.Subscribe(ctx, start, store.Filter{Streams: []string{s}}) {
			n++
			if err == nil && n > 5 {
				t.Fatalf("still yielding (%+v) with a cancelled context", m)
			}
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want context.Canceled", err)
				}
				break
			}
		}
	})
}

// testClose: Close ends live subscriptions with ErrClosed, and every later call
// fails with ErrClosed.
func testClose(t *testing.T, e *env) {
	s := e.stream("close")
	res := e.mustAppend(t, s, ledger.NoStream, e.recs(t, "close", 2)...)
	x := subscribe(t, e.s, res.Records[0].Position, store.Filter{Streams: []string{s}})
	x.records(t, 2)
	if m := x.next(t); !m.CaughtUp {
		t.Fatalf("got %s, want CaughtUp", describe(m.Record))
	}
	if err := e.s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := x.expectEnd(t); !errors.Is(err, ledger.ErrClosed) {
		t.Errorf("live subscription after Close: err = %v, want ErrClosed", err)
	}
	ctx := ctxWait(t)
	calls := map[string]func() error{
		"Append": func() error {
			_, err := e.s.Append(ctx, s, ledger.AnyRevision, e.recs(t, "close", 1))
			return err
		},
		"ReadStream": func() error {
			_, err := collectErr(e.s.ReadStream(ctx, s, store.ReadStreamOptions{}))
			return err
		},
		"ReadAll": func() error {
			_, err := collectErr(e.s.ReadAll(ctx, res.Records[0].Position, store.Filter{Streams: []string{s}}))
			return err
		},
		"GetEvent": func() error {
			_, err := e.s.GetEvent(ctx, res.Records[0].EventID)
			return err
		},
		"Subscribe": func() error {
			y := subscribe(t, e.s, res.Records[0].Position, store.Filter{Streams: []string{s}})
			return y.expectEnd(t)
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ledger.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}
