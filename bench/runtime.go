package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coda-serverless/coda/internal/protocol"
)

// runDeadline is the deadline given to each run: far beyond any bench activation.
const runDeadline = time.Minute

// Runtime drives one language runtime process directly over the instance protocol (fd 3 and 4),
// as the invoker does, without coda around it: it isolates what a runtime itself costs.
type Runtime struct {
	cmd  *exec.Cmd
	enc  *protocol.Encoder
	mu   sync.Mutex // serialises writes to fd 3
	wait sync.Map   // activation id → chan protocol.Message for its response
	seq  atomic.Int64

	ready chan protocol.Message
	done  chan struct{}
	err   error // why reading stopped, valid after done
}

// startRuntime starts argv with the protocol pipes and env added to this process's environment.
func startRuntime(argv []string, env []string) (*Runtime, error) {
	toR, toW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		toR.Close()
		toW.Close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = []*os.File{toR, fromW} // fd 3, fd 4
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	toR.Close()
	fromW.Close()
	if err != nil {
		toW.Close()
		fromR.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	rt := &Runtime{cmd: cmd, enc: protocol.NewEncoder(toW), ready: make(chan protocol.Message, 1), done: make(chan struct{})}
	go rt.read(fromR, toW)
	return rt, nil
}

func (rt *Runtime) read(from, to *os.File) {
	defer close(rt.done)
	defer to.Close()
	defer from.Close()
	dec := protocol.NewDecoder(from)
	for {
		m, err := dec.Next()
		if err != nil {
			rt.err = err
			return
		}
		switch m.Type {
		case protocol.TypeReady:
			select {
			case rt.ready <- m:
			default:
			}
		case protocol.TypeResponse:
			if ch, ok := rt.wait.LoadAndDelete(m.ID); ok {
				ch.(chan protocol.Message) <- m
			}
		}
	}
}

func (rt *Runtime) send(m protocol.Message) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.enc.Send(m)
}

// Init loads code and waits for ready.
func (rt *Runtime) Init(ctx context.Context, kind, code string) error {
	if err := rt.send(protocol.Message{Type: protocol.TypeInit, ID: "i-bench", Name: "guest/bench", Kind: kind, Main: "main", Code: code}); err != nil {
		return fmt.Errorf("send init: %w", err)
	}
	select {
	case m := <-rt.ready:
		if m.Error != "" {
			return fmt.Errorf("init: %s", m.Error)
		}
		return nil
	case <-rt.done:
		return fmt.Errorf("runtime exited before ready: %v", rt.err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Invoker returns a call that runs the action once (decoupled) and waits for its response.
func (rt *Runtime) Invoker(params json.RawMessage) func(context.Context) error {
	return func(ctx context.Context) error {
		id := "r" + strconv.FormatInt(rt.seq.Add(1), 36)
		ch := make(chan protocol.Message, 1)
		rt.wait.Store(id, ch)
		err := rt.send(protocol.Message{Type: protocol.TypeRun, ID: id, Params: params, Mode: "decoupled",
			Deadline: time.Now().Add(runDeadline).UnixMilli(), Env: map[string]string{"__OW_ACTIVATION_ID": id}})
		if err != nil {
			rt.wait.Delete(id)
			return fmt.Errorf("send run: %w", err)
		}
		select {
		case m := <-ch:
			if m.Error != "" {
				return errors.New(m.Error)
			}
			return nil
		case <-rt.done:
			return fmt.Errorf("runtime exited: %v", rt.err)
		case <-ctx.Done():
			rt.wait.Delete(id)
			return ctx.Err()
		}
	}
}

// Close kills the runtime.
func (rt *Runtime) Close() {
	_ = rt.cmd.Process.Kill()
	_ = rt.cmd.Wait()
	<-rt.done
}
