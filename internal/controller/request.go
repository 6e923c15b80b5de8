package controller

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
)

// BlockingWait is how long a blocking invoke waits for the response before the API answers
// 202 with the activation id, as OpenWhisk does after 60 s.
const BlockingWait = 60 * time.Second

// Request is one invocation as the API hands it over: the action is already resolved and the
// caller authorised.
type Request struct {
	Namespace string // the namespace whose action runs (and whose record it is)
	Subject   string // the caller
	Action    *entity.Action
	Params    map[string]json.RawMessage // the body's parameters; the action's defaults are merged under them
	Blocking  bool
	Wait      time.Duration // blocking only: how long to wait for the response (0 means BlockingWait)
}

// Outcome is what the API answers with.
type Outcome struct {
	ActivationID string
	// Activation is the record as of the response (End is 0 while the activation is still in its
	// background phase). Nil for non-blocking invokes and for blocking ones that outlasted Wait.
	Activation *entity.Activation
}

// Errors Invoke returns (wrapped); the API maps them to status codes.
var (
	// ErrThrottled: the namespace is over its concurrent-activation or per-minute limit (429).
	ErrThrottled = errors.New("too many requests")
	// ErrShuttingDown: coda serve is draining and takes no new work (503).
	ErrShuttingDown = errors.New("the platform is shutting down")
)

// InvalidActionError is a deployable action that cannot run: a Go compile error, a bad zip (400).
type InvalidActionError struct{ Msg string }

func (e *InvalidActionError) Error() string { return e.Msg }
