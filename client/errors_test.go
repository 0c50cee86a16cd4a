package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
)

// TestFromStatus covers the statuses a server may send without the details the ledger's
// server adds, and details that do not parse: they still map to the right sentinel.
func TestFromStatus(t *testing.T) {
	withInfo := func(c codes.Code, reason string, md map[string]string) error {
		s, err := status.New(c, "msg").WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: wire.ErrorDomain, Metadata: md})
		if err != nil {
			t.Fatal(err)
		}
		return s.Err()
	}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"invalid without details", status.Error(codes.InvalidArgument, "bad"), ledger.ErrInvalid},
		{"aborted without details", status.Error(codes.Aborted, "conflict"), ledger.ErrRevisionConflict},
		{"aborted with bad metadata", withInfo(codes.Aborted, wire.ReasonWrongExpectedRevision, map[string]string{"expected": "soon", "actual": "x"}), ledger.ErrRevisionConflict},
		{"already exists without details", status.Error(codes.AlreadyExists, "dup"), ledger.ErrDuplicateEvent},
		{"not found", status.Error(codes.NotFound, "gone"), ledger.ErrNotFound},
		{"unavailable", status.Error(codes.Unavailable, "down"), ledger.ErrUnavailable},
		{"permission denied", status.Error(codes.PermissionDenied, "no deletes"), ledger.ErrRefused},
		{"deadline", status.Error(codes.DeadlineExceeded, "late"), context.DeadlineExceeded},
		{"canceled", status.Error(codes.Canceled, "gone"), context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fromStatus(tt.err)
			if !errors.Is(err, tt.want) {
				t.Errorf("fromStatus(%v) = %v; want it to match %v", tt.err, err, tt.want)
			}
			if status.Code(err) != status.Code(tt.err) {
				t.Errorf("status.Code = %v; want %v", status.Code(err), status.Code(tt.err))
			}
		})
	}

	var ce *ledger.ConflictError
	err := fromStatus(withInfo(codes.Aborted, wire.ReasonWrongExpectedRevision, map[string]string{"stream": "party-x", "expected": "stream_exists", "actual": "-1"}))
	if !errors.As(err, &ce) || ce.Stream != "party-x" || !ce.Expected.IsStreamExists() || ce.Actual != ledger.NoRevision {
		t.Errorf("conflict = %v (%+v); want party-x expected stream_exists actual -1", err, ce)
	}
	if got := fromStatus(status.Error(codes.Internal, "boom")); got.Error() != "Internal: boom" || errors.Unwrap(got) != nil {
		t.Errorf("Internal maps to %q unwrapping to %v; want \"Internal: boom\" and nothing", got, errors.Unwrap(got))
	}
	if fromStatus(nil) != nil {
		t.Error("fromStatus(nil) != nil")
	}
}

func TestParseExpectedRevision(t *testing.T) {
	for _, e := range []ledger.ExpectedRevision{ledger.AnyRevision, ledger.NoStream, ledger.StreamExists, ledger.ExactRevision(0), ledger.ExactRevision(41)} {
		got, err := ParseExpectedRevision(e.String())
		if err != nil || got != e {
			t.Errorf("ParseExpectedRevision(%q) = %v, %v; want %v", e.String(), got, err, e)
		}
	}
	if got, err := ParseExpectedRevision("exists"); err != nil || !got.IsStreamExists() {
		t.Errorf(`ParseExpectedRevision("exists") = %v, %v; want stream_exists`, got, err)
	}
	for _, s := range []string{"", "-1", "latest", "1.5"} {
		if _, err := ParseExpectedRevision(s); err == nil {
			t.Errorf("ParseExpectedRevision(%q) succeeded; want an error", s)
		}
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	tests := []struct {
		retry int
		limit time.Duration
	}{{1, 10 * time.Millisecond}, {2, 20 * time.Millisecond}, {3, 40 * time.Millisecond}, {4, 50 * time.Millisecond}, {9, 50 * time.Millisecond}}
	for _, tt := range tests {
		for range 100 {
			if d := p.backoff(tt.retry); d < 0 || d > tt.limit {
				t.Fatalf("backoff(%d) = %v; want within [0, %v]", tt.retry, d, tt.limit)
			}
		}
	}
	if d := (RetryPolicy{}).backoff(3); d != 0 {
		t.Errorf("zero policy backoff = %v; want 0", d)
	}
}
