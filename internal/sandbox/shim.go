package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// The shim is this same binary re-executed (via /proc/self/exe) inside the new namespaces.
// It reads its spec from the control socket (the parent writes it only after placing the
// shim in the instance's cgroup, so no user code ever runs outside it), prepares the mount
// namespace, drops to the instance uid, forks the target and then stays as PID 1 of the
// pid namespace: it reaps orphans (whose zombies would otherwise count against pids.max),
// forwards termination signals, and exits with the target's status, which makes the
// kernel kill everything else left in the namespace.
const (
	envShim   = "CODA_SANDBOX_SHIM"    // "1" marks a shim process
	envShimFD = "CODA_SANDBOX_SHIM_FD" // fd of the control socket
	shimArg0  = "coda-sandbox-shim"
	// shimArgGuard makes a Go test binary that forgot to call RunShimIfRequested run no tests
	// and exit at once, instead of recursively running its whole suite.
	shimArgGuard = "-test.run=^$"
	// exit codes of a failed shim, like env(1) and the shells.
	exitShimFailed = 125
	exitExecFailed = 127
)

// shimSpec is what the parent sends over the control socket.
type shimSpec struct {
	Path     string   `json:"path"`
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	Dir      string   `json:"dir"`
	NFiles   int      `json:"nfiles"` // fds sent with the spec: stdin, stdout, stderr, extra files
	Hide     []string `json:"hide"`
	ReadOnly []string `json:"readonly"`
	UID      int      `json:"uid"`
	GID      int      `json:"gid"`
	Hostname string   `json:"hostname"`
	Probe    bool     `json:"probe"` // set up the namespace, reply, exit: checks isolation works
}

// shimReply is the shim's one answer: the target's pid inside the namespace, or an error.
type shimReply struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// RunShimIfRequested must be the first call in main (and in TestMain of tests that start
// isolated instances). In a normal process it returns at once; in a sandbox shim it runs
// the shim and never returns.
func RunShimIfRequested() {
	if os.Getenv(envShim) != "1" {
		return
	}
	os.Exit(runShim())
}

func runShim() int {
	// prctl(NO_NEW_PRIVS) is per thread and fork copies the calling thread's flag, so the
	// goroutine that sets it must also be the one that forks the target.
	runtime.LockOSThread()
	fd, err := strconv.Atoi(os.Getenv(envShimFD))
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox shim: bad %s: %v\n", envShimFD, err)
		return exitShimFailed
	}
	syscall.CloseOnExec(fd)
	ctl := os.NewFile(uintptr(fd), "sandbox-control")
	reply := func(r shimReply) {
		b, _ := json.Marshal(r)
		_, _ = ctl.Write(b)
	}
	spec, files, err := recvSpec(fd)
	if errors.Is(err, errControlClosed) {
		return 0 // a pre-started shim discarded unused
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox shim: %v\n", err)
		return exitShimFailed
	}
	exe, err := setupNamespace(&spec)
	if err != nil {
		reply(shimReply{Error: err.Error()})
		return exitShimFailed
	}
	if spec.Probe {
		reply(shimReply{Pid: os.Getpid()})
		return 0
	}
	// Subscribe before forking so no SIGCHLD is lost.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP,
		syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	// The target gets its uid at fork (cheap, single-threaded in the child); the shim drops
	// its own root after replying, off the start's critical path.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		reply(shimReply{Error: "no_new_privs: " + err.Error()})
		return exitShimFailed
	}
	pid, err := exe.start(&spec, files)
	if err != nil {
		reply(shimReply{Error: err.Error()})
		return exitExecFailed
	}
	// Once the instance is at its pids limit the shim cannot get new threads, and a
	// locked main goroutine that blocks makes the runtime start one: unlock.
	runtime.UnlockOSThread()
	reply(shimReply{Pid: pid})
	ctl.Close()
	for _, f := range files {
		syscall.Close(f)
	}
	if err := dropPrivileges(spec.UID, spec.GID); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox shim: %v\n", err)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return exitShimFailed
	}
	return reapUntil(pid, sigs)
}

// reapUntil is the init loop: reap every child, forward signals to the target, and return
// the target's exit status (128+signal when it was killed, as shells report it).
func reapUntil(target int, sigs <-chan os.Signal) int {
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			_ = syscall.Kill(target, sig.(syscall.Signal))
			continue
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
			if pid == target {
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
	}
	return exitShimFailed
}

// target is the opened executable, kept as an fd because it may sit in a hidden directory.
type target struct {
	fd    int
	path  string
	found bool // path still names the same file after the mounts
}

// setupNamespace prepares the mount and UTS namespaces. Everything the instance may read
// from hidden places (the target, ReadOnly paths) is opened first; then the covering
// tmpfs mounts go on; then the ReadOnly paths are bind-mounted back through their fds.
func setupNamespace(spec *shimSpec) (*target, error) {
	if err := syscall.Chdir("/"); err != nil {
		return nil, err
	}
	// Nothing done here may propagate back to the host's mount table.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make mounts private: %w", err)
	}
	var exe *target
	if !spec.Probe {
		fd, err := unix.Open(spec.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", spec.Path, err)
		}
		exe = &target{fd: fd, path: spec.Path}
	}
	type roPath struct {
		path string
		fd   int
		dir  bool
	}
	var ro []roPath
	for _, p := range spec.ReadOnly {
		fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open read-only path: %w", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, fmt.Errorf("stat %s: %w", p, err)
		}
		ro = append(ro, roPath{path: filepath.Clean(p), fd: fd, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR})
	}
	const coverFlags = unix.MS_NOSUID | unix.MS_NODEV
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", coverFlags, "mode=1777"); err != nil {
		return nil, fmt.Errorf("private /tmp: %w", err)
	}
	// POSIX shared memory lives in /dev/shm, which the IPC namespace does not cover.
	if _, err := os.Stat("/dev/shm"); err == nil {
		if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", coverFlags, "mode=1777"); err != nil {
			return nil, fmt.Errorf("private /dev/shm: %w", err)
		}
	}
	hide := slices.Clone(spec.Hide)
	slices.Sort(hide) // parents before children
	var hidden []string
	for _, h := range hide {
		h = filepath.Clean(h)
		if _, err := os.Stat(h); err != nil {
			continue // already invisible (e.g. under the fresh /tmp)
		}
		if err := unix.Mount("tmpfs", h, "tmpfs", coverFlags|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
			return nil, fmt.Errorf("hide %s: %w", h, err)
		}
		hidden = append(hidden, h)
	}
	for _, r := range ro {
		if err := mountPoint(r.path, r.dir); err != nil {
			return nil, err
		}
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", r.fd), r.path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return nil, fmt.Errorf("bind %s: %w", r.path, err)
		}
		if err := unix.Mount("", r.path, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			return nil, fmt.Errorf("read-only %s: %w", r.path, err)
		}
		unix.Close(r.fd)
	}
	for _, h := range hidden {
		if err := unix.Mount("tmpfs", h, "tmpfs", unix.MS_REMOUNT|unix.MS_RDONLY|coverFlags|unix.MS_NOEXEC, ""); err != nil {
			return nil, fmt.Errorf("seal %s: %w", h, err)
		}
	}
	if exe != nil {
		var a, b unix.Stat_t
		exe.found = unix.Fstat(exe.fd, &a) == nil && unix.Stat(exe.path, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino
	}
	// A /proc of the new pid namespace: the instance sees only its own processes.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("mount /proc: %w", err)
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return nil, fmt.Errorf("sethostname: %w", err)
		}
	}
	return exe, nil
}

// mountPoint makes sure path exists as a directory or file to bind onto. The parents it
// may have to create sit on one of the fresh tmpfs mounts.
func mountPoint(path string, dir bool) error {
	if dir {
		return os.MkdirAll(path, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return err
	}
	return f.Close()
}

// dropPrivileges switches to the instance's uid and gid with no supplementary groups.
// Go applies these to every thread. Changing credentials also clears the parent-death
// signal, so it is set again afterwards.
func dropPrivileges(uid, gid int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("pdeathsig: %w", err)
	}
	return nil
}

// start forks and execs the target. By path when the path still names the opened file
// (argv and /proc/<pid>/comm look normal), else through /proc/self/fd: an ELF binary can
// be exec'd from a close-on-exec fd, a script needs the fd to survive into its interpreter.
func (t *target) start(spec *shimSpec, fds []int) (int, error) {
	files := make([]uintptr, len(fds))
	for i, fd := range fds {
		files[i] = uintptr(fd)
	}
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	args := spec.Args
	if len(args) == 0 {
		args = []string{spec.Path}
	}
	env := spec.Env
	if env == nil {
		env = []string{}
	}
	attr := &syscall.ProcAttr{Dir: dir, Env: env, Files: files,
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL,
			Credential: &syscall.Credential{Uid: uint32(spec.UID), Gid: uint32(spec.GID), Groups: []uint32{}}}}
	if t.found {
		pid, err := syscall.ForkExec(t.path, args, attr)
		if !errors.Is(err, syscall.EACCES) {
			return pid, wrapExec(t.path, err)
		}
		// A directory on the way is closed to the instance uid; the fd still works.
	}
	path := fmt.Sprintf("/proc/self/fd/%d", t.fd)
	head := make([]byte, 2)
	if n, _ := unix.Pread(t.fd, head, 0); n == 2 && bytes.Equal(head, []byte("#!")) {
		attr.Files = append(files, uintptr(t.fd))
		path = fmt.Sprintf("/proc/self/fd/%d", len(files))
	}
	pid, err := syscall.ForkExec(path, args, attr)
	return pid, wrapExec(t.path, err)
}

func wrapExec(path string, err error) error {
	if err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}
