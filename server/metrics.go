package server

import (
	"context"
	"fmt"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// Metrics are the server's Prometheus metrics: the gRPC server metrics of
// go-grpc-middleware (grpc_server_*), and the ledger's own:
//
//	stanceledger_appends_total{outcome}            Append calls by outcome
//	stanceledger_append_records_total{outcome}     records in those calls
//	stanceledger_append_duration_seconds           Append latency, as the server sees it
//	stanceledger_store_group_appends               appends per group commit (ObserveGroupCommit)
//	stanceledger_store_group_records               records per group commit
//	stanceledger_store_sync_duration_seconds       one group's commit, fdatasync included
//	stanceledger_records_streamed_total{method}    records sent by ReadAll, ReadStream, Subscribe (replay rate)
//	stanceledger_subscribers{method}               live Subscribe and WatchPositions calls
//
// The outcome of an append is "ok", "already_present" (an idempotent retry), or the
// status the client received: "invalid", "conflict", "duplicate", "unavailable",
// "canceled", "deadline_exceeded", "error". Set Config.Metrics to use them; one Metrics
// serves one Server.
type Metrics struct {
	grpc *grpcprom.ServerMetrics

	appends      *prometheus.CounterVec
	records      *prometheus.CounterVec
	latency      prometheus.Histogram
	groupAppends prometheus.Histogram
	groupRecords prometheus.Histogram
	syncLatency  prometheus.Histogram
	streamed     *prometheus.CounterVec
	subscribers  *prometheus.GaugeVec
}

// Full method names the metrics single out.
const (
	methodAppend     = "/" + LedgerServiceName + "/Append"
	methodReadAll    = "/" + LedgerServiceName + "/ReadAll"
	methodReadStream = "/" + LedgerServiceName + "/ReadStream"
	methodSubscribe  = "/" + LedgerServiceName + "/Subscribe"
	methodWatch      = "/" + PositionServiceName + "/WatchPositions"
)

// latencyBuckets span 50 µs to 10 s: a durable append costs at least one fdatasync.
var latencyBuckets = prometheus.ExponentialBucketsRange(50e-6, 10, 20)

// NewMetrics creates the metrics and registers them on reg (use a registry of your
// own, not the global one). It fails when reg already holds metrics of the same names.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(latencyBuckets))),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stanceledger_appends_total",
			Help: "Append calls, by outcome (ok, already_present, or the refusal).",
		}, []string{"outcome"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stanceledger_append_records_total",
			Help: "Records in Append calls, by the call's outcome.",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stanceledger_append_duration_seconds",
			Help:    "Append latency in the server: validation, encoding, the durable store append.",
			Buckets: latencyBuckets,
		}),
		groupAppends: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stanceledger_store_group_appends",
			Help:    "Appends committed together with one sync (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		groupRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stanceledger_store_group_records",
			Help:    "Records committed together with one sync (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		syncLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stanceledger_store_sync_duration_seconds",
			Help:    "Time to commit one group to stable storage (WAL write and fdatasync).",
			Buckets: latencyBuckets,
		}),
		streamed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stanceledger_records_streamed_total",
			Help: "Records sent to clients by ReadAll, ReadStream and Subscribe; its rate is the replay rate.",
		}, []string{"method"}),
		subscribers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stanceledger_subscribers",
			Help: "Live Subscribe and WatchPositions calls.",
		}, []string{"method"}),
	}
	for _, c := range []prometheus.Collector{
		m.grpc, m.appends, m.records, m.latency, m.groupAppends, m.groupRecords,
		m.syncLatency, m.streamed, m.subscribers,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	// Present from the start, so that rates and dashboards need no first event.
	for _, o := range []string{"ok", "already_present"} {
		m.appends.WithLabelValues(o)
		m.records.WithLabelValues(o)
	}
	for _, meth := range []string{methodReadAll, methodReadStream, methodSubscribe} {
		m.streamed.WithLabelValues(meth)
	}
	for _, meth := range []string{methodSubscribe, methodWatch} {
		m.subscribers.WithLabelValues(meth)
	}
	return m, nil
}

// ObserveGroupCommit records one group commit of the store: how many appends and
// records shared one sync, and how long the commit took. cmd/ledgerd calls it from the
// embedded store's Options.OnCommit. Safe on a nil *Metrics.
func (m *Metrics) ObserveGroupCommit(appends, records int, sync time.Duration) {
	if m == nil {
		return
	}
	m.groupAppends.Observe(float64(appends))
	m.groupRecords.Observe(float64(records))
	m.syncLatency.Observe(sync.Seconds())
}

// unaryInterceptors run outermost, so they see the status the client receives.
func (m *Metrics) unaryInterceptors() []grpc.UnaryServerInterceptor {
	if m == nil {
		return nil
	}
	return []grpc.UnaryServerInterceptor{m.grpc.UnaryServerInterceptor(), m.appendUnary}
}

func (m *Metrics) streamInterceptors() []grpc.StreamServerInterceptor {
	if m == nil {
		return nil
	}
	return []grpc.StreamServerInterceptor{m.grpc.StreamServerInterceptor(), m.streamCounting}
}

// initialize makes the gRPC metrics of every registered method present at zero.
func (m *Metrics) initialize(s *grpc.Server) {
	if m != nil {
		m.grpc.InitializeMetrics(s)
	}
}

func (m *Metrics) appendUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if info.FullMethod != methodAppend {
		return handler(ctx, req)
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	m.latency.Observe(time.Since(start).Seconds())
	outcome := "ok"
	switch {
	case err != nil:
		outcome = appendOutcome(status.Code(err))
	case resp.(*ledgerv1.AppendResponse).GetAlreadyPresent():
		outcome = "already_present"
	}
	m.appends.WithLabelValues(outcome).Inc()
	m.records.WithLabelValues(outcome).Add(float64(len(req.(*ledgerv1.AppendRequest).GetEvents())))
	return resp, err
}

// appendOutcome names a refused append by the status the error table gave it.
func appendOutcome(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return "invalid"
	case codes.Aborted:
		return "conflict"
	case codes.AlreadyExists:
		return "duplicate"
	case codes.Unavailable:
		return "unavailable"
	case codes.Canceled:
		return "canceled"
	case codes.DeadlineExceeded:
		return "deadline_exceeded"
	}
	return "error"
}

func (m *Metrics) streamCounting(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	switch info.FullMethod {
	case methodSubscribe, methodWatch:
		g := m.subscribers.WithLabelValues(info.FullMethod)
		g.Inc()
		defer g.Dec()
	}
	switch info.FullMethod {
	case methodReadAll, methodReadStream, methodSubscribe:
		return handler(srv, &countingStream{ServerStream: ss, n: m.streamed.WithLabelValues(info.FullMethod)})
	}
	return handler(srv, ss)
}

// countingStream counts the records a read or subscription sends.
type countingStream struct {
	grpc.ServerStream
	n prometheus.Counter
}

func (s *countingStream) SendMsg(msg any) error {
	if err := s.ServerStream.SendMsg(msg); err != nil {
		return err
	}
	switch r := msg.(type) {
	case *ledgerv1.ReadAllResponse, *ledgerv1.ReadStreamResponse:
		s.n.Inc()
	case *ledgerv1.SubscribeResponse:
		if r.GetEvent() != nil {
			s.n.Inc()
		}
	}
	return nil
}
