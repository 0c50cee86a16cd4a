package client

import (
	"context"
	"errors"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
)

// Error is an error status returned by the ledger service. It keeps the gRPC code and
// message (GRPCStatus makes status.Code work on it) and unwraps to the domain's error,
// so callers test it as they would a store error:
//
//   - InvalidArgument unwraps to a *ledger.ValidationError holding the server's field
//     violations (errors.As), which matches ledger.ErrInvalid;
//   - Aborted with reason WRONG_EXPECTED_REVISION to a *ledger.ConflictError with the
//     stream, expected and actual revision; without the detail to ledger.ErrRevisionConflict;
//   - AlreadyExists with reason DUPLICATE_EVENT_ID to a *ledger.DuplicateEventError;
//     without the detail to ledger.ErrDuplicateEvent;
//   - NotFound to ledger.ErrNotFound; Unavailable to ledger.ErrUnavailable;
//     PermissionDenied to ledger.ErrRefused;
//   - DeadlineExceeded and Canceled to context.DeadlineExceeded and context.Canceled.
//
// Other codes (Unauthenticated, ResourceExhausted, Internal, …) unwrap to nothing; use
// Code.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the status message as the server wrote it.
	Message string

	status *status.Status
	err    error
}

// Error formats the error as "Code: message", e.g.
// "InvalidArgument: events[0].party: must be a slug".
func (e *Error) Error() string { return e.Code.String() + ": " + e.Message }

// Unwrap returns the domain error the status maps to, or nil.
func (e *Error) Unwrap() error { return e.err }

// GRPCStatus returns the original status, details included.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// fromStatus maps an error returned by a gRPC call back to an *Error wrapping the domain's
// typed error. It is the client's one table, the inverse of the server's. nil stays nil;
// an error that carries no status (it cannot happen with grpc-go) is returned unchanged.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Code: st.Code(), Message: st.Message(), status: st}
	switch st.Code() {
	case codes.InvalidArgument:
		verr := &ledger.ValidationError{}
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					verr.Violations = append(verr.Violations, ledger.FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
				}
			}
		}
		if len(verr.Violations) == 0 {
			verr.Violations = []ledger.FieldViolation{{Description: st.Message()}}
		}
		e.err = verr
	case codes.Aborted:
		e.err = ledger.ErrRevisionConflict
		if md, ok := errorInfo(st, wire.ReasonWrongExpectedRevision); ok {
			if c, ok := conflictFrom(md); ok {
				e.err = c
			}
		}
	case codes.AlreadyExists:
		e.err = ledger.ErrDuplicateEvent
		if md, ok := errorInfo(st, wire.ReasonDuplicateEventID); ok {
			e.err = &ledger.DuplicateEventError{EventID: md[wire.MetaEventID], Reason: md[wire.MetaReason]}
		}
	case codes.NotFound:
		e.err = ledger.ErrNotFound
	case codes.Unavailable:
		e.err = ledger.ErrUnavailable
	case codes.PermissionDenied:
		e.err = ledger.ErrRefused
	case codes.DeadlineExceeded:
		e.err = context.DeadlineExceeded
	case codes.Canceled:
		e.err = context.Canceled
	}
	return e
}

// errorInfo returns the metadata of the status's ErrorInfo detail with the given reason
// in the ledger's domain.
func errorInfo(st *status.Status, reason string) (map[string]string, bool) {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == wire.ErrorDomain && info.GetReason() == reason {
			return info.GetMetadata(), true
		}
	}
	return nil, false
}

// conflictFrom rebuilds a *ledger.ConflictError from ErrorInfo metadata: "expected" as
// ledger.ExpectedRevision.String writes it, "actual" in decimal with -1 for no stream.
func conflictFrom(md map[string]string) (*ledger.ConflictError, bool) {
	expected, err := ParseExpectedRevision(md[wire.MetaExpected])
	if err != nil {
		return nil, false
	}
	actual, err := strconv.ParseInt(md[wire.MetaActual], 10, 64)
	if err != nil || actual < ledger.NoRevision {
		return nil, false
	}
	return &ledger.ConflictError{Stream: md[wire.MetaStream], Expected: expected, Actual: actual}, true
}

// ParseExpectedRevision parses an expected revision as ledger.ExpectedRevision.String
// formats it: "any", "no_stream", "stream_exists" (or "exists"), or a decimal revision.
func ParseExpectedRevision(s string) (ledger.ExpectedRevision, error) {
	switch s {
	case "any":
		return ledger.AnyRevision, nil
	case "no_stream":
		return ledger.NoStream, nil
	case "stream_exists", "exists":
		return ledger.StreamExists, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return ledger.ExpectedRevision{}, errors.New(`expected revision must be any, no_stream, exists or a revision number, not "` + s + `"`)
	}
	return ledger.ExactRevision(n), nil
}
