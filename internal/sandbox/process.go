package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one running instance.
type Process struct {
	h        *Host
	cmd      *exec.Cmd
	cg       instanceCgroup // nil without cgroups
	shimPid  int            // the process we started and reap (the target itself in plain mode)
	mainPid  int            // the target (the runtime), as seen from the host
	isolated bool
	uid      int      // -1: none allocated
	ctl      *os.File // control socket to the shim until it has replied

	done    chan struct{} // closed once the started process is reaped
	waitErr error
	state   *os.ProcessState

	closeOnce sync.Once
	closeErr  error
}

func newProcess(h *Host, cmd *exec.Cmd, cg instanceCgroup, shimPid, mainPid int, isolated bool) *Process {
	p := &Process{h: h, cmd: cmd, cg: cg, shimPid: shimPid, mainPid: mainPid, isolated: isolated,
		uid: -1, done: make(chan struct{})}
	// Reap in the background so Kill can wait for the exit while the owner waits in Wait.
	go func() {
		p.waitErr = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	return p
}

// Pid is the host pid of the target (the runtime). In isolated mode it runs under a shim
// that is PID 1 of the instance's pid namespace.
func (p *Process) Pid() int {
	if p.mainPid > 0 {
		return p.mainPid
	}
	return p.shimPid
}

// Wait waits for the instance to exit, like exec.Cmd.Wait. In isolated mode a target
// killed by signal N shows as exit status 128+N (the shim's status).
func (p *Process) Wait() error {
	<-p.done
	return p.waitErr
}

func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill kills every process of the instance and reaps it.
func (p *Process) Kill() error {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	if p.cg == nil && !p.isolated && !p.exited() {
		// Without cgroups, descendants that left the process group (setsid) are found
		// only by walking the tree, and only while the root still holds it together.
		for _, pid := range descendants(p.shimPid)[1:] {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if !p.exited() {
		// os.Process tracks reaping (pidfd), so this never hits a recycled pid. In isolated
		// mode the shim is PID 1 of the namespace: its death takes all the rest with it.
		_ = p.cmd.Process.Kill()
	}
	var errs []error
	if p.cg != nil {
		if err := p.cg.kill(ctx); err != nil {
			errs = append(errs, fmt.Errorf("sandbox: kill: %w", err))
		}
	} else if !p.isolated {
		// Without cgroups the process group is all we know of. (Its id stays reserved
		// while any member lives, so it names no stranger.)
		_ = syscall.Kill(-p.shimPid, syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("sandbox: kill: pid %d not reaped: %w", p.shimPid, ctx.Err()))
	}
	return errors.Join(errs...)
}

// SetMemory changes the memory limit (0 removes it). Without cgroups it does nothing:
// Describe already told the operator.
func (p *Process) SetMemory(mb int) error {
	if p.cg == nil {
		return nil
	}
	if err := p.cg.setMemory(mb); err != nil {
		return fmt.Errorf("sandbox: set memory: %w", err)
	}
	return nil
}

// Freeze stops every process of the instance and returns once they are all stopped.
func (p *Process) Freeze(ctx context.Context) error {
	if p.cg != nil && p.cg.canFreeze() {
		if err := p.cg.freeze(ctx); err != nil {
			return fmt.Errorf("sandbox: freeze: %w", err)
		}
		return nil
	}
	if err := syscall.Kill(-p.shimPid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("sandbox: freeze: %w", err)
	}
	return pollUntil(ctx, func() (bool, error) {
		for _, pid := range p.Procs() {
			if s := procState(pid); s != 'T' && s != 't' && s != 'Z' && s != 0 {
				return false, nil
			}
		}
		return true, nil
	})
}

// Thaw resumes a frozen instance.
func (p *Process) Thaw(ctx context.Context) error {
	if p.cg != nil && p.cg.canFreeze() {
		if err := p.cg.thaw(ctx); err != nil {
			return fmt.Errorf("sandbox: thaw: %w", err)
		}
		return nil
	}
	if err := syscall.Kill(-p.shimPid, syscall.SIGCONT); err != nil {
		return fmt.Errorf("sandbox: thaw: %w", err)
	}
	return nil
}

// OOMKilled reports whether the kernel OOM-killed a process of the instance.
func (p *Process) OOMKilled() bool {
	if p.cg == nil {
		return false
	}
	n, known, failcnt := p.cg.oomKills()
	if known {
		return n > 0
	}
	// Old v1 kernels keep no OOM-kill counter: limit hits plus death by SIGKILL is the
	// best evidence left.
	return failcnt > 0 && p.exited() && killedBySIGKILL(p.state)
}

func killedBySIGKILL(st *os.ProcessState) bool {
	if st == nil {
		return false
	}
	ws, ok := st.Sys().(syscall.WaitStatus)
	if !ok {
		return false
	}
	return (ws.Signaled() && ws.Signal() == syscall.SIGKILL) || (ws.Exited() && ws.ExitStatus() == 128+int(syscall.SIGKILL))
}

// Procs lists the host pids of the instance's processes (the shim included).
func (p *Process) Procs() []int {
	if p.cg != nil {
		if pids, err := p.cg.procs(); err == nil {
			return pids
		}
	}
	if p.exited() {
		return nil
	}
	return descendants(p.shimPid)
}

// Close kills what is left of the instance, removes its cgroup and frees its uid.
func (p *Process) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		if err := p.Kill(); err != nil {
			errs = append(errs, err)
		}
		if p.cg != nil {
			if err := p.cg.remove(); err != nil {
				errs = append(errs, fmt.Errorf("sandbox: %w", err))
			}
		}
		if p.uid >= 0 {
			p.h.uids.put(p.uid)
		}
		p.h.mu.Lock()
		delete(p.h.live, p)
		p.h.mu.Unlock()
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// procState returns the state letter of /proc/<pid>/stat (0 if the process is gone).
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may contain spaces and parentheses: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

// procPPid returns the parent pid from /proc/<pid>/stat.
func procPPid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// descendants lists root and every process below it (the fallback without cgroups;
// daemons that re-parent themselves away escape it). The kernel's per-thread children
// lists make this cheap; without them (CONFIG_PROC_CHILDREN off) all of /proc is read.
func descendants(root int) []int {
	out := []int{root}
	for i := 0; i < len(out); i++ {
		kids, ok := childrenOf(out[i])
		if !ok {
			return descendantsByScan(root)
		}
		out = append(out, kids...)
	}
	return out
}

// childrenOf reads /proc/<pid>/task/*/children; ok is false if the kernel lacks them.
func childrenOf(pid int) (kids []int, ok bool) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, true // exited meanwhile
	}
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/children")
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(dir + "/" + t.Name()); serr == nil {
				return nil, false
			}
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				kids = append(kids, n)
			}
		}
	}
	return kids, true
}

func descendantsByScan(root int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []int{root}
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid := procPPid(pid)
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// hostPidOf finds the host pid of the shim's child nsPid. The kernel lists a task's
// children in /proc/<pid>/task/<tid>/children; the shim forks from its main thread.
func hostPidOf(shimPid, nsPid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", shimPid, shimPid))
	if err == nil {
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && nsPidOf(pid) == nsPid {
				return pid
			}
		}
	}
	for _, pid := range descendantsByScan(shimPid)[1:] {
		if procPPid(pid) == shimPid && nsPidOf(pid) == nsPid {
			return pid
		}
	}
	return 0
}

// nsPidOf returns a process's pid in its innermost pid namespace ("NSpid:" in status).
func nsPidOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}

// backstopPoll is how often Backstop re-checks: child processes and socket queues drain
// on network timescales, so a few checks per 100 ms cost little and add little delay.
const backstopPoll = 20 * time.Millisecond
