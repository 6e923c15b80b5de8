// Package e2e drives the real coda binary with real Node.js runtime processes: deploy, invoke,
// the instance lifecycle (cold, warm, pause, keep-alive, eviction), faults (runtime crash,
// kill -9 of a runtime and of coda serve, SIGTERM) and every client error the API answers.
package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/client"
	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/testenv"
)

// Hang guards (not timing assertions): how long an activation may take to end on a loaded
// 2-core machine before the test gives up.
const (
	endGuard   = 60 * time.Second
	procGuard  = 30 * time.Second
	pollPeriod = 20 * time.Millisecond
)

// Node.js actions shared by the tests.
const (
	echoJS = `function main(params) { return {echo: params}; }`
	// instanceJS reports which instance ran it: the id is drawn once, when the code loads.
	instanceJS = `const inst = Math.random().toString(36).slice(2);
function main(params) {
  const ms = params.ms || 0;
  return new Promise(resolve => setTimeout(() => resolve({instance: inst, slept: ms}), ms));
}`
)

// invokeOK runs a blocking invoke that must succeed and returns the record it answered with.
func invokeOK(t *testing.T, s *testenv.Server, name string, params any) *entity.Activation {
	t.Helper()
	status, body, id := s.Invoke(t, name, params, true)
	if status != http.StatusOK {
		t.Fatalf("invoke %s: %d %s\nserver log tail:\n%s", name, status, body, tail(s))
	}
	a := decodeActivation(t, body)
	if a.ActivationID != id {
		t.Errorf("invoke %s: header id %q, body id %q", name, id, a.ActivationID)
	}
	if !a.Response.Success || a.Response.StatusCode != entity.StatusSuccess {
		t.Fatalf("invoke %s: response %+v", name, a.Response)
	}
	return a
}

func decodeActivation(t *testing.T, body []byte) *entity.Activation {
	t.Helper()
	var a entity.Activation
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("decode activation: %v\n%s", err, body)
	}
	return &a
}

// resultMap decodes a record's result object.
func resultMap(t *testing.T, a *entity.Activation) map[string]any {
	t.Helper()
	m := map[string]any{}
	if len(a.Response.Result) > 0 {
		if err := json.Unmarshal(a.Response.Result, &m); err != nil {
			t.Fatalf("result is not an object: %s", a.Response.Result)
		}
	}
	return m
}

// errorText returns result.error of a failed activation.
func errorText(t *testing.T, a *entity.Activation) string {
	t.Helper()
	e, _ := resultMap(t, a)["error"].(string)
	return e
}

func cold(a *entity.Activation) bool {
	_, ok := a.Annotations.Get("initTime")
	return ok
}

// apiError checks an error answer's status and OpenWhisk shape ({"error", "code"}) and
// returns its message.
func apiError(t *testing.T, what string, status int, body []byte, want int) string {
	t.Helper()
	if status != want {
		t.Errorf("%s: status %d, want %d; body %s", what, status, want, body)
		return ""
	}
	var e struct {
		Error string `json:"error"`
		Code  any    `json:"code"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Errorf("%s: error body is not {\"error\": ..., \"code\": ...}: %s", what, body)
	}
	return e.Error
}

func tail(s *testenv.Server) string {
	l := s.Logs()
	if len(l) > 3000 {
		l = "…" + l[len(l)-3000:]
	}
	return l
}

// children maps each process to its children, from /proc.
func children() map[int][]int {
	kids := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name may contain spaces and parentheses: fields start after the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		kids[ppid] = append(kids[ppid], pid)
	}
	return kids
}

// descendants lists every process below pid.
func descendants(pid int) []int {
	kids := children()
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range kids[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// runtimePids lists the Node.js runtime processes (runner.js) of a server.
func runtimePids(s *testenv.Server) []int {
	var out []int
	for _, p := range descendants(s.Pid()) {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "cmdline"))
		if err == nil && strings.Contains(string(b), "runner.js") {
			out = append(out, p)
		}
	}
	return out
}

// waitRuntimes waits until the server has exactly n runtime processes and returns them.
func waitRuntimes(t *testing.T, s *testenv.Server, n int) []int {
	t.Helper()
	deadline := time.Now().Add(procGuard)
	for {
		p := runtimePids(s)
		if len(p) == n {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d runtime processes, have %v\nserver log tail:\n%s", n, p, tail(s))
		}
		time.Sleep(pollPeriod)
	}
}

var cgroupLine = regexp.MustCompile(`cgroup v[12] \(([^)]*)\)`)

// requireIsolation skips the test unless the server's start-up log says its instances get
// the cgroup controller named (e.g. "pids", "memory").
func requireIsolation(t *testing.T, s *testenv.Server, controller string) {
	t.Helper()
	logs := startupLog(t, s)
	m := cgroupLine.FindStringSubmatch(logs)
	if m == nil {
		t.Skipf("isolation is not active on this host (no cgroup controllers in the server log): %s", isolationLine(logs))
	}
	for _, c := range strings.Split(m[1], ",") {
		if strings.TrimSpace(c) == controller {
			return
		}
	}
	t.Skipf("the %s cgroup controller is not in use here: %s", controller, m[0])
}

func isolationLine(logs string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "isolation") || strings.Contains(l, "cgroup") || strings.Contains(l, "sandbox") {
			return l
		}
	}
	return "(no isolation line)"
}

// clientFilter lists one action's activations.
func clientFilter(name string) client.ActivationFilter { return client.ActivationFilter{Name: name} }

// startupLog returns the server's log once it holds the start-up line (stderr is copied
// asynchronously, so it may trail the ready line on stdout).
func startupLog(t *testing.T, s *testenv.Server) string {
	t.Helper()
	deadline := time.Now().Add(procGuard)
	for !strings.Contains(s.Logs(), "coda serving") && time.Now().Before(deadline) {
		time.Sleep(pollPeriod)
	}
	return s.Logs()
}
