package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/invoker"
	"github.com/coda-serverless/coda/internal/testenv"
)

// TestCore runs the everyday paths on one shared server with default flags (pause-grace 50ms,
// keep-alive 10m): subtests run in order and use distinct action names.
func TestCore(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)

	t.Run("DeployAndInvokeWithCLI", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "hello.js")
		code := `function main(p) { return {greeting: "hello " + (p.name || "world")}; }`
		if err := os.WriteFile(file, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, errOut, rc := s.Coda(t, "action", "create", "cli-hello", file, "--kind", "nodejs:20", "-a", "note", "from-cli"); rc != 0 {
			t.Fatalf("coda action create: exit %d\n%s%s", rc, out, errOut)
		}
		out, errOut, rc := s.Coda(t, "action", "invoke", "cli-hello", "-p", "name", "Ada", "--result")
		if rc != 0 || !strings.Contains(out, "hello Ada") {
			t.Fatalf("coda action invoke --result: exit %d\nstdout: %s\nstderr: %s", rc, out, errOut)
		}
		out, errOut, rc = s.Coda(t, "action", "list")
		if rc != 0 || !strings.Contains(out, "cli-hello") {
			t.Errorf("coda action list: exit %d\nstdout: %s\nstderr: %s", rc, out, errOut)
		}
		out, errOut, rc = s.Coda(t, "action", "get", "cli-hello")
		if rc != 0 || !strings.Contains(out, "from-cli") {
			t.Errorf("coda action get (annotation kept): exit %d\nstdout: %s\nstderr: %s", rc, out, errOut)
		}
		// The CLI's invocation is on record, with its result.
		acts, err := s.Client.ListActivations(t.Context(), clientFilter("cli-hello"))
		if err != nil || len(acts) != 1 {
			t.Fatalf("activations of cli-hello: %v %v", acts, err)
		}
		s.WaitEnded(t, acts[0].ActivationID, endGuard)
		out, errOut, rc = s.Coda(t, "activation", "result", acts[0].ActivationID)
		if rc != 0 || !strings.Contains(out, "hello Ada") {
			t.Errorf("coda activation result: exit %d\nstdout: %s\nstderr: %s", rc, out, errOut)
		}
		out, errOut, rc = s.Coda(t, "activation", "get", acts[0].ActivationID)
		if rc != 0 || !strings.Contains(out, acts[0].ActivationID) {
			t.Errorf("coda activation get: exit %d\nstdout: %s\nstderr: %s", rc, out, errOut)
		}
		if out, errOut, rc = s.Coda(t, "action", "delete", "cli-hello"); rc != 0 {
			t.Errorf("coda action delete: exit %d\n%s%s", rc, out, errOut)
		}
		if _, _, rc = s.Coda(t, "action", "get", "cli-hello"); rc == 0 {
			t.Error("coda action get after delete succeeded")
		}
	})

	t.Run("DeployViaAPIAndInvokeModes", func(t *testing.T) {
		s.Deploy(t, "echo", "nodejs:20", echoJS, map[string]any{"note": "kept"}, map[string]int{"timeout": 10000, "memory": 128})
		status, body, _ := s.Do(t, http.MethodGet, "/namespaces/_/actions/echo", nil)
		if status != http.StatusOK {
			t.Fatalf("GET action: %d %s", status, body)
		}
		var a entity.Action
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatal(err)
		}
		if a.Limits.Timeout != 10000 || a.Limits.Memory != 128 || a.Exec.Kind != "nodejs:20" {
			t.Errorf("action as stored: %+v", a)
		}
		if v, _ := a.Annotations.GetString("note"); v != "kept" {
			t.Errorf("annotation note = %q, want kept; %s", v, body)
		}

		// Blocking: the record with the result.
		rec := invokeOK(t, s, "echo", map[string]any{"x": 1})
		if got := string(rec.Response.Result); !strings.Contains(got, `"x":1`) {
			t.Errorf("blocking result %s", got)
		}
		end := s.WaitEnded(t, rec.ActivationID, endGuard)
		for _, k := range []string{"waitTime", "kind", "limits", "path", "timeout", "responseTime", "termination"} {
			if _, ok := end.Annotations.Get(k); !ok {
				t.Errorf("annotation %q missing from the record: %+v", k, end.Annotations)
			}
		}

		// result=true: just the result.
		status, body, id := s.InvokeQuery(t, s.Auth, "echo", map[string]any{"y": "z"}, "blocking=true&result=true")
		if status != http.StatusOK || id == "" {
			t.Fatalf("result=true: %d %s (id %q)", status, body, id)
		}
		var res map[string]any
		if err := json.Unmarshal(body, &res); err != nil || res["echo"] == nil || res["activationId"] != nil {
			t.Errorf("result=true body is not the bare result: %s", body)
		}

		// Non-blocking: 202 with the id; the record appears and ends.
		status, body, id = s.Invoke(t, "echo", map[string]any{"nb": true}, false)
		if status != http.StatusAccepted || id == "" {
			t.Fatalf("non-blocking: %d %s", status, body)
		}
		end = s.WaitEnded(t, id, endGuard)
		if !end.Response.Success || !strings.Contains(string(end.Response.Result), `"nb":true`) {
			t.Errorf("non-blocking record: %+v", end.Response)
		}
		if tm := testenv.TerminationOf(end); tm.Cause != "settled" || tm.Mode != "decoupled" {
			t.Errorf("termination = %+v, want decoupled/settled", tm)
		}

		// The record through /result and /logs.
		status, body, _ = s.Do(t, http.MethodGet, "/namespaces/_/activations/"+id+"/result", nil)
		if status != http.StatusOK || !strings.Contains(string(body), `"nb":true`) {
			t.Errorf("GET /result: %d %s", status, body)
		}
		status, body, _ = s.Do(t, http.MethodGet, "/namespaces/_/activations/"+id+"/logs", nil)
		if status != http.StatusOK || !strings.Contains(string(body), `"logs"`) {
			t.Errorf("GET /logs: %d %s", status, body)
		}
	})

	t.Run("ColdThenWarmThenPausedAndResumed", func(t *testing.T) {
		s.Deploy(t, "warmth", "nodejs:20", instanceJS, nil, nil)
		first := invokeOK(t, s, "warmth", nil)
		if !cold(first) {
			t.Errorf("first invoke has no initTime annotation: %+v", first.Annotations)
		}
		second := invokeOK(t, s, "warmth", nil)
		if cold(second) {
			t.Errorf("second invoke has initTime (cold again): %+v", second.Annotations)
		}
		if a, b := resultMap(t, first)["instance"], resultMap(t, second)["instance"]; a != b {
			t.Errorf("warm invoke ran on instance %v, the cold one on %v", b, a)
		}
		// Quiescent for far longer than the 50ms pause grace: the instance is frozen, and the
		// next invoke thaws it rather than starting a new one.
		time.Sleep(300 * time.Millisecond)
		third := invokeOK(t, s, "warmth", nil)
		if cold(third) || resultMap(t, third)["instance"] != resultMap(t, first)["instance"] {
			t.Errorf("invoke after the pause grace: cold=%v instance %v, want warm on %v",
				cold(third), resultMap(t, third)["instance"], resultMap(t, first)["instance"])
		}
	})

	t.Run("ConcurrencyOnOneInstance", func(t *testing.T) {
		const n = 4
		s.Deploy(t, "conc", "nodejs:20", instanceJS, nil, map[string]int{"concurrency": n})
		warm := invokeOK(t, s, "conc", nil) // one instance exists now
		recs := make([]*entity.Activation, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				recs[i] = invokeOK(t, s, "conc", map[string]any{"ms": 1000})
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		inst := resultMap(t, warm)["instance"]
		var latestStart, earliestResponse int64
		for i, r := range recs {
			if got := resultMap(t, r)["instance"]; got != inst {
				t.Errorf("invoke %d ran on instance %v, want the warm one %v", i, got, inst)
			}
			var rt int64
			testenv.Annotation(r, "responseTime", &rt)
			if r.Start > latestStart {
				latestStart = r.Start
			}
			if resp := r.Start + rt; earliestResponse == 0 || resp < earliestResponse {
				earliestResponse = resp
			}
		}
		// All four were running at the same moment: each started before any of them responded.
		if latestStart >= earliestResponse {
			t.Errorf("activations did not overlap: last start %d, first response %d", latestStart, earliestResponse)
		}
	})

	t.Run("ApplicationError502", func(t *testing.T) {
		s.Deploy(t, "apperr", "nodejs:20", `function main() { return {error: "boom"}; }`, nil, nil)
		status, body, _ := s.Invoke(t, "apperr", nil, true)
		if status != http.StatusBadGateway {
			t.Fatalf("application error: status %d, want 502; %s", status, body)
		}
		a := decodeActivation(t, body)
		if a.Response.StatusCode != entity.StatusApplicationError || a.Response.Status != "application error" || errorText(t, a) != "boom" {
			t.Errorf("application error record: %+v", a.Response)
		}
		status, body, _ = s.InvokeQuery(t, s.Auth, "apperr", nil, "blocking=true&result=true")
		if status != http.StatusBadGateway || !strings.Contains(string(body), "boom") {
			t.Errorf("result=true application error: %d %s", status, body)
		}
	})

	t.Run("RuntimeCrash", func(t *testing.T) {
		s.Deploy(t, "crashy", "nodejs:20", `function main(p) { if (p.crash) process.exit(3); return {ok: true}; }`, nil, nil)
		status, body, id := s.Invoke(t, "crashy", map[string]any{"crash": true}, true)
		if status != http.StatusBadGateway {
			t.Fatalf("crash: status %d, want 502; %s", status, body)
		}
		a := s.WaitEnded(t, id, endGuard)
		if a.Response.StatusCode != entity.StatusDeveloperError {
			t.Errorf("crash: status code %d, want developer error; %+v", a.Response.StatusCode, a.Response)
		}
		if e := errorText(t, a); !strings.Contains(e, "exit") {
			t.Errorf("crash: error %q does not mention the exit", e)
		}
		if tm := testenv.TerminationOf(a); tm.Cause != "crash" {
			t.Errorf("crash: termination %+v, want cause crash", tm)
		}
		// The instance was replaced: the next invoke works.
		if r := invokeOK(t, s, "crashy", nil); resultMap(t, r)["ok"] != true {
			t.Errorf("after the crash: %s", r.Response.Result)
		}
	})

	t.Run("InfiniteLoopEndsAtTimeout", func(t *testing.T) {
		s.Deploy(t, "spin", "nodejs:20", `function main(p) { if (p.spin) for (;;) {} return {ok: true}; }`, nil, map[string]int{"timeout": 3000})
		invokeOK(t, s, "spin", nil) // warm: the loop then runs in the activation, not in a cold start
		status, body, id := s.Invoke(t, "spin", map[string]any{"spin": true}, true)
		if status != http.StatusBadGateway {
			t.Fatalf("infinite loop: status %d, want 502; %s", status, body)
		}
		a := s.WaitEnded(t, id, endGuard)
		if a.Response.StatusCode != entity.StatusDeveloperError {
			t.Errorf("infinite loop: %+v, want developer error", a.Response)
		}
		if tm := testenv.TerminationOf(a); tm.Cause != "deadline" {
			t.Errorf("infinite loop: termination %+v, want cause deadline", tm)
		}
		if e := errorText(t, a); !strings.Contains(e, "time") {
			t.Errorf("infinite loop: error %q does not mention the time limit", e)
		}
		if a.End-a.Start < 3000 {
			t.Errorf("infinite loop ended %d ms after its start, before its 3000 ms timeout", a.End-a.Start)
		}
		invokeOK(t, s, "spin", nil) // the instance was replaced
	})

	t.Run("ResponseBeforeEnd", func(t *testing.T) {
		// Responds at once; a timer keeps the activation open for 1 s more.
		s.Deploy(t, "later", "nodejs:20", `function main() {
  setTimeout(() => console.log("background done"), 1000);
  return {now: true};
}`, nil, nil)
		rec := invokeOK(t, s, "later", nil)
		if got, ok := s.Activation(t, rec.ActivationID); ok && got.End == 0 {
			// The background phase: the record already carries the response.
			if !got.Response.Success || !strings.Contains(string(got.Response.Result), `"now":true`) {
				t.Errorf("record in the background phase: response %+v, want the result", got.Response)
			}
		}
		a := s.WaitEnded(t, rec.ActivationID, endGuard)
		var rt int64
		testenv.Annotation(a, "responseTime", &rt)
		if a.End-a.Start < 1000 || rt >= a.End-a.Start {
			t.Errorf("end %d ms and response %d ms after the start: the end must wait for the 1 s timer, the response must not", a.End-a.Start, rt)
		}
		if tm := testenv.TerminationOf(a); tm.Cause != "settled" {
			t.Errorf("termination %+v, want settled", tm)
		}
		if !strings.Contains(strings.Join(a.Logs, "\n"), "background done") {
			t.Errorf("the background log line is missing from the record: %q", a.Logs)
		}
	})

	t.Run("ResultOver1MB", func(t *testing.T) {
		s.Deploy(t, "bigresult", "nodejs:20", `function main() { return {big: "x".repeat(1100000)}; }`, nil, nil)
		_, _, id := s.Invoke(t, "bigresult", nil, true)
		a := s.WaitEnded(t, id, endGuard)
		e := strings.ToLower(errorText(t, a))
		if a.Response.StatusCode != entity.StatusDeveloperError || !(strings.Contains(e, "exceed") || strings.Contains(e, "too large")) {
			t.Errorf("result over 1 MB: status %d error %q, want a developer error saying the result is too large", a.Response.StatusCode, e)
		}
	})

	t.Run("LogsOver10MBTruncated", func(t *testing.T) {
		s.Deploy(t, "chatty", "nodejs:20", chattyJS, nil, nil)
		_, _, id := s.Invoke(t, "chatty", map[string]any{"lines": 12000}, false)
		a := s.WaitEnded(t, id, endGuard)
		if len(a.Logs) == 0 {
			t.Fatal("no logs")
		}
		total := 0
		for _, l := range a.Logs {
			total += len(l)
		}
		last := a.Logs[len(a.Logs)-1]
		if !strings.Contains(strings.ToLower(last), "truncated") {
			t.Errorf("last log line %q does not say the logs were truncated", last)
		}
		if total > 11<<20 || len(a.Logs) >= 12000 {
			t.Errorf("logs not truncated: %d lines, %d bytes", len(a.Logs), total)
		}
	})

	t.Run("BlockingInvokeWithLargeLogs", func(t *testing.T) {
		// A record with megabytes of logs must not keep the blocking caller waiting: the
		// activation takes about a second, so 20 s is only a hang guard (the API's own
		// fallback would answer 202 after 60 s).
		s.Deploy(t, "chatty", "nodejs:20", chattyJS, nil, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		inv, err := s.Client.Invoke(ctx, "chatty", map[string]any{"lines": 3000}, true, false)
		if err != nil {
			t.Fatalf("blocking invoke logging 3 MB: %v", err)
		}
		if inv.Status != http.StatusOK {
			t.Fatalf("blocking invoke logging 3 MB: status %d, want 200", inv.Status)
		}
	})

	t.Run("ForkBombStopsAtPidsLimit", func(t *testing.T) {
		requireIsolation(t, s, "pids")
		s.Deploy(t, "forkbomb", "nodejs:20", `const cp = require("child_process");
function main() {
  cp.spawn("sh", ["-c", "b() { b | b & }; b"], {stdio: "ignore"});
  return {started: true};
}`, nil, map[string]int{"timeout": 3000})
		_, _, id := s.Invoke(t, "forkbomb", nil, false)
		peak := 0
		done := time.Now().Add(endGuard)
		for {
			if n := len(descendants(s.Pid())); n > peak {
				peak = n
			}
			if a, ok := s.Activation(t, id); ok && a.End != 0 {
				break
			}
			if time.Now().After(done) {
				t.Fatalf("fork bomb activation did not end within %v", endGuard)
			}
			time.Sleep(pollPeriod)
		}
		// Without a pids limit a shell fork bomb reaches thousands of processes in a second; with
		// it, the instance stays at the limit (other instances and stem cells add a few).
		if peak > invoker.PidsMax+64 {
			t.Errorf("coda serve had %d descendant processes during the fork bomb", peak)
		}
		t.Logf("peak descendants of coda serve during the fork bomb: %d", peak)
		invokeOK(t, s, "echo", map[string]any{"after": "forkbomb"})
	})

	t.Run("MemoryOverLimit", func(t *testing.T) {
		requireIsolation(t, s, "memory")
		s.Deploy(t, "hog", "nodejs:20", `function main() {
  const keep = [];
  for (;;) keep.push(Buffer.alloc(16 << 20, 1));
}`, nil, map[string]int{"memory": 128, "timeout": 30000})
		_, _, id := s.Invoke(t, "hog", nil, true)
		a := s.WaitEnded(t, id, endGuard)
		if a.Response.StatusCode != entity.StatusDeveloperError || !strings.Contains(errorText(t, a), "memory limit exceeded") {
			t.Errorf("memory hog: %+v, want developer error \"memory limit exceeded\"", a.Response)
		}
		invokeOK(t, s, "echo", map[string]any{"after": "hog"})
	})
}

// chattyJS logs p.lines lines of 1000 bytes.
const chattyJS = `function main(p) {
  const line = "y".repeat(1000);
  for (let i = 0; i < p.lines; i++) console.log(line);
  return {ok: true};
}`

// TestBlockingInvokeFallsBackTo202 checks OpenWhisk's rule that a blocking invoke outlasting
// 60 s answers 202 with the activation id; it takes a minute, so it runs beside TestCore.
func TestBlockingInvokeFallsBackTo202(t *testing.T) {
	if testing.Short() {
		t.Skip("takes over 60 s")
	}
	t.Parallel()
	s := testenv.Start(t)
	s.Deploy(t, "long", "nodejs:20", instanceJS, nil, map[string]int{"timeout": 120000})
	status, body, id := s.Invoke(t, "long", map[string]any{"ms": 65000}, true)
	if status != http.StatusAccepted || id == "" {
		t.Fatalf("blocking invoke of 65 s: %d %s, want 202 with the id", status, body)
	}
	if a := s.WaitEnded(t, id, 2*time.Minute); !a.Response.Success {
		t.Errorf("long activation: %+v", a.Response)
	}
}
