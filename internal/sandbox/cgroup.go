package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Timing of cgroup operations.
const (
	// freezePollMin/Max bound the polling of freezer state: freezing a few processes takes
	// well under a millisecond, so start fast and back off for big process trees.
	freezePollMin = 200 * time.Microsecond
	freezePollMax = 10 * time.Millisecond
	// rmdirTimeout bounds retrying rmdir on EBUSY: the kernel finishes uncharging exited
	// tasks asynchronously, so a cgroup can look busy for a moment after its last process died.
	rmdirTimeout = 2 * time.Second
)

// cgroupDriver creates the per-instance cgroups under this server's root cgroup. One
// implementation per cgroup version; the rest of the package sees only this interface.
type cgroupDriver interface {
	// describe names the version and the controllers in use, e.g. "cgroup v1 (memory, pids)".
	describe() string
	// create makes the instance cgroup name under the root.
	create(name string) (instanceCgroup, error)
	// close removes the root cgroup (instances must be removed first).
	close() error
}

// instanceCgroup is the cgroup (v1: one directory per controller) of one instance.
type instanceCgroup interface {
	// setMemory sets the memory limit and an equal memory+swap limit; mb <= 0 removes it.
	setMemory(mb int) error
	setPids(max int) error
	setCPUShares(shares int) error
	// intoFD returns an fd of the cgroup directory for CLONE_INTO_CGROUP, or -1 if this
	// version cannot place a process at clone time (the caller then uses add).
	intoFD() int
	// add moves a process (all its threads) into the cgroup.
	add(pid int) error
	procs() ([]int, error)
	canFreeze() bool
	freeze(ctx context.Context) error
	thaw(ctx context.Context) error
	// kill SIGKILLs every process in the cgroup until it is empty or ctx ends.
	kill(ctx context.Context) error
	// oomKills reports the kernel's OOM-kill counter; known is false where the kernel
	// keeps none (old v1), and failcnt (limit hits) is returned instead.
	oomKills() (n int, known bool, failcnt int)
	remove() error
}

// errNoCgroups means no usable cgroup hierarchy was found.
var errNoCgroups = errors.New("no usable cgroup hierarchy")

// detectCgroups picks cgroup v2 when /sys/fs/cgroup is the unified hierarchy, else the v1
// controller hierarchies from /proc/self/mountinfo.
func detectCgroups(name string, log logger) (cgroupDriver, error) {
	const mnt = "/sys/fs/cgroup"
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		self, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			return nil, fmt.Errorf("read /proc/self/cgroup: %w", err)
		}
		return newCgroupV2(filepath.Join(mnt, v2SelfPath(string(self))), name, os.Getpid(), log)
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	parents := v1Mounts(string(info))
	if len(parents) == 0 {
		return nil, errNoCgroups
	}
	return newCgroupV1(parents, name)
}

// logger is the part of *slog.Logger the cgroup code uses (kept tiny for tests).
type logger interface {
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
}

// v2SelfPath returns this process's path in the unified hierarchy ("0::/path").
func v2SelfPath(procSelfCgroup string) string {
	for _, line := range strings.Split(procSelfCgroup, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return "/"
}

// v1Controllers are the v1 controllers the sandbox uses, in the order they are reported.
var v1Controllers = []string{"memory", "pids", "freezer", "cpu"}

// v1Mounts maps each wanted v1 controller to its hierarchy's mount point.
func v1Mounts(mountinfo string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || g[0] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(g[2], ",") {
			for _, c := range v1Controllers {
				if opt == c {
					if _, dup := out[c]; !dup {
						out[c] = unescapeMount(f[4])
					}
				}
			}
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// writeFile writes a control file. O_CREATE is harmless on cgroupfs (creating fails there
// anyway) and lets unit tests run against a plain directory tree.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return f.Close()
}

func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// readKeyed reads a flat-keyed file ("key value" per line) such as memory.events.
func readKeyed(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, sc.Err()
}

// readPids reads cgroup.procs.
func readPids(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, s := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(s); err == nil {
			pids = append(pids, n)
		}
	}
	return pids, nil
}

// mkdirOK creates a cgroup directory; an existing one (left by a crashed run with the
// same name) is reused.
func mkdirOK(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// rmdirRetry removes a cgroup directory, retrying while the kernel still counts it busy.
func rmdirRetry(dir string) error {
	deadline := time.Now().Add(rmdirTimeout)
	delay := time.Millisecond
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// pollUntil calls done with backoff until it reports true, fails, or ctx ends.
func pollUntil(ctx context.Context, done func() (bool, error)) error {
	delay := freezePollMin
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, freezePollMax)
	}
}

// killAll SIGKILLs every process listed by procs until none is left. freeze/thaw (may be
// nil) stop a fork bomb from outrunning the loop.
func killAll(ctx context.Context, procs func() ([]int, error), freeze, thaw func(context.Context) error) error {
	for {
		pids, err := procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if freeze != nil {
			// Best effort: a freeze that does not complete still helps, and thaw follows.
			fctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			_ = freeze(fctx)
			cancel()
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if thaw != nil {
			// v1 frozen tasks only die once thawed.
			if err := thaw(ctx); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("processes left in cgroup: %v: %w", pids, err)
		}
		time.Sleep(time.Millisecond)
	}
}
