package sdk

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol constants (docs/protocol.md). The SDK mirrors them instead of importing Coda so that
// actions depend on this small module only.
const (
	maxLine = 16 << 20 // the protocol's line limit

	modeDecoupled = "decoupled"
	modeAwait     = "await"
	modeCoupled   = "coupled"

	causeSettled  = "settled"
	causeDeadline = "deadline"
	causeCoupled  = "coupled"
)

// message is the union of the protocol's messages; Type says which fields matter.
type message struct {
	Type     string            `json:"type"`
	ID       string            `json:"id,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Params   json.RawMessage   `json:"params,omitempty"`
	Deadline int64             `json:"deadline,omitempty"`
	Mode     string            `json:"mode,omitempty"`
	End      bool              `json:"end,omitempty"`
	Result   json.RawMessage   `json:"result,omitempty"`
	Error    string            `json:"error,omitempty"`
	Stream   string            `json:"stream,omitempty"`
	Line     string            `json:"line,omitempty"`
	Cause    string            `json:"cause,omitempty"`
	Pending  []string          `json:"pending,omitempty"`
}

// active is the server of this process, for Current, which has no context to find it by. It is
// the SDK's only package-level state: Serve runs once per process, so there is exactly one.
var active atomic.Pointer[server]

// Serve runs the protocol loop on fd 3 (from the invoker) and fd 4 (to it) with main as the
// action's entry point, and exits the process when the invoker closes fd 3. main must have one
// of the signatures in [Func]; with another one every init is answered with an error.
//
// Each run executes in its own goroutine, so runs may overlap up to the action's concurrency.
// A panic in main becomes the activation's error ("panic: ...") and the runtime keeps serving.
func Serve(main any) {
	closeOnExec(3, 4)
	in := os.NewFile(3, "coda-in")
	out := os.NewFile(4, "coda-out")
	if in == nil || out == nil {
		fmt.Fprintln(os.Stderr, "sdk.Serve: fd 3 and 4 are not open: this program must be started by Coda")
		os.Exit(2)
	}
	if err := serve(context.Background(), in, out, main); err != nil {
		fmt.Fprintln(os.Stderr, "sdk.Serve:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// server is one protocol session.
type server struct {
	out     *writer
	main    handler
	mainErr error // why main cannot serve; reported in answer to init

	mu     sync.Mutex
	acts   map[string]*activation // activations that have not ended
	ended  sync.WaitGroup         // counts the entries of acts
	inited bool
}

// serve runs the protocol on in and out until in reaches EOF, then waits for the activations in
// flight to end (cutting them off at their deadline) and returns. ctx bounds that final wait.
func serve(ctx context.Context, in io.Reader, out io.Writer, main any) error {
	s := &server{out: &writer{w: out}, acts: map[string]*activation{}}
	s.main, s.mainErr = adapt(main)
	active.Store(s)
	defer active.CompareAndSwap(s, nil)

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxLine+1)
	for sc.Scan() {
		var m message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			if len(sc.Bytes()) > 0 {
				fmt.Fprintf(os.Stderr, "sdk: ignoring bad protocol line: %v\n", err)
			}
			continue
		}
		switch m.Type {
		case "init":
			s.init(m)
		case "run":
			s.run(ctx, m)
		case "cutoff":
			if a := s.lookup(m.ID); a != nil {
				a.cutoff()
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read protocol: %w", err)
	}
	s.drain(ctx)
	return nil
}

func (s *server) init(m message) {
	for k, v := range m.Env {
		os.Setenv(k, v)
	}
	if s.mainErr != nil {
		s.out.send(message{Type: "ready", ID: m.ID, Error: s.mainErr.Error()})
		return
	}
	s.mu.Lock()
	s.inited = true
	s.mu.Unlock()
	s.out.send(message{Type: "ready", ID: m.ID, End: true})
}

func (s *server) run(ctx context.Context, m message) {
	s.mu.Lock()
	inited := s.inited
	s.mu.Unlock()
	if !inited {
		s.out.send(message{Type: "response", ID: m.ID, Error: "run before a successful init"})
		s.out.send(message{Type: "end", ID: m.ID, Cause: causeSettled})
		return
	}
	// Process-wide, as in OpenWhisk: with overlapping runs the latest one's values win.
	for k, v := range m.Env {
		os.Setenv(k, v)
	}
	a := newActivation(ctx, s, m)
	s.mu.Lock()
	if old := s.acts[a.id]; old != nil {
		s.mu.Unlock()
		fmt.Fprintf(os.Stderr, "sdk: ignoring duplicate run %s\n", a.id)
		a.cancel()
		return
	}
	s.acts[a.id] = a
	s.ended.Add(1)
	s.mu.Unlock()
	go a.execute(m.Params)
}

func (s *server) lookup(id string) *activation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acts[id]
}

// forget drops an activation that has ended.
func (s *server) forget(a *activation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acts[a.id] == a {
		delete(s.acts, a.id)
		s.ended.Done()
	}
}

// running returns the activations whose main has not returned.
func (s *server) running() []*activation {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r []*activation
	for _, a := range s.acts {
		if !a.mainReturned() {
			r = append(r, a)
		}
	}
	return r
}

// drain waits, after the invoker closed its pipe, for the activations in flight to end. With
// nobody left to send cutoff, the runtime cuts them off itself at their deadline.
func (s *server) drain(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.ended.Wait(); close(done) }()
	for {
		s.mu.Lock()
		var next time.Time
		for _, a := range s.acts {
			if next.IsZero() || a.deadline.Before(next) {
				next = a.deadline
			}
		}
		s.mu.Unlock()
		var timer <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(time.Until(next))
			timer = t.C
		}
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-timer:
			s.mu.Lock()
			var late []*activation
			for _, a := range s.acts {
				if !a.deadline.IsZero() && !time.Now().Before(a.deadline) {
					late = append(late, a)
				}
			}
			s.mu.Unlock()
			for _, a := range late {
				a.cutoff()
			}
		}
		if t != nil {
			t.Stop()
		}
	}
}

// writer sends messages on fd 4, one line each, whole lines only.
type writer struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *writer) send(m message) {
	b, err := json.Marshal(m)
	if err != nil {
		// Only Result can fail to encode, and it arrives here already encoded.
		fmt.Fprintf(os.Stderr, "sdk: encode %s: %v\n", m.Type, err)
		return
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	// A failed write means the invoker is gone; it will kill the process, nothing to recover.
	_, _ = w.w.Write(b)
}
