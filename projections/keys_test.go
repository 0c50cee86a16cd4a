package projections

import (
	"errors"
	"reflect"
	"testing"

	ledger "github.com/stanceledger/ledger"
)

// A version's value decodes to what was encoded, whether it still counts (its
// until in one byte) or was ended; rowUntil reads the until alone, and refuses
// what no rowValue encodes to.
func TestRowValueEncoding(t *testing.T) {
	open := rowValue{alignment: ledger.AlignmentOpposes, act: ledger.ActAffirm, eventID: "ev-1", summary: "s", quote: "q"}
	ended := open
	ended.until, ended.untilEventID, ended.untilEffect, ended.sinceEventID = ledger.Position{Commit: 9, Prepare: 8}, "fix-2", EffectRedate, "fix-1"
	for _, v := range []rowValue{open, ended} {
		b := v.append(nil)
		got, err := parseRow(b)
		if err != nil || !reflect.DeepEqual(got, v) {
			t.Errorf("parseRow(append(%+v)) = %+v, %v", v, got, err)
		}
		if until, err := rowUntil(b); err != nil || until != v.until {
			t.Errorf("rowUntil(append(%+v)) = %v, %v; want %v", v, until, err, v.until)
		}
	}
	if n, m := len(open.append(nil)), len(ended.append(nil)); n >= m-posLen {
		t.Errorf("an open version's value takes %d bytes, an ended one's %d; want the open one's until in one byte", n, m)
	}
	for _, b := range [][]byte{nil, {2, 0, 0, 0}, {1, 0, 0, 0}, append(open.append(nil), 0)} {
		if _, err := parseRow(b); !errors.Is(err, errCorrupt) {
			t.Errorf("parseRow(%q) = %v; want errCorrupt", b, err)
		}
	}
}
