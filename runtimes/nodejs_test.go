package runtimes

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/protocol"
)

// nodeHangGuard only keeps a broken runtime from hanging the suite.
const nodeHangGuard = 20 * time.Second

// nodeIdleBound is how long an activation whose only leftovers are an interval, an idle
// keep-alive socket and a server may take to end: far below the interval-forever failure mode,
// far above any scheduling noise.
const nodeIdleBound = 5 * time.Second

func startNode(t *testing.T) *proc {
	t.Helper()
	return startRuntime(t, "/usr/bin/node", filepath.Join(runtimeDir(t, "nodejs"), "runner.js"))
}

// nodeInit starts a runtime with the given source and fails the test unless it is ready.
func nodeInit(t *testing.T, code string) *proc {
	t.Helper()
	p := startNode(t)
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Kind: "nodejs:20", Main: "main", Code: code})
	m := p.next(protocol.TypeReady)
	if m.Error != "" || !m.End {
		t.Fatalf("ready = %+v; output:\n%s", m, p.rawOutput())
	}
	return p
}

func nodeRun(p *proc, id, mode, params string) {
	p.t.Helper()
	if params == "" {
		params = "{}"
	}
	p.send(protocol.Message{
		Type: protocol.TypeRun, ID: id, Params: json.RawMessage(params), Mode: mode,
		Deadline: time.Now().Add(time.Minute).UnixMilli(),
		Env:      map[string]string{"__OW_ACTIVATION_ID": id},
	})
}

// nodeCollect returns every message about id up to and including its end, failing after bound.
func nodeCollect(p *proc, id string, bound time.Duration) []protocol.Message {
	p.t.Helper()
	var got []protocol.Message
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				p.t.Fatalf("runtime exited; messages %v; output:\n%s", got, p.rawOutput())
			}
			if m.ID != id {
				continue
			}
			got = append(got, m)
			if m.Type == protocol.TypeEnd {
				return got
			}
		case <-timer.C:
			p.t.Fatalf("no end for %s within %v; messages %+v; output:\n%s", id, bound, got, p.rawOutput())
		}
	}
}

// nodeTypes lists the message types in order, for order assertions and failure messages.
func nodeTypes(msgs []protocol.Message) []string {
	var ts []string
	for _, m := range msgs {
		ts = append(ts, m.Type)
	}
	return ts
}

func nodeFind(msgs []protocol.Message, typ string) (protocol.Message, int) {
	for i, m := range msgs {
		if m.Type == typ {
			return m, i
		}
	}
	return protocol.Message{}, -1
}

func nodeResult(t *testing.T, msgs []protocol.Message) map[string]any {
	t.Helper()
	m, i := nodeFind(msgs, protocol.TypeResponse)
	if i < 0 {
		t.Fatalf("no response in %v", nodeTypes(msgs))
	}
	if m.Error != "" {
		t.Fatalf("response error %q", m.Error)
	}
	var r map[string]any
	if err := json.Unmarshal(m.Result, &r); err != nil {
		t.Fatalf("result %s: %v", m.Result, err)
	}
	return r
}

// nodePendingHas reports whether some pending snapshot (or the end) names want.
func nodePendingHas(msgs []protocol.Message, want string) bool {
	for _, m := range msgs {
		for _, p := range m.Pending {
			if strings.Contains(p, want) {
				return true
			}
		}
	}
	return false
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestNodeInitForms(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"exports.main":          `exports.main = (p) => ({greeting: "hello " + p.name})`,
		"module.exports object": `module.exports = {main: (p) => ({greeting: "hello " + p.name})}`,
		"module.exports fn":     `module.exports = function (p) { return {greeting: "hello " + p.name} }`,
		"plain function":        "// OpenWhisk style\nfunction main(p) {\n  return {greeting: 'hello ' + p.name}\n}",
		"async function":        `async function main(p) { await new Promise(r => setTimeout(r, 10)); return {greeting: 'hello ' + p.name} }`,
		"es module":             `export function main(p) { return {greeting: 'hello ' + p.name} }`,
		"require builtin":       `const os = require('os'); exports.main = (p) => ({greeting: 'hello ' + p.name, cpus: os.cpus().length > 0})`,
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := nodeInit(t, code)
			nodeRun(p, "a1", "decoupled", `{"name":"Ada"}`)
			r := nodeResult(t, nodeCollect(p, "a1", nodeHangGuard))
			if r["greeting"] != "hello Ada" {
				t.Fatalf("result = %v", r)
			}
		})
	}
}

func TestNodeInitMainName(t *testing.T) {
	t.Parallel()
	p := startNode(t)
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Main: "handler", Code: `function handler() { return {ok: 1} }`})
	if m := p.next(protocol.TypeReady); m.Error != "" {
		t.Fatalf("ready error %q", m.Error)
	}
	nodeRun(p, "a1", "decoupled", "")
	if r := nodeResult(t, nodeCollect(p, "a1", nodeHangGuard)); r["ok"] != float64(1) {
		t.Fatalf("result = %v", r)
	}
}

func TestNodeInitErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, code, want string }{
		{"syntax", "exports.main = () => {\n  return {a: 1,,}\n}", "SyntaxError"},
		{"missing main", "exports.other = () => ({})", `no function "main"`},
		{"throws", "throw new Error('cannot start')", "Error: cannot start"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := startNode(t)
			p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-9", Main: "main", Code: c.code})
			m := p.next(protocol.TypeReady)
			if m.ID != "i-9" || !strings.Contains(m.Error, c.want) {
				t.Fatalf("ready = %+v, want error containing %q", m, c.want)
			}
		})
	}
	t.Run("syntax error names the line", func(t *testing.T) {
		t.Parallel()
		p := startNode(t)
		p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-2", Code: "const a = 1\nconst b = 2\nconst c = ;\nfunction main() {}"})
		if m := p.next(protocol.TypeReady); !strings.Contains(m.Error, "line 3") {
			t.Fatalf("ready error %q does not name line 3", m.Error)
		}
	})
}

func nodeZip(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestNodeZip(t *testing.T) {
	t.Parallel()
	code := nodeZip(t, map[string]string{
		"package.json":                      `{"name":"act","main":"lib/entry.js"}`,
		"lib/entry.js":                      `const greet = require('greet'); exports.main = (p) => ({greeting: greet(p.name)})`,
		"node_modules/greet/package.json":   `{"name":"greet","main":"greet.js"}`,
		"node_modules/greet/greet.js":       `module.exports = (n) => 'hello ' + n + require('./suffix')`,
		"node_modules/greet/suffix.js":      `module.exports = '!'`,
		"node_modules/unused/whatever.json": `{}`,
	})
	p := startNode(t)
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Main: "main", Binary: true, Code: code})
	if m := p.next(protocol.TypeReady); m.Error != "" {
		t.Fatalf("ready error %q", m.Error)
	}
	nodeRun(p, "z1", "decoupled", `{"name":"Zip"}`)
	if r := nodeResult(t, nodeCollect(p, "z1", nodeHangGuard)); r["greeting"] != "hello Zip!" {
		t.Fatalf("result = %v", r)
	}

	t.Run("index.js without package.json", func(t *testing.T) {
		t.Parallel()
		p := startNode(t)
		p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Binary: true, Code: nodeZip(t, map[string]string{"index.js": `exports.main = () => ({idx: true})`})})
		if m := p.next(protocol.TypeReady); m.Error != "" {
			t.Fatalf("ready error %q", m.Error)
		}
		nodeRun(p, "z2", "decoupled", "")
		if r := nodeResult(t, nodeCollect(p, "z2", nodeHangGuard)); r["idx"] != true {
			t.Fatalf("result = %v", r)
		}
	})
	t.Run("not a zip", func(t *testing.T) {
		t.Parallel()
		p := startNode(t)
		p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Binary: true, Code: base64.StdEncoding.EncodeToString([]byte("hello"))})
		if m := p.next(protocol.TypeReady); !strings.Contains(m.Error, "zip") {
			t.Fatalf("ready error %q", m.Error)
		}
	})
}

func TestNodeResults(t *testing.T) {
	t.Parallel()
	p := nodeInit(t, `
exports.main = async (p) => {
  switch (p.kind) {
  case 'app': return {error: 'bad input'}
  case 'throw': throw new Error('boom')
  case 'reject': await null; throw new TypeError('x is not a function')
  case 'number': return 42
  case 'undefined': return
  case 'circular': { const o = {}; o.o = o; return o }
  default: return {echo: p}
  }
}`)
	run := func(id, kind string) protocol.Message {
		nodeRun(p, id, "decoupled", fmt.Sprintf(`{"kind":%q,"n":1}`, kind))
		m, i := nodeFind(nodeCollect(p, id, nodeHangGuard), protocol.TypeResponse)
		if i < 0 {
			t.Fatalf("%s: no response", kind)
		}
		return m
	}
	if m := run("r1", "echo"); string(m.Result) != `{"echo":{"kind":"echo","n":1}}` {
		t.Errorf("echo result %s", m.Result)
	}
	if m := run("r2", "app"); string(m.Result) != `{"error":"bad input"}` || m.Error != "" {
		t.Errorf("application error = %+v", m)
	}
	if m := run("r3", "throw"); m.Error != "Error: boom" {
		t.Errorf("thrown error = %q", m.Error)
	}
	if m := run("r4", "reject"); m.Error != "TypeError: x is not a function" {
		t.Errorf("rejected error = %q", m.Error)
	}
	if m := run("r5", "number"); !strings.HasPrefix(m.Error, "TypeError: ") || len(m.Result) != 0 {
		t.Errorf("non-object result = %+v", m)
	}
	if m := run("r6", "undefined"); string(m.Result) != `{}` {
		t.Errorf("undefined result = %+v", m)
	}
	if m := run("r7", "circular"); !strings.Contains(m.Error, "JSON") {
		t.Errorf("circular result = %+v", m)
	}
}

// A background timer that writes a file after the response: the classic lost write.
const nodeBackgroundWrite = `
const fs = require('fs')
exports.main = (p) => {
  setTimeout(() => {
    fs.writeFile(p.file, 'done', (err) => { if (err) throw err; console.log('written') })
  }, 300)
  return {started: true}
}`

func TestNodeDecoupled(t *testing.T) {
	t.Parallel()
	p := nodeInit(t, nodeBackgroundWrite)
	file := filepath.Join(t.TempDir(), "out")
	nodeRun(p, "d1", "decoupled", fmt.Sprintf(`{"file":%s}`, jsString(file)))
	msgs := nodeCollect(p, "d1", nodeHangGuard)
	_, ri := nodeFind(msgs, protocol.TypeResponse)
	end, ei := nodeFind(msgs, protocol.TypeEnd)
	_, pi := nodeFind(msgs, protocol.TypePending)
	if ri != 0 || ei != len(msgs)-1 || pi < ri {
		t.Fatalf("message order %v", nodeTypes(msgs))
	}
	if end.Cause != protocol.CauseSettled {
		t.Fatalf("end cause %q", end.Cause)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "done" {
		t.Fatalf("at end the background write has not completed: %q, %v", b, err)
	}
	if !nodePendingHas(msgs, "setTimeout 300 ms") {
		t.Fatalf("no pending snapshot naming the timer: %+v", msgs)
	}
	if l, i := nodeFind(msgs, protocol.TypeLog); i < ri || l.Line != "written" || l.Stream != "stdout" {
		t.Fatalf("log after response = %+v (index %d) in %v", l, i, nodeTypes(msgs))
	}
	if strings.Contains(p.rawOutput(), "written") {
		t.Fatalf("the activation's log went to raw stdout: %q", p.rawOutput())
	}
}

func TestNodeAwait(t *testing.T) {
	t.Parallel()
	p := nodeInit(t, nodeBackgroundWrite)
	file := filepath.Join(t.TempDir(), "out")
	nodeRun(p, "w1", "await", fmt.Sprintf(`{"file":%s}`, jsString(file)))
	var sawResponse bool
	for !sawResponse {
		m := p.next(protocol.TypeResponse, protocol.TypeEnd)
		if m.Type == protocol.TypeEnd {
			t.Fatal("end before response")
		}
		sawResponse = true
		if b, err := os.ReadFile(file); err != nil || string(b) != "done" {
			t.Fatalf("await response sent before the background write completed: %q, %v", b, err)
		}
	}
	if m := p.next(protocol.TypeEnd); m.Cause != protocol.CauseSettled {
		t.Fatalf("end = %+v", m)
	}
}

func TestNodeCoupled(t *testing.T) {
	t.Parallel()
	p := nodeInit(t, `exports.main = () => { setTimeout(() => console.log('late'), 2000); return {ok: true} }`)
	nodeRun(p, "c1", "coupled", "")
	msgs := nodeCollect(p, "c1", nodeHangGuard)
	if got := nodeTypes(msgs); len(got) != 2 || got[0] != protocol.TypeResponse || got[1] != protocol.TypeEnd {
		t.Fatalf("coupled messages %v, want [response end]", got)
	}
	if msgs[1].Cause != protocol.CauseCoupled {
		t.Fatalf("coupled end cause %q, want %q", msgs[1].Cause, protocol.CauseCoupled)
	}
}

func TestNodeTrackingOff(t *testing.T) {
	t.Setenv("CODA_NODE_TRACKING", "off")
	p := nodeInit(t, `exports.main = () => { setTimeout(() => {}, 2000); return {ok: true} }`)
	nodeRun(p, "o1", "decoupled", "")
	msgs := nodeCollect(p, "o1", nodeHangGuard)
	if got := nodeTypes(msgs); len(got) != 2 || got[0] != protocol.TypeResponse || got[1] != protocol.TypeEnd {
		t.Fatalf("untracked messages %v, want [response end]", got)
	}
}

func TestNodeWaitUntil(t *testing.T) {
	t.Parallel()
	// The interval is not tracked (an interval never ends by itself), so only waitUntil keeps
	// the activation open until the promise it resolves settles.
	p := nodeInit(t, `
const fs = require('fs')
exports.main = (p, ctx) => {
  if (typeof ctx.remainingTime() !== 'number' || ctx.activationId !== p.id) throw new Error('bad ctx')
  ctx.waitUntil(new Promise((resolve) => {
    let n = 0
    const iv = setInterval(() => { if (++n === 4) { clearInterval(iv); fs.writeFileSync(p.file, 'done'); resolve() } }, 50)
  }))
  return {}
}`)
	file := filepath.Join(t.TempDir(), "out")
	nodeRun(p, "u1", "decoupled", fmt.Sprintf(`{"file":%s,"id":"u1"}`, jsString(file)))
	msgs := nodeCollect(p, "u1", nodeHangGuard)
	if m, _ := nodeFind(msgs, protocol.TypeResponse); m.Error != "" {
		t.Fatalf("response error %q", m.Error)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("ended before the waitUntil promise settled: %v", err)
	}
	if !nodePendingHas(msgs, "waitUntil") {
		t.Fatalf("no pending snapshot naming waitUntil: %+v", msgs)
	}
}

func TestNodeFetch(t *testing.T) {
	t.Parallel()
	var finished atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		time.Sleep(300 * time.Millisecond)
		finished.Store(true)
		_, _ = io.WriteString(w, `{"stored":true}`)
	}))
	defer srv.Close()
	p := nodeInit(t, `
const http = require('http')
exports.main = (p) => {
  if (p.via === 'fetch') {
    fetch(p.url + '/x', {method: 'POST', body: 'hello'}).then(r => r.json()).then(j => console.log('stored', j.stored))
  } else {
    const req = http.request(p.url + '/y', {method: 'POST'}, (res) => { res.resume(); res.on('end', () => console.log('stored', res.statusCode)) })
    req.end('hello')
  }
  return {sent: true}
}`)
	for i, via := range []string{"fetch", "http"} {
		finished.Store(false)
		id := fmt.Sprintf("f%d", i)
		nodeRun(p, id, "decoupled", fmt.Sprintf(`{"url":%s,"via":%q}`, jsString(srv.URL), via))
		msgs := nodeCollect(p, id, nodeHangGuard)
		if !finished.Load() {
			t.Fatalf("%s: end before the server finished the request: %v", via, nodeTypes(msgs))
		}
		if _, i := nodeFind(msgs, protocol.TypeLog); i < 0 {
			t.Fatalf("%s: the response callback's log is missing: %+v", via, msgs)
		}
		want := map[string]string{"fetch": "fetch POST " + srv.URL + "/x", "http": "http POST " + srv.URL + "/y"}[via]
		if !nodePendingHas(msgs, want) {
			t.Fatalf("%s: no pending snapshot naming %q: %+v", via, want, msgs)
		}
	}
}

func TestNodeChildProcess(t *testing.T) {
	t.Parallel()
	p := nodeInit(t, `
const cp = require('child_process')
exports.main = (p) => { cp.exec('sleep 0.3; echo done > ' + p.file); return {} }`)
	file := filepath.Join(t.TempDir(), "out")
	nodeRun(p, "p1", "decoupled", fmt.Sprintf(`{"file":%s}`, jsString(file)))
	msgs := nodeCollect(p, "p1", nodeHangGuard)
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("ended before the child process exited: %v", err)
	}
	if !nodePendingHas(msgs, "child process sleep 0.3") {
		t.Fatalf("no pending snapshot naming the child: %+v", msgs)
	}
}

func TestNodeChildrenDoNotInheritProtocolPipes(t *testing.T) {
	t.Parallel()
	p := nodeInit(t, `
const cp = require('child_process')
exports.main = () => ({fds: cp.execSync('for f in 3 4; do [ -e /proc/$$/fd/$f ] && readlink /proc/$$/fd/$f; done; true').toString()})`)
	nodeRun(p, "x1", "decoupled", "")
	r := nodeResult(t, nodeCollect(p, "x1", nodeHangGuard))
	if fds, _ := r["fds"].(string); strings.Contains(fds, "pipe:") {
		t.Fatalf("a child process inherited a protocol pipe: %q", fds)
	}
}

func TestNodeIdleResourcesDoNotHold(t *testing.T) {
	t.Parallel()
	// A server, an interval and keep-alive sockets are open resources, not pending operations.
	p := nodeInit(t, `
const http = require('http')
const agent = new http.Agent({keepAlive: true})
const srv = http.createServer((q, r) => r.end('pong')).listen(0, '127.0.0.1')
setInterval(() => {}, 1000)
exports.main = async () => {
  setInterval(() => {}, 1000)
  const body = await new Promise((resolve, reject) => {
    http.get({host: '127.0.0.1', port: srv.address().port, path: '/', agent}, (res) => {
      let b = ''
      res.on('data', (c) => b += c).on('end', () => resolve(b))
    }).on('error', reject)
  })
  return {body}
}`)
	start := time.Now()
	nodeRun(p, "i1", "decoupled", "")
	msgs := nodeCollect(p, "i1", nodeIdleBound)
	if r := nodeResult(t, msgs); r["body"] != "pong" {
		t.Fatalf("result = %v", r)
	}
	t.Logf("ended after %v", time.Since(start))
}

func TestNodeCutoff(t *testing.T) {
	t.Parallel()
	p := nodeInit(t, `exports.main = () => { setTimeout(() => {}, 5000); return {} }`)
	nodeRun(p, "k1", "decoupled", "")
	p.next(protocol.TypeResponse)
	if m := p.next(protocol.TypePending); !nodePendingHas([]protocol.Message{m}, "setTimeout 5000 ms") {
		t.Fatalf("pending = %+v", m)
	}
	p.send(protocol.Message{Type: protocol.TypeCutoff, ID: "k1"})
	m := p.next(protocol.TypeEnd)
	if m.ID != "k1" || m.Cause != protocol.CauseDeadline || !nodePendingHas([]protocol.Message{m}, "setTimeout 5000 ms") {
		t.Fatalf("end = %+v", m)
	}
}

func TestNodeConcurrentAttribution(t *testing.T) {
	t.Parallel()
	p := nodeInit(t, `
exports.main = (p) => {
  console.log(p.who + ' start')
  setTimeout(() => { console.log(p.who + ' later'); process.stderr.write(p.who + ' err\n') }, p.ms)
  return {who: p.who}
}`)
	nodeRun(p, "A", "decoupled", `{"who":"A","ms":300}`)
	nodeRun(p, "B", "decoupled", `{"who":"B","ms":100}`)
	logs := map[string][]string{}
	ended := map[string]bool{}
	timeout := time.After(nodeHangGuard)
	for len(ended) < 2 {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				t.Fatalf("runtime exited:\n%s", p.rawOutput())
			}
			switch m.Type {
			case protocol.TypeLog:
				if ended[m.ID] {
					t.Errorf("log after end for %s: %q", m.ID, m.Line)
				}
				logs[m.ID] = append(logs[m.ID], m.Stream+":"+m.Line)
			case protocol.TypeEnd:
				ended[m.ID] = true
			}
		case <-timeout:
			t.Fatalf("no ends: %v", ended)
		}
	}
	for _, who := range []string{"A", "B"} {
		want := []string{"stdout:" + who + " start", "stdout:" + who + " later", "stderr:" + who + " err"}
		if fmt.Sprint(logs[who]) != fmt.Sprint(want) {
			t.Errorf("logs of %s = %q, want %q", who, logs[who], want)
		}
	}
}

func TestNodeUncaught(t *testing.T) {
	t.Parallel()
	p := nodeInit(t, `
exports.main = (p) => {
  if (p.kind === 'late') { setTimeout(() => { throw new Error('late boom') }, 50); return {ok: true} }
  if (p.kind === 'early') { return new Promise(() => { setTimeout(() => { throw new Error('early boom') }, 10) }) }
  if (p.kind === 'rejection') { Promise.reject(new Error('nobody catches')); return new Promise(() => {}) }
  return {alive: true}
}`)
	nodeRun(p, "e1", "decoupled", `{"kind":"late"}`)
	msgs := nodeCollect(p, "e1", nodeHangGuard)
	if l, i := nodeFind(msgs, protocol.TypeLog); i < 0 || l.Stream != "stderr" || !strings.Contains(l.Line, "late boom") {
		t.Fatalf("uncaught exception not logged to its activation: %+v", msgs)
	}
	nodeRun(p, "e2", "decoupled", `{"kind":"early"}`)
	if m, _ := nodeFind(nodeCollect(p, "e2", nodeHangGuard), protocol.TypeResponse); m.Error != "Error: early boom" {
		t.Fatalf("early uncaught exception response = %+v", m)
	}
	nodeRun(p, "e3", "decoupled", `{"kind":"rejection"}`)
	if m, _ := nodeFind(nodeCollect(p, "e3", nodeHangGuard), protocol.TypeResponse); m.Error != "Error: nobody catches" {
		t.Fatalf("unhandled rejection response = %+v", m)
	}
	nodeRun(p, "e4", "decoupled", "")
	if r := nodeResult(t, nodeCollect(p, "e4", nodeHangGuard)); r["alive"] != true {
		t.Fatalf("runtime did not survive: %v", r)
	}
}

// TestNodeTrackerOverhead measures warm run round trips (run → response) of a handler with 20
// awaits and a file read, with the tracker on and off; the difference is the tracker's cost. It
// only reports (timings on shared machines are no assertion) and runs when CODA_NODE_BENCH is set.
func TestNodeTrackerOverhead(t *testing.T) {
	if os.Getenv("CODA_NODE_BENCH") == "" {
		t.Skip("set CODA_NODE_BENCH=1 to measure")
	}
	const code = `
const fs = require('fs')
exports.main = async (p) => {
  let n = 0
  for (let i = 0; i < 20; i++) n += await Promise.resolve(i)
  const self = await fs.promises.readFile(__filename)
  return {n, size: self.length}
}`
	const runs = 3000
	measure := func(tracking string) time.Duration {
		t.Setenv("CODA_NODE_TRACKING", tracking)
		p := nodeInit(t, code)
		var best time.Duration
		for round := 0; round < 3; round++ {
			start := time.Now()
			for i := 0; i < runs; i++ {
				nodeRun(p, fmt.Sprintf("b%d-%d", round, i), "decoupled", "")
				if m := p.next(protocol.TypeResponse); m.Error != "" {
					t.Fatal(m.Error)
				}
			}
			if d := time.Since(start) / runs; best == 0 || d < best {
				best = d
			}
		}
		return best
	}
	off := measure("off")
	on := measure("on")
	t.Logf("per run: tracking off %v, on %v (%+.1f%%)", off, on, 100*(float64(on)/float64(off)-1))
}

// TestNodeTrackedOperations checks, per kind of background operation, that the activation ends
// only after the operation's completion callback wrote its marker file, and that the pending
// snapshot names the operation.
func TestNodeTrackedOperations(t *testing.T) {
	t.Parallel()
	// A line protocol server that answers after a delay, like a slow Redis.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					time.Sleep(300 * time.Millisecond)
					if _, err := io.WriteString(c, "+PONG\r\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	cases := []struct{ name, body, label string }{
		{"socket reply", `const s = net.connect(p.port, '127.0.0.1', () => s.write('PING\r\n')); s.on('data', () => mark())`, "socket"},
		{"fs.promises", `fs.promises.writeFile(p.file + '.tmp', 'x'.repeat(1 << 20)).then(() => fs.promises.rename(p.file + '.tmp', p.file))`, "fs.promises.writeFile"},
		{"fs callback", `fs.readFile(__filename, () => setTimeout(mark, 200))`, "setTimeout 200 ms"},
		{"immediate then timer", `setImmediate(() => setTimeout(mark, 250))`, "setTimeout 250 ms"},
		{"pbkdf2", `crypto.pbkdf2('pw', 'salt', 300000, 64, 'sha512', () => mark())`, "crypto pbkdf2"},
		{"dns", `dns.lookup('localhost', () => setTimeout(mark, 200))`, "setTimeout 200 ms"},
		{"zlib", `zlib.gzip(crypto.randomBytes(1 << 22), () => setTimeout(mark, 200))`, "setTimeout 200 ms"},
		{"exec callback", `require('child_process').exec('sleep 0.2; echo hi', (err, out) => { if (out === 'hi\n') setTimeout(mark, 100) })`, "child process sleep 0.2; echo hi"},
		{"refreshed chain", `let n = 0; const tick = () => { if (++n < 5) setTimeout(tick, 60); else mark() }; setTimeout(tick, 60)`, "setTimeout 60 ms"},
	}
	p := nodeInit(t, `
const fs = require('fs'), net = require('net'), crypto = require('crypto'), dns = require('dns'), zlib = require('zlib')
exports.main = (p) => {
  const mark = () => fs.writeFileSync(p.file, 'done')
  eval(p.body)
  return {}
}`)
	for i, c := range cases {
		file := filepath.Join(t.TempDir(), "mark")
		id := fmt.Sprintf("t%d", i)
		params, _ := json.Marshal(map[string]any{"file": file, "port": ln.Addr().(*net.TCPAddr).Port, "body": c.body})
		nodeRun(p, id, "decoupled", string(params))
		msgs := nodeCollect(p, id, nodeHangGuard)
		if m, _ := nodeFind(msgs, protocol.TypeResponse); m.Error != "" {
			t.Fatalf("%s: response error %q", c.name, m.Error)
		}
		if _, err := os.Stat(file); err != nil {
			t.Errorf("%s: ended before the operation completed (%v): %+v", c.name, err, msgs)
		}
		if !nodePendingHas(msgs, c.label) {
			t.Errorf("%s: no pending snapshot naming %q: %+v", c.name, c.label, msgs)
		}
	}
}

// TestNodeNotHeld checks that work the user cancelled, unref'd or made periodic does not hold
// the activation open: each case leaves a 10 s timer or interval behind.
func TestNodeNotHeld(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"clearTimeout":   `const h = setTimeout(() => {}, 10000); setTimeout(() => clearTimeout(h), 20)`,
		"unref":          `setTimeout(() => {}, 10000).unref()`,
		"interval":       `setInterval(() => {}, 10000)`,
		"clearImmediate": `clearImmediate(setImmediate(() => {}))`,
		"fetch refused":  `fetch('http://127.0.0.1:1/').catch(() => {})`,
		"http refused":   `require('http').get('http://127.0.0.1:1/').on('error', () => {})`,
		"fetch aborted":  `const c = new AbortController(); fetch('http://10.255.255.1:9/', {signal: c.signal}).catch(() => {}); setTimeout(() => c.abort(), 50)`,
		"unread body": `require('http').createServer((q, r) => r.end('x'.repeat(1 << 20))).listen(0, '127.0.0.1', function () {
			const srv = this; require('http').get('http://127.0.0.1:' + srv.address().port + '/', (res) => { srv.close() })
		})`,
	}
	p := nodeInit(t, `exports.main = (p) => { eval(p.body); return {} }`)
	for name, body := range cases {
		params, _ := json.Marshal(map[string]any{"body": body})
		nodeRun(p, name, "decoupled", string(params))
		msgs := nodeCollect(p, name, nodeIdleBound)
		if m, _ := nodeFind(msgs, protocol.TypeEnd); m.Cause != protocol.CauseSettled {
			t.Errorf("%s: end = %+v", name, m)
		}
	}
}

func TestNodeEnv(t *testing.T) {
	t.Parallel()
	p := startNode(t)
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Code: `exports.main = () => ({g: process.env.GREETING, id: process.env.__OW_ACTIVATION_ID})`,
		Env: map[string]string{"GREETING": "hi"}})
	if m := p.next(protocol.TypeReady); m.Error != "" {
		t.Fatalf("ready error %q", m.Error)
	}
	nodeRun(p, "env1", "decoupled", "")
	if r := nodeResult(t, nodeCollect(p, "env1", nodeHangGuard)); r["g"] != "hi" || r["id"] != "env1" {
		t.Fatalf("result = %v", r)
	}
}

func TestNodeZipESM(t *testing.T) {
	t.Parallel()
	p := startNode(t)
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Binary: true, Code: nodeZip(t, map[string]string{
		"package.json": `{"type":"module","main":"main.js"}`,
		"main.js":      `import {x} from './lib.js'; export function main() { return {x} }`,
		"lib.js":       `export const x = 7`,
	})})
	if m := p.next(protocol.TypeReady); m.Error != "" {
		t.Fatalf("ready error %q", m.Error)
	}
	nodeRun(p, "m1", "decoupled", "")
	if r := nodeResult(t, nodeCollect(p, "m1", nodeHangGuard)); r["x"] != float64(7) {
		t.Fatalf("result = %v", r)
	}
}
