package runtimes

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/protocol"
)

// proc is one runtime process driven over real pipes, as the invoker drives it.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	enc    *protocol.Encoder
	msgs   chan protocol.Message
	mu     sync.Mutex
	stdout bytes.Buffer
}

// startRuntime starts argv with fd 3 (to the runtime) and fd 4 (from it) as pipes.
func startRuntime(t *testing.T, argv ...string) *proc {
	t.Helper()
	toR, toW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, msgs: make(chan protocol.Message, 1024)}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.ExtraFiles = []*os.File{toR, fromW}
	p.cmd.Stdout = &lockedWriter{p: p}
	p.cmd.Stderr = &lockedWriter{p: p}
	p.cmd.Dir = t.TempDir()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toR.Close()
	fromW.Close()
	p.enc = protocol.NewEncoder(toW)
	go func() {
		dec := protocol.NewDecoder(fromR)
		for {
			m, err := dec.Next()
			if err != nil {
				close(p.msgs)
				return
			}
			p.msgs <- m
		}
	}()
	t.Cleanup(func() {
		toW.Close()
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
	return p
}

type lockedWriter struct{ p *proc }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.stdout.Write(b)
}

// rawOutput is what the process wrote to fd 1 and 2.
func (p *proc) rawOutput() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

func (p *proc) send(m protocol.Message) {
	p.t.Helper()
	if err := p.enc.Send(m); err != nil {
		p.t.Fatal(err)
	}
}

// next waits for the next message of one of the given types (others are returned too when
// types is empty); the generous bound only keeps a broken runtime from hanging the suite.
func (p *proc) next(types ...string) protocol.Message {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				p.t.Fatalf("runtime exited; output:\n%s", p.rawOutput())
			}
			if len(types) == 0 {
				return m
			}
			for _, ty := range types {
				if m.Type == ty {
					return m
				}
			}
		case <-ctx.Done():
			p.t.Fatalf("no %v message; output:\n%s", types, p.rawOutput())
		}
	}
}

// runtimeDir is where the runtime sources live in the repository.
func runtimeDir(t *testing.T, name string) string {
	t.Helper()
	d, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
