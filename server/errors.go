package server

import (
	"context"
	"errors"
	"log/slog"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error detail the server sends.
const ErrorDomain = wire.ErrorDomain

// ErrorInfo reasons the server sends, so a client can map a status back to the domain's
// typed error without matching messages. They are defined once, in internal/wire, for
// the server and the client.
const (
	// ReasonWrongExpectedRevision comes with codes.Aborted for a *ledger.ConflictError.
	// Its metadata holds MetaStream, MetaExpected and MetaActual.
	ReasonWrongExpectedRevision = wire.ReasonWrongExpectedRevision
	// ReasonDuplicateEventID comes with codes.AlreadyExists for a *ledger.DuplicateEventError.
	// Its metadata holds MetaEventID and MetaReason.
	ReasonDuplicateEventID = wire.ReasonDuplicateEventID
	// ReasonLimitExceeded comes with codes.ResourceExhausted for a *ledger.LimitError.
	// Its metadata holds MetaLimit and MetaLimitValue.
	ReasonLimitExceeded = wire.ReasonLimitExceeded
)

// ErrorInfo metadata keys.
const (
	// MetaStream is the stream of a revision conflict, e.g. "party-dprk".
	MetaStream = wire.MetaStream
	// MetaExpected is the expected revision as ledger.ExpectedRevision.String formats it:
	// "any", "no_stream", "stream_exists" or a decimal revision.
	MetaExpected = wire.MetaExpected
	// MetaActual is the stream's actual last revision in decimal; "-1"
	// (ledger.NoRevision) means the stream does not exist.
	MetaActual = wire.MetaActual
	// MetaEventID is the event_id of a duplicate.
	MetaEventID = wire.MetaEventID
	// MetaReason says what differs for a duplicate event_id.
	MetaReason = wire.MetaReason
	// MetaLimit names the exceeded limit as its ledgerd flag does, e.g. "max-events-per-append".
	MetaLimit = wire.MetaLimit
	// MetaLimitValue is the limit's configured value in decimal.
	MetaLimitValue = wire.MetaLimitValue
)

// internalMessage is all a client learns about an unexpected error; the details go to the log.
const internalMessage = "internal error"

// toStatus is the one table that maps errors to gRPC statuses. Handlers return the
// domain's sentinels and typed errors; the error interceptor passes them through here.
// An error that already is a status (it has a code other than Unknown) passes unchanged.
// Anything the table does not know becomes Internal with a generic message and is
// logged in full.
func toStatus(ctx context.Context, log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	var (
		verr *ledger.ValidationError
		cerr *ledger.ConflictError
		derr *ledger.DuplicateEventError
		lerr *ledger.LimitError
	)
	switch {
	case errors.As(err, &verr):
		br := &errdetails.BadRequest{}
		for _, v := range verr.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field: v.Field, Description: v.Description,
			})
		}
		return withDetails(status.New(codes.InvalidArgument, err.Error()), br)
	case errors.Is(err, ledger.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.As(err, &cerr):
		return withDetails(status.New(codes.Aborted, err.Error()), &errdetails.ErrorInfo{
			Reason: ReasonWrongExpectedRevision,
			Domain: ErrorDomain,
			Metadata: map[string]string{
				MetaStream:   cerr.Stream,
				MetaExpected: cerr.Expected.String(),
				MetaActual:   strconv.FormatInt(cerr.Actual, 10),
			},
		})
	case errors.Is(err, ledger.ErrRevisionConflict):
		return status.Error(codes.Aborted, err.Error())
	case errors.As(err, &derr):
		return withDetails(status.New(codes.AlreadyExists, err.Error()), &errdetails.ErrorInfo{
			Reason:   ReasonDuplicateEventID,
			Domain:   ErrorDomain,
			Metadata: map[string]string{MetaEventID: derr.EventID, MetaReason: derr.Reason},
		})
	case errors.Is(err, ledger.ErrDuplicateEvent):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.As(err, &lerr):
		return withDetails(status.New(codes.ResourceExhausted, err.Error()), &errdetails.ErrorInfo{
			Reason:   ReasonLimitExceeded,
			Domain:   ErrorDomain,
			Metadata: map[string]string{MetaLimit: lerr.Limit, MetaLimitValue: strconv.FormatInt(lerr.Value, 10)},
		})
	case errors.Is(err, ledger.ErrLimit):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ledger.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ledger.ErrUnavailable), errors.Is(err, ledger.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ledger.ErrRefused):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	log.ErrorContext(ctx, "request failed", "method", method, "err", err)
	return status.Error(codes.Internal, internalMessage)
}

// withDetails attaches d to s. Attaching fails only for codes.OK, which never gets here;
// should it fail, the status goes without its detail rather than not at all.
func withDetails(s *status.Status, d protoadapt.MessageV1) error {
	if sd, err := s.WithDetails(d); err == nil {
		return sd.Err()
	}
	return s.Err()
}
