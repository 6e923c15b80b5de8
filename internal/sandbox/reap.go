package sandbox

import (
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

// A server killed by SIGKILL cannot clean up. Its running instances die with it (the shim
// has a parent-death signal), but frozen ones cannot act on their pending SIGKILL (v1
// freezer) and stay behind forever, and its cgroup directories stay too. The next server
// to start reaps what dead servers left.
const (
	// reapTimeout bounds reaping at start-up: killing and removing a few stale cgroups
	// takes milliseconds; a task stuck in D state must not hold up the server's start.
	reapTimeout = 3 * time.Second
	// rootPrefix is the prefix of Config.Root's default, "coda-<pid>".
	rootPrefix = "coda-"
	// v2LeafSuffix names the leaf a v2 server moves itself into (see newCgroupV2).
	v2LeafSuffix = ".server"
)

// reapStats counts what reapStale removed, for its one log line.
type reapStats struct {
	roots, procs int
}

// rootOwner returns the pid in a root name made by Config.Root's default ("coda-<pid>",
// and on v2 its leaf "coda-<pid>.server"). Other names (tests' roots, other tools) are
// never touched.
func rootOwner(name string) (pid int, ok bool) {
	rest, ok := strings.CutPrefix(name, rootPrefix)
	if !ok {
		return 0, false
	}
	rest = strings.TrimSuffix(rest, v2LeafSuffix)
	pid, err := strconv.Atoi(rest)
	if err != nil || pid <= 0 || strconv.Itoa(pid) != rest {
		return 0, false
	}
	return pid, true
}

// pidAlive reports whether pid exists. It is conservative: only ESRCH counts as dead
// (EPERM means it lives; a zombie still holds its pid).
func pidAlive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// staleRoots lists the root names in parent whose owner is dead.
func staleRoots(parent string, alive func(int) bool) []string {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if pid, ok := rootOwner(e.Name()); ok && pid != os.Getpid() && !alive(pid) {
			out = append(out, e.Name())
		}
	}
	return out
}

// subdirs lists the directories directly inside dir.
func subdirs(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// rmdirCtx removes a cgroup directory, retrying while the kernel still counts it busy.
func rmdirCtx(ctx context.Context, dir string) error {
	err := pollUntil(ctx, func() (bool, error) {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return true, nil
		}
		if errors.Is(err, syscall.EBUSY) {
			return false, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("rmdir %s: %w", dir, err)
	}
	return nil
}

// removeReaped removes an instance cgroup. After a kill it waits (within ctx) while the
// kernel finishes with the dead tasks. One that looked empty gets one try: it may still
// be busy with tasks this pid namespace cannot see (another container sharing the
// hierarchy) or with zombies its new parent has not reaped yet; the next start retries.
// Nothing is thawed or killed there, so a stranger's instance is never disturbed.
func removeReaped(ctx context.Context, dir string, killed bool) error {
	if killed {
		return rmdirCtx(ctx, dir)
	}
	if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("rmdir %s: %w", dir, err)
	}
	return nil
}

// reapStale removes the cgroups of dead servers, killing what still runs in them. It
// never fails: problems are logged, and the server starts regardless.
func reapStale(ctx context.Context, log logger) {
	ctx, cancel := context.WithTimeout(ctx, reapTimeout)
	defer cancel()
	const mnt = "/sys/fs/cgroup"
	var st reapStats
	var st2 unix.Statfs_t
	if err := unix.Statfs(mnt, &st2); err == nil && st2.Type == unix.CGROUP2_SUPER_MAGIC {
		self, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			log.Warn("sandbox: reaping stale cgroups", "err", err)
			return
		}
		st = reapV2(ctx, filepath.Join(mnt, v2SelfPath(string(self))), pidAlive, log)
	} else {
		info, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			log.Warn("sandbox: reaping stale cgroups", "err", err)
			return
		}
		st = reapV1(ctx, v1Mounts(string(info)), pidAlive, log)
	}
	if st.roots > 0 || st.procs > 0 {
		log.Info("sandbox: reaped cgroups of dead servers", "roots", st.roots, "processes", st.procs)
	}
}

// reapV1 reaps stale roots at the top of each v1 hierarchy. A root exists once per
// controller; its instances are matched by name across the hierarchies.
func reapV1(ctx context.Context, mounts map[string]string, alive func(int) bool, log logger) reapStats {
	var st reapStats
	seen := map[string]bool{}
	var roots []string
	for _, c := range v1Controllers {
		if m, ok := mounts[c]; ok {
			for _, r := range staleRoots(m, alive) {
				if !seen[r] {
					seen[r] = true
					roots = append(roots, r)
				}
			}
		}
	}
	for _, root := range roots {
		n, err := reapV1Root(ctx, mounts, root)
		st.procs += n
		if err != nil {
			log.Warn("sandbox: could not reap a dead server's cgroups", "cgroup", root, "err", err)
			continue
		}
		st.roots++
	}
	return st
}

func reapV1Root(ctx context.Context, mounts map[string]string, root string) (int, error) {
	// Instances by name, each with its directory in every hierarchy that has it.
	insts := map[string]*cgroupV1Instance{}
	var names []string
	for _, c := range v1Controllers {
		m, ok := mounts[c]
		if !ok {
			continue
		}
		for _, name := range subdirs(filepath.Join(m, root)) {
			in, ok := insts[name]
			if !ok {
				in = &cgroupV1Instance{dirs: map[string]string{}}
				insts[name] = in
				names = append(names, name)
			}
			in.dirs[c] = filepath.Join(m, root, name)
		}
	}
	killed := 0
	var errs []error
	for _, name := range names {
		in := insts[name]
		pids, _ := in.procs()
		if len(pids) > 0 {
			killed += len(pids)
			// kill freezes, SIGKILLs and thaws until empty: v1 frozen tasks die only once
			// thawed, and killing before the thaw lets no user code run again.
			if err := in.kill(ctx); err != nil {
				errs = append(errs, fmt.Errorf("instance %s: %w", name, err))
				continue
			}
		}
		for _, d := range in.dirs {
			if err := removeReaped(ctx, d, len(pids) > 0); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return killed, errors.Join(errs...)
	}
	for _, c := range v1Controllers {
		if m, ok := mounts[c]; ok {
			if _, err := os.Stat(filepath.Join(m, root)); err == nil {
				if err := rmdirCtx(ctx, filepath.Join(m, root)); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return killed, errors.Join(errs...)
}

// reapV2 reaps stale roots (and server leaves) next to where this server creates its own.
func reapV2(ctx context.Context, base string, alive func(int) bool, log logger) reapStats {
	var st reapStats
	for _, root := range staleRoots(base, alive) {
		dir := filepath.Join(base, root)
		if strings.HasSuffix(root, v2LeafSuffix) {
			// The leaf held only the dead server; anything else it started there is
			// outside the sandbox's charge: remove the leaf only if it is empty.
			if err := syscall.Rmdir(dir); err == nil {
				st.roots++
			} else if !errors.Is(err, syscall.ENOENT) {
				log.Warn("sandbox: could not remove a dead server's leaf cgroup", "cgroup", dir, "err", err)
			}
			continue
		}
		n, err := reapV2Root(ctx, dir)
		st.procs += n
		if err != nil {
			log.Warn("sandbox: could not reap a dead server's cgroups", "cgroup", dir, "err", err)
			continue
		}
		st.roots++
	}
	return st
}

func reapV2Root(ctx context.Context, dir string) (int, error) {
	_, err := os.Stat(filepath.Join(dir, "cgroup.freeze"))
	g := &cgroupV2{root: dir, freeze: err == nil}
	killed := 0
	var errs []error
	for _, name := range subdirs(dir) {
		in := &cgroupV2Instance{dir: filepath.Join(dir, name), g: g, fd: -1}
		pids, _ := in.procs()
		if len(pids) > 0 {
			killed += len(pids)
			// v2 frozen tasks die on SIGKILL: cgroup.kill (or the SIGKILL loop) needs no
			// thaw first; the thaw after it leaves nothing frozen should rmdir fail.
			if err := in.kill(ctx); err != nil {
				errs = append(errs, fmt.Errorf("instance %s: %w", name, err))
				continue
			}
			if g.freeze {
				_ = writeFile(filepath.Join(in.dir, "cgroup.freeze"), "0")
			}
		}
		if err := removeReaped(ctx, in.dir, len(pids) > 0); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return killed, errors.Join(errs...)
	}
	return killed, rmdirCtx(ctx, dir)
}
