package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/protocol"
)

// hangGuard only stops a broken test from hanging; nothing is timed against it.
const hangGuard = 30 * time.Second

// instance is an executable driven over real pipes on fd 3 and 4, as the invoker does.
type instance struct {
	t    *testing.T
	enc  *protocol.Encoder
	msgs chan protocol.Message
	mu   sync.Mutex
	raw  bytes.Buffer
}

func (p *instance) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.Write(b)
}

func start(t *testing.T, exe string) *instance {
	t.Helper()
	toR, toW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &instance{t: t, msgs: make(chan protocol.Message, 64)}
	cmd := exec.Command(exe)
	cmd.ExtraFiles = []*os.File{toR, fromW}
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
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
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return p
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
			p.t.Fatal("runtime closed fd 4")
		}
		return m
	case <-time.After(hangGuard):
		p.t.Fatal("no message from runtime")
	}
	return protocol.Message{}
}

func (p *instance) expect(typ, id string) protocol.Message {
	p.t.Helper()
	m := p.next()
	if m.Type != typ || m.ID != id {
		p.t.Fatalf("got %+v, want %s for %s", m, typ, id)
	}
	return m
}

func (p *instance) run(id, mode, params string) {
	p.send(protocol.Message{Type: protocol.TypeRun, ID: id, Mode: mode, Params: json.RawMessage(params),
		Deadline: time.Now().Add(time.Minute).UnixMilli()})
}

func buildExample(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "exec")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

func TestGoBlackbox(t *testing.T) {
	p := start(t, buildExample(t))
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Kind: "blackbox"})
	if m := p.expect(protocol.TypeReady, "i-1"); !m.End {
		t.Fatalf("ready %+v: the example tracks its activations", m)
	}

	p.run("a", "decoupled", `{"name":"Ada","x":1}`)
	var r struct {
		Greeting string
		Params   map[string]any
	}
	if err := json.Unmarshal(p.expect(protocol.TypeResponse, "a").Result, &r); err != nil {
		t.Fatal(err)
	}
	if r.Greeting != "hello Ada" || r.Params["x"] != 1.0 {
		t.Fatalf("result %+v", r)
	}
	p.expect(protocol.TypeEnd, "a")

	// Background work: response first, then what is pending, then its log and the end.
	p.run("b", "decoupled", `{"name":"Bo","delay_ms":100}`)
	p.expect(protocol.TypeResponse, "b")
	if m := p.expect(protocol.TypePending, "b"); !slices.Equal(m.Pending, []string{"timer 100 ms"}) {
		t.Fatalf("pending %v", m.Pending)
	}
	if m := p.expect(protocol.TypeLog, "b"); m.Line != "background work done for Bo" {
		t.Fatalf("log %+v", m)
	}
	if m := p.expect(protocol.TypeEnd, "b"); m.Cause != protocol.CauseSettled {
		t.Fatalf("end %+v", m)
	}

	// await holds the response until settled.
	p.run("w", "await", `{"delay_ms":50}`)
	p.expect(protocol.TypePending, "w")
	p.expect(protocol.TypeLog, "w")
	p.expect(protocol.TypeResponse, "w")
	p.expect(protocol.TypeEnd, "w")

	// cutoff: end at once with what was still pending.
	p.run("c", "decoupled", `{"delay_ms":600000}`)
	p.expect(protocol.TypeResponse, "c")
	p.expect(protocol.TypePending, "c")
	p.send(protocol.Message{Type: protocol.TypeCutoff, ID: "c"})
	if m := p.expect(protocol.TypeEnd, "c"); m.Cause != protocol.CauseDeadline || !slices.Equal(m.Pending, []string{"timer 600000 ms"}) {
		t.Fatalf("end %+v", m)
	}
}

func TestShellBlackbox(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	p := start(t, "sh/exec")
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Kind: "blackbox"})
	if m := p.expect(protocol.TypeReady, "i-1"); m.End || m.Error != "" {
		t.Fatalf("ready %+v: the shell example is untracked", m)
	}
	p.run("s1", "decoupled", `{"type":"trap","id":"nope"}`)
	var r map[string]string
	if err := json.Unmarshal(p.expect(protocol.TypeResponse, "s1").Result, &r); err != nil {
		t.Fatal(err)
	}
	if r["greeting"] != "hello from sh" || r["activation"] != "s1" {
		t.Fatalf("result %v", r)
	}
	p.run("s2", "decoupled", `{}`)
	p.expect(protocol.TypeResponse, "s2")
	p.mu.Lock()
	defer p.mu.Unlock()
	if !strings.Contains(p.raw.String(), "running s1") {
		t.Errorf("stdout %q", p.raw.String())
	}
}
