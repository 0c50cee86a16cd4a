package ledger

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every backend and service returns these (wrapped or not), so callers
// test with errors.Is; the server maps them to gRPC codes in one table.
var (
	// ErrNotFound: the event, stream or item asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the store cannot be reached now; retrying later may succeed.
	ErrUnavailable = errors.New("store unavailable")
	// ErrClosed: the store or service has been closed.
	ErrClosed = errors.New("closed")
	// ErrDuplicateEvent: an event_id is already stored with other content (or in
	// another stream). Every *DuplicateEventError matches it.
	ErrDuplicateEvent = errors.New("event_id already used with other content")
	// ErrRevisionConflict: the stream is not at the expected revision. Every
	// *ConflictError matches it.
	ErrRevisionConflict = errors.New("wrong expected revision")
	// ErrInvalid: the input is not valid. Every *ValidationError matches it.
	ErrInvalid = errors.New("invalid input")
	// ErrRefused: the operation is never allowed on a ledger (delete, truncate).
	ErrRefused = errors.New("refused: the ledger never deletes")
	// ErrLimit: a resource limit was exceeded (request size, events per append, streams
	// per connection, request rate). Every *LimitError matches it.
	ErrLimit = errors.New("limit exceeded")
)

// FieldViolation names one bad field with a path like
// "events[3].statement_issued.stances[0].topic" and says what is wrong with it.
type FieldViolation struct {
	Field       string
	Description string
}

// ValidationError lists every field violation found in one request. It matches ErrInvalid.
type ValidationError struct {
	Violations []FieldViolation
}

// Error joins the violations as "field: description; field: description".
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		if v.Field == "" {
			parts[i] = v.Description
		} else {
			parts[i] = v.Field + ": " + v.Description
		}
	}
	return strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Invalid returns a *ValidationError with one violation.
func Invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Violations: []FieldViolation{{Field: field, Description: fmt.Sprintf(format, args...)}}}
}

// ConflictError says a stream was not at the expected revision. Actual is the stream's
// last revision, or NoRevision when it does not exist. It matches ErrRevisionConflict.
type ConflictError struct {
	Stream   string
	Expected ExpectedRevision
	Actual   int64
}

// Error names the stream, the expected and the actual revision.
func (e *ConflictError) Error() string {
	actual := "no_stream"
	if e.Actual != NoRevision {
		actual = fmt.Sprintf("%d", e.Actual)
	}
	return fmt.Sprintf("wrong expected revision on %s: expected %s, actual %s", e.Stream, e.Expected, actual)
}

// Is makes errors.Is(err, ErrRevisionConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrRevisionConflict }

// DuplicateEventError says an event_id is already stored with other content, or that
// an append mixes event_ids already stored with new ones. It matches ErrDuplicateEvent.
type DuplicateEventError struct {
	EventID string
	// Reason says what differs, e.g. "different content", "stored in party-usa".
	Reason string
}

// Error names the event_id and the reason.
func (e *DuplicateEventError) Error() string {
	return fmt.Sprintf("event_id %q already used: %s", e.EventID, e.Reason)
}

// Is makes errors.Is(err, ErrDuplicateEvent) true.
func (e *DuplicateEventError) Is(target error) bool { return target == ErrDuplicateEvent }

// LimitError says which resource limit a request exceeded and the limit's value, e.g.
// {Limit: "max-events-per-append", Value: 1000}. It matches ErrLimit.
type LimitError struct {
	// Limit names the limit as its ledgerd flag does, e.g. "max-events-per-append".
	Limit string
	// Value is the limit's configured value.
	Value int64
}

// Error names the limit and its value.
func (e *LimitError) Error() string {
	return fmt.Sprintf("limit exceeded: %s is %d", e.Limit, e.Value)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }
