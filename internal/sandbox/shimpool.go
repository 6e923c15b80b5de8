package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// Starting the shim (exec of this Go binary and its runtime start-up) costs most of an
// isolated start, so a few shims are started ahead of time and wait, already in their new
// namespaces, for a spec. The instance's stdio and extra files reach them over the control
// socket (SCM_RIGHTS), which is SOCK_SEQPACKET so that one message is one spec.
const (
	// shimPoolSize covers a burst of starts; refilling one takes about as long as the
	// cold start it saves (~10 ms on a small VM).
	shimPoolSize = 2
	// poolRetry is the pause after a failed pre-start, so a broken host is not hammered.
	poolRetry = time.Second
	// maxShimMessage bounds one spec message (args and env); SEQPACKET messages must fit
	// the socket buffer, ~200 KiB by default.
	maxShimMessage = 192 << 10
	// maxShimFiles bounds the fds passed with a spec (stdio + ExtraFiles).
	maxShimFiles = 64
)

// fillPool keeps the pool of pre-started shims full until Close.
func (h *Host) fillPool() {
	defer close(h.poolDone)
	for {
		p, err := h.spawnShim(false)
		if err != nil {
			h.log.Warn("sandbox: pre-starting a shim failed", "err", err)
			select {
			case <-h.stop:
				return
			case <-time.After(poolRetry):
			}
			continue
		}
		select {
		case h.warm <- p:
		case <-h.stop:
			p.discard()
			return
		}
	}
}

// drainPool discards the shims left in the pool (after the filler has stopped).
func (h *Host) drainPool() {
	for {
		select {
		case p := <-h.warm:
			p.discard()
		default:
			return
		}
	}
}

// discard ends a shim that never got a spec.
func (p *Process) discard() {
	p.ctl.Close() // the shim reads EOF and exits
	_ = p.cmd.Process.Kill()
	<-p.done
}

// spawnShim starts a shim in new namespaces; it waits for its spec on the control socket.
func (h *Host) spawnShim(noNetwork bool) (*Process, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	// Non-blocking on our side so deadlines work; the shim's side stays blocking.
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "sandbox-control"), os.NewFile(uintptr(fds[1]), "sandbox-control")
	flags := uintptr(syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if noNetwork {
		flags |= syscall.CLONE_NEWNET
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{shimArg0, shimArgGuard},
		Env: []string{envShim + "=1", envShimFD + "=3",
			"GOMAXPROCS=1"}, // fewer shim threads: pids.max counts threads
		Dir:         "/",
		Stderr:      os.Stderr, // only a shim that cannot even read its spec writes here
		ExtraFiles:  []*os.File{theirs},
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: flags, Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		ours.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	p := newProcess(h, cmd, nil, cmd.Process.Pid, 0, true)
	p.ctl = ours
	return p, nil
}

// takeShim returns a pre-started shim, or starts one.
func (h *Host) takeShim(noNetwork bool) (*Process, error) {
	for !noNetwork {
		select {
		case p := <-h.warm:
			if p.exited() {
				p.ctl.Close()
				continue
			}
			return p, nil
		default:
		}
		break
	}
	return h.spawnShim(noNetwork)
}

// startIsolated hands a shim its spec: it places the shim in cg first, so no user code
// runs outside the cgroup, then waits for the shim's reply (the target was exec'd, or why not).
func (h *Host) startIsolated(ctx context.Context, spec Spec, ss shimSpec, cg instanceCgroup) (*Process, error) {
	p, err := h.takeShim(spec.NoNetwork)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer p.ctl.Close()
	fail := func(err error) (*Process, error) {
		_ = p.cmd.Process.Kill()
		<-p.done
		if cg != nil { // anything the shim forked before dying
			kctx, cancel := context.WithTimeout(context.Background(), killTimeout)
			_ = cg.kill(kctx)
			cancel()
		}
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if cg != nil {
		if err := cg.add(p.shimPid); err != nil {
			return fail(fmt.Errorf("place shim in cgroup: %w", err))
		}
		p.cg = cg
	}
	files := []*os.File{h.devNull, h.devNull, h.devNull}
	if spec.Stdout != nil {
		files[1] = spec.Stdout
	}
	if spec.Stderr != nil {
		files[2] = spec.Stderr
	}
	files = append(files, spec.ExtraFiles...)
	if len(files) > maxShimFiles {
		return fail(fmt.Errorf("%d files, at most %d", len(files), maxShimFiles))
	}
	ss.NFiles = len(files)
	msg, err := json.Marshal(ss)
	if err != nil {
		return fail(err)
	}
	if len(msg) > maxShimMessage {
		return fail(fmt.Errorf("spec of %d bytes (args and env), at most %d", len(msg), maxShimMessage))
	}
	if d, ok := ctx.Deadline(); ok {
		_ = p.ctl.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = p.ctl.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := sendWithFiles(p.ctl, msg, files); err != nil {
		return fail(fmt.Errorf("send spec to shim: %w", err))
	}
	buf := make([]byte, 4096)
	n, err := p.ctl.Read(buf)
	var r shimReply
	if err == nil {
		err = json.Unmarshal(buf[:n], &r)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		_, _ = fail(err)
		return nil, fmt.Errorf("sandbox: shim: no reply (exit: %v): %w", p.waitErr, err)
	}
	if r.Error != "" {
		<-p.done
		return nil, fmt.Errorf("sandbox: shim: %s", r.Error)
	}
	if !ss.Probe {
		p.mainPid = hostPidOf(p.shimPid, r.Pid)
	}
	return p, nil
}

// sendWithFiles sends one message with the files' descriptors attached.
func sendWithFiles(ctl *os.File, msg []byte, files []*os.File) error {
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	rc, err := ctl.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = syscall.Sendmsg(int(fd), msg, syscall.UnixRights(fds...), nil, 0)
		return !errors.Is(serr, syscall.EAGAIN)
	})
	runtime.KeepAlive(files)
	if err != nil {
		return err
	}
	return serr
}

// errControlClosed: the parent closed the control socket without sending a spec.
var errControlClosed = errors.New("control socket closed")

// recvSpec is the shim's side of sendWithFiles.
func recvSpec(fd int) (shimSpec, []int, error) {
	var spec shimSpec
	buf := make([]byte, maxShimMessage)
	oob := make([]byte, syscall.CmsgSpace(maxShimFiles*4))
	n, oobn, flags, _, err := syscall.Recvmsg(fd, buf, oob, syscall.MSG_CMSG_CLOEXEC)
	if err != nil {
		return spec, nil, fmt.Errorf("read spec: %w", err)
	}
	if n == 0 {
		return spec, nil, errControlClosed
	}
	if flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		return spec, nil, errors.New("spec message truncated")
	}
	var fds []int
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return spec, nil, fmt.Errorf("parse fds: %w", err)
	}
	for i := range msgs {
		got, err := syscall.ParseUnixRights(&msgs[i])
		if err != nil {
			return spec, nil, fmt.Errorf("parse fds: %w", err)
		}
		fds = append(fds, got...)
	}
	if err := json.Unmarshal(buf[:n], &spec); err != nil {
		return spec, nil, fmt.Errorf("decode spec: %w", err)
	}
	if len(fds) != spec.NFiles {
		return spec, nil, fmt.Errorf("got %d fds, spec says %d", len(fds), spec.NFiles)
	}
	return spec, fds, nil
}
