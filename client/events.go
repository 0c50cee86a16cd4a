package client

import (
	"time"

	"github.com/google/uuid"

	ledger "github.com/stanceledger/ledger"
)

// NewEventID returns a fresh random event_id (a UUIDv4 in its canonical text form).
// Choose it once per event, before any retry loop: the ledger deduplicates by it.
func NewEventID() string { return uuid.NewString() }

// Report builds a report_published event of party (the publisher) with a fresh EventID.
// The EventID is fixed from here on, so resending the returned event is a safe retry.
func Report(party string, occurredAt time.Time, r ledger.ReportPublished, sources ...ledger.Source) *ledger.Event {
	return newEvent(party, occurredAt, &r, sources)
}

// Statement builds a statement_issued event of party (the speaker's party) with a fresh
// EventID. The EventID is fixed from here on, so resending the returned event is a safe retry.
func Statement(party string, occurredAt time.Time, s ledger.StatementIssued, sources ...ledger.Source) *ledger.Event {
	return newEvent(party, occurredAt, &s, sources)
}

// Veto builds a mandate_vetoed event of party (the vetoing party) with a fresh EventID.
// The EventID is fixed from here on, so resending the returned event is a safe retry.
func Veto(party string, occurredAt time.Time, v ledger.MandateVetoed, sources ...ledger.Source) *ledger.Event {
	return newEvent(party, occurredAt, &v, sources)
}

// Correction builds a record_corrected event of party (the party of the corrected record)
// with a fresh EventID. occurredAt is when the correction was made. The EventID is fixed
// from here on, so resending the returned event is a safe retry.
func Correction(party string, occurredAt time.Time, c ledger.RecordCorrected, sources ...ledger.Source) *ledger.Event {
	return newEvent(party, occurredAt, &c, sources)
}

func newEvent(party string, occurredAt time.Time, body ledger.Body, sources []ledger.Source) *ledger.Event {
	return &ledger.Event{
		EventID:    NewEventID(),
		Party:      party,
		OccurredAt: occurredAt,
		Sources:    sources,
		Body:       body,
	}
}
