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
	"strings"
	"sync"
	"syscall"
	"time"
)

// readyTimeout bounds the wait for `coda: ready`: start-up extracts runtimes, opens the store and
// spawns stem cells, seconds at most even on a loaded machine.
const readyTimeout = 60 * time.Second

// stopTimeout is how long a SIGTERM'd server may take to drain before it is killed; activations
// left by the bench end within their (short) deadlines.
const stopTimeout = 20 * time.Second

// benchAuth is the guest key the bench gives every server it starts (UUID:KEY).
const benchAuth = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"

const readyPrefix = "coda: ready on "

// buildCoda compiles ./cmd/coda of the module at repo into dir.
// settleAfterStart lets a new server finish its start-up work before anything is timed.
const settleAfterStart = 3 * time.Second

func buildCoda(ctx context.Context, repo, dir string) (string, error) {
	bin := filepath.Join(dir, "coda")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/coda")
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/coda: %w\n%s", err, out)
	}
	return bin, nil
}

// ServerOptions are the `coda serve` settings a section varies.
type ServerOptions struct {
	StemCells int      // --stem-cells
	Args      []string // further flags
	Env       []string // added to the server's environment
}

// Server is one running `coda serve`.
type Server struct {
	URL  string
	Auth string
	API  *API

	cmd    *exec.Cmd
	data   string
	stderr *tail
	done   chan struct{}
	err    error // of Wait, valid after done
}

// startServer runs `coda serve` on a free port with a fresh data directory under tmp and
// returns once it printed its ready line.
func startServer(ctx context.Context, bin, tmp string, opts ServerOptions) (*Server, error) {
	data, err := os.MkdirTemp(tmp, "data-")
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// Every server of a run shares one Go build cache (coda keeps it in DATA/go), so Go actions
	// compile once per run rather than once per server; deploys are never timed anyway.
	shared := filepath.Join(tmp, "go-build-cache")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		return nil, fmt.Errorf("go build cache: %w", err)
	}
	if err := os.Symlink(shared, filepath.Join(data, "go")); err != nil {
		return nil, fmt.Errorf("go build cache: %w", err)
	}
	args := []string{"serve", "--listen", "127.0.0.1:0", "--data", data, "--auth", benchAuth,
		"--stem-cells", fmt.Sprint(opts.StemCells), "--log-level", "warn",
		// The bench measures the invoke path, not throttling: thousands of requests a minute and,
		// with decoupled ends, more than 100 activations open at 16 clients are expected.
		"--limit-concurrent", "100000", "--limit-per-minute", "10000000"}
	args = append(args, opts.Args...)
	// Not CommandContext: the server must get SIGTERM and a chance to drain, not SIGKILL.
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), opts.Env...)
	// SIGTERM, not SIGKILL, if the bench dies: the server then drains and stops its instances.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	s := &Server{Auth: benchAuth, cmd: cmd, data: data, stderr: &tail{max: 64 << 10}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()

	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if line := sc.Text(); !found && strings.HasPrefix(line, readyPrefix) {
				found = true
				ready <- strings.TrimSpace(strings.TrimPrefix(line, readyPrefix))
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case url := <-ready:
		s.URL = url
		s.API = newAPI(url, benchAuth)
		// A fresh server starts its stem cells and warms the Go build cache in the background;
		// measuring during that would charge start-up work to the warm path.
		select {
		case <-time.After(settleAfterStart):
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		}
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("coda serve exited before ready (%v): %s", s.err, s.stderr.String())
	case <-timer.C:
		s.Close()
		return nil, fmt.Errorf("coda serve not ready within %v: %s", readyTimeout, s.stderr.String())
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
}

// Close stops the server with SIGTERM, killing it if it does not drain in time.
func (s *Server) Close() error {
	if s.API != nil {
		s.API.hc.CloseIdleConnections()
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("coda serve did not stop within %v", stopTimeout)
	}
	var exit *exec.ExitError
	if s.err != nil && !errors.As(s.err, &exit) {
		return s.err
	}
	if s.err != nil {
		return fmt.Errorf("coda serve: %w; stderr: %s", s.err, s.stderr.String())
	}
	return nil
}

// Logs is the tail of what the server wrote to stderr, for error messages.
func (s *Server) Logs() string { return s.stderr.String() }

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
