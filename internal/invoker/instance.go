package invoker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coda-serverless/coda/internal/protocol"
	"github.com/coda-serverless/coda/internal/sandbox"
	"golang.org/x/sys/unix"
)

// state is where an instance is in its life. Only the pool moves it (under the pool's lock).
type state int

const (
	stateStem     state = iota // started, no code yet
	stateInit                  // init sent, waiting for ready
	stateWarm                  // serving one action version
	statePaused                // frozen while quiescent
	stateRetiring              // taking no more work; terminated once quiescent
	stateDead                  // process gone
)

func (s state) String() string {
	return [...]string{"stem", "init", "warm", "paused", "retiring", "dead"}[s]
}

// instance is one runtime process and the activations it is running. Its fields below mu are
// guarded by the pool's lock, except where noted.
type instance struct {
	seq  uint64
	kind string
	proc *sandbox.Process
	enc  *protocol.Encoder
	toW  *os.File
	log  *slog.Logger

	// set once at init (before the instance is published as warm)
	key      string // action version it serves
	memoryMB int
	tracked  bool // the runtime reports end itself
	coupled  bool // the action's mode is coupled: no backstop before termination

	// guarded by pool.mu
	st          state
	acts        map[string]*activation // started and not ended
	unresponded int
	lastIdle    time.Time   // when it last became quiescent
	idleTimer   *time.Timer // pause or expiry timer while quiescent
	idleGen     uint64      // invalidates stale idle timers

	exitErr error // how the process ended; set before exited is closed

	// ready is delivered by the reader when the runtime answers init.
	ready chan protocol.Message
	// exited is closed after the process exited and its output was read to the end.
	exited chan struct{}
	// outMu guards the raw-output attribution, which the output readers consult.
	outMu  sync.Mutex
	single *activation // the only activation in flight, for raw stdout/stderr lines

	rawFDs  [2]int       // read ends of stdout and stderr, for drainRaw
	rawBusy atomic.Int32 // output readers holding bytes they have not attributed yet
}

// Bounds of drainRaw: output a runtime wrote before its end message is normally read within
// microseconds; a runtime flooding its stdout must not hold the protocol reader for long.
const (
	rawDrainLimit = 50 * time.Millisecond
	rawDrainPoll  = 100 * time.Microsecond
)

// drainRaw waits until the raw output the runtime wrote so far has been attributed: the
// runtime wrote it before the protocol message being handled, but it travels on other pipes.
func (in *instance) drainRaw() {
	// The common case costs two ioctls: nothing was written, or it was attributed already.
	// (A chunk between read(2) and rawBusy.Add is missed; the window is a few instructions.)
	deadline := time.Now().Add(rawDrainLimit)
	for !(in.rawBusy.Load() == 0 && pipeEmpty(in.rawFDs[0]) && pipeEmpty(in.rawFDs[1])) {
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(rawDrainPoll)
	}
}

// rawFD returns f's descriptor without File.Fd's side effect of making it blocking (which
// would take the readers off the poller). It is only used for FIONREAD while f is open.
func rawFD(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(u uintptr) { fd = int(u) })
	}
	return fd
}

func pipeEmpty(fd int) bool {
	n, err := unix.IoctlGetInt(fd, unix.TIOCINQ) // FIONREAD
	return err != nil || n == 0
}

// quiescent: none of its activations is between start and end.
func (in *instance) quiescent() bool { return len(in.acts) == 0 }

// startInstance starts a runtime process with fd 3/4 pipes and output readers. route is
// called for every protocol message; done when the process has exited and all its output
// has been consumed.
func startInstance(ctx context.Context, host *sandbox.Host, spec sandbox.Spec, seq uint64, kind string, log *slog.Logger,
	route func(*instance, protocol.Message), done func(*instance, error)) (*instance, error) {
	toR, toW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("invoker: pipe: %w", err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		closeAll(toR, toW)
		return nil, fmt.Errorf("invoker: pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(toR, toW, fromR, fromW)
		return nil, fmt.Errorf("invoker: pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(toR, toW, fromR, fromW, outR, outW)
		return nil, fmt.Errorf("invoker: pipe: %w", err)
	}
	spec.ExtraFiles = []*os.File{toR, fromW}
	spec.Stdout, spec.Stderr = outW, errW
	proc, err := host.Start(ctx, spec)
	closeAll(toR, fromW, outW, errW)
	if err != nil {
		closeAll(toW, fromR, outR, errR)
		return nil, fmt.Errorf("invoker: start %s runtime: %w", kind, err)
	}
	in := &instance{seq: seq, kind: kind, proc: proc, enc: protocol.NewEncoder(toW), toW: toW,
		log: log.With("instance", seq, "kind", kind), acts: map[string]*activation{},
		ready: make(chan protocol.Message, 1), exited: make(chan struct{})}
	var readers sync.WaitGroup
	readers.Add(3)
	go func() {
		defer readers.Done()
		dec := protocol.NewDecoder(fromR)
		for {
			m, err := dec.Next()
			if protocol.Recoverable(err) {
				in.log.Warn("ignoring a malformed protocol line from the runtime", "err", err)
				continue
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
					in.log.Warn("instance protocol stream failed", "err", err)
				}
				return
			}
			if m.Type == protocol.TypeReady {
				select {
				case in.ready <- m:
				default:
				}
				continue
			}
			route(in, m)
		}
	}()
	in.rawFDs = [2]int{rawFD(outR), rawFD(errR)}
	go in.readRaw(&readers, outR, "stdout")
	go in.readRaw(&readers, errR, "stderr")
	go func() {
		werr := proc.Wait()
		in.exitErr = werr
		readers.Wait()
		closeAll(fromR, outR, errR)
		done(in, werr)
		if err := proc.Close(); err != nil {
			in.log.Debug("close instance", "err", err)
		}
		close(in.exited)
	}()
	return in, nil
}

// maxRawLine bounds one raw output line; longer ones are split (the logs limit applies anyway).
const maxRawLine = 64 << 10

// readRaw turns the process's raw output into log lines of the one activation in flight.
func (in *instance) readRaw(wg *sync.WaitGroup, r io.Reader, stream string) {
	defer wg.Done()
	br := bufio.NewReaderSize(r, maxRawLine)
	for {
		line, err := br.ReadSlice('\n')
		in.rawBusy.Add(1)
		if len(line) > 0 {
			text := string(line)
			if text[len(text)-1] == '\n' {
				text = text[:len(text)-1]
			}
			in.outMu.Lock()
			a := in.single
			in.outMu.Unlock()
			if a != nil {
				a.addLog(stream, text)
			} else {
				in.log.Debug("unattributed runtime output", "stream", stream, "line", text)
			}
		}
		in.rawBusy.Add(-1)
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// send writes one protocol message to the runtime.
func (in *instance) send(m protocol.Message) error {
	if err := in.enc.Send(m); err != nil {
		return fmt.Errorf("invoker: send %s to instance %d: %w", m.Type, in.seq, err)
	}
	return nil
}

// kill terminates the process tree and waits until its output is consumed.
func (in *instance) kill() {
	_ = in.toW.Close()
	select {
	case <-in.exited:
		return
	default:
	}
	if err := in.proc.Kill(); err != nil {
		select {
		case <-in.exited: // it exited by itself meanwhile and its cgroup is gone
		default:
			in.log.Warn("kill instance", "err", err)
		}
	}
	<-in.exited
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}
