package sdk

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// hangGuard only stops a broken test from hanging; nothing here is timed against it.
const hangGuard = 10 * time.Second

// session drives serve over in-memory pipes, as the invoker drives a runtime over fd 3 and 4.
type session struct {
	t    *testing.T
	in   *io.PipeWriter
	msgs chan message
	done chan error
}

func startSession(t *testing.T, main any) *session {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &session{t: t, in: inW, msgs: make(chan message, 256), done: make(chan error, 1)}
	go func() {
		err := serve(context.Background(), inR, outW, main)
		outW.Close()
		s.done <- err
	}()
	go func() {
		defer close(s.msgs)
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, maxLine+1)
		for sc.Scan() {
			var m message
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("bad line from runtime %q: %v", sc.Text(), err)
				continue
			}
			s.msgs <- m
		}
	}()
	t.Cleanup(func() { inW.Close() })
	return s
}

func (s *session) send(m message) {
	s.t.Helper()
	b, _ := json.Marshal(m)
	if _, err := s.in.Write(append(b, '\n')); err != nil {
		s.t.Fatal(err)
	}
}

func (s *session) next() message {
	s.t.Helper()
	select {
	case m, ok := <-s.msgs:
		if !ok {
			s.t.Fatal("runtime closed its output")
		}
		return m
	case <-time.After(hangGuard):
		s.t.Fatal("no message from runtime")
	}
	return message{}
}

// expect reads the next message and checks its type and id.
func (s *session) expect(typ, id string) message {
	s.t.Helper()
	m := s.next()
	if m.Type != typ || m.ID != id {
		s.t.Fatalf("got %+v, want %s for %s", m, typ, id)
	}
	return m
}

func (s *session) init() {
	s.t.Helper()
	s.send(message{Type: "init", ID: "i-1", Env: map[string]string{"CODA_TEST_INIT": "yes"}})
	if m := s.expect("ready", "i-1"); !m.End || m.Error != "" {
		s.t.Fatalf("ready = %+v", m)
	}
}

func (s *session) run(id, mode, params string) {
	s.t.Helper()
	s.send(message{Type: "run", ID: id, Mode: mode, Params: json.RawMessage(params),
		Deadline: time.Now().Add(time.Minute).UnixMilli()})
}

func result(t *testing.T, m message) map[string]any {
	t.Helper()
	if m.Error != "" {
		t.Fatalf("response error %q", m.Error)
	}
	var r map[string]any
	if err := json.Unmarshal(m.Result, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPlainSignature(t *testing.T) {
	s := startSession(t, func(p map[string]any) map[string]any {
		return map[string]any{"greeting": "hello " + p["name"].(string)}
	})
	s.init()
	s.run("a1", "decoupled", `{"name":"Ada"}`)
	if r := result(t, s.expect("response", "a1")); r["greeting"] != "hello Ada" {
		t.Fatalf("result %v", r)
	}
	if m := s.expect("end", "a1"); m.Cause != "settled" || len(m.Pending) != 0 {
		t.Fatalf("end %+v", m)
	}
}

func TestBadSignatureFailsInit(t *testing.T) {
	s := startSession(t, func(string) string { return "" })
	s.send(message{Type: "init", ID: "i-1"})
	if m := s.expect("ready", "i-1"); !strings.Contains(m.Error, "unsupported main signature") {
		t.Fatalf("ready %+v", m)
	}
}

func TestErrorsAndPanics(t *testing.T) {
	s := startSession(t, func(_ context.Context, p map[string]any) (map[string]any, error) {
		switch p["do"] {
		case "panic":
			panic("boom")
		case "error":
			return nil, errors.New("bad input")
		}
		return map[string]any{"ok": true}, nil
	})
	s.init()
	s.run("p", "decoupled", `{"do":"panic"}`)
	var sawStack bool
	for {
		m := s.next()
		if m.Type == "log" && m.ID == "p" && m.Stream == "stderr" {
			sawStack = true
			continue
		}
		if m.Type != "response" || m.Error != "panic: boom" {
			t.Fatalf("got %+v, want the panic as response error", m)
		}
		break
	}
	if !sawStack {
		t.Error("panic stack not logged")
	}
	s.expect("end", "p")
	s.run("e", "decoupled", `{"do":"error"}`)
	if m := s.expect("response", "e"); m.Error != "bad input" {
		t.Fatalf("response %+v", m)
	}
	s.expect("end", "e")
	s.run("n", "decoupled", `[1,2]`)
	if m := s.expect("response", "n"); !strings.Contains(m.Error, "not a JSON object") {
		t.Fatalf("response %+v", m)
	}
	s.expect("end", "n")
	// The runtime survived all of that.
	s.run("ok", "decoupled", `{}`)
	if r := result(t, s.expect("response", "ok")); r["ok"] != true {
		t.Fatal(r)
	}
}

// background returns a main that starts named workers which each wait for a release channel.
func background(release map[string]chan struct{}, order []string) func(context.Context, map[string]any) map[string]any {
	return func(ctx context.Context, _ map[string]any) map[string]any {
		for _, name := range order {
			ch := release[name]
			GoNamed(ctx, name, func(context.Context) { <-ch })
		}
		return map[string]any{"started": len(order)}
	}
}

func TestDecoupledEndsAfterBackgroundWork(t *testing.T) {
	rel := map[string]chan struct{}{"flush": make(chan struct{}), "upload": make(chan struct{})}
	s := startSession(t, background(rel, []string{"flush", "upload"}))
	s.init()
	s.run("a", "decoupled", `{}`)
	s.expect("response", "a") // at once, though work is pending
	if m := s.expect("pending", "a"); !slices.Equal(m.Pending, []string{"flush", "upload"}) {
		t.Fatalf("pending %v", m.Pending)
	}
	close(rel["flush"])
	if m := s.expect("pending", "a"); !slices.Equal(m.Pending, []string{"upload"}) {
		t.Fatalf("pending %v", m.Pending)
	}
	close(rel["upload"])
	if m := s.expect("end", "a"); m.Cause != "settled" {
		t.Fatalf("end %+v", m)
	}
}

func TestAwaitHoldsResponse(t *testing.T) {
	rel := map[string]chan struct{}{"w": make(chan struct{})}
	s := startSession(t, background(rel, []string{"w"}))
	s.init()
	s.run("a", "await", `{}`)
	if m := s.expect("pending", "a"); !slices.Equal(m.Pending, []string{"w"}) {
		t.Fatalf("pending %v", m.Pending)
	}
	select {
	case m := <-s.msgs:
		t.Fatalf("await sent %+v before the work finished", m)
	case <-time.After(3 * pendingInterval):
	}
	close(rel["w"])
	s.expect("response", "a")
	s.expect("end", "a")
}

func TestCoupledEndsAtResponse(t *testing.T) {
	rel := map[string]chan struct{}{"w": make(chan struct{})}
	defer close(rel["w"])
	s := startSession(t, background(rel, []string{"w"}))
	s.init()
	s.run("a", "coupled", `{}`)
	s.expect("response", "a")
	if m := s.expect("end", "a"); m.Cause != "coupled" || !slices.Equal(m.Pending, []string{"w"}) {
		t.Fatalf("end %+v", m)
	}
}

func TestCutoffReportsPendingAndCancels(t *testing.T) {
	cancelled := make(chan struct{})
	s := startSession(t, func(ctx context.Context, _ map[string]any) map[string]any {
		GoNamed(ctx, "slow write", func(ctx context.Context) {
			<-ctx.Done()
			close(cancelled)
		})
		return map[string]any{}
	})
	s.init()
	s.run("a", "decoupled", `{}`)
	s.expect("response", "a")
	s.expect("pending", "a")
	s.send(message{Type: "cutoff", ID: "a"})
	if m := s.expect("end", "a"); m.Cause != "deadline" || !slices.Equal(m.Pending, []string{"slow write"}) {
		t.Fatalf("end %+v", m)
	}
	select {
	case <-cancelled:
	case <-time.After(hangGuard):
		t.Fatal("background context not cancelled at cutoff")
	}
}

func TestCutoffWhileMainRuns(t *testing.T) {
	release := make(chan struct{})
	s := startSession(t, func(map[string]any) map[string]any { <-release; return nil })
	s.init()
	s.run("a", "decoupled", `{}`)
	s.send(message{Type: "cutoff", ID: "a"})
	if m := s.expect("end", "a"); m.Cause != "deadline" || !slices.Equal(m.Pending, []string{mainPending}) {
		t.Fatalf("end %+v", m)
	}
	close(release)
	// Nothing may follow the end: the next message must belong to the next activation.
	s.run("b", "decoupled", `{}`)
	s.expect("response", "b")
}

func TestLogfAttributesOverlappingRuns(t *testing.T) {
	both := make(chan struct{})
	arrived := make(chan struct{}, 2)
	s := startSession(t, func(ctx context.Context, p map[string]any) map[string]any {
		arrived <- struct{}{}
		<-both // both activations are in main at once
		id, deadline := Activation(ctx)
		if deadline.IsZero() {
			Logf(ctx, "no deadline")
		}
		Logf(ctx, "I am %s\nsecond line", id)
		return map[string]any{}
	})
	s.init()
	s.run("x", "decoupled", `{}`)
	s.run("y", "decoupled", `{}`)
	<-arrived
	<-arrived
	close(both)
	logs := map[string][]string{}
	for ends := 0; ends < 2; {
		m := s.next()
		switch m.Type {
		case "log":
			logs[m.ID] = append(logs[m.ID], m.Line)
		case "end":
			ends++
		}
	}
	for _, id := range []string{"x", "y"} {
		if want := []string{"I am " + id, "second line"}; !slices.Equal(logs[id], want) {
			t.Errorf("logs of %s = %q, want %q", id, logs[id], want)
		}
	}
}

func TestCurrentAndWaitUntil(t *testing.T) {
	gate := make(chan struct{})
	s := startSession(t, func(p map[string]any) map[string]any {
		ctx := Current()
		id, _ := Activation(ctx)
		WaitUntil(ctx, func(context.Context) error { <-gate; return nil },
			func(context.Context) error { return errors.New("disk full") })
		return map[string]any{"id": id}
	})
	s.init()
	s.run("c", "decoupled", `{}`)
	if r := result(t, s.expect("response", "c")); r["id"] != "c" {
		t.Fatalf("Current() gave activation %v", r["id"])
	}
	var sawErr bool
	for {
		m := s.next()
		if m.Type == "log" && strings.Contains(m.Line, "disk full") {
			sawErr = true
			close(gate)
		}
		if m.Type == "end" {
			break
		}
	}
	if !sawErr {
		t.Error("WaitUntil error not logged")
	}
}

func TestEOFWaitsForActivations(t *testing.T) {
	finished := make(chan struct{})
	s := startSession(t, func(ctx context.Context, _ map[string]any) map[string]any {
		Go(ctx, func(context.Context) { time.Sleep(2 * pendingInterval); close(finished) })
		return nil
	})
	s.init()
	s.run("a", "decoupled", `{}`)
	s.in.Close()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangGuard):
		t.Fatal("serve did not return after EOF")
	}
	select {
	case <-finished:
	default:
		t.Fatal("serve returned before the background work finished")
	}
}

func TestRunBeforeInit(t *testing.T) {
	s := startSession(t, func(map[string]any) map[string]any { return nil })
	s.run("a", "decoupled", `{}`)
	if m := s.expect("response", "a"); m.Error == "" {
		t.Fatal("run before init succeeded")
	}
	s.expect("end", "a")
}
