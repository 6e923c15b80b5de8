package controller

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/bus"
	"github.com/coda-serverless/coda/internal/entity"
)

func newController(t *testing.T, cfg Config) *Controller {
	t.Helper()
	b, err := bus.Embedded(context.Background(), t.TempDir(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	cfg.Bus = b
	cfg.Invoker = "i0"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestConcurrentLimitCountsUntilEnd(t *testing.T) {
	c := newController(t, Config{LimitConcurrent: 2})
	for range 2 {
		if err := c.admit("guest"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.admit("guest"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("third concurrent activation: %v", err)
	}
	if err := c.admit("other"); err != nil {
		t.Fatalf("limits are per namespace: %v", err)
	}
	c.ended("guest")
	if err := c.admit("guest"); err != nil {
		t.Fatalf("after an end: %v", err)
	}
}

func TestPerMinuteLimitUsesTheClock(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := newController(t, Config{LimitPerMinute: 3, Now: func() time.Time { return now }})
	for range 3 {
		if err := c.admit("guest"); err != nil {
			t.Fatal(err)
		}
		c.ended("guest")
	}
	if err := c.admit("guest"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("fourth in a minute: %v", err)
	}
	now = now.Add(time.Minute)
	if err := c.admit("guest"); err != nil {
		t.Fatalf("next minute: %v", err)
	}
}

func TestDrainRefusesNewWork(t *testing.T) {
	c := newController(t, Config{})
	c.Drain()
	_, err := c.Invoke(context.Background(), Request{Namespace: "guest", Action: &entity.Action{Name: "x"}})
	if !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("err = %v", err)
	}
}

func TestBlockingInvokeWithoutResponseFallsBackToID(t *testing.T) {
	c := newController(t, Config{})
	// An invoker that takes the request and never answers within the wait.
	stop, err := c.cfg.Bus.Serve(bus.InvokeSubject("i0"), func([]byte, bus.Replier) {})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	out, err := c.Invoke(context.Background(), Request{Namespace: "guest", Action: &entity.Action{Name: "x"}, Blocking: true, Wait: 100 * time.Millisecond})
	if err != nil || out.ActivationID == "" || out.Activation != nil {
		t.Fatalf("out=%+v err=%v", out, err)
	}
}

func TestPrepareRejectsBadBinary(t *testing.T) {
	c := newController(t, Config{})
	var ie *InvalidActionError
	err := c.Prepare(context.Background(), &entity.Action{Exec: entity.Exec{Kind: entity.KindNode, Code: "%%%", Binary: true}})
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v", err)
	}
	err = c.Prepare(context.Background(), &entity.Action{Exec: entity.Exec{Kind: entity.KindBlackbox, Code: "echo"}})
	if !errors.As(err, &ie) {
		t.Fatalf("blackbox without zip: %v", err)
	}
}
