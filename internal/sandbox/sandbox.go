// Package sandbox runs function instances as isolated process trees: each in its own
// cgroup (v1 or v2, detected at start-up) with memory, pids and CPU limits and a freezer,
// in new pid, mount, IPC and UTS namespaces, as its own unprivileged uid, with a private
// /tmp and the platform's data directory hidden. Where the host offers less (no root, no
// cgroups), New still returns a working Host with reduced isolation and says what is
// missing in Describe.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults.
const (
	DefaultUIDBase  = 60000
	DefaultUIDCount = 4096 // 60000..64095: stays clear of nobody (65534)
	DefaultPidsMax  = 64
	// probeTimeout bounds the start-up check that namespaces and mounts work; a shim
	// starts in a few milliseconds, so a hang means something is badly wrong.
	probeTimeout = 5 * time.Second
	// killTimeout bounds Kill: SIGKILL is not ignorable, but a process in uninterruptible
	// sleep (D state, e.g. stuck NFS) can delay its death.
	killTimeout = 10 * time.Second
	hostname    = "coda"
)

// Config configures a Host.
type Config struct {
	Root     string   // name of this server's cgroups, e.g. "coda-<pid>"; removed by Close
	Isolate  bool     // false: plain child processes, no namespaces or uid change
	Hide     []string // directories instances must not see (covered by an empty tmpfs)
	UIDBase  int      // first uid/gid for instances (default 60000)
	UIDCount int      // number of uids (default 4096)
}

// Host starts instances.
type Host struct {
	cfg      Config
	log      *slog.Logger
	cg       cgroupDriver // nil: no cgroups
	ns       bool         // namespaces and mounts work
	setUID   bool         // can switch to the instance uids
	uids     *uidPool
	describe string
	seq      atomic.Uint64

	mu     sync.Mutex
	live   map[*Process]struct{}
	closed bool

	devNull  *os.File      // stdin of instances, and stdout/stderr when the Spec has none
	warm     chan *Process // pre-started shims (see shimpool.go)
	stop     chan struct{} // closed by Close: stops the pool filler
	poolDone chan struct{} // closed when the pool filler has returned
}

// New detects what isolation the host supports and prepares this server's root cgroup.
// It fails only on invalid configuration; missing kernel features reduce isolation instead.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Host, error) {
	if log == nil {
		log = slog.Default()
	}
	if cfg.Root == "" {
		cfg.Root = "coda-" + strconv.Itoa(os.Getpid())
	}
	if strings.ContainsAny(cfg.Root, "/\x00") || cfg.Root == "." || cfg.Root == ".." {
		return nil, fmt.Errorf("sandbox: invalid cgroup name %q", cfg.Root)
	}
	if cfg.UIDBase <= 0 {
		cfg.UIDBase = DefaultUIDBase
	}
	if cfg.UIDCount <= 0 {
		cfg.UIDCount = DefaultUIDCount
	}
	h := &Host{cfg: cfg, log: log, live: map[*Process]struct{}{}, uids: newUIDPool(cfg.UIDBase, cfg.UIDCount),
		warm: make(chan *Process, shimPoolSize), stop: make(chan struct{}), poolDone: make(chan struct{})}
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	h.devNull = devNull
	var parts []string
	root := os.Geteuid() == 0
	if !root {
		parts = append(parts, "no cgroups (not root)")
	} else if cg, err := reapThenDetect(ctx, cfg.Root, log); err != nil {
		parts = append(parts, "no cgroups ("+err.Error()+")")
	} else {
		h.cg = cg
		parts = append(parts, cg.describe())
	}
	switch {
	case !cfg.Isolate:
		parts = append(parts, "no namespaces (isolation off)", "same uid")
	case !root:
		parts = append(parts, "no namespaces (not root)", "same uid (not root)")
	default:
		h.setUID = true
		if err := h.probe(ctx); err != nil {
			parts = append(parts, "no namespaces ("+err.Error()+")")
		} else {
			h.ns = true
			go h.fillPool()
			parts = append(parts, "namespaces pid,mount,ipc,uts; private /tmp; hidden "+strconv.Itoa(len(cfg.Hide))+" dir(s)")
		}
		parts = append(parts, fmt.Sprintf("uid %d+", cfg.UIDBase))
	}
	h.describe = strings.Join(parts, "; ")
	if !h.ns {
		close(h.poolDone)
	}
	return h, nil
}

// reapThenDetect first removes what servers killed without a chance to clean up left
// behind (see reap.go), then prepares this server's root.
func reapThenDetect(ctx context.Context, name string, log logger) (cgroupDriver, error) {
	reapStale(ctx, log)
	return detectCgroups(name, log)
}

// Describe says what isolation instances get, for one log line at start-up.
func (h *Host) Describe() string { return h.describe }

// probe starts one shim that sets up the namespaces and exits: it proves the kernel allows
// them here and that the binary calls RunShimIfRequested.
func (h *Host) probe(ctx context.Context) error {
	if os.Getenv(envShim) != "" {
		// A shim whose binary does not call RunShimIfRequested: never recurse.
		return errors.New("running inside a shim that did not start")
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	p, err := h.startIsolated(ctx, Spec{}, shimSpec{Probe: true, Hide: h.cfg.Hide, Hostname: hostname}, nil)
	if err != nil {
		return err
	}
	if err := p.Wait(); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}

// Close kills the instances still running and removes this server's cgroups.
func (h *Host) Close() error {
	h.mu.Lock()
	live := make([]*Process, 0, len(h.live))
	for p := range h.live {
		live = append(live, p)
	}
	wasClosed := h.closed
	h.closed = true
	h.mu.Unlock()
	if wasClosed {
		return nil
	}
	close(h.stop)
	<-h.poolDone
	h.drainPool()
	defer h.devNull.Close()
	var errs []error
	for _, p := range live {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if h.cg != nil {
		if err := h.cg.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Spec describes one instance.
type Spec struct {
	Path       string // absolute; may live inside a Hide dir
	Args       []string
	Env        []string // the instance's whole environment
	Dir        string
	ExtraFiles []*os.File // become fd 3, 4, ...
	Stdout     *os.File
	Stderr     *os.File
	MemoryMB   int      // 0 = no limit; memory+swap limited to the same value
	PidsMax    int      // 0 = DefaultPidsMax; counts threads, the shim's included
	CPUShares  int      // v1 cpu.shares, mapped onto v2 cpu.weight
	ReadOnly   []string // paths bind-mounted back read-only after hiding
	NoNetwork  bool     // new, empty network namespace (not even loopback is up)
}

// Start starts an instance. With isolation the returned process is already in its cgroup
// and namespaces and runs as its uid; its target has been exec'd successfully.
func (h *Host) Start(ctx context.Context, spec Spec) (*Process, error) {
	if !strings.HasPrefix(spec.Path, "/") {
		return nil, fmt.Errorf("sandbox: path %q is not absolute", spec.Path)
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, errors.New("sandbox: host closed")
	}
	var cg instanceCgroup
	if h.cg != nil {
		var err error
		if cg, err = h.cg.create("i" + strconv.FormatUint(h.seq.Add(1), 10)); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		if err := configure(cg, spec); err != nil {
			_ = cg.remove()
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	uid := -1
	if h.setUID {
		var err error
		if uid, err = h.uids.get(); err != nil {
			if cg != nil {
				_ = cg.remove()
			}
			return nil, err
		}
	}
	var p *Process
	var err error
	if h.ns {
		p, err = h.startIsolated(ctx, spec, shimSpec{
			Path: spec.Path, Args: spec.Args, Env: spec.Env, Dir: spec.Dir,
			Hide: h.cfg.Hide, ReadOnly: spec.ReadOnly, UID: uid, GID: uid, Hostname: hostname,
		}, cg)
	} else {
		p, err = h.startPlain(spec, cg, uid)
	}
	if err != nil {
		if cg != nil {
			_ = cg.remove()
		}
		if uid >= 0 {
			h.uids.put(uid)
		}
		return nil, err
	}
	p.uid = uid
	h.mu.Lock()
	h.live[p] = struct{}{}
	h.mu.Unlock()
	return p, nil
}

func configure(cg instanceCgroup, spec Spec) error {
	pids := spec.PidsMax
	if pids <= 0 {
		pids = DefaultPidsMax
	}
	if err := cg.setMemory(spec.MemoryMB); err != nil {
		return fmt.Errorf("memory limit: %w", err)
	}
	if err := cg.setPids(pids); err != nil {
		return fmt.Errorf("pids limit: %w", err)
	}
	if err := cg.setCPUShares(spec.CPUShares); err != nil {
		return fmt.Errorf("cpu shares: %w", err)
	}
	return nil
}

// command builds the exec.Cmd common to both modes. A nil *os.File must not reach
// exec.Cmd as a non-nil io.Writer, hence the checks.
func command(path string, args []string, env []string, spec Spec) *exec.Cmd {
	cmd := &exec.Cmd{Path: path, Args: args, Env: env, Dir: spec.Dir,
		ExtraFiles: append([]*os.File(nil), spec.ExtraFiles...)}
	if cmd.Env == nil {
		cmd.Env = []string{} // nil would mean "inherit the server's environment"
	}
	if spec.Stdout != nil {
		cmd.Stdout = spec.Stdout
	}
	if spec.Stderr != nil {
		cmd.Stderr = spec.Stderr
	}
	return cmd
}

// startPlain runs the target as a direct child in its own process group.
func (h *Host) startPlain(spec Spec, cg instanceCgroup, uid int) (*Process, error) {
	args := spec.Args
	if len(args) == 0 {
		args = []string{spec.Path}
	}
	cmd := command(spec.Path, args, spec.Env, spec)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid >= 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}
	}
	placed := false
	if cg != nil {
		if fd := cg.intoFD(); fd >= 0 {
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD, placed = true, fd, true
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sandbox: start %s: %w", spec.Path, err)
	}
	if cg != nil && !placed {
		// v1 without a shim: the target runs for a moment before it is moved; its first
		// instructions are the runtime's start-up, not user code.
		if err := cg.add(cmd.Process.Pid); err != nil {
			h.log.Warn("sandbox: could not place instance in its cgroup", "pid", cmd.Process.Pid, "err", err)
		}
		// Children forked before the move are found in the process tree (after it: later
		// forks inherit the cgroup). A second pass catches what those children forked
		// while the first pass ran.
		for range 2 {
			for _, pid := range descendants(cmd.Process.Pid)[1:] {
				_ = cg.add(pid)
			}
		}
	}
	return newProcess(h, cmd, cg, cmd.Process.Pid, cmd.Process.Pid, false), nil
}
