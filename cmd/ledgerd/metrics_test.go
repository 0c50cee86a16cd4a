package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// TestMetricsEndpoint runs ledgerd with --metrics-listen, appends, reads, and scrapes
// /metrics over HTTP: every metric the operator needs is there with the value the
// work implies. It also checks that gRPC health reports the ledger and each projection.
func TestMetricsEndpoint(t *testing.T) {
	cfg, err := parseFlags([]string{"--data", t.TempDir(), "--listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "warn"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, cfg, pw, io.Discard)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	var addr, metricsURL string
	sc := bufio.NewScanner(pr)
	for sc.Scan() && sc.Text() != "ledgerd: ready" {
		if a, ok := strings.CutPrefix(sc.Text(), "ledgerd: listening on "); ok {
			addr = a
		}
		if u, ok := strings.CutPrefix(sc.Text(), "ledgerd: metrics on "); ok {
			metricsURL = u
		}
	}
	go io.Copy(io.Discard, pr)
	if addr == "" || metricsURL == "" || strings.HasSuffix(metricsURL, ":0/metrics") {
		t.Fatalf("ledgerd printed address %q, metrics %q", addr, metricsURL)
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lc := ledgerv1.NewLedgerServiceClient(conn)
	occurred := timestamppb.New(time.Date(2025, 5, 29, 9, 0, 0, 0, time.UTC))
	for i := range 3 {
		id := fmt.Sprintf("metrics-%d", i)
		_, err := lc.Append(t.Context(), &ledgerv1.AppendRequest{Party: "dprk", Events: []*ledgerv1.Event{{
			EventId: id, Party: "dprk", OccurredAt: occurred,
			Sources: []*ledgerv1.Source{{Url: "https://kcna.example/" + id}},
			Body: &ledgerv1.Event_StatementIssued{StatementIssued: &ledgerv1.StatementIssued{StatementId: id, Stances: []*ledgerv1.Stance{{
				Topic: "msmt-legitimacy", Alignment: ledgerv1.Alignment_ALIGNMENT_OPPOSES, Act: ledgerv1.Act_ACT_DENY,
			}}}},
		}}})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	rs, err := lc.ReadAll(t.Context(), &ledgerv1.ReadAllRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := rs.Recv(); err != io.EOF; _, err = rs.Recv() {
		if err != nil {
			t.Fatal(err)
		}
	}
	hc := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"stanceledger.v1.LedgerService", "stanceledger.v1.projections.positions", "stanceledger.v1.projections.integrity"} {
		resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %s: %v %v", svc, resp, err)
		}
	}

	// The projections apply the appends asynchronously: wait until they report no lag.
	var m metricsText
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m = scrape(t, metricsURL)
		if m.value(`stanceledger_projection_applied_commit{projection="positions"}`) == 3 &&
			m.value(`stanceledger_projection_lag_records{projection="positions"}`) == 0 &&
			m.value(`stanceledger_projection_lag_records{projection="integrity"}`) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projections did not catch up:\n%s", m.grep("stanceledger_projection"))
		}
	}
	for _, c := range []struct {
		series   string
		min, max float64
	}{
		{`stanceledger_appends_total{outcome="ok"}`, 3, 3},
		{`stanceledger_append_records_total{outcome="ok"}`, 3, 3},
		{`stanceledger_append_duration_seconds_count`, 3, 3},
		{`stanceledger_append_duration_seconds_sum`, 1e-6, 10},
		{`stanceledger_store_group_records_sum`, 3, 3},
		{`stanceledger_store_group_appends_sum`, 3, 3},
		{`stanceledger_store_sync_duration_seconds_count`, 1, 3},
		{`stanceledger_records_streamed_total{method="/stanceledger.v1.LedgerService/ReadAll"}`, 3, 3},
		{`stanceledger_subscribers{method="/stanceledger.v1.LedgerService/Subscribe"}`, 0, 0},
		{`stanceledger_projection_applied_commit{projection="integrity"}`, 3, 3},
		{`stanceledger_projection_records_applied_total{projection="positions"}`, 3, 3},
		{`grpc_server_handled_total{grpc_code="OK",grpc_method="Append",grpc_service="stanceledger.v1.LedgerService",grpc_type="unary"}`, 3, 3},
		{`grpc_server_msg_sent_total{grpc_method="ReadAll",grpc_service="stanceledger.v1.LedgerService",grpc_type="server_stream"}`, 3, 3},
		{`process_resident_memory_bytes`, 1 << 20, 4 << 30},
	} {
		if v := m.value(c.series); v < c.min || v > c.max {
			t.Errorf("%s = %v, want within [%v, %v]", c.series, v, c.min, c.max)
		}
	}
}

// metricsText is a scraped exposition: series (name and labels as printed) → value.
type metricsText map[string]float64

// value returns the series' value, or -1 when it is missing.
func (m metricsText) value(series string) float64 {
	if v, ok := m[series]; ok {
		return v
	}
	return -1
}

func (m metricsText) grep(prefix string) string {
	var b strings.Builder
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			fmt.Fprintf(&b, "%s %v\n", k, v)
		}
	}
	return b.String()
}

func scrape(t *testing.T, url string) metricsText {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	m := metricsText{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad exposition line %q", line)
		}
		m[line[:i]] = v
	}
	return m
}
