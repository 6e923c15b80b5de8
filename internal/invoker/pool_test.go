package invoker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/sandbox"
	"github.com/coda-serverless/coda/runtimes"
)

func TestMain(m *testing.M) {
	sandbox.RunShimIfRequested()
	os.Exit(m.Run())
}

// hangGuard bounds every wait in these tests; it only catches hangs, never measures speed.
const hangGuard = 60 * time.Second

type memRecorder struct {
	mu   sync.Mutex
	recs map[string]*entity.Activation
}

func (r *memRecorder) Record(a *entity.Activation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.recs == nil {
		r.recs = map[string]*entity.Activation{}
	}
	r.recs[a.ActivationID] = a
}

func newPool(t *testing.T, cfg Config) *Pool {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir := t.TempDir()
	if err := runtimes.Extract(dir); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	host, err := sandbox.New(ctx, sandbox.Config{Isolate: false}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Close() })
	cfg.Host = host
	cfg.Launcher = &Runtimes{Dir: dir, Node: node, Env: DefaultEnv(os.Getenv)}
	cfg.Recorder = &memRecorder{}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 2048
	}
	p, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

func nodeAction(name, code string, mut func(*entity.Action)) *entity.Action {
	a := &entity.Action{Namespace: "guest", Name: name, Version: "0.0.1", Updated: 1,
		Exec: entity.Exec{Kind: entity.KindNode, Code: code}, Limits: entity.DefaultLimits()}
	if mut != nil {
		mut(a)
	}
	return a
}

// run executes one activation and returns the records at response and at end.
func run(t *testing.T, p *Pool, a *entity.Action, params map[string]any) (resp, final *entity.Activation) {
	t.Helper()
	raw := map[string]json.RawMessage{}
	for k, v := range params {
		b, _ := json.Marshal(v)
		raw[k] = b
	}
	inv := &Invocation{ActivationID: entity.NewActivationID(time.Now()), Namespace: a.Namespace, Subject: a.Namespace,
		Action: *a, Params: raw, Arrived: time.Now().UnixMilli()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		final = p.Run(context.Background(), inv, a, func(r *entity.Activation) { resp = r })
	}()
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatalf("activation %s hung; pool: %s", inv.ActivationID, p.Describe())
	}
	return resp, final
}

func annotation(r *entity.Activation, key string) (json.RawMessage, bool) {
	return r.Annotations.Get(key)
}

func termination(t *testing.T, r *entity.Activation) entity.Termination {
	t.Helper()
	raw, ok := annotation(r, "termination")
	if !ok {
		t.Fatal("no termination annotation")
	}
	var term entity.Termination
	if err := json.Unmarshal(raw, &term); err != nil {
		t.Fatal(err)
	}
	return term
}

func cold(r *entity.Activation) bool { _, ok := annotation(r, "initTime"); return ok }

func TestResponseComesBeforeEndAndBackgroundWorkLands(t *testing.T) {
	p := newPool(t, Config{KeepAlive: 0})
	file := filepath.Join(t.TempDir(), "written")
	a := nodeAction("bg", `const fs = require('fs');
exports.main = (p) => { setTimeout(() => fs.writeFileSync(p.file, 'done'), 300); return {ok: true}; }`, nil)
	resp, final := run(t, p, a, map[string]any{"file": file})
	if resp.End != 0 {
		t.Errorf("the response record is already ended (end=%d): response and end must be different events", resp.End)
	}
	if !resp.Response.Success {
		t.Fatalf("response: %+v", resp.Response)
	}
	if term := termination(t, final); term.Cause != "settled" {
		t.Fatalf("termination = %+v", term)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "done" {
		t.Fatalf("background write lost with --keep-alive 0: %v %q", err, b)
	}
	var rt int64
	raw, _ := annotation(final, "responseTime")
	_ = json.Unmarshal(raw, &rt)
	if final.End-final.Start < rt+250 {
		t.Errorf("end (%d ms after start) is before the background write (response at %d ms + 300 ms timer)", final.End-final.Start, rt)
	}
}

func TestWarmReuseAndConcurrencyCountsOnlyUnresponded(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute})
	a := nodeAction("warm", `exports.main = () => { setTimeout(() => {}, 400); return {pid: process.pid}; }`, nil)
	r1, _ := run(t, p, a, nil)
	if !cold(r1) {
		t.Fatal("first run should be cold")
	}
	// The first activation is in its background phase; with concurrency 1 the same instance
	// still takes the next one, because only unresponded activations count.
	var wg sync.WaitGroup
	var r2 *entity.Activation
	wg.Add(1)
	go func() { defer wg.Done(); _, r2 = run(t, p, a, nil) }()
	wg.Wait()
	if cold(r2) {
		t.Fatal("second run was cold: background work must not take the concurrency slot")
	}
	if string(r1.Response.Result) != string(r2.Response.Result) {
		t.Fatalf("different instances: %s vs %s", r1.Response.Result, r2.Response.Result)
	}
}

func TestConcurrentActivationsShareAnInstance(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute})
	a := nodeAction("conc", `exports.main = async () => { await new Promise(r => setTimeout(r, 300)); return {pid: process.pid}; }`,
		func(a *entity.Action) { a.Limits.Concurrency = 4 })
	run(t, p, a, nil) // warm it up
	var wg sync.WaitGroup
	results := make([]*entity.Activation, 4)
	for i := range results {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], _ = run(t, p, a, nil) }()
	}
	wg.Wait()
	for _, r := range results {
		if !r.Response.Success || cold(r) {
			t.Fatalf("activation %s: success=%v cold=%v", r.ActivationID, r.Response.Success, cold(r))
		}
	}
}

func TestDeadlineCutsOffAndReportsPending(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute})
	a := nodeAction("late", `exports.main = () => { setTimeout(() => {}, 5000); return {ok: 1}; }`,
		func(a *entity.Action) { a.Limits.Timeout = 500 })
	resp, final := run(t, p, a, nil)
	if !resp.Response.Success {
		t.Fatalf("the response came in time and should succeed: %+v", resp.Response)
	}
	term := termination(t, final)
	if term.Cause != "deadline" || !strings.Contains(strings.Join(term.Pending, ","), "setTimeout 5000 ms") {
		t.Fatalf("termination = %+v", term)
	}
	// The cut-off instance is retired; the next run gets a fresh one and works.
	r, _ := run(t, p, a, nil)
	if !r.Response.Success || !cold(r) {
		t.Fatalf("after a cutoff: success=%v cold=%v", r.Response.Success, cold(r))
	}
}

func TestTimeoutBeforeResponse(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute})
	a := nodeAction("loop", `exports.main = () => { for (;;) {} }`, func(a *entity.Action) { a.Limits.Timeout = 300 })
	resp, final := run(t, p, a, nil)
	if resp.Response.StatusCode != entity.StatusDeveloperError || !strings.Contains(string(resp.Response.Result), "time limit") {
		t.Fatalf("response = %+v %s", resp.Response, resp.Response.Result)
	}
	if term := termination(t, final); term.Cause != "deadline" {
		t.Fatalf("termination = %+v", term)
	}
}

func TestCrashIsRecordedAndInstanceReplaced(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute})
	a := nodeAction("crash", `exports.main = (p) => { if (p.die) process.exit(3); return {ok: 1}; }`, nil)
	resp, final := run(t, p, a, map[string]any{"die": true})
	if resp.Response.StatusCode != entity.StatusDeveloperError || !strings.Contains(string(resp.Response.Result), "exit") {
		t.Fatalf("crash response = %s", resp.Response.Result)
	}
	if term := termination(t, final); term.Cause != "crash" {
		t.Fatalf("termination = %+v", term)
	}
	r, _ := run(t, p, a, nil)
	if !r.Response.Success {
		t.Fatalf("after a crash the next run must succeed: %s", r.Response.Result)
	}
}

func TestCrashInBackgroundKeepsPendingList(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute})
	a := nodeAction("bgcrash", `exports.main = () => { setTimeout(() => {}, 2000); setTimeout(() => process.exit(9), 300); return {ok: 1}; }`, nil)
	resp, final := run(t, p, a, nil)
	if !resp.Response.Success {
		t.Fatalf("response = %s", resp.Response.Result)
	}
	term := termination(t, final)
	if term.Cause != "crash" || !strings.Contains(strings.Join(term.Pending, ","), "setTimeout 2000 ms") {
		t.Fatalf("termination = %+v", term)
	}
}

func TestCoupledEndsAtResponse(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute})
	a := nodeAction("coupled", `exports.main = () => { setTimeout(() => {}, 1000); return {ok: 1}; }`, func(a *entity.Action) {
		a.Annotations = a.Annotations.Set("termination", "coupled")
	})
	_, final := run(t, p, a, nil)
	if term := termination(t, final); term.Cause != "coupled" || term.Mode != "coupled" {
		t.Fatalf("termination = %+v", term)
	}
	if final.End-final.Start > 900 {
		t.Fatalf("coupled activation ended %d ms after start: it must end at its response", final.End-final.Start)
	}
}

func TestInitErrorIsDeveloperError(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute})
	a := nodeAction("bad", `exports.main = ( => {`, nil)
	resp, _ := run(t, p, a, nil)
	if resp.Response.StatusCode != entity.StatusDeveloperError || !strings.Contains(string(resp.Response.Result), "Initialization has failed") {
		t.Fatalf("response = %+v %s", resp.Response, resp.Response.Result)
	}
}

func TestPauseAndResume(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute, PauseGrace: 20 * time.Millisecond})
	a := nodeAction("pause", `let n = 0; exports.main = () => ({n: ++n})`, nil)
	run(t, p, a, nil)
	waitFor(t, func() bool { return countState(p, statePaused) == 1 }, "instance paused")
	r, _ := run(t, p, a, nil)
	if cold(r) || string(r.Response.Result) != `{"n":2}` {
		t.Fatalf("after a pause: cold=%v result=%s", cold(r), r.Response.Result)
	}
}

func TestPauseNeverFreezesPendingWork(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute, PauseGrace: time.Millisecond})
	file := filepath.Join(t.TempDir(), "bg")
	a := nodeAction("nopause", `const fs = require('fs');
exports.main = (p) => { setTimeout(() => fs.writeFileSync(p.file, 'x'), 300); return {}; }`, nil)
	resp, _ := run(t, p, a, map[string]any{"file": file})
	_ = resp
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("background write did not happen before the end: %v", err)
	}
}

func TestKeepAliveExpiry(t *testing.T) {
	p := newPool(t, Config{KeepAlive: 100 * time.Millisecond})
	a := nodeAction("expire", `exports.main = () => ({})`, nil)
	run(t, p, a, nil)
	waitFor(t, func() bool { return countState(p, stateWarm)+countState(p, statePaused) == 0 }, "instance expired")
	r, _ := run(t, p, a, nil)
	if !cold(r) {
		t.Fatal("after keep-alive expiry the next run must be cold")
	}
}

func TestEvictionUnderSmallMemoryPool(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute, MemoryMB: 256})
	a := nodeAction("a", `exports.main = () => ({a: 1})`, nil)
	b := nodeAction("b", `exports.main = () => ({b: 1})`, nil)
	for i := range 3 {
		for _, act := range []*entity.Action{a, b} {
			r, _ := run(t, p, act, nil)
			if !r.Response.Success {
				t.Fatalf("round %d %s: %s", i, act.Name, r.Response.Result)
			}
		}
	}
}

func TestFullPoolQueuesInsteadOfDropping(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute, MemoryMB: 256})
	a := nodeAction("slow", `exports.main = async () => { await new Promise(r => setTimeout(r, 200)); return {ok: 1}; }`, nil)
	var wg sync.WaitGroup
	results := make([]*entity.Activation, 3)
	for i := range results {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], _ = run(t, p, a, nil) }()
	}
	wg.Wait()
	for i, r := range results {
		if !r.Response.Success {
			t.Fatalf("activation %d dropped: %s", i, r.Response.Result)
		}
	}
}

func TestLogsAfterResponseBelongToActivation(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute})
	a := nodeAction("logs", `exports.main = () => { console.log('before'); setTimeout(() => console.log('after'), 100); return {}; }`, nil)
	_, final := run(t, p, a, nil)
	logs := strings.Join(final.Logs, "\n")
	if !strings.Contains(logs, "stdout: before") || !strings.Contains(logs, "stdout: after") {
		t.Fatalf("logs = %q", logs)
	}
}

func TestLogsAreTruncatedAtTheLimit(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute})
	a := nodeAction("flood", `exports.main = () => { const s = 'x'.repeat(1000); for (let i = 0; i < 3000; i++) console.log(s); return {}; }`,
		func(a *entity.Action) { a.Limits.Logs = 1 })
	_, final := run(t, p, a, nil)
	last := final.Logs[len(final.Logs)-1]
	if !strings.Contains(last, "Logs were truncated") {
		t.Fatalf("last log line = %q (of %d)", last, len(final.Logs))
	}
}

func TestResultOverLimitIsDeveloperError(t *testing.T) {
	p := newPool(t, Config{KeepAlive: time.Minute})
	a := nodeAction("big", fmt.Sprintf(`exports.main = () => ({s: 'x'.repeat(%d)})`, MaxResult+10), nil)
	resp, _ := run(t, p, a, nil)
	if resp.Response.StatusCode != entity.StatusDeveloperError || !strings.Contains(string(resp.Response.Result), "exceeded the allowed length") {
		t.Fatalf("response = %+v", resp.Response.Status)
	}
}

func countState(p *Pool, s state) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.byKey {
		for _, in := range l {
			if in.st == s {
				n++
			}
		}
	}
	return n
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
