package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	ledger "github.com/stanceledger/ledger"
)

// TrafficLimits bound what one connection or principal can make the server do, beyond
// the limits on one append in ledger.Limits. Zero fields take the Default* values.
// Exceeding one is answered with ResourceExhausted naming the limit and its value
// (a *ledger.LimitError through the error table), except MaxRequestBytes, which gRPC
// enforces before any handler runs ("grpc: received message larger than max (N vs. M)").
type TrafficLimits struct {
	// MaxRequestBytes bounds one request message. 0: room for the largest append
	// ledger.Limits allows plus its framing (about 5.1 MiB by default), so that an
	// oversize append is refused by validation with the field named.
	MaxRequestBytes int
	// MaxStreamsPerConn bounds the calls (unary and streaming) running at once on one
	// connection; the next one gets ResourceExhausted. The HTTP/2 transport's own
	// MAX_CONCURRENT_STREAMS is set a little higher, as a ceiling at which a client
	// waits rather than fails.
	MaxStreamsPerConn int
	// RatePerSecond bounds the calls one principal may start per second, on average;
	// RateBurst is how many may come at once. A stream counts once, when it starts.
	// A negative RatePerSecond means no rate limit.
	RatePerSecond float64
	RateBurst     int
	// SlowConsumerTimeout bounds how long one message of a server stream (Subscribe,
	// ReadAll, ReadStream, WatchPositions) may wait to be sent. The server queues at
	// most gRPC's per-stream write quota (64 KiB) and flow-control window for a stream,
	// so a consumer that stops reading blocks its stream; past this timeout the stream
	// ends with ResourceExhausted and the consumer resumes from the last position it
	// received.
	SlowConsumerTimeout time.Duration
}

// Defaults of TrafficLimits.
const (
	DefaultMaxStreamsPerConn   = 100
	DefaultRatePerSecond       = 5000
	DefaultRateBurst           = 10000
	DefaultSlowConsumerTimeout = 30 * time.Second
)

// Limit names, as the ledgerd flags that set them are spelled.
const (
	LimitMaxEventsPerAppend  = "max-events-per-append"
	LimitMaxStreamsPerConn   = "max-streams-per-conn"
	LimitRatePerPrincipal    = "rate-per-principal"
	LimitSlowConsumerTimeout = "slow-consumer-timeout-ms"
)

func (l TrafficLimits) withDefaults(al ledger.Limits) TrafficLimits {
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = maxRecvMsgSize(al)
	}
	if l.MaxStreamsPerConn <= 0 {
		l.MaxStreamsPerConn = DefaultMaxStreamsPerConn
	}
	if l.RatePerSecond == 0 {
		l.RatePerSecond = DefaultRatePerSecond
	}
	if l.RateBurst <= 0 {
		l.RateBurst = DefaultRateBurst
	}
	if l.SlowConsumerTimeout <= 0 {
		l.SlowConsumerTimeout = DefaultSlowConsumerTimeout
	}
	return l
}

// transportStreams is the HTTP/2 MAX_CONCURRENT_STREAMS for a per-connection limit n:
// above n, so that the call past the limit reaches the server and is refused clearly.
func transportStreams(n int) uint32 { return uint32(n + n/2 + 8) }

// rates holds one token bucket per principal. Principals are few (the tokens file's
// lines and the holders of client certificates), so buckets are never evicted.
type rates struct {
	perSecond float64 // < 0: unlimited
	burst     int
	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
}

func newRates(perSecond float64, burst int) *rates {
	return &rates{perSecond: perSecond, burst: burst, buckets: map[string]*rate.Limiter{}}
}

// allow takes one token from principal's bucket, or returns a *ledger.LimitError.
func (r *rates) allow(principal string) error {
	if r.perSecond < 0 {
		return nil
	}
	r.mu.Lock()
	b, ok := r.buckets[principal]
	if !ok {
		b = rate.NewLimiter(rate.Limit(r.perSecond), r.burst)
		r.buckets[principal] = b
	}
	r.mu.Unlock()
	if !b.Allow() {
		return fmt.Errorf("principal %q is over its request rate (burst %d): %w",
			principal, r.burst, limitErr(LimitRatePerPrincipal, int64(r.perSecond)))
	}
	return nil
}

// connCalls counts the calls running on each connection, keyed by the peer's address
// (one TCP connection each).
type connCalls struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

// enter counts a call on ctx's connection, or refuses it past the limit. The caller
// calls the returned function when the call ends.
func (c *connCalls) enter(ctx context.Context) (func(), error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return func() {}, nil
	}
	key := p.Addr.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= c.max {
		return nil, limitErr(LimitMaxStreamsPerConn, int64(c.max))
	}
	c.n[key]++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.n[key]--; c.n[key] == 0 {
			delete(c.n, key)
		}
	}, nil
}

func (s *Server) connUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	leave, err := s.calls.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer leave()
	return handler(ctx, req)
}

func (s *Server) connStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	leave, err := s.calls.enter(ss.Context())
	if err != nil {
		return err
	}
	defer leave()
	if info.IsServerStream && !info.IsClientStream {
		g := &guardedStream{ServerStream: ss, timeout: s.traffic.SlowConsumerTimeout}
		defer g.close()
		return handler(srv, g)
	}
	return handler(srv, ss)
}

// guardedStream sends a server stream's messages from one goroutine of its own, so that
// the handler can give up on a consumer that does not read: SendMsg then returns a
// *ledger.LimitError, the handler returns it, and gRPC ends the stream (which also
// unblocks the sending goroutine).
type guardedStream struct {
	grpc.ServerStream
	timeout time.Duration

	once    sync.Once
	msgs    chan any
	results chan error
	timer   *time.Timer
	failed  error
}

func (g *guardedStream) start() {
	g.msgs = make(chan any)
	g.results = make(chan error, 1)
	g.timer = time.NewTimer(g.timeout)
	g.timer.Stop()
	go func() {
		for m := range g.msgs {
			g.results <- g.ServerStream.SendMsg(m)
		}
	}()
}

// SendMsg sends m, or fails when it has not gone within the timeout.
func (g *guardedStream) SendMsg(m any) error {
	if g.failed != nil {
		return g.failed
	}
	g.once.Do(g.start)
	g.msgs <- m
	g.timer.Reset(g.timeout)
	select {
	case err := <-g.results:
		g.timer.Stop()
		return err
	case <-g.timer.C:
		g.failed = fmt.Errorf("consumer too slow: one message waited over %s to be sent; resume from the last position received: %w",
			g.timeout, limitErr(LimitSlowConsumerTimeout, g.timeout.Milliseconds()))
		return g.failed
	}
}

// close stops the sending goroutine once its last send has returned.
func (g *guardedStream) close() {
	if g.msgs != nil {
		close(g.msgs)
	}
}

// maxEvents is the events-per-append limit in force.
func (s *Server) maxEvents() int {
	if s.limits.MaxEvents > 0 {
		return s.limits.MaxEvents
	}
	return ledger.DefaultLimits.MaxEvents
}
