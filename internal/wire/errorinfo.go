package wire

// The google.rpc.ErrorInfo contract between the server and its clients: the server
// attaches these details to its error statuses (server/errors.go re-exports them as
// its API) and the client maps them back to the domain's typed errors.
const (
	// ErrorDomain is the ErrorInfo domain of every error detail the server sends.
	ErrorDomain = "stanceledger.v1"

	// ReasonWrongExpectedRevision comes with codes.Aborted for a *ledger.ConflictError.
	// Its metadata holds MetaStream, MetaExpected and MetaActual.
	ReasonWrongExpectedRevision = "WRONG_EXPECTED_REVISION"
	// ReasonDuplicateEventID comes with codes.AlreadyExists for a *ledger.DuplicateEventError.
	// Its metadata holds MetaEventID and MetaReason.
	ReasonDuplicateEventID = "DUPLICATE_EVENT_ID"
	// ReasonLimitExceeded comes with codes.ResourceExhausted for a *ledger.LimitError.
	// Its metadata holds MetaLimit and MetaLimitValue.
	ReasonLimitExceeded = "LIMIT_EXCEEDED"

	// MetaStream is the stream of a revision conflict, e.g. "party-dprk".
	MetaStream = "stream"
	// MetaExpected is the expected revision as ledger.ExpectedRevision.String formats it:
	// "any", "no_stream", "stream_exists" or a decimal revision.
	MetaExpected = "expected"
	// MetaActual is the stream's actual last revision in decimal; "-1"
	// (ledger.NoRevision) means the stream does not exist.
	MetaActual = "actual"
	// MetaEventID is the event_id of a duplicate.
	MetaEventID = "event_id"
	// MetaReason says what differs for a duplicate event_id.
	MetaReason = "reason"
	// MetaLimit names the exceeded limit as its ledgerd flag does, e.g. "max-events-per-append".
	MetaLimit = "limit"
	// MetaLimitValue is the limit's configured value in decimal.
	MetaLimitValue = "value"
)
