package main

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/encoding/protojson"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/internal/wire"
	"github.com/stanceledger/ledger/projections"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/store"
)

// snapshotCheck recomputes a positions snapshot from a verified export: it folds the
// records at or before the snapshot's P into a positions read model in a temporary
// directory (the server's own fold, so memory stays flat) and compares the table at
// (T, P) with the snapshot's rows and digest.
type snapshotCheck struct {
	snap *ledgerv1.GetSnapshotResponse
	// cp is the snapshot's checkpoint, verified with the trusted key; nil when it has none.
	cp    *integrity.Checkpoint
	at    ledger.Position
	dir   string
	view  *projections.Positions
	batch []store.Record
	last  ledger.Position // the last record folded
	count uint64          // records folded
	after bool            // a record after P was seen: P is inside the export
}

func newSnapshotCheck(file string, v note.Verifier) (*snapshotCheck, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	snap := new(ledgerv1.GetSnapshotResponse)
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, snap); err != nil {
		return nil, fmt.Errorf("%s: not a snapshot: %w", file, err)
	}
	if snap.GetAsOfPosition() == nil {
		return nil, fmt.Errorf("%s: the snapshot has no as_of_position", file)
	}
	c := &snapshotCheck{snap: snap, at: wire.PositionFromProto(snap.GetAsOfPosition())}
	if pc := snap.GetCheckpoint(); pc != nil {
		if c.cp, err = integrity.OpenCheckpoint([]byte(pc.GetSignedNote()), v); err != nil {
			return nil, fmt.Errorf("%s: its checkpoint: %w", file, err)
		}
	}
	if c.dir, err = os.MkdirTemp("", "ledgerctl-verify-positions-*"); err != nil {
		return nil, err
	}
	if c.view, err = projections.OpenPositions(c.dir, nil); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	// Only records whose content hash the export's check recomputed reach add
	// (checkLine decodes each with ledger.Decode).
	c.view.TrustContent()
	return c, nil
}

// add folds one record of the export, when it is at or before P.
func (c *snapshotCheck) add(r store.Record) error {
	if c.at.Less(r.Position) {
		c.after = true
		return nil
	}
	c.batch = append(c.batch, r)
	c.last = r.Position
	c.count++
	if len(c.batch) == 1000 {
		return c.flush()
	}
	return nil
}

func (c *snapshotCheck) flush() error {
	if len(c.batch) == 0 {
		return nil
	}
	err := c.view.Apply(c.batch)
	c.batch = c.batch[:0]
	if err != nil {
		return fmt.Errorf("positions fold: %w", err)
	}
	return nil
}

// finish compares the recomputed table with the snapshot once the whole export passed.
func (c *snapshotCheck) finish(ctx context.Context) (string, error) {
	if err := c.flush(); err != nil {
		return "", err
	}
	if !c.after && c.last != c.at {
		return "", fmt.Errorf("the snapshot is at position %s, past the export's last record (%s): the export cannot prove it", c.at, c.last)
	}
	if c.cp != nil && c.cp.Size < c.count {
		return "", fmt.Errorf("its checkpoint %s does not cover position %s (%d records)", c.cp, c.at, c.count)
	}
	var rows []projections.PartyPosition
	digest := projections.Digest(nil)
	if !c.last.IsZero() {
		q := projections.Query{AsOfPosition: c.last}
		if t := c.snap.GetAsOfTime(); t != nil {
			q.AsOfTime = t.AsTime()
		}
		snap, err := c.view.Snapshot(ctx, q)
		if err != nil {
			return "", err
		}
		rows, digest = snap.Rows, snap.Digest
	}
	if digest != c.snap.GetDigest() {
		return "", fmt.Errorf("digest %s, but the export folds to %s at (T, P) = (%s, %s)", c.snap.GetDigest(), digest, asOfTime(c.snap), c.at)
	}
	// The rows listed must be the table the digest is of; their fields outside the
	// canonical encoding (since, index) are not checked.
	if listed := projections.Digest(rowsFromProto(c.snap.GetRows())); listed != digest {
		return "", fmt.Errorf("its %d rows have digest %s, not the digest it states; the export folds to %d rows", len(c.snap.GetRows()), listed, len(rows))
	}
	msg := fmt.Sprintf("snapshot at (T, P) = (%s, %s): %d rows, digest %s recomputed from the export", asOfTime(c.snap), c.at, len(rows), digest)
	if c.cp != nil {
		msg += fmt.Sprintf("; its checkpoint %s matches the export", c.cp)
	}
	return msg, nil
}

// rowsFromProto reads a snapshot's rows back into the fields the canonical encoding
// (projections.CanonicalLine) covers.
func rowsFromProto(rows []*ledgerv1.PartyPosition) []projections.PartyPosition {
	out := make([]projections.PartyPosition, len(rows))
	for i, r := range rows {
		out[i] = projections.PartyPosition{
			Party: r.GetParty(), Topic: r.GetTopic(),
			Alignment: ledger.Alignment(r.GetAlignment()), Act: ledger.Act(r.GetAct()),
			Summary: r.GetSummary(), Quote: r.GetQuote(),
			OccurredAt: r.GetOccurredAt().AsTime(),
			EventID:    r.GetEventId(),
			Position:   wire.PositionFromProto(r.GetPosition()),
		}
	}
	return out
}

func (c *snapshotCheck) close() {
	c.view.Close()
	os.RemoveAll(c.dir)
}

func asOfTime(s *ledgerv1.GetSnapshotResponse) string {
	if s.GetAsOfTime() == nil {
		return "any time"
	}
	return s.GetAsOfTime().AsTime().UTC().Format("2006-01-02T15:04:05Z07:00")
}
