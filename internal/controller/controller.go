// Package controller accepts invocations from the API, applies the per-namespace limits and
// places activations on an invoker through the bus; it also readies actions before they are
// stored (Go compilation, zip checks).
package controller

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/coda-serverless/coda/internal/bus"
	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/gobuild"
	"github.com/coda-serverless/coda/internal/invoker"
)

// Builder compiles Go actions (internal/gobuild).
type Builder interface {
	Build(ctx context.Context, code []byte, binary bool) (string, error)
}

// Config configures a Controller.
type Config struct {
	Bus             *bus.Bus
	Invoker         string // the invoker that takes every activation (one per node for now)
	Go              Builder
	Unzip           invoker.Extractor
	LimitConcurrent int // per namespace; activations from accept to end
	LimitPerMinute  int // per namespace
	Log             *slog.Logger
	Now             func() time.Time
}

// Controller is safe for concurrent use.
type Controller struct {
	cfg Config

	mu       sync.Mutex
	running  map[string]int // namespace → activations not yet ended
	window   map[string]*minute
	draining bool
	stop     func()
}

type minute struct {
	start int64 // unix minute
	count int
}

// New creates a controller listening for activation ends.
func New(cfg Config) (*Controller, error) {
	if cfg.Bus == nil {
		return nil, errors.New("controller: Bus is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Controller{cfg: cfg, running: map[string]int{}, window: map[string]*minute{}}
	stop, err := cfg.Bus.Subscribe(bus.EndSubject, func(data []byte) {
		var e bus.Ended
		if json.Unmarshal(data, &e) == nil {
			c.ended(e.Namespace)
		}
	})
	if err != nil {
		return nil, err
	}
	c.stop = stop
	return c, nil
}

// Close stops listening.
func (c *Controller) Close() { c.stop() }

// Drain makes every later Invoke fail with ErrShuttingDown.
func (c *Controller) Drain() {
	c.mu.Lock()
	c.draining = true
	c.mu.Unlock()
}

func (c *Controller) ended(ns string) {
	c.mu.Lock()
	if c.running[ns] > 0 {
		c.running[ns]--
	}
	if c.running[ns] == 0 {
		delete(c.running, ns)
	}
	c.mu.Unlock()
}

// admit applies the namespace's limits and counts the activation as running.
func (c *Controller) admit(ns string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining {
		return ErrShuttingDown
	}
	if l := c.cfg.LimitConcurrent; l > 0 && c.running[ns] >= l {
		return fmt.Errorf("%w: too many concurrent requests in flight (count: %d, allowed: %d)", ErrThrottled, c.running[ns], l)
	}
	if l := c.cfg.LimitPerMinute; l > 0 {
		now := c.cfg.Now().Unix() / 60
		w := c.window[ns]
		if w == nil || w.start != now {
			w = &minute{start: now}
			c.window[ns] = w
		}
		if w.count >= l {
			return fmt.Errorf("%w: too many requests in the last minute (count: %d, allowed: %d)", ErrThrottled, w.count, l)
		}
		w.count++
	}
	c.running[ns]++
	return nil
}

// Invoke places one activation. Blocking invokes wait for the response (at most r.Wait).
func (c *Controller) Invoke(ctx context.Context, r Request) (Outcome, error) {
	if err := c.admit(r.Namespace); err != nil {
		return Outcome{}, err
	}
	now := c.cfg.Now()
	id := entity.NewActivationID(now)
	act := *r.Action
	act.Exec.Code = "" // the invoker loads code by version; bus messages stay small
	params := make(map[string]json.RawMessage, len(act.Parameters)+len(r.Params))
	for _, kv := range act.Parameters {
		params[kv.Key] = kv.Value
	}
	for k, v := range r.Params {
		params[k] = v
	}
	inv := invoker.Invocation{ActivationID: id, Namespace: r.Namespace, Subject: r.Subject, Action: act,
		Params: params, Arrived: now.UnixMilli(), Blocking: r.Blocking}
	data, err := json.Marshal(&inv)
	if err != nil {
		c.ended(r.Namespace)
		return Outcome{}, fmt.Errorf("controller: encode invocation: %w", err)
	}
	if !r.Blocking {
		if err := c.cfg.Bus.Enqueue(ctx, bus.WorkSubject(c.cfg.Invoker), data); err != nil {
			c.ended(r.Namespace)
			return Outcome{}, fmt.Errorf("controller: %w", err)
		}
		return Outcome{ActivationID: id}, nil
	}
	wait := r.Wait
	if wait <= 0 {
		wait = BlockingWait
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	reply, err := c.cfg.Bus.Request(wctx, bus.InvokeSubject(c.cfg.Invoker), data)
	if err != nil {
		if wctx.Err() != nil {
			// Still running: the caller polls for the record, as with OpenWhisk's 202.
			return Outcome{ActivationID: id}, nil
		}
		return Outcome{}, fmt.Errorf("controller: %w", err)
	}
	var rec entity.Activation
	if err := json.Unmarshal(reply, &rec); err != nil {
		return Outcome{}, fmt.Errorf("controller: decode response: %w", err)
	}
	return Outcome{ActivationID: id, Activation: &rec}, nil
}

// Prepare readies an action before it is stored: Go code is compiled now, not on the first
// invoke, and binary code must decode.
func (c *Controller) Prepare(ctx context.Context, a *entity.Action) error {
	code := []byte(a.Exec.Code)
	if a.Exec.Binary {
		b, err := base64.StdEncoding.DecodeString(a.Exec.Code)
		if err != nil {
			return &InvalidActionError{Msg: "exec.code of a binary action must be base64: " + err.Error()}
		}
		code = b
	}
	if len(code) == 0 {
		return &InvalidActionError{Msg: "exec.code is empty"}
	}
	switch a.Exec.Kind {
	case entity.KindGo:
		if c.cfg.Go == nil {
			return &InvalidActionError{Msg: "this server cannot build go actions (no Go toolchain)"}
		}
		if _, err := c.cfg.Go.Build(ctx, code, a.Exec.Binary); err != nil {
			var ce *gobuild.CompileError
			if errors.As(err, &ce) {
				return &InvalidActionError{Msg: ce.Msg}
			}
			return fmt.Errorf("controller: build: %w", err)
		}
	case entity.KindBlackbox:
		if !a.Exec.Binary {
			return &InvalidActionError{Msg: "a blackbox action is a zip (binary: true) with an executable named exec at its root"}
		}
		dir, err := c.cfg.Unzip(code)
		if err != nil {
			return &InvalidActionError{Msg: "the zip cannot be used: " + err.Error()}
		}
		if fi, err := os.Stat(filepath.Join(dir, "exec")); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return &InvalidActionError{Msg: "the zip has no executable file named exec at its root"}
		}
	}
	return nil
}
