package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/testenv"
)

// One action per kind answers every conformance case, chosen by params.mode, so that the Go
// kind compiles once.
const (
	conformJS = `function main(p) {
  switch (p.mode) {
  case 'apperror': return {error: 'bad input'};
  case 'crash': process.exit(3);
  case 'loop': for (;;) {}
  case 'log': console.log('conformance log line'); return {logged: true};
  }
  return {got: p.x};
}`
	conformPy = `import os, sys
def main(p):
    mode = p.get('mode')
    if mode == 'apperror':
        return {'error': 'bad input'}
    if mode == 'crash':
        os._exit(3)
    if mode == 'loop':
        while True:
            pass
    if mode == 'log':
        print('conformance log line')
        return {'logged': True}
    return {'got': p.get('x')}
`
	conformGo = `package main

import (
	"fmt"
	"os"
)

func Main(p map[string]interface{}) map[string]interface{} {
	switch p["mode"] {
	case "apperror":
		return map[string]interface{}{"error": "bad input"}
	case "crash":
		os.Exit(3)
	case "loop":
		for {
		}
	case "log":
		fmt.Println("conformance log line")
		return map[string]interface{}{"logged": true}
	}
	return map[string]interface{}{"got": p["x"]}
}
`
)

type kindCase struct {
	kind     string
	deploy   func(t *testing.T, s *testenv.Server, name string, limits map[string]int)
	badInit  func(t *testing.T, s *testenv.Server) // deploys something that cannot load
	noCrash  bool                                  // the kind's example cannot crash on demand
	noModes  bool                                  // a fixed program: only params and logs apply
	logsLine string
}

func TestConformance(t *testing.T) {
	s := testenv.Start(t, "--keep-alive", "1m")
	source := func(kind, code string) func(*testing.T, *testenv.Server, string, map[string]int) {
		return func(t *testing.T, s *testenv.Server, name string, limits map[string]int) {
			s.Deploy(t, name, kind, code, nil, limits)
		}
	}
	cases := []kindCase{
		{kind: "nodejs:20", deploy: source("nodejs:20", conformJS), logsLine: "conformance log line",
			badInit: func(t *testing.T, s *testenv.Server) {
				s.Deploy(t, "badinit-node", "nodejs:20", "function main( {", nil, nil)
			}},
		{kind: "python:3.11", deploy: source("python:3", conformPy), logsLine: "conformance log line",
			badInit: func(t *testing.T, s *testenv.Server) {
				s.Deploy(t, "badinit-py", "python:3", "def main(p:\n", nil, nil)
			}},
		{kind: "go:1.26", deploy: source("go:1.26", conformGo), logsLine: "conformance log line",
			badInit: func(t *testing.T, s *testenv.Server) {
				// Go's init error is a compile error, reported when the action is created.
				status, body, _ := s.Do(t, http.MethodPut, "/namespaces/_/actions/badinit-go",
					testenv.ActionBody("go:1.26", "package main\nfunc Main(p map[string]interface{}) map[string]interface{} { return nope }\n", false, nil, nil))
				if status != http.StatusBadRequest || !strings.Contains(string(body), "undefined: nope") {
					t.Fatalf("compile error: %d %s", status, body)
				}
			}},
		{kind: "blackbox", noCrash: true, noModes: true, logsLine: "running ",
			deploy: func(t *testing.T, s *testenv.Server, name string, limits map[string]int) {
				script, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "examples", "blackbox", "sh", "exec"))
				if err != nil {
					t.Fatal(err)
				}
				s.DeployZip(t, name, "blackbox", map[string][]byte{"exec": script}, nil, limits)
			},
			badInit: func(t *testing.T, s *testenv.Server) {
				s.DeployZip(t, "badinit-bb", "blackbox", map[string][]byte{"exec": []byte("#!/bin/sh\necho cannot start >&2\nexit 1\n")}, nil, nil)
			}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.kind, ":", "-"), func(t *testing.T) {
			name := "conform-" + strings.NewReplacer(":", "", ".", "").Replace(c.kind)
			c.deploy(t, s, name, nil)

			t.Run("ParamsInResultOut", func(t *testing.T) {
				status, body, _ := s.Invoke(t, name, map[string]any{"x": 42}, true)
				if status != http.StatusOK {
					t.Fatalf("status %d: %s", status, body)
				}
				var rec entity.Activation
				if err := json.Unmarshal(body, &rec); err != nil {
					t.Fatal(err)
				}
				want := `"got":42`
				if c.noModes {
					want = `"greeting":"hello from sh"`
				}
				if !strings.Contains(string(rec.Response.Result), want) {
					t.Fatalf("result %s lacks %s", rec.Response.Result, want)
				}
			})
			t.Run("Logs", func(t *testing.T) {
				_, _, id := s.Invoke(t, name, map[string]any{"mode": "log"}, true)
				rec := s.WaitEnded(t, id, endGuard)
				if !strings.Contains(strings.Join(rec.Logs, "\n"), c.logsLine) {
					t.Fatalf("logs %q lack %q", rec.Logs, c.logsLine)
				}
			})
			t.Run("InitError", func(t *testing.T) {
				c.badInit(t, s)
				if c.kind == "go:1.26" {
					return
				}
				status, body, _ := s.Invoke(t, "badinit-"+map[string]string{"nodejs:20": "node", "python:3.11": "py", "blackbox": "bb"}[c.kind], nil, true)
				if status != http.StatusBadGateway || !strings.Contains(string(body), "developer error") {
					t.Fatalf("init error: %d %s", status, body)
				}
			})
			if c.noModes {
				return
			}
			t.Run("ApplicationError", func(t *testing.T) {
				status, body, _ := s.Invoke(t, name, map[string]any{"mode": "apperror"}, true)
				if status != http.StatusBadGateway || !strings.Contains(string(body), `"statusCode":1`) || !strings.Contains(string(body), "bad input") {
					t.Fatalf("application error: %d %s", status, body)
				}
			})
			if !c.noCrash {
				t.Run("Crash", func(t *testing.T) {
					_, _, id := s.Invoke(t, name, map[string]any{"mode": "crash"}, true)
					rec := s.WaitEnded(t, id, endGuard)
					if rec.Response.StatusCode != entity.StatusDeveloperError || testenv.TerminationOf(rec).Cause != "crash" {
						t.Fatalf("crash: %+v %+v", rec.Response, testenv.TerminationOf(rec))
					}
					status, body, _ := s.Invoke(t, name, map[string]any{"x": 1}, true)
					if status != http.StatusOK {
						t.Fatalf("after a crash: %d %s", status, body)
					}
				})
			}
			t.Run("Timeout", func(t *testing.T) {
				c.deploy(t, s, name+"-short", map[string]int{"timeout": 1000})
				_, _, id := s.Invoke(t, name+"-short", map[string]any{"mode": "loop"}, true)
				rec := s.WaitEnded(t, id, endGuard)
				if rec.Response.StatusCode != entity.StatusDeveloperError || !strings.Contains(string(rec.Response.Result), "time limit") ||
					testenv.TerminationOf(rec).Cause != "deadline" {
					t.Fatalf("timeout: %+v %s %+v", rec.Response, rec.Response.Result, testenv.TerminationOf(rec))
				}
			})
		})
	}
}

// A Go program speaking the protocol itself (examples/blackbox) is a tracked blackbox: its
// background work holds the activation open and its logs after the response are kept.
func TestTrackedBlackbox(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "exec")
	build := exec.Command("go", "build", "-o", exe, ".")
	build.Dir = filepath.Join(testenv.RepoRoot(), "examples", "blackbox")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build example: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	s := testenv.Start(t, "--keep-alive", "0")
	s.DeployZip(t, "gobb", "blackbox", map[string][]byte{"exec": bin}, nil, nil)
	status, body, id := s.Invoke(t, "gobb", map[string]any{"name": "Ada", "delay_ms": 300}, true)
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	rec := s.WaitEnded(t, id, endGuard)
	var rt int64
	testenv.Annotation(rec, "responseTime", &rt)
	if term := testenv.TerminationOf(rec); term.Cause != "settled" || rec.End-rec.Start < rt+250 {
		t.Fatalf("tracked blackbox ended %d ms after start (response at %d ms) with %+v; it reported 300 ms of background work",
			rec.End-rec.Start, rt, term)
	}
}
