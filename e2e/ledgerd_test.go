package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// ledgerdBin is the ledgerd binary TestMain builds.
var ledgerdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ledger-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	ledgerdBin = filepath.Join(dir, "ledgerd")
	build := exec.Command("go", "build", "-o", ledgerdBin, "github.com/stanceledger/ledger/cmd/ledgerd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building ledgerd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ledgerd is one running ledgerd process.
type ledgerd struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	conn *grpc.ClientConn
	// exited is closed when the process has ended; waitErr is then its exit status.
	exited  chan struct{}
	waitErr error
	stderr  *syncBuffer
	// compatAddr is the EventStoreDB-compatible endpoint's address, when started
	// with --esdb-compat-listen.
	compatAddr string
}

// syncBuffer collects a process's stderr; the exec package writes it from its own goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLedgerd starts ledgerd on dataDir, listening on a free loopback port, and waits
// for its "ready" line. The process is killed at the end of the test if still running.
// extra flags follow the defaults and override them (e.g. "--store", "esdb://…").
func startLedgerd(t *testing.T, dataDir string, extra ...string) *ledgerd {
	t.Helper()
	args := append([]string{"--data", dataDir, "--listen", "127.0.0.1:0", "--store", "embedded", "--log-level", "warn"}, extra...)
	cmd := exec.Command(ledgerdBin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &ledgerd{t: t, cmd: cmd, exited: make(chan struct{}), stderr: new(syncBuffer)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)

	// One goroutine reads stdout to its end (the process's exit), then waits for the
	// process: Wait closes the pipe, so it must come after the last read.
	ready := make(chan string, 1)
	go func() {
		var addr string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "ledgerd: listening on "); ok {
				addr = a
			}
			if a, ok := strings.CutPrefix(line, "ledgerd: esdb-compat listening on "); ok {
				p.compatAddr = a
			}
			if line == "ledgerd: ready" {
				ready <- addr
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	select {
	case p.addr = <-ready:
	case <-p.exited:
		t.Fatalf("ledgerd exited before it was ready: %v\nstderr:\n%s", p.waitErr, p.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("ledgerd not ready after 30s; stderr:\n%s", p.stderr)
	}
	if p.addr == "" {
		t.Fatal("ledgerd printed no address before ready")
	}
	p.conn, err = grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// client returns a LedgerService client on the process's connection.
func (p *ledgerd) client() ledgerv1.LedgerServiceClient {
	return ledgerv1.NewLedgerServiceClient(p.conn)
}

// kill sends SIGKILL and waits for the process to end. Killing an ended process does nothing.
func (p *ledgerd) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
	if p.conn != nil {
		p.conn.Close()
	}
}

// stop sends SIGTERM and requires a clean exit within 20 s.
func (p *ledgerd) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.waitErr != nil {
			p.t.Errorf("ledgerd exited with %v after SIGTERM; stderr:\n%s", p.waitErr, p.stderr)
		}
	case <-time.After(20 * time.Second):
		p.kill()
		p.t.Fatalf("ledgerd did not stop within 20s of SIGTERM; stderr:\n%s", p.stderr)
	}
	p.conn.Close()
}

func TestLedgerdServesHealthAndStopsCleanly(t *testing.T) {
	data := t.TempDir()
	p := startLedgerd(t, data)
	ctx := t.Context()
	for _, service := range []string{"", "stanceledger.v1.LedgerService"} {
		resp, err := healthpb.NewHealthClient(p.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health %q: %v", service, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, want SERVING", service, resp.GetStatus())
		}
	}
	b := newBatch("e2e-health", 2)
	if _, err := p.client().Append(ctx, b.request(nil)); err != nil {
		t.Fatal(err)
	}
	p.stop()
	if _, err := os.Stat(filepath.Join(data, "log")); err != nil {
		t.Errorf("the embedded log is not in <data>/log: %v", err)
	}

	p = startLedgerd(t, data)
	defer p.stop()
	got := readAll(t, ctx, p.client())
	if len(got) != 2 || got[0].GetEvent().GetEventId() != b.ids[0] || got[1].GetEvent().GetEventId() != b.ids[1] {
		t.Errorf("after restart the log holds %d records, want the 2 appended", len(got))
	}
}

// readAll reads the whole log.
func readAll(t *testing.T, ctx context.Context, c ledgerv1.LedgerServiceClient) []*ledgerv1.RecordedEvent {
	t.Helper()
	stream, err := c.ReadAll(ctx, &ledgerv1.ReadAllRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*ledgerv1.RecordedEvent
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		out = append(out, resp.GetEvent())
	}
}
