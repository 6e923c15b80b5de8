package gobuild

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/protocol"
)

// hangGuard only stops a broken test from hanging; nothing is timed against it.
const hangGuard = 30 * time.Second

// instance is an action executable driven over real pipes on fd 3 and 4, as the invoker does.
type instance struct {
	t    *testing.T
	cmd  *exec.Cmd
	enc  *protocol.Encoder
	msgs chan protocol.Message
	mu   sync.Mutex
	raw  bytes.Buffer
}

func startInstance(t *testing.T, exe string) *instance {
	t.Helper()
	toR, toW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &instance{t: t, msgs: make(chan protocol.Message, 256)}
	p.cmd = exec.Command(exe)
	p.cmd.ExtraFiles = []*os.File{toR, fromW}
	p.cmd.Stdout = p
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toR.Close()
	fromW.Close()
	p.enc = protocol.NewEncoder(toW)
	go func() {
		defer close(p.msgs)
		dec := protocol.NewDecoder(fromR)
		for {
			m, err := dec.Next()
			if err != nil {
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

// Write collects raw stdout and stderr.
func (p *instance) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.Write(b)
}

func (p *instance) rawOutput() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

func (p *instance) send(m protocol.Message) {
	p.t.Helper()
	if err := p.enc.Send(m); err != nil {
		p.t.Fatal(err)
	}
}

func (p *instance) next() protocol.Message {
	p.t.Helper()
	select {
	case m, ok := <-p.msgs:
		if !ok {
			p.t.Fatalf("instance closed fd 4; output: %s", p.rawOutput())
		}
		return m
	case <-time.After(hangGuard):
		p.t.Fatalf("no message from instance; output: %s", p.rawOutput())
	}
	return protocol.Message{}
}

// init sends init and expects a tracking ready.
func (p *instance) init() {
	p.t.Helper()
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Kind: "go:1.26"})
	if m := p.next(); m.Type != protocol.TypeReady || m.Error != "" || !m.End {
		p.t.Fatalf("init answered %+v", m)
	}
}

// run sends a run and returns every message of the activation up to its end.
func (p *instance) run(id, mode string, params any) []protocol.Message {
	p.t.Helper()
	raw, _ := json.Marshal(params)
	p.send(protocol.Message{Type: protocol.TypeRun, ID: id, Params: raw, Mode: mode,
		Deadline: time.Now().Add(time.Minute).UnixMilli()})
	var got []protocol.Message
	for {
		m := p.next()
		if m.ID != id {
			p.t.Fatalf("message for another activation: %+v", m)
		}
		got = append(got, m)
		if m.Type == protocol.TypeEnd {
			return got
		}
	}
}

// response finds the activation's response and decodes its result.
func response(t *testing.T, msgs []protocol.Message) map[string]any {
	t.Helper()
	for _, m := range msgs {
		if m.Type == protocol.TypeResponse {
			if m.Error != "" {
				t.Fatalf("response error %q", m.Error)
			}
			var r map[string]any
			if err := json.Unmarshal(m.Result, &r); err != nil {
				t.Fatal(err)
			}
			return r
		}
	}
	t.Fatalf("no response in %+v", msgs)
	return nil
}
