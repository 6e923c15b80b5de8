package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// pendingInterval is the protocol's bound on how often a changing pending list is reported: often
// enough that a crash loses at most 50 ms of what was pending, rarely enough to cost nothing.
const pendingInterval = 50 * time.Millisecond

// mainPending names, in cut-off reports, a main that had not returned by the deadline.
const mainPending = "main (still running)"

type ctxKey struct{}

// activation is one run, from the run message to its end.
type activation struct {
	s        *server
	id       string
	mode     string
	deadline time.Time       // zero: none given
	ctx      context.Context // given to main; carries the activation
	cancel   context.CancelFunc

	changed chan struct{} // signalled when the pending work changes
	cut     chan struct{} // closed at cutoff

	mu       sync.Mutex
	returned bool     // main has returned
	held     *message // await mode: the response, until settled
	ended    bool     // end was sent: nothing more may be sent for this activation
	seq      int
	workers  map[int]string // pending background work by sequence number
}

func newActivation(base context.Context, s *server, m message) *activation {
	a := &activation{
		s:       s,
		id:      m.ID,
		mode:    m.Mode,
		changed: make(chan struct{}, 1),
		cut:     make(chan struct{}),
		workers: map[int]string{},
	}
	if a.mode == "" {
		a.mode = modeDecoupled
	}
	ctx := context.WithoutCancel(base)
	if m.Deadline > 0 {
		a.deadline = time.UnixMilli(m.Deadline)
		ctx, a.cancel = context.WithDeadline(ctx, a.deadline)
	} else {
		ctx, a.cancel = context.WithCancel(ctx)
	}
	a.ctx = context.WithValue(ctx, ctxKey{}, a)
	return a
}

func fromContext(ctx context.Context) *activation {
	if ctx == nil {
		return nil
	}
	a, _ := ctx.Value(ctxKey{}).(*activation)
	return a
}

func (a *activation) mainReturned() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.returned
}

// execute runs main, responds and then waits for the activation to settle.
func (a *activation) execute(params json.RawMessage) {
	resp := a.call(params)
	a.mu.Lock()
	a.returned = true
	if a.ended { // cut off while main ran: the deadline's end was the last word
		a.mu.Unlock()
		return
	}
	if a.mode == modeAwait {
		a.held = &resp
	} else {
		a.s.out.send(resp)
	}
	if a.mode == modeCoupled {
		// The baseline behaviour: the activation ends at its response whatever still runs. The
		// end still lists that work, so the record shows what the coupled mode put at risk.
		a.ended = true
		a.s.out.send(message{Type: "end", ID: a.id, Cause: causeCoupled, Pending: a.pendingLocked()})
		idle := len(a.workers) == 0
		a.mu.Unlock()
		if idle {
			a.cancel()
		}
		a.s.forget(a)
		return
	}
	a.mu.Unlock()
	a.settle()
}

// call runs main and turns its outcome into a response message.
func (a *activation) call(raw json.RawMessage) (resp message) {
	resp = message{Type: "response", ID: a.id}
	params := map[string]any{}
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &params); err != nil {
			resp.Error = fmt.Sprintf("params are not a JSON object: %v", err)
			return resp
		}
		if params == nil {
			params = map[string]any{}
		}
	}
	defer func() {
		if v := recover(); v != nil {
			resp.Error = fmt.Sprintf("panic: %v", v)
			resp.Result = nil
			a.logLines("stderr", fmt.Sprintf("panic: %v\n%s", v, debug.Stack()))
		}
	}()
	result, err := a.s.main(a.ctx, params)
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	if result == nil {
		result = map[string]any{}
	}
	b, err := json.Marshal(result)
	switch {
	case err != nil:
		resp.Error = fmt.Sprintf("result is not JSON: %v", err)
	case len(b) > maxLine-1024: // leave room for the envelope
		resp.Error = fmt.Sprintf("result too large: %d bytes", len(b))
	default:
		resp.Result = b
	}
	return resp
}

// settle waits until no background work is pending, reporting what is pending meanwhile, and
// ends the activation; cutoff ends it instead if the deadline comes first.
func (a *activation) settle() {
	ticker := time.NewTicker(pendingInterval)
	defer ticker.Stop()
	var last []string
	reported, due := false, false
	for {
		a.mu.Lock()
		if a.ended {
			a.mu.Unlock()
			return
		}
		names := a.pendingLocked()
		if len(names) == 0 {
			a.releaseLocked()
			a.ended = true
			a.s.out.send(message{Type: "end", ID: a.id, Cause: causeSettled})
			a.mu.Unlock()
			a.cancel()
			a.s.forget(a)
			return
		}
		if !reported || (due && !slices.Equal(names, last)) {
			a.s.out.send(message{Type: "pending", ID: a.id, Pending: names})
			last, reported = names, true
		}
		due = false
		a.mu.Unlock()
		select {
		case <-a.changed:
		case <-ticker.C:
			due = true
		case <-a.cut:
		}
	}
}

// releaseLocked sends the response that await mode held back.
func (a *activation) releaseLocked() {
	if a.held != nil {
		a.s.out.send(*a.held)
		a.held = nil
	}
}

// cutoff ends the activation at its deadline, reporting what was still pending, and cancels the
// contexts of its work so that well-behaved code stops.
func (a *activation) cutoff() {
	a.mu.Lock()
	if a.ended { // its end is already on the way
		a.mu.Unlock()
		return
	}
	names := a.pendingLocked()
	if !a.returned {
		names = append([]string{mainPending}, names...)
	}
	// A held response is still the function's result: losing it would hide what it produced.
	a.releaseLocked()
	a.ended = true
	a.s.out.send(message{Type: "end", ID: a.id, Cause: causeDeadline, Pending: names})
	a.mu.Unlock()
	close(a.cut)
	a.cancel()
	a.s.forget(a)
}

// pendingLocked lists the pending work in start order.
func (a *activation) pendingLocked() []string {
	if len(a.workers) == 0 {
		return nil
	}
	keys := make([]int, 0, len(a.workers))
	for k := range a.workers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = a.workers[k]
	}
	return names
}

// addWorker records background work; name "" gets a numbered default name of the given kind.
func (a *activation) addWorker(kind, name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	if name == "" {
		name = fmt.Sprintf("%s #%d", kind, a.seq)
	}
	a.workers[a.seq] = name
	a.signal()
	return a.seq
}

func (a *activation) doneWorker(n int) {
	a.mu.Lock()
	delete(a.workers, n)
	idle := a.ended && len(a.workers) == 0
	a.signal()
	a.mu.Unlock()
	if idle { // a coupled activation whose work has now finished too
		a.cancel()
	}
}

func (a *activation) signal() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// logLines sends text as log lines attributed to the activation, or writes it raw once the
// activation has ended (the protocol forbids logging for an ended activation).
func (a *activation) logLines(stream, text string) {
	text = strings.TrimRight(text, "\n")
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended {
		rawWrite(stream, text+"\n")
		return
	}
	for _, line := range strings.Split(text, "\n") {
		a.s.out.send(message{Type: "log", ID: a.id, Stream: stream, Line: line})
	}
}
