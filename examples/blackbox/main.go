// Command blackbox is a complete Coda runtime for the blackbox kind, in plain Go without the SDK,
// to show what docs/protocol.md asks of an executable. It greets params.name and echoes params;
// with params.delay_ms it also keeps "background work" running after its response (a timer that
// writes a log line), which Coda waits for because this runtime reports end itself.
//
// Build and package it (the zip holds an executable named exec at its root):
//
//	CGO_ENABLED=0 go build -o exec . && zip action.zip exec
//
// and create an action of kind blackbox from action.zip (with the wsk CLI:
// wsk action create hello action.zip --native). See docs/blackbox.md.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// message is the union of the protocol's messages; Type says which fields matter.
type message struct {
	Type     string          `json:"type"`
	ID       string          `json:"id,omitempty"`
	Params   json.RawMessage `json:"params,omitempty"`
	Deadline int64           `json:"deadline,omitempty"`
	Mode     string          `json:"mode,omitempty"`
	End      bool            `json:"end,omitempty"`
	Result   any             `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
	Stream   string          `json:"stream,omitempty"`
	Line     string          `json:"line,omitempty"`
	Cause    string          `json:"cause,omitempty"`
	Pending  []string        `json:"pending,omitempty"`
}

// runtime is the state of one blackbox process.
type runtime struct {
	outMu sync.Mutex
	out   io.Writer

	mu   sync.Mutex
	acts map[string]*activation // activations that have not ended
}

// activation tracks the background work of one run.
type activation struct {
	pending []string // what is still running, in words for the user
	held    *message // await mode: the response, until settled
}

func main() {
	// fd 3 and 4 must not leak into processes the function might spawn.
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(4)
	r := &runtime{out: os.NewFile(4, "coda-out"), acts: map[string]*activation{}}
	if err := r.serve(os.NewFile(3, "coda-in")); err != nil {
		fmt.Fprintln(os.Stderr, "blackbox:", err)
		os.Exit(1)
	}
}

// serve reads the invoker's messages until it closes fd 3.
func (r *runtime) serve(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20+1) // the protocol allows lines up to 16 MiB
	for sc.Scan() {
		var m message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue
		}
		switch m.Type {
		case "init":
			// Executables carry their code: there is nothing to load. end: true promises that
			// this runtime sends end for every activation itself.
			r.send(message{Type: "ready", ID: m.ID, End: true})
		case "run":
			r.mu.Lock()
			r.acts[m.ID] = &activation{}
			r.mu.Unlock()
			go r.run(m) // runs may overlap, up to the action's concurrency
		case "cutoff":
			r.cutoff(m.ID)
		}
		// Unknown types are ignored, as the protocol requires.
	}
	return sc.Err()
}

// run answers one activation: the response at once, then end when its background work is done.
func (r *runtime) run(m message) {
	var params map[string]any
	if err := json.Unmarshal(m.Params, &params); err != nil || params == nil {
		params = map[string]any{}
	}
	name, _ := params["name"].(string)
	if name == "" {
		name = "stranger"
	}
	fmt.Printf("greeting %s\n", name) // raw stdout: attributed by Coda when one activation is in flight
	result := map[string]any{"greeting": "hello " + name, "params": params}

	delay, _ := params["delay_ms"].(float64)
	response := message{Type: "response", ID: m.ID, Result: result}

	// Everything below holds r.mu, so that the timer's end cannot overtake the response and a
	// cutoff cannot slip in between them.
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.acts[m.ID]
	if a == nil { // cut off while computing: its end was the last word
		return
	}
	if delay > 0 {
		// Background work that outlives the response (a timer here; a database write in real
		// life), recorded before it starts so that it is never missing from what is pending.
		a.pending = []string{fmt.Sprintf("timer %d ms", int(delay))}
		time.AfterFunc(time.Duration(delay)*time.Millisecond, func() { r.finish(m.ID, name) })
	}
	switch {
	case m.Mode == "await" && delay > 0:
		// await: the response waits until the activation has settled; finish sends it.
		a.held = &response
		r.send(message{Type: "pending", ID: m.ID, Pending: a.pending})
	case m.Mode == "coupled":
		// coupled: the old behaviour, the activation ends at its response whatever still runs.
		r.send(response)
		r.endLocked(m.ID, "coupled", a.pending)
	case delay > 0:
		r.send(response)
		r.send(message{Type: "pending", ID: m.ID, Pending: a.pending})
	default:
		r.send(response)
		r.endLocked(m.ID, "settled", nil)
	}
}

// finish runs when the background work of id is done: it logs and settles the activation.
func (r *runtime) finish(id, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.acts[id]
	if a == nil { // cut off, or coupled: the activation is already over
		return
	}
	r.send(message{Type: "log", ID: id, Stream: "stdout", Line: "background work done for " + name})
	a.pending = nil
	if a.held != nil {
		r.send(*a.held)
	}
	r.endLocked(id, "settled", nil)
}

// cutoff ends id at its deadline, saying what was still pending.
func (r *runtime) cutoff(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.acts[id]
	if a == nil { // already ended: its end is on the way or sent
		return
	}
	if a.held != nil {
		r.send(*a.held)
	}
	r.endLocked(id, "deadline", a.pending)
}

// endLocked sends end; nothing more may be sent for id afterwards. r.mu must be held.
func (r *runtime) endLocked(id, cause string, pending []string) {
	r.send(message{Type: "end", ID: id, Cause: cause, Pending: pending})
	delete(r.acts, id)
}

// send writes one message as one line on fd 4.
func (r *runtime) send(m message) {
	b, err := json.Marshal(m)
	if err != nil {
		b, _ = json.Marshal(message{Type: "response", ID: m.ID, Error: err.Error()})
	}
	r.outMu.Lock()
	defer r.outMu.Unlock()
	_, _ = r.out.Write(append(b, '\n'))
}
