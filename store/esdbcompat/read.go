package esdbcompat

import (
	"context"
	"errors"
	"regexp"
	"strings"

	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/store"
)

// MaxBackwardsAll is the most events one backwards read of $all returns. The store
// reads its log forwards only, so a backwards read keeps the last count matching
// records of a forward scan in memory; larger counts are refused.
const MaxBackwardsAll = 1 << 16

// defaultSearchWindow is EventStoreDB's and the client's default max search window.
const defaultSearchWindow = 32

// Read serves reads with a count and catch-up subscriptions, of one stream or $all.
//
// A read sends only events, or one StreamNotFound: EventStore-Client-Go treats any
// other message in a read as a protocol error. A subscription sends a Confirmation,
// then events (and, with a filter, Checkpoints), one CaughtUp when it has sent what was
// stored when it started, then live events until the client goes away.
//
// Positions: a read of $all from a position includes the record at that position; a
// backwards read of $all from a position returns the records before it; a
// subscription from a position or revision starts after it, as in EventStoreDB.
func (x *streams) Read(req *api.ReadReq, srv api.Streams_ReadServer) error {
	ctx := srv.Context()
	o := req.GetOptions()
	if o == nil {
		return status.Error(codes.InvalidArgument, "read options required")
	}
	asString := o.GetUuidOption().GetString_() != nil
	backwards := o.GetReadDirection() == api.ReadReq_Options_Backwards
	f, err := newFilter(o.GetFilter())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	subscription := o.GetSubscription() != nil
	if subscription && backwards {
		return status.Error(codes.InvalidArgument, "subscriptions read forwards")
	}
	var sendErr error
	send := func(m *api.ReadResp) bool {
		sendErr = srv.Send(m)
		return sendErr == nil
	}
	switch so := o.GetStreamOption().(type) {
	case *api.ReadReq_Options_Stream:
		name := string(so.Stream.GetStreamIdentifier().GetStreamName())
		if subscription {
			err = x.s.subscribeStream(ctx, name, so.Stream, asString, send)
		} else {
			err = x.s.readStream(ctx, name, so.Stream, o.GetCount(), backwards, asString, send)
		}
	case *api.ReadReq_Options_All:
		if subscription {
			err = x.s.subscribeAll(ctx, so.All, f, asString, send)
		} else {
			err = x.s.readAll(ctx, so.All, o.GetCount(), backwards, f, asString, send)
		}
	default:
		return status.Error(codes.InvalidArgument, "a stream or $all required")
	}
	if sendErr != nil {
		return sendErr
	}
	if err != nil && ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return x.s.toStatus(ctx, "Read", err)
}

// filter is an EventStoreDB server-side filter on $all.
type filter struct {
	onType   bool
	prefixes []string
	re       *regexp.Regexp
	// every is the number of scanned records after which a subscription sends a
	// checkpoint.
	every int
}

func newFilter(fo *api.ReadReq_Options_FilterOptions) (*filter, error) {
	if fo == nil {
		return nil, nil
	}
	f := &filter{}
	var expr *api.ReadReq_Options_FilterOptions_Expression
	switch v := fo.GetFilter().(type) {
	case *api.ReadReq_Options_FilterOptions_StreamIdentifier:
		expr = v.StreamIdentifier
	case *api.ReadReq_Options_FilterOptions_EventType:
		expr, f.onType = v.EventType, true
	default:
		return nil, errors.New("a filter needs a stream identifier or an event type expression")
	}
	f.prefixes = expr.GetPrefix()
	if r := expr.GetRegex(); r != "" {
		re, err := regexp.Compile(r)
		if err != nil {
			return nil, err
		}
		f.re = re
	}
	window := defaultSearchWindow
	if m := fo.GetMax(); m > 0 {
		window = int(m)
	}
	mult := int(fo.GetCheckpointIntervalMultiplier())
	if mult == 0 {
		mult = 1
	}
	f.every = window * mult
	return f, nil
}

// match reports whether r passes f; a nil filter passes everything.
func (f *filter) match(r store.Record) bool {
	if f == nil {
		return true
	}
	s := r.Stream
	if f.onType {
		s = r.Type
	}
	if f.re != nil && !f.re.MatchString(s) {
		return false
	}
	if len(f.prefixes) == 0 {
		return true
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func (s *Server) readStream(ctx context.Context, name string, so *api.ReadReq_Options_StreamOptions, count uint64, backwards, asString bool, send func(*api.ReadResp) bool) error {
	if strings.HasPrefix(name, store.EventIndexPrefix) {
		return s.readIndex(ctx, name, so, count, backwards, asString, send)
	}
	if _, ok := ledger.PartyOf(name); !ok && !s.trust {
		if strings.HasPrefix(name, "$") {
			return status.Errorf(codes.PermissionDenied, "system stream %q is not served by the ledger", name)
		}
		send(streamNotFound(name))
		return nil
	}
	opts := store.ReadStreamOptions{Backwards: backwards, Max: count}
	switch v := so.GetRevisionOption().(type) {
	case *api.ReadReq_Options_StreamOptions_Revision:
		opts.From = v.Revision
	case *api.ReadReq_Options_StreamOptions_End:
		opts.FromEnd = true
	}
	existsOnly := false
	switch {
	case opts.FromEnd && !backwards:
		// Forwards from the end: nothing to read, but a missing stream is still reported.
		opts.Backwards, opts.Max, existsOnly = true, 1, true
	case count == 0:
		return nil
	}
	n := uint64(0)
	for r, err := range s.st.ReadStream(ctx, name, opts) {
		if errors.Is(err, ledger.ErrNotFound) {
			send(streamNotFound(name))
			return nil
		}
		if err != nil || existsOnly {
			return err
		}
		if !send(readEvent(r, asString)) {
			return nil
		}
		if n++; n == count {
			return nil
		}
	}
	return nil
}

func (s *Server) readIndex(ctx context.Context, name string, so *api.ReadReq_Options_StreamOptions, count uint64, backwards, asString bool, send func(*api.ReadResp) bool) error {
	r, err := s.st.GetEvent(ctx, strings.TrimPrefix(name, store.EventIndexPrefix))
	if errors.Is(err, ledger.ErrNotFound) {
		send(streamNotFound(name))
		return nil
	}
	if err != nil {
		return err
	}
	// The stream holds one event, at revision 0.
	switch v := so.GetRevisionOption().(type) {
	case *api.ReadReq_Options_StreamOptions_Revision:
		if v.Revision > 0 && !backwards {
			return nil
		}
	case *api.ReadReq_Options_StreamOptions_End:
		if !backwards {
			return nil
		}
	}
	if count == 0 {
		return nil
	}
	m, err := indexEvent(r, asString)
	if err != nil {
		return err
	}
	send(m)
	return nil
}

func (s *Server) readAll(ctx context.Context, ao *api.ReadReq_Options_AllOptions, count uint64, backwards bool, f *filter, asString bool, send func(*api.ReadResp) bool) error {
	if count == 0 {
		return nil
	}
	var (
		from     ledger.Position
		bound    ledger.Position
		hasBound bool
	)
	switch v := ao.GetAllOption().(type) {
	case *api.ReadReq_Options_AllOptions_Position:
		from = ledger.Position{Commit: v.Position.GetCommitPosition(), Prepare: v.Position.GetPreparePosition()}
		bound, hasBound = from, true
	case *api.ReadReq_Options_AllOptions_End:
		if !backwards {
			return nil
		}
	case *api.ReadReq_Options_AllOptions_Start:
		if backwards {
			return nil
		}
	}
	if !backwards {
		n := uint64(0)
		for r, err := range s.st.ReadAll(ctx, from, store.Filter{}) {
			if err != nil {
				return err
			}
			if !f.match(r) {
				continue
			}
			if !send(readEvent(r, asString)) {
				return nil
			}
			if n++; n == count {
				return nil
			}
		}
		return nil
	}
	if count > MaxBackwardsAll {
		count = MaxBackwardsAll
	}
	ring := make([]store.Record, 0, min(count, 1024))
	head := 0
	for r, err := range s.st.ReadAll(ctx, ledger.Position{}, store.Filter{}) {
		if err != nil {
			return err
		}
		if hasBound && !r.Position.Less(bound) {
			break
		}
		if !f.match(r) {
			continue
		}
		if uint64(len(ring)) < count {
			ring = append(ring, r)
			continue
		}
		ring[head] = r
		head = (head + 1) % len(ring)
	}
	for i := range ring {
		j := (head - 1 - i + 2*len(ring)) % len(ring)
		if !send(readEvent(ring[j], asString)) {
			return nil
		}
	}
	return nil
}

func confirmation() *api.ReadResp {
	return &api.ReadResp{Content: &api.ReadResp_Confirmation{Confirmation: &api.ReadResp_SubscriptionConfirmation{SubscriptionId: newSubscriptionID()}}}
}

func caughtUp() *api.ReadResp {
	return &api.ReadResp{Content: &api.ReadResp_CaughtUp_{CaughtUp: &api.ReadResp_CaughtUp{}}}
}

func checkpoint(p ledger.Position) *api.ReadResp {
	return &api.ReadResp{Content: &api.ReadResp_Checkpoint_{Checkpoint: &api.ReadResp_Checkpoint{CommitPosition: p.Commit, PreparePosition: p.Prepare}}}
}

func (s *Server) subscribeAll(ctx context.Context, ao *api.ReadReq_Options_AllOptions, f *filter, asString bool, send func(*api.ReadResp) bool) error {
	var (
		from      ledger.Position
		after     ledger.Position
		skipUntil bool // from the end: skip everything stored before the subscription
	)
	switch v := ao.GetAllOption().(type) {
	case *api.ReadReq_Options_AllOptions_Position:
		from = ledger.Position{Commit: v.Position.GetCommitPosition(), Prepare: v.Position.GetPreparePosition()}
		after = from
	case *api.ReadReq_Options_AllOptions_End:
		skipUntil = true
	}
	if !send(confirmation()) {
		return nil
	}
	var (
		last    ledger.Position
		scanned int
	)
	for m, err := range s.st.Subscribe(ctx, from, store.Filter{}) {
		if err != nil {
			return err
		}
		if m.CaughtUp {
			skipUntil = false
			if f != nil && scanned > 0 {
				if !send(checkpoint(last)) {
					return nil
				}
				scanned = 0
			}
			if !send(caughtUp()) {
				return nil
			}
			continue
		}
		r := m.Record
		if skipUntil || (!after.IsZero() && !after.Less(r.Position)) {
			continue
		}
		last = r.Position
		scanned++
		if f.match(r) {
			if !send(readEvent(r, asString)) {
				return nil
			}
		}
		if f != nil && scanned >= f.every {
			if !send(checkpoint(last)) {
				return nil
			}
			scanned = 0
		}
	}
	return nil
}

func (s *Server) subscribeStream(ctx context.Context, name string, so *api.ReadReq_Options_StreamOptions, asString bool, send func(*api.ReadResp) bool) error {
	if _, ok := ledger.PartyOf(name); !ok {
		return status.Errorf(codes.InvalidArgument, "subscriptions are served for ledger streams %q<party> and $all, not %q", ledger.StreamPrefix, name)
	}
	var (
		from      ledger.Position
		afterRev  uint64
		hasAfter  bool
		skipUntil bool
	)
	switch v := so.GetRevisionOption().(type) {
	case *api.ReadReq_Options_StreamOptions_Revision:
		afterRev, hasAfter = v.Revision, true
		// Start the scan of the log at that revision's record when it exists.
		for r, err := range s.st.ReadStream(ctx, name, store.ReadStreamOptions{From: v.Revision, Max: 1}) {
			if err == nil {
				from = r.Position
			}
		}
	case *api.ReadReq_Options_StreamOptions_End:
		skipUntil = true
	}
	if !send(confirmation()) {
		return nil
	}
	for m, err := range s.st.Subscribe(ctx, from, store.Filter{Streams: []string{name}}) {
		if err != nil {
			return err
		}
		if m.CaughtUp {
			skipUntil = false
			if !send(caughtUp()) {
				return nil
			}
			continue
		}
		if skipUntil || (hasAfter && m.Record.Revision <= afterRev) {
			continue
		}
		if !send(readEvent(m.Record, asString)) {
			return nil
		}
	}
	return nil
}
