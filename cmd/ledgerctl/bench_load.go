package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/internal/wire"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// load is the result of running one operation in a closed loop on some workers.
type load struct {
	ops     uint64          // completed operations
	units   uint64          // what they carried (records, messages)
	errs    uint64          // failed operations
	firstEr error           // the first failure
	elapsed time.Duration   // wall time of the whole run
	lat     []time.Duration // per successful operation, sorted
}

// perSecond is units per second over the run.
func (l load) perSecond() float64 {
	if l.elapsed <= 0 {
		return 0
	}
	return float64(l.units) / l.elapsed.Seconds()
}

// opsPerSecond is operations per second over the run.
func (l load) opsPerSecond() float64 {
	if l.elapsed <= 0 {
		return 0
	}
	return float64(l.ops) / l.elapsed.Seconds()
}

// quantile returns the q-quantile (0..1) of the latencies in microseconds.
func (l load) quantile(q float64) float64 {
	if len(l.lat) == 0 {
		return 0
	}
	i := int(q * float64(len(l.lat)-1))
	return float64(l.lat[i]) / float64(time.Microsecond)
}

// runLoad runs op on workers goroutines, each in a closed loop, for d or until
// maxUnits units are done (0: no limit). op returns the units it carried. Operations
// are never cut off: each worker starts no new one after the end and finishes the one
// it runs, so the figures hold only whole operations (and the run's wall time is
// until the last one ended).
func runLoad(ctx context.Context, workers int, d time.Duration, maxUnits uint64, op func(ctx context.Context, w int) (int, error)) load {
	var units, ops, errs atomic.Uint64
	var stop atomic.Bool
	var firstMu sync.Mutex
	var first error
	lats := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for w := range workers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			for !stop.Load() && ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				n, err := op(ctx, w)
				took := time.Since(t0)
				if err != nil {
					errs.Add(1)
					firstMu.Lock()
					if first == nil {
						first = err
					}
					firstMu.Unlock()
					continue
				}
				lat = append(lat, took)
				ops.Add(1)
				if u := units.Add(uint64(n)); maxUnits > 0 && u >= maxUnits {
					stop.Store(true)
				}
			}
			lats[w] = lat
		})
	}
	wg.Wait()
	l := load{ops: ops.Load(), units: units.Load(), errs: errs.Load(), firstEr: first, elapsed: time.Since(start)}
	l.lat = slices.Concat(lats...)
	slices.Sort(l.lat)
	return l
}

// benchConns are the bench's connections to ledgerd: worker i uses conns[i], so N
// clients are N connections, for the floors and the appends alike.
type benchConns struct {
	addr  string
	conns []*grpc.ClientConn
}

func (b *benchConns) get(n int) ([]*grpc.ClientConn, error) {
	for len(b.conns) < n {
		c, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			return nil, err
		}
		b.conns = append(b.conns, c)
	}
	return b.conns[:n], nil
}

func (b *benchConns) close() {
	for _, c := range b.conns {
		c.Close()
	}
}

// healthFloor measures gRPC health Check (overall status) at the given concurrency.
func healthFloor(ctx context.Context, conns []*grpc.ClientConn, d time.Duration) load {
	clients := make([]healthpb.HealthClient, len(conns))
	for i, c := range conns {
		clients[i] = healthpb.NewHealthClient(c)
		clients[i].Check(ctx, &healthpb.HealthCheckRequest{}) // connect outside the clock
	}
	req := &healthpb.HealthCheckRequest{}
	return runLoad(ctx, len(conns), d, 0, func(ctx context.Context, w int) (int, error) {
		_, err := clients[w].Check(ctx, req)
		return 1, err
	})
}

// fsyncFloor measures 256-byte writes each followed by fdatasync in dir: appended to
// a growing file, or (prealloc) overwriting space written and synced beforehand, as a
// recycled write-ahead log does. The file is removed afterwards.
func fsyncFloor(ctx context.Context, dir string, d time.Duration, prealloc bool) (load, error) {
	f, err := os.CreateTemp(dir, "ledgerctl-bench-fsync-")
	if err != nil {
		return load{}, fmt.Errorf("fdatasync floor: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const size = 256
	const span = 16 << 20
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	if prealloc {
		zero := make([]byte, 1<<20)
		for range span / len(zero) {
			if _, err := f.Write(zero); err != nil {
				return load{}, fmt.Errorf("fdatasync floor: %w", err)
			}
		}
		if err := f.Sync(); err != nil {
			return load{}, fmt.Errorf("fdatasync floor: %w", err)
		}
	}
	var off int64
	l := runLoad(ctx, 1, d, 0, func(context.Context, int) (int, error) {
		if _, err := f.WriteAt(buf, off); err != nil {
			return 0, err
		}
		off += size
		if prealloc && off+size > span {
			off = 0
		}
		return 1, fdatasync(f)
	})
	return l, l.firstEr
}

// streamFloor measures gRPC server streaming without the ledger: an in-process
// grpc-go server in this process streams msg, one record as ReadAll sends it, over
// loopback TCP to one client that decodes and drops each message, for d.
func streamFloor(ctx context.Context, msg *ledgerv1.ReadAllResponse, d time.Duration) (load, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return load{}, err
	}
	srv := grpc.NewServer()
	ledgerv1.RegisterLedgerServiceServer(srv, floorServer{msg: msg})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return load{}, err
	}
	defer conn.Close()
	return drain(ctx, ledgerv1.NewLedgerServiceClient(conn), d)
}

// floorServer's ReadAll sends the same record until the client goes.
type floorServer struct {
	ledgerv1.UnimplementedLedgerServiceServer
	msg *ledgerv1.ReadAllResponse
}

func (f floorServer) ReadAll(_ *ledgerv1.ReadAllRequest, stream ledgerv1.LedgerService_ReadAllServer) error {
	for stream.Context().Err() == nil {
		if err := stream.Send(f.msg); err != nil {
			return err
		}
	}
	return nil
}

// drain reads ReadAll from the start with a no-op consumer (each message decoded
// into one reused message) until the stream ends or d passes.
func drain(ctx context.Context, lc ledgerv1.LedgerServiceClient, d time.Duration) (load, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	stream, err := lc.ReadAll(ctx, &ledgerv1.ReadAllRequest{})
	if err != nil {
		return load{}, err
	}
	var n uint64
	var m ledgerv1.ReadAllResponse
	for {
		err := stream.RecvMsg(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			if timeUp(ctx) {
				break
			}
			return load{}, err
		}
		n++
	}
	return load{ops: n, units: n, elapsed: time.Since(start)}, nil
}

// timeUp reports whether ctx's deadline has passed. grpc-go reports a stream reset
// after the deadline as DeadlineExceeded as soon as the clock says so, which can be
// before ctx's own timer has fired and set ctx.Err, so the clock is asked too.
func timeUp(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// eventFactory builds valid StatementIssued events of about size stored bytes (data
// plus metadata, as the server encodes them), each with a fresh event_id.
type eventFactory struct {
	prefix   string
	occurred *timestamppb.Timestamp
	sources  []*ledgerv1.Source
	body     *ledgerv1.Event_StatementIssued
	seq      atomic.Uint64
	stored   int // stored bytes of one event
}

func newEventFactory(size int) (*eventFactory, error) {
	f := &eventFactory{
		prefix:   "bench-" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36) + "-",
		occurred: timestamppb.New(time.Date(2025, 5, 29, 9, 0, 0, 0, time.UTC)),
		sources:  []*ledgerv1.Source{{Url: "https://kcna.example/bench"}},
	}
	stance := &ledgerv1.Stance{Topic: "bench-topic", Alignment: ledgerv1.Alignment_ALIGNMENT_OPPOSES, Act: ledgerv1.Act_ACT_DENY}
	f.body = &ledgerv1.Event_StatementIssued{StatementIssued: &ledgerv1.StatementIssued{StatementId: "bench", Stances: []*ledgerv1.Stance{stance}}}
	base, err := f.storedSize()
	if err != nil {
		return nil, err
	}
	if pad := size - base; pad > 0 {
		b := make([]byte, pad)
		for i := range b {
			b[i] = byte('a' + i%26)
		}
		stance.Summary = string(b)
	}
	if f.stored, err = f.storedSize(); err != nil {
		return nil, err
	}
	return f, nil
}

// storedSize encodes one event as the server would and returns its stored size.
func (f *eventFactory) storedSize() (int, error) {
	e, err := wire.EventFromProto(f.event("bench-size", f.prefix+"0"))
	if err != nil {
		return 0, err
	}
	enc, err := ledger.Encode(e, time.Now(), "anonymous")
	if err != nil {
		return 0, err
	}
	return len(enc.Data) + len(enc.Metadata), nil
}

// event returns an event of party; the sources and body are shared, read-only.
func (f *eventFactory) event(party, id string) *ledgerv1.Event {
	return &ledgerv1.Event{EventId: id, Party: party, OccurredAt: f.occurred, Sources: f.sources, Body: f.body}
}

// request returns an Append of batch new events for party.
func (f *eventFactory) request(party string, batch int) *ledgerv1.AppendRequest {
	evs := make([]*ledgerv1.Event, batch)
	for i := range evs {
		evs[i] = f.event(party, f.prefix+strconv.FormatUint(f.seq.Add(1), 10))
	}
	return &ledgerv1.AppendRequest{Party: party, Events: evs}
}

// lagProbe reads how far the positions view has applied (its answers' as_of_position)
// while appends report how far the log is.
type lagProbe struct {
	pc   ledgerv1.PositionServiceClient
	head atomic.Uint64 // highest position an append was acknowledged at
}

// applied returns the positions view's applied commit.
func (p *lagProbe) applied(ctx context.Context) (uint64, error) {
	resp, err := p.pc.ListPositions(ctx, &ledgerv1.ListPositionsRequest{Party: "bench-lag-probe", PageSize: 1})
	if err != nil {
		return 0, err
	}
	return resp.GetAsOfPosition().GetCommit(), nil
}

func (p *lagProbe) acked(commit uint64) {
	for {
		h := p.head.Load()
		if commit <= h || p.head.CompareAndSwap(h, commit) {
			return
		}
	}
}

// sample polls the lag every interval until ctx ends and returns the largest seen.
func (p *lagProbe) sample(ctx context.Context, interval time.Duration) uint64 {
	var most uint64
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return most
		case <-t.C:
		}
		head := p.head.Load()
		a, err := p.applied(ctx)
		if err != nil {
			continue
		}
		if head > a {
			most = max(most, head-a)
		}
	}
}

// catchUp waits until the view has applied the head and returns how long it took.
func (p *lagProbe) catchUp(ctx context.Context) (time.Duration, error) {
	head := p.head.Load()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		a, err := p.applied(ctx)
		if err != nil {
			return 0, err
		}
		if a >= head {
			return time.Since(start), nil
		}
		time.Sleep(time.Millisecond)
	}
}

// appendPhase runs clients appenders, each on its own connection and party, each
// Append carrying batch records, for d or until maxRecords, while sampling the
// positions view's lag; then it measures how long the view takes to catch up.
func appendPhase(ctx context.Context, conns []*grpc.ClientConn, f *eventFactory, probe *lagProbe, clients, batch int, d time.Duration, maxRecords uint64) (appendResult, error) {
	lcs := make([]ledgerv1.LedgerServiceClient, clients)
	for i := range lcs {
		lcs[i] = ledgerv1.NewLedgerServiceClient(conns[i])
	}
	var lagMax atomic.Uint64
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		if probe != nil {
			lagMax.Store(probe.sample(sctx, 20*time.Millisecond))
		}
	}()
	l := runLoad(ctx, clients, d, maxRecords, func(ctx context.Context, w int) (int, error) {
		resp, err := lcs[w].Append(ctx, f.request("bench-"+strconv.Itoa(w), batch))
		if err != nil {
			return 0, err
		}
		if probe != nil {
			probe.acked(resp.GetPosition().GetCommit())
		}
		return batch, nil
	})
	stopSampling()
	<-sampled
	res := appendResult{
		Clients: clients, Batch: batch, Records: l.units, Errors: l.errs,
		RecordsPerS: l.perSecond(), AppendsPerS: l.opsPerSecond(),
		P50us: l.quantile(0.50), P99us: l.quantile(0.99), P999us: l.quantile(0.999),
		LagMaxRecords: -1, CatchUpMS: -1,
	}
	if l.firstEr != nil {
		res.FirstError = l.firstEr.Error()
	}
	if l.ops == 0 {
		return res, fmt.Errorf("append %d×%d: no append succeeded: %v", clients, batch, l.firstEr)
	}
	if probe != nil {
		res.LagMaxRecords = int64(lagMax.Load())
		took, err := probe.catchUp(ctx)
		if err != nil {
			return res, fmt.Errorf("append %d×%d: positions catch-up: %w", clients, batch, err)
		}
		res.CatchUpMS = float64(took) / float64(time.Millisecond)
	}
	return res, nil
}

// rebuild rebuilds projection name through the AdminService and returns the records
// it applied (its applied commit: positions are dense in the embedded store) and the
// time until it had applied the log head and switched over.
func rebuild(ctx context.Context, conn *grpc.ClientConn, name string) (uint64, time.Duration, error) {
	start := time.Now()
	resp, err := ledgerv1.NewAdminServiceClient(conn).RebuildProjection(ctx, &ledgerv1.RebuildProjectionRequest{Name: name})
	if err != nil {
		return 0, 0, err
	}
	return resp.GetApplied().GetCommit(), time.Since(start), nil
}

// fsyncDir says where the fdatasync floor is measured and why.
func fsyncDir(spawnedData, dataDir string) (dir, why string, err error) {
	switch {
	case spawnedData != "":
		dir, why = spawnedData, "the spawned ledgerd's data directory"
	case dataDir != "":
		dir, why = dataDir, "--data-dir"
	default:
		dir, why = os.TempDir(), "the system temporary directory (no --spawn or --data-dir: may not be ledgerd's filesystem)"
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", "", errors.Join(fmt.Errorf("fdatasync floor directory %s", dir), err)
	}
	abs, err := filepath.Abs(dir)
	return abs, why, err
}
