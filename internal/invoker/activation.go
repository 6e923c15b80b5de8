package invoker

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
)

// Invocation is what the controller sends an invoker over the bus. The action travels without
// its code (which may be megabytes); the invoker loads it by name and version.
type Invocation struct {
	ActivationID string                     `json:"activationId"`
	Namespace    string                     `json:"namespace"`
	Subject      string                     `json:"subject"`
	Action       entity.Action              `json:"action"`
	Params       map[string]json.RawMessage `json:"params"`
	Arrived      int64                      `json:"arrived"` // ms since the epoch, when the API took the request
	Blocking     bool                       `json:"blocking"`
}

// Limits on what an activation may produce, as OpenWhisk sets them.
const (
	// MaxResult bounds a result: larger ones are developer errors, not stored megabytes.
	MaxResult = 1 << 20
)

// Messages recorded as results, in OpenWhisk's words where OpenWhisk has them.
const (
	msgTimeout   = "The action exceeded its time limits of %d milliseconds."
	msgTooLarge  = "The action produced a response that exceeded the allowed length: %d > %d bytes."
	msgCrash     = "The action did not produce a valid response and exited unexpectedly (%s)."
	msgOOM       = "memory limit exceeded: the action used more than its %d MB and was killed."
	msgTruncated = "Logs were truncated because the total bytes size exceeds the limit of %d bytes."
	msgNoRecord  = "The action did not produce a response and its instance ended before the deadline (%s)."
)

// activation is one activation on one instance, from run to end.
type activation struct {
	inv      *Invocation
	action   *entity.Action
	mode     string
	arrived  time.Time
	start    time.Time // run sent
	deadline time.Time
	initTime time.Duration // 0 when warm
	logLimit int           // bytes

	inst *instance // set by the pool before run

	recMu            sync.Mutex // orders the delayed "running" record before the response's
	recordedResponse bool

	mu          sync.Mutex
	logs        []string
	logBytes    int
	truncated   bool
	pending     []string // latest snapshot
	responded   bool
	respondedAt time.Time
	resp        entity.Response
	timedOut    bool
	cutoff      bool
	ended       bool
	endAt       time.Time
	cause       string
	endPending  []string

	responseCh chan struct{} // closed at the response
	endCh      chan struct{} // closed at the end
}

func newActivation(inv *Invocation, action *entity.Action, now time.Time) *activation {
	logLimit := action.Limits.Logs << 20
	if logLimit <= 0 {
		logLimit = entity.DefaultLogs << 20
	}
	return &activation{inv: inv, action: action, mode: action.Mode(), arrived: time.UnixMilli(inv.Arrived),
		start: now, deadline: now.Add(time.Duration(action.Limits.Timeout) * time.Millisecond), logLimit: logLimit,
		responseCh: make(chan struct{}), endCh: make(chan struct{})}
}

// addLog appends one line unless the activation ended or its logs are full.
func (a *activation) addLog(stream, text string) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended || a.truncated {
		return
	}
	line := entity.LogLine(now, stream, text)
	if a.logBytes+len(line) > a.logLimit {
		a.truncated = true
		a.logs = append(a.logs, entity.LogLine(now, "stderr", fmt.Sprintf(msgTruncated, a.logLimit)))
		return
	}
	a.logBytes += len(line)
	a.logs = append(a.logs, line)
}

func (a *activation) setPending(p []string) {
	a.mu.Lock()
	if !a.ended {
		a.pending = p
	}
	a.mu.Unlock()
}

// respond records the response once; later calls are ignored. It reports whether it was first.
func (a *activation) respond(now time.Time, code int, result json.RawMessage) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.responded {
		return false
	}
	if len(result) > MaxResult {
		code, result = entity.StatusDeveloperError, entity.ErrorResult(fmt.Sprintf(msgTooLarge, len(result), MaxResult))
	}
	a.responded, a.respondedAt, a.resp = true, now, entity.NewResponse(code, result)
	close(a.responseCh)
	return true
}

// responseFromRuntime classifies a runtime's response message as OpenWhisk does.
func responseFromRuntime(result json.RawMessage, errMsg string) (int, json.RawMessage) {
	if errMsg != "" {
		return entity.StatusDeveloperError, entity.ErrorResult(errMsg)
	}
	if len(result) == 0 || result[0] != '{' {
		return entity.StatusDeveloperError, entity.ErrorResult("The action did not return a dictionary.")
	}
	var probe struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(result, &probe) == nil && len(probe.Error) > 0 && string(probe.Error) != "null" {
		return entity.StatusApplicationError, result
	}
	return entity.StatusSuccess, result
}

// finish ends the activation once; it reports whether it was first.
func (a *activation) finish(now time.Time, cause string, pending []string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended {
		return false
	}
	if pending == nil {
		pending = a.pending
	}
	if cause == "settled" || cause == "coupled" {
		pending = nil
	}
	a.ended, a.endAt, a.cause, a.endPending = true, now, cause, pending
	close(a.endCh)
	return true
}

// record builds the activation record as of now (End is 0 until the activation ended).
func (a *activation) record() *entity.Activation {
	a.mu.Lock()
	defer a.mu.Unlock()
	inv, act := a.inv, a.action
	r := &entity.Activation{
		Namespace: inv.Namespace, Name: act.Name, Version: act.Version, Subject: inv.Subject,
		ActivationID: inv.ActivationID, Start: a.start.UnixMilli(), Publish: false,
		Logs: append([]string(nil), a.logs...),
	}
	if r.Logs == nil {
		r.Logs = []string{}
	}
	if a.responded {
		r.Response = a.resp
		r.StatusCode = a.resp.StatusCode
	} else {
		r.Response = entity.Response{Status: "running", StatusCode: -1}
	}
	if a.ended {
		r.End = a.endAt.UnixMilli()
		r.Duration = r.End - r.Start
	}
	ann := entity.KeyValues{}
	ann = ann.Set("path", inv.Namespace+"/"+act.Name)
	ann = ann.Set("kind", act.Exec.Kind)
	ann = ann.Set("limits", act.Limits)
	ann = ann.Set("waitTime", max(a.start.Sub(a.arrived).Milliseconds()-a.initTime.Milliseconds(), 0))
	if a.initTime > 0 {
		ann = ann.Set("initTime", a.initTime.Milliseconds())
	}
	ann = ann.Set("timeout", a.timedOut)
	if a.responded {
		ann = ann.Set("responseTime", a.respondedAt.Sub(a.start).Milliseconds())
	}
	term := entity.Termination{Mode: a.mode, Pending: a.pending}
	if a.ended {
		term.Cause, term.Pending = a.cause, a.endPending
	}
	if term.Pending == nil {
		term.Pending = []string{}
	}
	ann = ann.Set("termination", term)
	r.Annotations = ann
	return r
}
