package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRootOwner(t *testing.T) {
	for name, want := range map[string]int{
		"coda-123": 123, "coda-123.server": 123,
		"coda-0": 0, "coda-0123": 0, "coda-": 0, "coda-12x": 0, "coda-test-5-TestX": 0,
		"coda-5.server.server": 0, "coda--5": 0, "other-5": 0, "coda-5-": 0,
	} {
		pid, ok := rootOwner(name)
		if ok != (want > 0) || pid != want {
			t.Errorf("rootOwner(%q) = %d, %v; want %d", name, pid, ok, want)
		}
	}
}

func TestStaleRoots(t *testing.T) {
	dir := t.TempDir()
	self := strconv.Itoa(os.Getpid())
	for _, d := range []string{"coda-100", "coda-100.server", "coda-200", "coda-" + self, "coda-test-100-X", "unrelated"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(dir, "coda-300"), "a file, not a cgroup")
	alive := func(pid int) bool { return pid == 200 }
	got := staleRoots(dir, alive)
	slices.Sort(got)
	if want := []string{"coda-100", "coda-100.server"}; !slices.Equal(got, want) {
		t.Errorf("staleRoots = %q, want %q", got, want)
	}
	// Our own root is never stale, whatever alive says.
	if got := staleRoots(dir, func(int) bool { return false }); slices.Contains(got, "coda-"+self) {
		t.Errorf("own root reported stale: %q", got)
	}
}

func TestPidAlive(t *testing.T) {
	if !pidAlive(os.Getpid()) || !pidAlive(1) {
		t.Error("live pid reported dead")
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if pidAlive(cmd.Process.Pid) {
		t.Skipf("pid %d reused already", cmd.Process.Pid) // vanishingly rare
	}
}

// serverHelper is a stand-in `coda serve` run in a child process (see TestMain): it starts
// one isolated instance running sleep, optionally freezes it, prints "pid N" and waits to
// be SIGKILLed. Its root cgroup has the default name, as a real server's has.
func serverHelper() {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	h, err := New(ctx, Config{Isolate: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	if !h.ns || h.cg == nil {
		fmt.Println("skip isolation unavailable:", h.Describe())
		os.Exit(0)
	}
	p, err := h.Start(ctx, Spec{Path: "/bin/sleep", Args: []string{"sleep", "1000"}, Env: []string{testPath}})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	if os.Getenv("CODA_SANDBOX_TEST_FREEZE") == "1" {
		if !p.cg.canFreeze() {
			fmt.Println("skip no freezer:", h.Describe())
			os.Exit(0)
		}
		if err := p.Freeze(ctx); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	fmt.Println("pid", p.Pid())
	select {}
}

// startServerHelper runs serverHelper and returns it with its instance's host pid.
func startServerHelper(t *testing.T, freeze bool) (*exec.Cmd, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (cgroups, namespaces, setuid)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CODA_SANDBOX_TEST_HELPER=server", "CODA_SANDBOX_TEST_FREEZE="+map[bool]string{true: "1"}[freeze])
	// A file, not our stderr or a pipe: an instance that outlives its server must not hold
	// the test's output open (go test would wait for it).
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if b, _ := os.ReadFile(stderr.Name()); t.Failed() && len(b) > 0 {
			t.Logf("server helper stderr:\n%s", b)
		}
	})
	lines := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		lines <- strings.TrimSpace(s)
	}()
	var s string
	select {
	case s = <-lines:
	case <-time.After(hangGuard):
		t.Fatal("server helper did not report its instance")
	}
	if reason, ok := strings.CutPrefix(s, "skip "); ok {
		t.Skip(reason)
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(s, "pid "))
	if err != nil || pid <= 0 {
		t.Fatalf("server helper said %q", s)
	}
	return cmd, pid
}

// killServer SIGKILLs the helper, as an OOM killer or `kill -9` would kill `coda serve`.
func killServer(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// gone reports whether pid has exited (a zombie has: only its parent's reaping is left).
func gone(pid int) bool {
	s := procState(pid)
	return s == 0 || s == 'Z'
}

// rootDirs lists where the cgroup root name lives (one directory per v1 hierarchy).
func rootDirs(t *testing.T, name string) []string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		self, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		return []string{filepath.Join("/sys/fs/cgroup", v2SelfPath(string(self)), name)}
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range v1Mounts(string(info)) {
		out = append(out, filepath.Join(m, name))
	}
	return out
}

func TestParentDeathKillsRunningInstance(t *testing.T) {
	cmd, pid := startServerHelper(t, false)
	root := "coda-" + strconv.Itoa(cmd.Process.Pid)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		reapStale(ctx, testLogger{t}) // the dead helper's empty cgroups
	})
	if gone(pid) {
		t.Fatalf("instance %d not running", pid)
	}
	killServer(t, cmd)
	// The shim dropped privileges after the start, which clears the parent-death signal;
	// this proves it was set again.
	waitFor(t, fmt.Sprintf("instance %d to die with its server", pid), func() bool { return gone(pid) })
	t.Logf("instance %d died with its server; cgroups left: %s", pid, root)
}

func TestReapFrozenInstanceOfDeadServer(t *testing.T) {
	cmd, pid := startServerHelper(t, true)
	root := "coda-" + strconv.Itoa(cmd.Process.Pid)
	killServer(t, cmd)
	time.Sleep(200 * time.Millisecond) // give a pending SIGKILL its chance to act
	// On v1 the frozen instance survives its server (the bug reaped here); v2's freezer
	// lets fatal signals through, so it may already be gone.
	t.Logf("after the server's death, frozen instance alive: %v", !gone(pid))
	newHost(t, true) // New reaps the dead server's cgroups
	waitFor(t, fmt.Sprintf("frozen instance %d to be reaped", pid), func() bool { return gone(pid) })
	for _, d := range rootDirs(t, root) {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("stale root %s not removed (stat: %v)", d, err)
		}
	}
}
