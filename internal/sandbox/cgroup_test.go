package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

type testLogger struct{ t *testing.T }

func (l testLogger) Info(msg string, args ...any) { l.t.Log(append([]any{msg}, args...)...) }
func (l testLogger) Warn(msg string, args ...any) { l.t.Log(append([]any{msg}, args...)...) }

// fakeV2 builds a unified-hierarchy look-alike: cgroup.controllers at the base, and the
// files the kernel would create in the server's root cgroup.
func fakeV2(t *testing.T, controllers string) (base string) {
	t.Helper()
	base = t.TempDir()
	mustWrite(t, filepath.Join(base, "cgroup.controllers"), controllers+"\n")
	mustWrite(t, filepath.Join(base, "cgroup.subtree_control"), "")
	if err := os.Mkdir(filepath.Join(base, "coda-test"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(base, "coda-test", "cgroup.freeze"), "0\n")
	return base
}

func mustWrite(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	s, err := readTrim(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCgroupV2Files(t *testing.T) {
	base := fakeV2(t, "cpuset cpu io memory hugetlb pids rdma misc")
	g, err := newCgroupV2(base, "coda-test", 4242, testLogger{t})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(base, "cgroup.subtree_control")); got != "+memory +pids +cpu" {
		t.Errorf("base subtree_control = %q", got)
	}
	if got := mustRead(t, filepath.Join(base, "coda-test", "cgroup.subtree_control")); got != "+memory +pids +cpu" {
		t.Errorf("root subtree_control = %q", got)
	}
	if got := g.describe(); got != "cgroup v2 (memory, pids, cpu, freezer)" {
		t.Errorf("describe = %q", got)
	}
	ic, err := g.create("i1")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "coda-test", "i1")
	if err := configure(ic, Spec{MemoryMB: 128, CPUShares: 1024}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"memory.max":      "134217728",
		"memory.swap.max": "0",
		"pids.max":        "64",
		"cpu.weight":      "39",
	} {
		if got := mustRead(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if err := ic.setMemory(0); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "memory.max")); got != "max" {
		t.Errorf("unlimited memory.max = %q", got)
	}
	if err := ic.add(77); err != nil {
		t.Fatal(err)
	}
	if pids, err := ic.procs(); err != nil || !reflect.DeepEqual(pids, []int{77}) {
		t.Errorf("procs = %v, %v", pids, err)
	}
	if fd := ic.intoFD(); fd < 0 {
		t.Error("no cgroup fd for CLONE_INTO_CGROUP")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mustWrite(t, filepath.Join(dir, "cgroup.events"), "populated 1\nfrozen 1\n")
	if err := ic.freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "cgroup.freeze")); got != "1" {
		t.Errorf("cgroup.freeze = %q", got)
	}
	// Thaw must wait for the kernel to report it.
	done := make(chan error, 1)
	go func() { done <- ic.thaw(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("thaw returned before cgroup.events said thawed: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	mustWrite(t, filepath.Join(dir, "cgroup.events"), "populated 1\nfrozen 0\n")
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	mustWrite(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
	if n, known, _ := ic.oomKills(); !known || n != 1 {
		t.Errorf("oomKills = %d, %v", n, known)
	}

	mustWrite(t, filepath.Join(dir, "cgroup.procs"), "")
	if err := ic.kill(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "cgroup.kill")); got != "1" {
		t.Errorf("cgroup.kill = %q", got)
	}
}

func TestCgroupV2MissingControllers(t *testing.T) {
	base := fakeV2(t, "cpu io")
	g, err := newCgroupV2(base, "coda-test", 1, testLogger{t})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(base, "cgroup.subtree_control")); got != "+cpu" {
		t.Errorf("subtree_control = %q", got)
	}
	ic, err := g.create("i1")
	if err != nil {
		t.Fatal(err)
	}
	if err := configure(ic, Spec{MemoryMB: 64}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(base, "coda-test", "i1", "memory.max")); err == nil {
		t.Error("memory.max written without the memory controller")
	}
}

func TestCgroupV2NoBase(t *testing.T) {
	if _, err := newCgroupV2(filepath.Join(t.TempDir(), "absent"), "x", 1, testLogger{t}); err == nil {
		t.Error("no error for a missing hierarchy")
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[int]int{2: 1, 1024: 39, 262144: 10000, 1: 1, 1 << 30: 10000} {
		if got := sharesToWeight(shares); got != want {
			t.Errorf("sharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestV2SelfPath(t *testing.T) {
	if got := v2SelfPath("0::/system.slice/coda.service\n"); got != "/system.slice/coda.service" {
		t.Errorf("got %q", got)
	}
	if got := v2SelfPath("4:memory:/x\n"); got != "/" {
		t.Errorf("got %q", got)
	}
}

func TestV1Mounts(t *testing.T) {
	info := `24 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
28 24 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
30 24 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
31 24 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
32 24 0:30 / /sys/fs/cgroup/my\040freezer rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,freezer
`
	want := map[string]string{
		"cpu": "/sys/fs/cgroup/cpu,cpuacct", "memory": "/sys/fs/cgroup/memory",
		"pids": "/sys/fs/cgroup/pids", "freezer": "/sys/fs/cgroup/my freezer",
	}
	if got := v1Mounts(info); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestCgroupV1Files drives the v1 implementation against a fake tree.
func TestCgroupV1Files(t *testing.T) {
	mounts := map[string]string{}
	for _, c := range []string{"memory", "pids", "cpu"} {
		mounts[c] = filepath.Join(t.TempDir(), c)
		if err := os.MkdirAll(filepath.Join(mounts[c], "coda-test"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(mounts["memory"], "coda-test", "memory.memsw.limit_in_bytes"), "-1")
	g, err := newCgroupV1(mounts, "coda-test")
	if err != nil {
		t.Fatal(err)
	}
	if got := g.describe(); got != "cgroup v1 (memory, pids, cpu)" {
		t.Errorf("describe = %q", got)
	}
	ic, err := g.create("i1")
	if err != nil {
		t.Fatal(err)
	}
	if err := configure(ic, Spec{MemoryMB: 16, PidsMax: 10, CPUShares: 512}); err != nil {
		t.Fatal(err)
	}
	mem := filepath.Join(mounts["memory"], "coda-test", "i1")
	for file, want := range map[string]string{
		filepath.Join(mem, "memory.limit_in_bytes"):                   "16777216",
		filepath.Join(mem, "memory.memsw.limit_in_bytes"):             "16777216",
		filepath.Join(mounts["pids"], "coda-test", "i1", "pids.max"):  "10",
		filepath.Join(mounts["cpu"], "coda-test", "i1", "cpu.shares"): "512",
	} {
		if got := mustRead(t, file); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if ic.canFreeze() {
		t.Error("canFreeze without a freezer hierarchy")
	}
	mustWrite(t, filepath.Join(mem, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
	if n, known, _ := ic.oomKills(); !known || n != 2 {
		t.Errorf("oomKills = %d, %v", n, known)
	}
	mustWrite(t, filepath.Join(mem, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\n")
	mustWrite(t, filepath.Join(mem, "memory.failcnt"), "5\n")
	if n, known, failcnt := ic.oomKills(); known || n != 0 || failcnt != 5 {
		t.Errorf("old-kernel oomKills = %d, %v, %d", n, known, failcnt)
	}
}
