package sdk

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Go runs f in a new goroutine as background work of the activation that ctx belongs to: the
// activation does not end before f returns (or its deadline passes), and until then f is listed
// as pending ("sdk.Go worker #1"). f's context carries ctx's values and the activation's
// deadline; it is not cancelled when Main returns, only when the activation is cut off.
//
// A panic in f is logged for the activation and does not stop the runtime. When ctx belongs to no
// activation (nil, context.Background, or an activation that was already cut off), f still runs,
// untracked, like a plain go statement.
func Go(ctx context.Context, f func(context.Context)) { GoNamed(ctx, "", f) }

// GoNamed is Go with the name that pending snapshots and cut-off reports use for f, such as
// "flush metrics to db".
func GoNamed(ctx context.Context, name string, f func(context.Context)) {
	start(ctx, "sdk.Go worker", name, func(ctx context.Context) error { f(ctx); return nil })
}

// WaitUntil runs every fn concurrently as background work of ctx's activation, like Go, and
// returns at once. An error returned by fn is logged for the activation (on its stderr stream).
func WaitUntil(ctx context.Context, fns ...func(context.Context) error) {
	for _, fn := range fns {
		start(ctx, "sdk.WaitUntil", "", fn)
	}
}

func start(ctx context.Context, kind, name string, f func(context.Context) error) {
	if ctx == nil {
		ctx = context.Background()
	}
	a := fromContext(ctx)
	if a == nil {
		go func() {
			if err := f(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", kind, err)
			}
		}()
		return
	}
	n := a.addWorker(kind, name)
	label := a.workerName(n)
	// Detached from ctx's cancellation (Main's return must not stop the work) but bound to the
	// activation: its deadline, and its cut-off.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if !a.deadline.IsZero() {
		wctx, cancel = context.WithDeadline(context.WithoutCancel(ctx), a.deadline)
	}
	stop := context.AfterFunc(a.ctx, cancel)
	go func() {
		defer a.doneWorker(n)
		defer stop()
		defer cancel()
		defer func() {
			if v := recover(); v != nil {
				a.logLines("stderr", fmt.Sprintf("panic in %s: %v", label, v))
			}
		}()
		if err := f(wctx); err != nil {
			a.logLines("stderr", fmt.Sprintf("%s: %v", label, err))
		}
	}()
}

func (a *activation) workerName(n int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.workers[n]
}

// Activation returns the id and deadline of the activation that ctx belongs to; "" and the zero
// time when it belongs to none.
func Activation(ctx context.Context) (id string, deadline time.Time) {
	if a := fromContext(ctx); a != nil {
		return a.id, a.deadline
	}
	return "", time.Time{}
}

// Current returns the context of the one activation whose Main is running, for a Main with the
// plain OpenWhisk signature func(map[string]interface{}) map[string]interface{}, which gets no
// context: sdk.Go(sdk.Current(), f). It is only meaningful with the action's concurrency at 1;
// with no or several activations in Main it returns context.Background(), and work started
// with it is untracked.
func Current() context.Context {
	s := active.Load()
	if s == nil {
		return context.Background()
	}
	r := s.running()
	if len(r) != 1 {
		return context.Background()
	}
	return r[0].ctx
}

// Logf sends a log line attributed to ctx's activation exactly, even while several activations
// overlap or after the response. Without an activation (or after its end) it writes to stdout.
func Logf(ctx context.Context, format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	if a := fromContext(ctx); a != nil {
		a.logLines("stdout", text)
		return
	}
	rawWrite("stdout", text+"\n")
}

func rawWrite(stream, text string) {
	f := os.Stdout
	if stream == "stderr" {
		f = os.Stderr
	}
	_, _ = f.WriteString(text)
}
