package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// spawned is a ledgerd the bench started on a temporary data directory.
type spawned struct {
	cmd        *exec.Cmd
	dir        string // removed by stop
	data       string // ledgerd's data directory, inside dir
	addr       string // gRPC address it printed
	metricsURL string // its /metrics URL
	exited     chan struct{}
	stderr     *tailBuffer
}

// findLedgerd returns the ledgerd binary to spawn: the one named, else "ledgerd" next
// to this executable, else on PATH.
func findLedgerd(named string) (string, error) {
	if named != "" {
		return named, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "ledgerd")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("ledgerd"); err == nil {
		return p, nil
	}
	return "", errors.New("--spawn: no ledgerd binary next to ledgerctl or on PATH; build it (go build -o DIR/ ./cmd/...) or name it with --ledgerd")
}

// spawnLedgerd starts bin on a fresh data directory under the system temporary
// directory, listening on 127.0.0.1:0 with metrics on 127.0.0.1:0 and without a
// per-principal rate limit (--rate-per-principal=-1, when bin has that flag), and
// waits for it to print "ready". extra are more ledgerd flags.
func spawnLedgerd(ctx context.Context, bin string, extra []string) (*spawned, error) {
	dir, err := os.MkdirTemp("", "ledgerctl-bench-")
	if err != nil {
		return nil, err
	}
	s := &spawned{dir: dir, data: filepath.Join(dir, "data"), exited: make(chan struct{}), stderr: &tailBuffer{max: 8 << 10}}
	args := []string{"--data", s.data, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-level", "warn"}
	// The bench is one principal standing for many clients: lift the per-principal
	// rate limit, when this ledgerd has one and --ledgerd-arg does not set it.
	if help, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput(); strings.Contains(string(help), "-rate-per-principal") &&
		!slices.ContainsFunc(extra, func(a string) bool { return strings.Contains(a, "rate-per-principal") }) {
		args = append(args, "--rate-per-principal=-1")
	}
	args = append(args, extra...)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stderr = s.stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("--spawn: start %s: %w", bin, err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
			if sc.Text() == "ledgerd: ready" {
				break
			}
		}
		io.Copy(io.Discard, out) // after ready nobody reads the lines
	}()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				s.stop()
				return nil, fmt.Errorf("--spawn: ledgerd exited before it was ready: %s", s.stderr)
			}
			if a, ok := strings.CutPrefix(line, "ledgerd: listening on "); ok {
				s.addr = a
			}
			if u, ok := strings.CutPrefix(line, "ledgerd: metrics on "); ok {
				s.metricsURL = u
			}
			if line == "ledgerd: ready" {
				if s.addr == "" {
					s.stop()
					return nil, errors.New("--spawn: ledgerd did not print its address")
				}
				return s, nil
			}
		case <-timeout.C:
			s.stop()
			return nil, fmt.Errorf("--spawn: ledgerd not ready within 30s: %s", s.stderr)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		}
	}
}

// stop ends ledgerd (SIGTERM, then SIGKILL after 15 s) and removes its data directory.
func (s *spawned) stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(15 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	os.RemoveAll(s.dir)
}

// procStatus reads a "VmHWM"-style field of /proc/<pid>/status in bytes, or 0 when it
// cannot (not Linux, process gone).
func procStatus(pid int, field string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// tailBuffer keeps the last max bytes written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

var _ io.Writer = (*tailBuffer)(nil)

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
