package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// hangGuard bounds waits that should finish in milliseconds; it only catches hangs.
const hangGuard = 20 * time.Second

func TestMain(m *testing.M) {
	RunShimIfRequested()
	switch os.Getenv("CODA_SANDBOX_TEST_HELPER") {
	case "tcpwrite":
		tcpWriteHelper()
		return
	case "server":
		serverHelper() // reap_test.go
		return
	}
	os.Exit(m.Run())
}

// tcpWriteHelper connects to $ADDR, writes 8 MiB (more than the peer and kernel buffer
// while the peer does not read) and then idles until killed.
func tcpWriteHelper() {
	c, err := net.Dial("tcp", os.Getenv("ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	go func() { _, _ = c.Write(make([]byte, 8<<20)) }()
	select {}
}

const testPath = "PATH=/usr/local/bin:/usr/bin:/bin"

// newHost returns a Host for the test, skipping when the requested isolation is missing.
func newHost(t *testing.T, isolate bool, hide ...string) *Host {
	t.Helper()
	if isolate && os.Geteuid() != 0 {
		t.Skip("isolation tests need root (cgroups, namespaces, setuid)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	name := fmt.Sprintf("coda-test-%d-%s", os.Getpid(), regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	h, err := New(ctx, Config{Root: name, Isolate: isolate, Hide: hide}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sandbox: %s", h.Describe())
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Host.Close: %v", err)
		}
	})
	if isolate && (!h.ns || h.cg == nil) {
		t.Skipf("isolation unavailable here: %s", h.Describe())
	}
	return h
}

// sh starts /bin/sh -c script with stdout on a pipe.
func sh(t *testing.T, h *Host, script string, mod func(*Spec)) (*Process, *bufio.Reader) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: []string{testPath}, Stdout: w}
	if mod != nil {
		mod(&spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	p, err := h.Start(ctx, spec)
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		if err := p.Close(); err != nil {
			t.Errorf("Process.Close: %v", err)
		}
	})
	return p, bufio.NewReader(r)
}

// output runs script to completion and returns its stdout.
func output(t *testing.T, h *Host, script string, mod func(*Spec)) (string, error) {
	t.Helper()
	p, r := sh(t, h, script, mod)
	b, _ := io.ReadAll(r)
	return string(b), p.Wait()
}

func line(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read line: %v (got %q)", err, s)
	}
	return strings.TrimSpace(s)
}

func TestIsolatedIdentity(t *testing.T) {
	h := newHost(t, true)
	t.Setenv("CODA_TEST_SECRET", "platform-credential")
	script := fmt.Sprintf(`id -u; id -g; id -G; cat /proc/sys/kernel/hostname
if kill -0 %d 2>/dev/null; then echo kill-ok; else echo kill-denied; fi
if kill -0 1 2>/dev/null; then echo init-visible; fi
env`, os.Getpid())
	out, err := output(t, h, script, nil)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Split(out, "\n")
	uid, _ := strconv.Atoi(lines[0])
	if uid < DefaultUIDBase || uid >= DefaultUIDBase+DefaultUIDCount || lines[1] != lines[0] || lines[2] != lines[0] {
		t.Errorf("uid/gid/groups = %q, want one unprivileged id", lines[:3])
	}
	if lines[3] != hostname {
		t.Errorf("hostname = %q", lines[3])
	}
	if lines[4] != "kill-denied" {
		t.Errorf("instance could signal host pid %d: %q", os.Getpid(), lines[4])
	}
	if strings.Contains(out, "CODA_TEST_SECRET") || strings.Contains(out, envShim) {
		t.Errorf("environment leaked into the instance:\n%s", out)
	}
	if !strings.Contains(out, testPath) {
		t.Errorf("Spec.Env missing:\n%s", out)
	}
}

func TestIsolatedExtraFilesAndPid(t *testing.T) {
	h := newHost(t, true)
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	defer inR.Close()
	defer outR.Close()
	p, r := sh(t, h, `echo $$; read l <&3; echo "got $l" >&4; exec sleep 1000`, func(s *Spec) {
		s.ExtraFiles = []*os.File{inR, outW}
	})
	outW.Close()
	if got, want := line(t, r), strconv.Itoa(nsPidOf(p.Pid())); got != want || got == "1" {
		t.Errorf("target pid in its namespace = %s, want %s (and not 1: the shim is init)", got, want)
	}
	fmt.Fprintln(inW, "ping")
	inW.Close()
	if got := line(t, bufio.NewReader(outR)); got != "got ping" {
		t.Errorf("fd 4 = %q", got)
	}
	waitFor(t, "Pid() to exec sleep", func() bool { return procComm(p.Pid()) == "sleep" })
}

func TestPrivateTmp(t *testing.T) {
	h := newHost(t, true)
	name := fmt.Sprintf("coda-private-%d", os.Getpid())
	_, r := sh(t, h, "echo x > /tmp/"+name+" && echo written; exec sleep 1000", nil)
	if got := line(t, r); got != "written" {
		t.Fatalf("writer: %q", got)
	}
	out, err := output(t, h, "if [ -e /tmp/"+name+" ]; then echo visible; else echo absent; fi", nil)
	if err != nil || strings.TrimSpace(out) != "absent" {
		t.Errorf("second instance sees the first one's /tmp: %q, %v", out, err)
	}
	if _, err := os.Stat("/tmp/" + name); err == nil {
		t.Errorf("instance wrote into the host's /tmp")
	}
}

func TestHiddenDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	// Not under /tmp: instances get a fresh /tmp, which would hide it trivially.
	base, err := os.MkdirTemp("/var/tmp", "coda-sandbox-test-")
	if err != nil {
		t.Skipf("no /var/tmp: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	data := filepath.Join(base, "data")
	for _, d := range []string{base, data, data + "/rt", data + "/bin"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o755)
	}
	write := func(p, s string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(data+"/secret", "s3cret", 0o644)
	write(data+"/rt/ok.txt", "runtime-source", 0o644)
	write(data+"/bin/script", "#!/bin/sh\necho script-ran \"$1\"\n", 0o755)
	dash, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	write(data+"/bin/sh", string(dash), 0o755)

	h := newHost(t, true, data)
	ro := func(s *Spec) { s.ReadOnly = []string{data + "/rt"} }
	out, err := output(t, h, fmt.Sprintf(`cd /
cat %[1]s/secret 2>/dev/null || echo secret-unreadable
ls -A %[1]s | tr '\n' ' '; echo
cat %[1]s/rt/ok.txt; echo
touch %[1]s/rt/new 2>/dev/null && echo ro-writable || echo ro-readonly
touch %[1]s/x 2>/dev/null && echo hide-writable || echo hide-readonly`, data), ro)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := "secret-unreadable\nrt \nruntime-source\nro-readonly\nhide-readonly\n"
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	// The target itself may live in the hidden directory: a binary and a script.
	out, err = output(t, h, "echo binary-ran", func(s *Spec) { s.Path = data + "/bin/sh" })
	if err != nil || out != "binary-ran\n" {
		t.Errorf("hidden binary: %q, %v", out, err)
	}
	out, err = output(t, h, "", func(s *Spec) { s.Path, s.Args = data+"/bin/script", []string{"script", "arg"} })
	if err != nil || out != "script-ran arg\n" {
		t.Errorf("hidden script: %q, %v", out, err)
	}
	if _, err := os.Stat(data + "/x"); err == nil {
		t.Errorf("write went through to the hidden dir")
	}
}

func TestStartError(t *testing.T) {
	h := newHost(t, true)
	_, err := h.Start(context.Background(), Spec{Path: "/nonexistent/runtime"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/runtime") {
		t.Errorf("Start of a missing binary: %v", err)
	}
	if n := len(h.live); n != 0 {
		t.Errorf("%d processes left registered", n)
	}
}

func TestMemoryLimit(t *testing.T) {
	h := newHost(t, true)
	// tail buffers its input looking for newlines: /dev/zero has none.
	p, _ := sh(t, h, "exec tail /dev/zero", func(s *Spec) { s.MemoryMB = 32 })
	err := p.Wait()
	if err == nil {
		t.Fatal("memory hog exited cleanly")
	}
	if !p.OOMKilled() {
		t.Errorf("OOMKilled() = false after %v", err)
	}
	t.Logf("memory hog: %v", err)
}

func TestSetMemoryAndNoOOM(t *testing.T) {
	h := newHost(t, true)
	p, _ := sh(t, h, "exec sleep 1000", func(s *Spec) { s.MemoryMB = 64 })
	if err := p.SetMemory(256); err != nil {
		t.Fatal(err)
	}
	if err := p.SetMemory(128); err != nil {
		t.Fatal(err)
	}
	if err := p.SetMemory(0); err != nil {
		t.Fatal(err)
	}
	if p.OOMKilled() {
		t.Error("OOMKilled() true for an idle process")
	}
}

// cgFile returns the path of a control file of the process's cgroup (for assertions).
func cgFile(p *Process, controller, name string) string {
	switch c := p.cg.(type) {
	case *cgroupV1Instance:
		return filepath.Join(c.dirs[controller], name)
	case *cgroupV2Instance:
		return filepath.Join(c.dir, name)
	}
	return ""
}

func TestPidsLimit(t *testing.T) {
	h := newHost(t, true)
	const limit = 24
	p, _ := sh(t, h, "while :; do sleep 1000 & done", func(s *Spec) { s.PidsMax = limit; s.Stderr = nil })
	current := cgFile(p, "pids", "pids.current")
	// pids.events counts forks refused at the limit: proof the bomb hit it, whatever the
	// sampling below misses.
	hit := func() bool {
		m, _ := readKeyed(cgFile(p, "pids", "pids.events"))
		return m["max"] > 0
	}
	peak := 0
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) || !hit() {
		s, err := readTrim(current)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(s)
		peak = max(peak, n)
		if n > limit || len(p.Procs()) > limit {
			t.Fatalf("%d tasks in the cgroup, limit %d", n, limit)
		}
		// dash gives up at its first failed fork; by then the limit has been hit.
		if (p.exited() && !hit()) || time.Now().After(deadline.Add(hangGuard)) {
			t.Fatalf("fork bomb never hit its limit: sampled peak %d (exited: %v, %v)", peak, p.exited(), p.state)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s, err := readTrim(cgFile(p, "pids", "pids.peak")); err == nil {
		if n, _ := strconv.Atoi(s); n > limit {
			t.Errorf("pids.peak %d > limit %d", n, limit)
		}
		t.Logf("kernel peak %s", s)
	}
	t.Logf("sampled peak %d tasks (limit %d)", peak, limit)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if procs := p.Procs(); len(procs) != 0 {
		t.Errorf("after Kill: %v", procs)
	}
}

func TestFreezeThaw(t *testing.T) {
	for _, isolate := range []bool{true, false} {
		t.Run(fmt.Sprintf("isolate=%v", isolate), func(t *testing.T) {
			h := newHost(t, isolate)
			p, r := sh(t, h, "i=0; while :; do i=$((i+1)); echo $i; sleep 0.01; done", nil)
			var count atomic.Int64
			go func() {
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					count.Add(1)
				}
			}()
			waitFor(t, "counter to start", func() bool { return count.Load() > 2 })
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			if err := p.Freeze(ctx); err != nil {
				t.Fatal(err)
			}
			if p.cg != nil {
				if s, _ := readTrim(cgFile(p, "freezer", "freezer.state")); p.cg.canFreeze() && s != "FROZEN" && s != "" {
					t.Errorf("freezer.state = %q", s)
				}
			}
			time.Sleep(100 * time.Millisecond) // let the reader drain what was written before
			frozenAt := count.Load()
			time.Sleep(300 * time.Millisecond)
			if n := count.Load(); n != frozenAt {
				t.Errorf("counter advanced while frozen: %d -> %d", frozenAt, n)
			}
			if err := p.Thaw(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "counter to advance after thaw", func() bool { return count.Load() > frozenAt })
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKillGrandchildren(t *testing.T) {
	for _, isolate := range []bool{true, false} {
		t.Run(fmt.Sprintf("isolate=%v", isolate), func(t *testing.T) {
			h := newHost(t, isolate)
			// setsid: the grandchild leaves the process group too; only the cgroup (or the
			// pid namespace) still knows it.
			p, r := sh(t, h, `sh -c 'setsid sleep 1000 & sleep 1000' & echo started; exec sleep 1000`, nil)
			line(t, r)
			var pids []int
			waitFor(t, "the tree to start", func() bool {
				pids = p.Procs()
				n := 0
				for _, pid := range pids {
					if procComm(pid) == "sleep" {
						n++
					}
				}
				return n >= 3
			})
			if err := p.Kill(); err != nil {
				t.Fatal(err)
			}
			if p.Wait() == nil {
				t.Error("killed instance exited cleanly")
			}
			for _, pid := range pids {
				waitFor(t, fmt.Sprintf("pid %d to die", pid), func() bool {
					s := procState(pid)
					return s == 0 || (s == 'Z' && !isolate && pid != p.Pid())
				})
			}
		})
	}
}

func TestBackstopChildProcess(t *testing.T) {
	for _, isolate := range []bool{true, false} {
		t.Run(fmt.Sprintf("isolate=%v", isolate), func(t *testing.T) {
			h := newHost(t, isolate)
			// After exec the runtime (sleep) has an unreaped child: it will be a zombie once
			// killed, which must not count as pending.
			p, r := sh(t, h, `sleep 1000 & echo $!; exec sleep 1001`, nil)
			line(t, r)
			var child int
			waitFor(t, "the child", func() bool {
				for _, pid := range p.Procs() {
					if pid != p.Pid() && pid != p.shimPid && procComm(pid) == "sleep" {
						child = pid
						return true
					}
				}
				return false
			})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			pending := p.Backstop(ctx)
			cancel()
			want := fmt.Sprintf("child process sleep (pid %d)", child)
			if len(pending) != 1 || pending[0] != want {
				t.Fatalf("pending = %q, want [%q]", pending, want)
			}
			if err := syscallKill(child); err != nil {
				t.Fatal(err)
			}
			ctx, cancel = context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			if pending := p.Backstop(ctx); len(pending) != 0 {
				t.Errorf("still pending after the child exited: %q", pending)
			}
		})
	}
}

func TestBackstopSocket(t *testing.T) {
	for _, isolate := range []bool{true, false} {
		t.Run(fmt.Sprintf("isolate=%v", isolate), func(t *testing.T) {
			h := newHost(t, isolate)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			p, err := h.Start(ctx, Spec{Path: exe, Env: []string{"CODA_SANDBOX_TEST_HELPER=tcpwrite", "ADDR=" + ln.Addr().String()}, Stderr: os.Stderr})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			conn, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			want := "socket " + ln.Addr().String() + " send queue "
			var pending []string
			waitFor(t, "a send queue", func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
				defer cancel()
				pending = p.Backstop(ctx)
				return len(pending) == 1 && strings.HasPrefix(pending[0], want)
			})
			t.Logf("pending: %q", pending)
			go io.Copy(io.Discard, conn)
			if pending := p.Backstop(ctx); len(pending) != 0 {
				t.Errorf("still pending after the peer read everything: %q", pending)
			}
		})
	}
}

func TestReducedMode(t *testing.T) {
	h := newHost(t, false)
	if h.ns {
		t.Fatal("Isolate=false must not use namespaces")
	}
	in, w, _ := os.Pipe()
	defer in.Close()
	fmt.Fprintln(w, "from-fd3")
	w.Close()
	out, err := output(t, h, "cat <&3; env", func(s *Spec) { s.ExtraFiles = []*os.File{in} })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "from-fd3\n") || !strings.Contains(out, testPath) || strings.Contains(out, "HOME=") {
		t.Errorf("output:\n%s", out)
	}
	out, err = output(t, h, "exit 3", nil)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("exit status: %v %q", err, out)
	}
}

func TestIsolatedExitStatus(t *testing.T) {
	h := newHost(t, true)
	_, err := output(t, h, "exit 3", nil)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("exit status: %v", err)
	}
}

// BenchmarkStart measures Start+Wait+Close of /bin/true: os/exec alone, plain mode, and
// isolated mode with the shim pool refilled between starts (the latency a start sees when
// starts are not back to back) and without waiting (throughput, pool exhausted).
func BenchmarkStart(b *testing.B) {
	b.Run("exec", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, mode := range []string{"plain", "isolated", "isolated-back-to-back"} {
		b.Run(mode, func(b *testing.B) {
			isolate := mode != "plain"
			if isolate && os.Geteuid() != 0 {
				b.Skip("needs root")
			}
			h, err := New(context.Background(), Config{Root: fmt.Sprintf("coda-bench-%d-%s", os.Getpid(), mode), Isolate: isolate},
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			b.Logf("%s", h.Describe())
			for b.Loop() {
				if mode == "isolated" {
					b.StopTimer()
					for len(h.warm) < shimPoolSize {
						time.Sleep(time.Millisecond)
					}
					b.StartTimer()
				}
				p, err := h.Start(context.Background(), Spec{Path: "/bin/true"})
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Wait(); err != nil {
					b.Fatal(err)
				}
				if err := p.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
