package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/client"
)

// GuestAuth is the key every test server gives the guest namespace: OpenWhisk's well-known
// development guest key, so that tools configured for a local OpenWhisk work unchanged.
const GuestAuth = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"

// readyPrefix starts the one line coda serve prints on stdout once it accepts requests.
const readyPrefix = "coda: ready on "

const (
	// readyTimeout is a hang guard: start-up (SQLite, embedded NATS, stem cells) takes well
	// under a second; a loaded 2-core CI machine may need many times that.
	readyTimeout = 90 * time.Second
	// stopTimeout bounds a graceful stop: running activations may hold it for their deadline.
	stopTimeout = 30 * time.Second
	// httpTimeout bounds one API request; blocking invokes fall back to 202 after 60 s.
	httpTimeout = 3 * time.Minute
	// logTail is how much of the server's log a failure message quotes.
	logTail = 4000
)

// Server is one running `coda serve` process.
type Server struct {
	URL  string   // http://127.0.0.1:PORT
	Data string   // the data directory
	Auth string   // the guest key, UUID:KEY
	Args []string // the extra flags it was started with (Restart reuses them)
	// Client is the Go API client for the guest namespace.
	Client *client.Client
	// HTTP is a plain client for requests the typed client does not cover.
	HTTP *http.Client

	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{} // closed when the process has exited
	code int           // exit code, valid after done
}

// syncBuffer is a bytes.Buffer safe for the copying goroutines and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start runs `coda serve --listen 127.0.0.1:0 --data <temp dir> --auth GuestAuth` plus args
// (later flags override earlier ones), waits for its ready line and registers a cleanup that
// stops it.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, t.TempDir(), args)
}

// Restart starts a new `coda serve` on the same data directory (after Stop or Kill9). With no
// args it reuses the flags the previous process had.
func (s *Server) Restart(t testing.TB, args ...string) *Server {
	t.Helper()
	select {
	case <-s.done:
	default:
		t.Fatalf("testenv: Restart while the previous coda serve (pid %d) is still running", s.cmd.Process.Pid)
	}
	if len(args) == 0 {
		args = s.Args
	}
	return start(t, s.Data, args)
}

func start(t testing.TB, data string, args []string) *Server {
	t.Helper()
	bin := Binary(t)
	argv := append([]string{"serve", "--listen", "127.0.0.1:0", "--data", data, "--auth", GuestAuth}, args...)
	cmd := exec.Command(bin, argv...)
	cmd.Env = cleanEnv()
	// Own process group: cleanup can then reap instances orphaned by a kill -9 of the server.
	// Pdeathsig: a test binary killed by its -timeout must not leave servers behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logs := &syncBuffer{}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start coda serve: %v", err)
	}
	s := &Server{Data: data, Auth: GuestAuth, Args: append([]string(nil), args...), cmd: cmd, logs: logs, done: make(chan struct{})}
	ready := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if !sent && strings.HasPrefix(line, readyPrefix) {
				ready <- strings.TrimSpace(strings.TrimPrefix(line, readyPrefix))
				sent = true
				continue
			}
			fmt.Fprintf(logs, "[stdout] %s\n", line)
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		<-copied // Wait closes the pipe: read everything first
		err := cmd.Wait()
		s.code = exitCode(err)
		close(s.done)
	}()
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		s.Stop(t)
		// Whatever survived the server in its process group (instances of a killed server).
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})

	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case url := <-ready:
		s.URL = strings.TrimRight(url, "/")
	case <-s.done:
		t.Fatalf("testenv: coda serve exited with code %d before it was ready; log tail:\n%s", s.code, s.tail())
	case <-timer.C:
		t.Fatalf("testenv: coda serve printed no ready line within %v; log tail:\n%s", readyTimeout, s.tail())
	}
	s.HTTP = &http.Client{Timeout: httpTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	c, err := client.New(s.URL, s.Auth, s.HTTP)
	if err != nil {
		t.Fatalf("testenv: client for %s: %v", s.URL, err)
	}
	s.Client = c
	return s
}

// cleanEnv is the test's environment without CODA_ settings that would change the server's
// or the CLI's configuration behind the test's back (CODA_TEST_ ones stay).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CODA_") && !strings.HasPrefix(kv, "CODA_TEST_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// Logs returns what the server has written to stderr (and stdout after the ready line).
func (s *Server) Logs() string { return s.logs.String() }

func (s *Server) tail() string {
	l := s.Logs()
	if len(l) > logTail {
		l = "…" + l[len(l)-logTail:]
	}
	return l
}

// Pid is the process id of coda serve.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits for the exit (SIGKILL after 30 s) and returns the exit code.
// Stopping a server that already exited just returns its code.
func (s *Server) Stop(t testing.TB) int {
	t.Helper()
	if s.HTTP != nil {
		s.HTTP.CloseIdleConnections()
	}
	if s.Exited() {
		return s.code
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
		t.Errorf("testenv: coda serve did not exit within %v of SIGTERM; killing it; log tail:\n%s", stopTimeout, s.tail())
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	return s.code
}

// WaitExit waits (up to within) for the process to exit on its own and returns its code.
func (s *Server) WaitExit(t testing.TB, within time.Duration) int {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-s.done:
		return s.code
	case <-timer.C:
		t.Fatalf("testenv: coda serve still running after %v; log tail:\n%s", within, s.tail())
		return -1
	}
}

// Kill9 sends SIGKILL to coda serve itself (not its instances) and waits for it to die.
func (s *Server) Kill9(t testing.TB) {
	t.Helper()
	if s.HTTP != nil {
		s.HTTP.CloseIdleConnections()
	}
	if s.Exited() {
		return
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		t.Fatalf("testenv: coda serve survived SIGKILL for %v", stopTimeout)
	}
}

// Coda runs the CLI against this server (CODA_APIHOST and CODA_AUTH set) and returns its
// output and exit code.
func (s *Server) Coda(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return s.CodaEnv(t, nil, args...)
}

// CodaEnv is Coda with extra environment variables (KEY=VALUE), e.g. another CODA_AUTH.
func (s *Server) CodaEnv(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Env = append(append(cleanEnv(), "CODA_APIHOST="+s.URL, "CODA_AUTH="+s.Auth), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("testenv: coda %s: no exit within %v", strings.Join(args, " "), httpTimeout)
	}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("testenv: coda %s: %v", strings.Join(args, " "), err)
		}
	}
	return out.String(), errb.String(), exitCode(err)
}
