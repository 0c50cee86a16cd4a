package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledger "github.com/stanceledger/ledger"
)

func TestErrorTable(t *testing.T) {
	conflict := &ledger.ConflictError{Stream: "party-dprk", Expected: ledger.ExactRevision(3), Actual: ledger.NoRevision}
	dup := &ledger.DuplicateEventError{EventID: "e1", Reason: "different content"}
	invalid := &ledger.ValidationError{Violations: []ledger.FieldViolation{
		{Field: "events[0].party", Description: "must be a slug"},
		{Field: "events[1].occurred_at", Description: "required"},
	}}
	for _, tc := range []struct {
		name    string
		err     error
		code    codes.Code
		detail  string // fmt of the expected detail, "" for none
		message string // expected message, "" for err.Error()
	}{
		{name: "validation", err: invalid, code: codes.InvalidArgument,
			detail: "events[0].party: must be a slug; events[1].occurred_at: required"},
		{name: "validation wrapped", err: fmt.Errorf("append: %w", invalid), code: codes.InvalidArgument,
			detail: "events[0].party: must be a slug; events[1].occurred_at: required"},
		{name: "invalid sentinel", err: fmt.Errorf("no records: %w", ledger.ErrInvalid), code: codes.InvalidArgument},
		{name: "conflict", err: conflict, code: codes.Aborted,
			detail: "WRONG_EXPECTED_REVISION stanceledger.v1 actual=-1 expected=3 stream=party-dprk"},
		{name: "conflict sentinel", err: ledger.ErrRevisionConflict, code: codes.Aborted},
		{name: "duplicate", err: fmt.Errorf("store: %w", dup), code: codes.AlreadyExists,
			detail: "DUPLICATE_EVENT_ID stanceledger.v1 event_id=e1 reason=different content"},
		{name: "duplicate sentinel", err: ledger.ErrDuplicateEvent, code: codes.AlreadyExists},
		{name: "not found", err: fmt.Errorf("event x: %w", ledger.ErrNotFound), code: codes.NotFound},
		{name: "unavailable", err: fmt.Errorf("pebble: %w", ledger.ErrUnavailable), code: codes.Unavailable},
		{name: "closed", err: ledger.ErrClosed, code: codes.Unavailable},
		{name: "refused", err: ledger.ErrRefused, code: codes.PermissionDenied},
		{name: "deadline", err: fmt.Errorf("read: %w", context.DeadlineExceeded), code: codes.DeadlineExceeded},
		{name: "canceled", err: context.Canceled, code: codes.Canceled},
		{name: "limit", err: fmt.Errorf("append: %w", &ledger.LimitError{Limit: "max-events-per-append", Value: 1000}), code: codes.ResourceExhausted,
			detail: "LIMIT_EXCEEDED stanceledger.v1 limit=max-events-per-append value=1000"},
		{name: "limit sentinel", err: ledger.ErrLimit, code: codes.ResourceExhausted},
		{name: "status passes", err: status.Error(codes.ResourceExhausted, "slow down"), code: codes.ResourceExhausted},
		{name: "unknown", err: errors.New("disk on fire at /secret/path"), code: codes.Internal, message: internalMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			st := status.Convert(toStatus(t.Context(), log, "/stanceledger.v1.LedgerService/Append", tc.err))
			if st.Code() != tc.code {
				t.Errorf("code %v, want %v", st.Code(), tc.code)
			}
			want := tc.message
			if want == "" {
				want = tc.err.Error()
				if s, ok := status.FromError(tc.err); ok {
					want = s.Message()
				}
			}
			if st.Message() != want {
				t.Errorf("message %q, want %q", st.Message(), want)
			}
			var got []string
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.BadRequest:
					var vs []string
					for _, v := range d.GetFieldViolations() {
						vs = append(vs, v.GetField()+": "+v.GetDescription())
					}
					got = append(got, strings.Join(vs, "; "))
				case *errdetails.ErrorInfo:
					s := d.GetReason() + " " + d.GetDomain()
					for _, k := range []string{MetaActual, MetaEventID, MetaExpected, MetaLimit, MetaReason, MetaStream, MetaLimitValue} {
						if v, ok := d.GetMetadata()[k]; ok {
							s += " " + k + "=" + v
						}
					}
					got = append(got, s)
				default:
					t.Errorf("unexpected detail %T", d)
				}
			}
			if strings.Join(got, "|") != tc.detail {
				t.Errorf("details %q, want %q", got, tc.detail)
			}
			if logged := strings.Contains(logs.String(), "disk on fire"); logged != (tc.code == codes.Internal) {
				t.Errorf("logged the error: %v; want it logged only for Internal. Log: %s", logged, logs.String())
			}
		})
	}
	if toStatus(t.Context(), slog.New(slog.DiscardHandler), "", nil) != nil {
		t.Error("toStatus(nil) != nil")
	}
}
