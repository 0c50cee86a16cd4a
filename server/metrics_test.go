package server_test

import (
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store/embedded"
)

// TestMetrics appends, retries, conflicts and reads through a server with Metrics and
// checks each metric against what was done.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := server.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(t.TempDir(), &embedded.Options{OnCommit: func(c embedded.CommitInfo) {
		m.ObserveGroupCommit(c.Appends, c.Records, c.Sync)
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ts := start(t, server.Config{Store: st, Metrics: m})

	first := []*ledgerv1.Event{statement("m1", "dprk", "t1", occurred), statement("m2", "dprk", "t2", occurred)}
	appendOK(t, ts.client, "dprk", anyRev(), first...)
	appendOK(t, ts.client, "dprk", anyRev(), statement("m3", "dprk", "t1", occurred))
	if resp := appendOK(t, ts.client, "dprk", anyRev(), first...); !resp.GetAlreadyPresent() {
		t.Fatal("retry was not already present")
	}
	_, err = ts.client.Append(t.Context(), &ledgerv1.AppendRequest{Party: "dprk", ExpectedRevision: exactRev(0),
		Events: []*ledgerv1.Event{statement("m4", "dprk", "t1", occurred)}})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("conflicting append: %v, want Aborted", err)
	}
	rs, err := ts.client.ReadAll(t.Context(), &ledgerv1.ReadAllRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := rs.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// Subscribers: one live subscription, counted while it runs.
	sub, err := ts.client.Subscribe(t.Context(), &ledgerv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 { // 3 records and caught_up
		if _, err := sub.Recv(); err != nil {
			t.Fatal(err)
		}
	}

	// The server counts a record once its send returned, which may be just after the
	// client received it.
	subMethod := map[string]string{"method": "/stanceledger.v1.LedgerService/Subscribe"}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if n, _ := value(gather(t, reg), "stanceledger_records_streamed_total", subMethod); n == 3 {
			break
		}
	}
	fams := gather(t, reg)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"stanceledger_appends_total", map[string]string{"outcome": "ok"}, 2},
		{"stanceledger_appends_total", map[string]string{"outcome": "already_present"}, 1},
		{"stanceledger_appends_total", map[string]string{"outcome": "conflict"}, 1},
		{"stanceledger_append_records_total", map[string]string{"outcome": "ok"}, 3},
		{"stanceledger_append_records_total", map[string]string{"outcome": "already_present"}, 2},
		{"stanceledger_append_duration_seconds", nil, 4}, // sample count
		{"stanceledger_store_group_appends", nil, 2},     // two groups stored records
		{"stanceledger_store_group_records", nil, 2},
		{"stanceledger_store_sync_duration_seconds", nil, 2},
		{"stanceledger_records_streamed_total", map[string]string{"method": "/stanceledger.v1.LedgerService/ReadAll"}, 3},
		{"stanceledger_records_streamed_total", map[string]string{"method": "/stanceledger.v1.LedgerService/Subscribe"}, 3},
		{"stanceledger_subscribers", map[string]string{"method": "/stanceledger.v1.LedgerService/Subscribe"}, 1},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Append", "grpc_code": "OK"}, 3},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Append", "grpc_code": "Aborted"}, 1},
	}
	for _, c := range checks {
		if got, ok := value(fams, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if sum, _ := histSum(fams, "stanceledger_store_group_records"); sum != 3 {
		t.Errorf("group commits stored %v records, want 3", sum)
	}
	if sum, _ := histSum(fams, "stanceledger_append_duration_seconds"); sum <= 0 || sum > 10 {
		t.Errorf("append latencies sum to %vs", sum)
	}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*dto.MetricFamily, len(fs))
	for _, f := range fs {
		out[f.GetName()] = f
	}
	return out
}

// value returns the value of the series of name whose labels include labels: a
// counter's or gauge's value, a histogram's sample count.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
series:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func histSum(fams map[string]*dto.MetricFamily, name string) (float64, bool) {
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) == 0 || f.GetMetric()[0].Histogram == nil {
		return 0, false
	}
	return f.GetMetric()[0].Histogram.GetSampleSum(), true
}
