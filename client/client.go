// Package client is the Go client of the Stance Ledger: append records, read them back,
// and follow the log, over gRPC.
//
// Errors are the root package's: a refused append unwraps to *ledger.ValidationError,
// *ledger.ConflictError or *ledger.DuplicateEventError, a missing event to
// ledger.ErrNotFound, a server that cannot be reached to ledger.ErrUnavailable (see Error).
//
// Idempotency is the client's job as much as the server's: an event's EventID is chosen
// once, when the event is built (NewEventID, Statement, Report, …), so every retry of the
// append sends the same id and the ledger stores the event at most once.
package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	ledger "github.com/stanceledger/ledger"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// maxRecvMsgSize bounds one response. See Dial.
const maxRecvMsgSize = 64 << 20

// Client is a connection to one ledger server. It is safe for concurrent use.
type Client struct {
	conn   *grpc.ClientConn
	ledger ledgerv1.LedgerServiceClient
	retry  RetryPolicy
}

// Option configures Dial.
type Option func(*options)

type options struct {
	dial  []grpc.DialOption
	creds bool
	retry RetryPolicy
	tls   *TLSOptions // tls.go
	token string
}

// RetryPolicy says how Append retries a call that failed with Unavailable. Retrying is
// safe because the events keep their EventIDs: an append that did reach the log is
// answered, on retry, with the original result (AppendResult.AlreadyPresent set).
// The zero policy does not retry.
type RetryPolicy struct {
	// MaxAttempts is the number of calls, the first one included; 0 or 1 means no retry.
	MaxAttempts int
	// InitialBackoff is the longest wait before the first retry; it doubles after each
	// retry up to MaxBackoff. Each wait is drawn uniformly from [0, limit] (full jitter).
	InitialBackoff time.Duration
	// MaxBackoff caps the wait; 0 means no cap.
	MaxBackoff time.Duration
}

// WithAppendRetry makes Append retry on Unavailable as p says.
func WithAppendRetry(p RetryPolicy) Option {
	return func(o *options) { o.retry = p }
}

// WithDialOptions adds gRPC dial options, e.g. interceptors. An option that sets
// transport credentials replaces the default plaintext credentials only if it comes with
// WithTransportCredentialsSet.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// WithTransportCredentialsSet tells Dial that the dial options given with WithDialOptions
// carry transport credentials, so Dial does not add plaintext ones.
func WithTransportCredentialsSet() Option {
	return func(o *options) { o.creds = true }
}

// Dial connects to the ledger server at addr ("host:port") and waits until the
// connection is ready. Without WithTLS or transport credentials in the options it talks
// plaintext, which it allows only to a loopback address (tls.go). It fails with an error matching ledger.ErrUnavailable
// when the first attempt to connect fails, and with ctx's error when ctx ends first. ctx
// bounds only the dial; the Client lives until Close.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	// An append's response carries each event twice (as sent and as stored bytes), so
	// it is about twice the request, which may be near the server's limit (4 MiB of
	// events by default): gRPC's default 4 MiB receive limit is too small.
	dial := append([]grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize))}, o.dial...)
	creds, err := o.transport(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	dial = append(creds, dial...)
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if err := waitReady(ctx, conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &Client{conn: conn, ledger: ledgerv1.NewLedgerServiceClient(conn), retry: o.retry}, nil
}

// waitReady connects conn and waits for it to be ready, failing on the first failed attempt.
func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	conn.Connect()
	for {
		s := conn.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure:
			return errCannotConnect
		case connectivity.Shutdown:
			return ledger.ErrClosed
		}
		if !conn.WaitForStateChange(ctx, s) {
			return ctx.Err()
		}
	}
}

// errCannotConnect is Dial's error when the first attempt to connect fails.
var errCannotConnect error = connectError{}

type connectError struct{}

func (connectError) Error() string { return "cannot connect" }

// Is makes errors.Is(err, ledger.ErrUnavailable) true.
func (connectError) Is(target error) bool { return target == ledger.ErrUnavailable }

// Close closes the connection. Calls in flight fail; streams end.
func (c *Client) Close() error { return c.conn.Close() }

// backoff returns how long to wait before retry number n (from 1) under p.
func (p RetryPolicy) backoff(n int) time.Duration {
	limit := p.InitialBackoff
	for i := 1; i < n && (p.MaxBackoff == 0 || limit < p.MaxBackoff); i++ {
		limit *= 2
	}
	if p.MaxBackoff > 0 && limit > p.MaxBackoff {
		limit = p.MaxBackoff
	}
	if limit <= 0 {
		return 0
	}
	return rand.N(limit + 1)
}
