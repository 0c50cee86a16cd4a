package server_test

import (
	"bufio"
	"io"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
)

// TestAppendResponseMatchesReads: the records an Append answers with (built from the
// request, not decoded from the store) equal what ReadAll returns for them, for every
// record of the seed story (statements, reports, vetoes, corrections), for a batch,
// with a recorded_at in another zone, and for a retry (decoded from the store).
func TestAppendResponseMatchesReads(t *testing.T) {
	zone := time.FixedZone("UTC+9", 9*3600)
	ts := start(t, server.Config{Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 123456789, zone) }})
	var answered []*ledgerv1.RecordedEvent

	f, err := os.Open("../testdata/seed.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		e := new(ledgerv1.Event)
		if err := protojson.Unmarshal(sc.Bytes(), e); err != nil {
			t.Fatal(err)
		}
		answered = append(answered, appendOK(t, ts.client, e.GetParty(), anyRev(), e).GetEvents()...)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	reported := statement("batch-2", "rok", "t2", occurred)
	reported.ReportedAt = timestamppb.New(occurred.Add(time.Hour).In(zone))
	batch := []*ledgerv1.Event{statement("batch-1", "rok", "t1", occurred.In(zone)), reported}
	answered = append(answered, appendOK(t, ts.client, "rok", anyRev(), batch...).GetEvents()...)
	retry := appendOK(t, ts.client, "rok", anyRev(), batch...)
	if !retry.GetAlreadyPresent() {
		t.Fatal("retry stored again")
	}

	rs, err := ts.client.ReadAll(t.Context(), &ledgerv1.ReadAllRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var read []*ledgerv1.RecordedEvent
	for {
		m, err := rs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		read = append(read, m.GetEvent())
	}
	if len(read) != len(answered) || len(answered) < 16 {
		t.Fatalf("appends answered %d records, ReadAll returned %d", len(answered), len(read))
	}
	for i := range read {
		if !proto.Equal(answered[i], read[i]) {
			t.Errorf("record %d: Append answered\n%v\nReadAll returns\n%v", i, answered[i], read[i])
		}
	}
	for i, e := range retry.GetEvents() {
		if !proto.Equal(e, read[len(read)-2+i]) {
			t.Errorf("retry record %d: answered\n%v\nReadAll returns\n%v", i, e, read[len(read)-2+i])
		}
	}
}
