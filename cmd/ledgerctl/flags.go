package main

import (
	"strings"
	"time"

	ledger "github.com/stanceledger/ledger"
)

// parseTime reads a TIME flag: RFC 3339 ("2024-03-28T15:04:05Z", any offset) or a plain
// date ("2024-03-28", midnight UTC). dateOnly reports the plain form, for flags that
// read a date as the whole day.
func parseTime(flag, s string) (t time.Time, dateOnly bool, err error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, false, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true, nil
	}
	return time.Time{}, false, ledger.Invalid(flag, "%q is neither an RFC 3339 time nor a date YYYY-MM-DD", s)
}

// parseSince reads a lower bound: a plain date means its first instant.
func parseSince(flag, s string) (time.Time, error) {
	t, _, err := parseTime(flag, s)
	return t, err
}

// parseUntil reads an exclusive upper bound: a plain date includes that whole day, so
// "--since 2024-01-01 --until 2024-12-31" covers the year.
func parseUntil(flag, s string) (time.Time, error) {
	t, dateOnly, err := parseTime(flag, s)
	if dateOnly {
		t = t.AddDate(0, 0, 1)
	}
	return t, err
}

// recordTypeNames are the names a --type flag accepts for each record type, besides the
// stored event type ("StatementIssued"), all case-insensitive.
var recordTypeNames = map[string]ledger.RecordType{
	"report_published": ledger.TypeReportPublished, "report": ledger.TypeReportPublished,
	"statement_issued": ledger.TypeStatementIssued, "statement": ledger.TypeStatementIssued,
	"mandate_vetoed": ledger.TypeMandateVetoed, "veto": ledger.TypeMandateVetoed,
	"record_corrected": ledger.TypeRecordCorrected, "correction": ledger.TypeRecordCorrected,
}

// parseRecordType reads a record type: "StatementIssued", "statement_issued" or
// "statement" (any case).
func parseRecordType(flag, s string) (ledger.RecordType, error) {
	if t, ok := recordTypeNames[strings.ToLower(s)]; ok {
		return t, nil
	}
	for t := ledger.TypeReportPublished; t <= ledger.TypeRecordCorrected; t++ {
		if strings.EqualFold(t.String(), s) {
			return t, nil
		}
	}
	return ledger.TypeUnspecified, ledger.Invalid(flag, "unknown record type %q (report_published, statement_issued, mandate_vetoed, record_corrected)", s)
}

// commitPosition is the log position a flag that takes one number names: its commit
// number (the embedded store's positions have commit == prepare).
func commitPosition(commit uint64) ledger.Position {
	return ledger.Position{Commit: commit, Prepare: commit}
}
