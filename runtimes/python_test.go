package runtimes

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/protocol"
)

const pythonBin = "/root/.pyenv/versions/3.11.7/bin/python3.11"

// pyDeadlineSlack is the deadline given to runs that are not about deadlines: far enough away
// that it never matters, even on a slow shared machine.
const pyDeadlineSlack = 60 * time.Second

func startPython(t *testing.T) *proc {
	t.Helper()
	if _, err := os.Stat(pythonBin); err != nil {
		t.Skipf("python 3.11 not available: %v", err)
	}
	return startRuntime(t, pythonBin, "-u", filepath.Join(runtimeDir(t, "python"), "runner.py"))
}

// pyInit sends an init with source code and returns the ready message.
func pyInit(p *proc, code string) protocol.Message {
	p.t.Helper()
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Name: "guest/t", Kind: "python:3.11", Main: "main", Code: code})
	return p.next(protocol.TypeReady)
}

func pyReady(t *testing.T, code string) *proc {
	t.Helper()
	p := startPython(t)
	if m := pyInit(p, code); m.Error != "" || !m.End {
		t.Fatalf("ready = %+v, want end:true and no error", m)
	}
	return p
}

func pyRun(p *proc, id, mode string, params any) {
	p.t.Helper()
	raw, err := json.Marshal(params)
	if err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(pyDeadlineSlack).UnixMilli()
	p.send(protocol.Message{Type: protocol.TypeRun, ID: id, Params: raw, Deadline: deadline, Mode: mode,
		Env: map[string]string{"__OW_ACTIVATION_ID": id, "__OW_DEADLINE": fmt.Sprint(deadline)}})
}

// collect reads messages of activation id until its end, in arrival order.
func collect(p *proc, id string) []protocol.Message {
	p.t.Helper()
	var out []protocol.Message
	for {
		m := p.next()
		if m.ID != id {
			continue
		}
		out = append(out, m)
		if m.Type == protocol.TypeEnd {
			return out
		}
	}
}

func find(msgs []protocol.Message, typ string) (protocol.Message, int) {
	for i, m := range msgs {
		if m.Type == typ {
			return m, i
		}
	}
	return protocol.Message{}, -1
}

func logLines(msgs []protocol.Message, stream string) []string {
	var out []string
	for _, m := range msgs {
		if m.Type == protocol.TypeLog && m.Stream == stream {
			out = append(out, m.Line)
		}
	}
	return out
}

func resultMap(t *testing.T, m protocol.Message) map[string]any {
	t.Helper()
	if m.Type != protocol.TypeResponse || m.Error != "" {
		t.Fatalf("want a response with a result, got %+v", m)
	}
	var r map[string]any
	if err := json.Unmarshal(m.Result, &r); err != nil {
		t.Fatalf("result %s: %v", m.Result, err)
	}
	return r
}

func TestPythonInitErrors(t *testing.T) {
	cases := []struct{ name, code, want string }{
		{"syntax", "def main(params):\n    return {\n\nx = (", "SyntaxError"},
		{"missing main", "def other(params):\n    return {}\n", "no function named 'main'"},
		{"raises at import", "x = 1\nraise ValueError('boom')\n", "ValueError: boom (line 2)"},
		{"import error", "import no_such_module_coda\n", "ModuleNotFoundError"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := startPython(t)
			m := pyInit(p, c.code)
			if m.ID != "i-1" || m.End || !strings.Contains(m.Error, c.want) {
				t.Fatalf("ready = %+v, want an error containing %q", m, c.want)
			}
		})
	}
	t.Run("syntax error names the line", func(t *testing.T) {
		p := startPython(t)
		m := pyInit(p, "def main(params):\n    return {}\n\ndef f(:\n    pass\n")
		if !strings.Contains(m.Error, "line 4") {
			t.Fatalf("ready error %q does not name line 4", m.Error)
		}
	})
}

func TestPythonSyncAndAsyncMain(t *testing.T) {
	codes := map[string]string{
		"sync":  "def main(params):\n    return {'greeting': 'hello ' + params.get('name', 'world')}\n",
		"async": "import asyncio\nasync def main(params):\n    await asyncio.sleep(0.01)\n    return {'greeting': 'hello ' + params.get('name', 'world')}\n",
	}
	for name, code := range codes {
		t.Run(name, func(t *testing.T) {
			p := pyReady(t, code)
			for i, who := range []string{"Ada", "Grace"} {
				id := fmt.Sprintf("a%d", i)
				pyRun(p, id, "decoupled", map[string]any{"name": who})
				msgs := collect(p, id)
				resp, _ := find(msgs, protocol.TypeResponse)
				if got := resultMap(t, resp)["greeting"]; got != "hello "+who {
					t.Fatalf("greeting = %v", got)
				}
				if end, _ := find(msgs, protocol.TypeEnd); end.Cause != protocol.CauseSettled {
					t.Fatalf("end = %+v", end)
				}
			}
		})
	}
}

func TestPythonResultsAndErrors(t *testing.T) {
	p := pyReady(t, `import os
def main(params, ctx):
    k = params.get('kind')
    if k == 'app':
        return {'error': 'bad input'}
    if k == 'raise':
        raise ValueError('no way')
    if k == 'none':
        return None
    if k == 'list':
        return [1, 2]
    if k == 'ctx':
        return {'id': ctx.activation_id, 'env': os.environ['__OW_ACTIVATION_ID'], 'left': ctx.remaining_time(), 'deadline': ctx.deadline}
    return {'echo': params}
`)
	pyRun(p, "r1", "decoupled", map[string]any{"x": 1.5, "s": "é"})
	if r := resultMap(t, p.next(protocol.TypeResponse)); fmt.Sprint(r["echo"]) != "map[s:é x:1.5]" {
		t.Fatalf("echo = %v", r)
	}
	pyRun(p, "r2", "decoupled", map[string]any{"kind": "app"})
	if r := resultMap(t, p.next(protocol.TypeResponse)); r["error"] != "bad input" {
		t.Fatalf("app error = %v", r)
	}
	pyRun(p, "r3", "decoupled", map[string]any{"kind": "raise"})
	msgs := collect(p, "r3")
	resp, _ := find(msgs, protocol.TypeResponse)
	if resp.Error != "ValueError: no way" {
		t.Fatalf("raised: %+v", resp)
	}
	if tb := strings.Join(logLines(msgs, "stderr"), "\n"); !strings.Contains(tb, "Traceback") {
		t.Fatalf("no traceback in stderr logs: %q", tb)
	}
	pyRun(p, "r4", "decoupled", map[string]any{"kind": "none"})
	if r := resultMap(t, p.next(protocol.TypeResponse)); len(r) != 0 {
		t.Fatalf("None result = %v", r)
	}
	pyRun(p, "r5", "decoupled", map[string]any{"kind": "list"})
	if m := p.next(protocol.TypeResponse); !strings.Contains(m.Error, "dict") {
		t.Fatalf("list result: %+v", m)
	}
	pyRun(p, "r6", "decoupled", map[string]any{"kind": "ctx"})
	r := resultMap(t, p.next(protocol.TypeResponse))
	if r["id"] != "r6" || r["env"] != "r6" || r["left"].(float64) <= 0 || r["deadline"].(float64) <= 0 {
		t.Fatalf("ctx = %v", r)
	}
}

func buildZip(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for name, body := range files {
		f, err := w.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestPythonZip(t *testing.T) {
	code := buildZip(t, map[string]string{
		"__main__.py": "import helper\nfrom greeter import greet\ndef handler(params):\n    return {'g': greet(params['name']), 'h': helper.VALUE, 'data': open('data.txt').read()}\n",
		"helper.py":   "VALUE = 42\n",
		"data.txt":    "shipped",
		"virtualenv/lib/python3.11/site-packages/greeter/__init__.py": "def greet(n):\n    return 'hi ' + n\n",
	})
	p := startPython(t)
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-z", Main: "handler", Code: code, Binary: true})
	if m := p.next(protocol.TypeReady); m.Error != "" {
		t.Fatalf("ready: %+v", m)
	}
	pyRun(p, "z1", "decoupled", map[string]any{"name": "Ada"})
	r := resultMap(t, p.next(protocol.TypeResponse))
	if r["g"] != "hi Ada" || r["h"] != 42.0 || r["data"] != "shipped" {
		t.Fatalf("result = %v", r)
	}

	t.Run("no __main__.py", func(t *testing.T) {
		p := startPython(t)
		p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-z", Code: buildZip(t, map[string]string{"x.py": ""}), Binary: true})
		if m := p.next(protocol.TypeReady); !strings.Contains(m.Error, "__main__.py") {
			t.Fatalf("ready: %+v", m)
		}
	})
	t.Run("zip slip", func(t *testing.T) {
		name := fmt.Sprintf("coda-evil-%d.py", time.Now().UnixNano())
		p := startPython(t)
		p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-z", Code: buildZip(t, map[string]string{"__main__.py": "def main(p):\n    return {}\n", "../../" + name: "x", "/" + name: "x"}), Binary: true})
		p.next(protocol.TypeReady) // refusing the zip and sanitizing its names are both fine
		for _, dir := range []string{"/", os.TempDir()} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				os.Remove(filepath.Join(dir, name))
				t.Fatalf("zip entry escaped the action folder into %s", dir)
			}
		}
	})
	t.Run("site-packages folder", func(t *testing.T) {
		p := startPython(t)
		p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-z", Binary: true, Code: buildZip(t, map[string]string{
			"__main__.py":           "import pkgx\ndef main(p):\n    return {'v': pkgx.V}\n",
			"site-packages/pkgx.py": "V = 'sp'\n",
		})})
		if m := p.next(protocol.TypeReady); m.Error != "" {
			t.Fatalf("ready: %+v", m)
		}
		pyRun(p, "z2", "decoupled", map[string]any{})
		if r := resultMap(t, p.next(protocol.TypeResponse)); r["v"] != "sp" {
			t.Fatalf("result = %v", r)
		}
	})
}

func TestPythonLogsAttributedAfterResponse(t *testing.T) {
	p := pyReady(t, `import asyncio, sys, logging
logging.basicConfig(level=logging.INFO, format='%(message)s')
async def later():
    await asyncio.sleep(0.1)
    print('after response')
async def main(params):
    print('in main', end='')
    print(' still')
    sys.stderr.write('to stderr\n')
    logging.info('via logging')
    asyncio.create_task(later())
    return {}
`)
	pyRun(p, "l1", "decoupled", nil)
	msgs := collect(p, "l1")
	_, ri := find(msgs, protocol.TypeResponse)
	out := logLines(msgs, "stdout")
	if len(out) != 2 || out[0] != "in main still" || out[1] != "after response" {
		t.Fatalf("stdout lines = %q", out)
	}
	errLines := logLines(msgs, "stderr")
	if len(errLines) != 2 || errLines[0] != "to stderr" || errLines[1] != "via logging" {
		t.Fatalf("stderr lines = %q", errLines)
	}
	for i, m := range msgs {
		if m.Type == protocol.TypeLog && m.Line == "after response" && i < ri {
			t.Fatal("background log arrived before the response")
		}
	}
	if strings.Contains(p.rawOutput(), "in main") {
		t.Fatalf("activation output leaked to fd 1/2: %q", p.rawOutput())
	}
}

// pyMarker returns a path for a marker file the action writes when its background work ran.
func pyMarker(t *testing.T) string {
	return filepath.Join(t.TempDir(), "marker")
}

func assertEndAfterMarker(t *testing.T, msgs []protocol.Message, marker string, wantPending string) {
	t.Helper()
	_, ri := find(msgs, protocol.TypeResponse)
	end, ei := find(msgs, protocol.TypeEnd)
	if ri < 0 || ei < ri {
		t.Fatalf("want response before end: %+v", msgs)
	}
	if end.Cause != protocol.CauseSettled {
		t.Fatalf("end = %+v", end)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("end arrived before the background work finished: %v", err)
	}
	if wantPending != "" {
		pend, pi := find(msgs, protocol.TypePending)
		if pi < 0 || !strings.Contains(strings.Join(pend.Pending, "|"), wantPending) {
			t.Fatalf("pending snapshot %+v does not mention %q", pend, wantPending)
		}
	}
}

func TestPythonDecoupledTask(t *testing.T) {
	marker := pyMarker(t)
	p := pyReady(t, fmt.Sprintf(`import asyncio
async def write_marker():
    await asyncio.sleep(0.3)
    open(%q, 'w').write('done')
async def main(params):
    asyncio.create_task(write_marker())
    return {'ok': True}
`, marker))
	start := time.Now()
	pyRun(p, "d1", "decoupled", nil)
	msgs := collect(p, "d1")
	assertEndAfterMarker(t, msgs, marker, "asyncio task write_marker")
	if time.Since(start) < 300*time.Millisecond {
		t.Fatal("ended before the task's sleep could have finished")
	}
}

func TestPythonBackgroundKinds(t *testing.T) {
	cases := map[string]struct{ body, pending string }{
		"call_later": {`    asyncio.get_running_loop().call_later(0.2, write)
`, "call_later 0.2 s"},
		"thread": {`    threading.Thread(target=lambda: (time.sleep(0.2), write()), name='flusher').start()
`, "thread flusher"},
		"executor": {`    asyncio.get_running_loop().run_in_executor(None, slow_write)
`, "executor job slow_write"},
		"pool submit": {`    POOL.submit(slow_write)
`, "executor job slow_write"},
		"wait_until": {`    ctx.wait_until(flush())
`, "wait_until flush"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			marker := pyMarker(t)
			p := pyReady(t, fmt.Sprintf(`import asyncio, threading, time
from concurrent.futures import ThreadPoolExecutor
POOL = ThreadPoolExecutor(2)
def write():
    print('background wrote')
    open(%q, 'w').write('done')
def slow_write():
    time.sleep(0.2)
    write()
async def flush():
    await asyncio.sleep(0.2)
    write()
async def main(params, ctx):
%s    return {}
`, marker, c.body))
			pyRun(p, "b1", "decoupled", nil)
			msgs := collect(p, "b1")
			assertEndAfterMarker(t, msgs, marker, c.pending)
			if out := logLines(msgs, "stdout"); len(out) != 1 || out[0] != "background wrote" {
				t.Fatalf("stdout of background work = %q", out)
			}
		})
	}
}

func TestPythonBackgroundExceptionLogged(t *testing.T) {
	p := pyReady(t, `import asyncio
async def fails(what):
    raise KeyError(what)
async def main(params):
    try:
        await asyncio.create_task(fails('awaited'))
    except KeyError:
        pass
    asyncio.create_task(fails('forgotten'))
    return {}
`)
	pyRun(p, "e1", "decoupled", nil)
	msgs := collect(p, "e1")
	errLog := strings.Join(logLines(msgs, "stderr"), "\n")
	if !strings.Contains(errLog, "KeyError: 'forgotten'") || strings.Contains(errLog, "awaited") {
		t.Fatalf("stderr log = %q, want only the forgotten task's exception", errLog)
	}
	if end, _ := find(msgs, protocol.TypeEnd); end.Cause != protocol.CauseSettled {
		t.Fatalf("end = %+v", end)
	}
}

func TestPythonSyncMainThreadAndWaitUntil(t *testing.T) {
	marker := pyMarker(t)
	p := pyReady(t, fmt.Sprintf(`import threading, time, asyncio
def work():
    time.sleep(0.2)
    print('thread done')
async def flush():
    await asyncio.sleep(0.1)
    open(%q, 'w').write('x')
def main(params, ctx):
    threading.Thread(target=work).start()
    ctx.wait_until(flush())
    return {'sync': True}
`, marker))
	pyRun(p, "s1", "decoupled", nil)
	msgs := collect(p, "s1")
	assertEndAfterMarker(t, msgs, marker, "")
	if out := logLines(msgs, "stdout"); len(out) != 1 || out[0] != "thread done" {
		t.Fatalf("stdout = %q", out)
	}
}

func TestPythonSyncMainUsesAsyncio(t *testing.T) {
	p := pyReady(t, `import asyncio
async def double(x):
    await asyncio.sleep(0.01)
    return 2 * x
def main(params):
    a = asyncio.get_event_loop().run_until_complete(double(1))
    return {'v': asyncio.run(double(a))}
`)
	for _, id := range []string{"s2", "s3"} { // the second run finds a loop again
		pyRun(p, id, "decoupled", nil)
		if r := resultMap(t, p.next(protocol.TypeResponse)); r["v"] != 4.0 {
			t.Fatalf("result = %v", r)
		}
	}
}

func TestPythonAwaitMode(t *testing.T) {
	marker := pyMarker(t)
	p := pyReady(t, fmt.Sprintf(`import asyncio
async def write_marker():
    await asyncio.sleep(0.2)
    open(%q, 'w').write('done')
async def main(params):
    asyncio.create_task(write_marker())
    return {'ok': True}
`, marker))
	pyRun(p, "w1", "await", nil)
	resp := p.next(protocol.TypeResponse)
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("await mode responded before the background work finished: %v", err)
	}
	resultMap(t, resp)
	if end := p.next(protocol.TypeEnd); end.ID != "w1" || end.Cause != protocol.CauseSettled {
		t.Fatalf("end = %+v", end)
	}
}

func TestPythonCoupledEndsAtResponse(t *testing.T) {
	marker := pyMarker(t)
	p := pyReady(t, fmt.Sprintf(`import asyncio
async def write_marker():
    await asyncio.sleep(0.5)
    open(%q, 'w').write('done')
async def main(params):
    asyncio.create_task(write_marker())
    return {}
`, marker))
	pyRun(p, "c1", "coupled", nil)
	msgs := collect(p, "c1")
	if _, ri := find(msgs, protocol.TypeResponse); ri < 0 {
		t.Fatalf("no response: %+v", msgs)
	}
	if end, _ := find(msgs, protocol.TypeEnd); end.Cause != protocol.CauseCoupled {
		t.Fatalf("end = %+v", end)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("coupled end waited for the background work")
	}
}

func TestPythonUntrackedWorkDoesNotHoldOpen(t *testing.T) {
	p := pyReady(t, `import asyncio, threading, time
from concurrent.futures import ThreadPoolExecutor
POOL = ThreadPoolExecutor(2)
POOL.submit(lambda: None).result()  # an idle worker from init
def forever():
    while True:
        time.sleep(0.05)
threading.Thread(target=forever, daemon=True, name='from-init').start()
async def ticker():
    while True:
        await asyncio.sleep(0.05)
def main(params):
    threading.Thread(target=forever, daemon=True).start()
    POOL.submit(lambda: None).result()
    return {}
`)
	pyRun(p, "u1", "decoupled", nil)
	msgs := collect(p, "u1")
	if end, _ := find(msgs, protocol.TypeEnd); end.Cause != protocol.CauseSettled {
		t.Fatalf("end = %+v", end)
	}

	t.Run("non-daemon import-time thread", func(t *testing.T) {
		p := pyReady(t, `import threading, time
stop = threading.Event()
threading.Thread(target=stop.wait, name='init-worker').start()
def main(params):
    return {}
`)
		pyRun(p, "u2", "decoupled", nil)
		if end := p.next(protocol.TypeEnd); end.Cause != protocol.CauseSettled {
			t.Fatalf("end = %+v", end)
		}
	})
}

func TestPythonCutoffListsPending(t *testing.T) {
	p := pyReady(t, `import asyncio, threading, time
async def write_redis():
    await asyncio.sleep(30)
async def main(params):
    asyncio.create_task(write_redis())
    asyncio.get_running_loop().call_later(30, print, 'late')
    threading.Thread(target=time.sleep, args=(30,), name='stuck', daemon=False).start()
    return {}
`)
	pyRun(p, "x1", "decoupled", nil)
	p.next(protocol.TypeResponse)
	snap := p.next(protocol.TypePending)
	if len(snap.Pending) != 3 {
		t.Fatalf("pending snapshot = %+v", snap)
	}
	p.send(protocol.Message{Type: protocol.TypeCutoff, ID: "x1"})
	end := p.next(protocol.TypeEnd)
	joined := strings.Join(end.Pending, "|")
	if end.Cause != protocol.CauseDeadline {
		t.Fatalf("end = %+v", end)
	}
	for _, want := range []string{"asyncio task write_redis", "call_later 30.0 s", "thread stuck"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("cutoff pending %q lacks %q", end.Pending, want)
		}
	}
}

func TestPythonConcurrentActivationsAttributedApart(t *testing.T) {
	p := pyReady(t, `import asyncio, threading, time
async def bg(name, delay):
    await asyncio.sleep(delay)
    print('bg of', name)
def thread_part(name):
    time.sleep(0.05)
    print('thread of', name)
async def main(params):
    name = params['name']
    print('start', name)
    asyncio.create_task(bg(name, params['delay']))
    threading.Thread(target=thread_part, args=(name,)).start()
    return {'name': name}
`)
	pyRun(p, "A", "decoupled", map[string]any{"name": "A", "delay": 0.3})
	pyRun(p, "B", "decoupled", map[string]any{"name": "B", "delay": 0.1})
	var mu sync.Mutex
	logs := map[string][]string{}
	ends := []string{}
	for len(ends) < 2 {
		m := p.next()
		mu.Lock()
		switch m.Type {
		case protocol.TypeLog:
			logs[m.ID] = append(logs[m.ID], m.Line)
		case protocol.TypeEnd:
			if m.Cause != protocol.CauseSettled {
				t.Fatalf("end = %+v", m)
			}
			ends = append(ends, m.ID)
		}
		mu.Unlock()
	}
	for _, id := range []string{"A", "B"} {
		got := strings.Join(logs[id], ",")
		want := fmt.Sprintf("start %s,thread of %s,bg of %s", id, id, id)
		if got != want {
			t.Fatalf("logs of %s = %q, want %q", id, got, want)
		}
	}
	if ends[0] != "B" {
		t.Fatalf("ends in order %v, want B (shorter work) first", ends)
	}
}

func TestPythonTrackingOff(t *testing.T) {
	marker := pyMarker(t)
	p := startPython(t)
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i", Env: map[string]string{"CODA_PY_TRACKING": "off"}, Code: fmt.Sprintf(`import asyncio
async def later():
    await asyncio.sleep(0.5)
    open(%q, 'w').write('x')
async def main(params):
    asyncio.create_task(later())
    return {}
`, marker)})
	if m := p.next(protocol.TypeReady); m.Error != "" {
		t.Fatal(m.Error)
	}
	pyRun(p, "o1", "decoupled", nil)
	msgs := collect(p, "o1")
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("tracking off still waited for background work")
	}
	if _, ri := find(msgs, protocol.TypeResponse); ri < 0 {
		t.Fatal("no response")
	}
}

// BenchmarkPythonWarm measures a warm run's round trip (run → response → end). The harness
// needs a *testing.T, so the benchmark drives its own pipes.
func BenchmarkPythonWarm(b *testing.B) {
	for _, c := range []struct{ name, code, tracking string }{
		{"sync", "def main(p):\n    return {'ok': 1}\n", "on"},
		{"async", "async def main(p):\n    return {'ok': 1}\n", "on"},
		{"sync-untracked", "def main(p):\n    return {'ok': 1}\n", "off"},
		{"async-untracked", "async def main(p):\n    return {'ok': 1}\n", "off"},
	} {
		b.Run(c.name, func(b *testing.B) { benchPython(b, c.code, c.tracking) })
	}
}

func benchPython(b *testing.B, code, tracking string) {
	toR, toW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	dir, err := filepath.Abs("python")
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(pythonBin, "-u", filepath.Join(dir, "runner.py"))
	cmd.ExtraFiles = []*os.File{toR, fromW}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Skip(err)
	}
	toR.Close()
	fromW.Close()
	defer func() { toW.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	enc, dec := protocol.NewEncoder(toW), protocol.NewDecoder(fromR)
	next := func(typ string) protocol.Message {
		for {
			m, err := dec.Next()
			if err != nil {
				b.Fatal(err)
			}
			if m.Type == typ {
				return m
			}
		}
	}
	if err := enc.Send(protocol.Message{Type: protocol.TypeInit, ID: "i", Code: code, Env: map[string]string{"CODA_PY_TRACKING": tracking}}); err != nil {
		b.Fatal(err)
	}
	if m := next(protocol.TypeReady); m.Error != "" {
		b.Fatal(m.Error)
	}
	params := json.RawMessage(`{"n":1}`)
	deadline := time.Now().Add(time.Hour).UnixMilli()
	b.ResetTimer()
	var respTotal time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := enc.Send(protocol.Message{Type: protocol.TypeRun, ID: fmt.Sprint(i), Params: params, Deadline: deadline, Mode: "decoupled"}); err != nil {
			b.Fatal(err)
		}
		next(protocol.TypeResponse)
		respTotal += time.Since(t0)
		next(protocol.TypeEnd)
	}
	b.ReportMetric(float64(respTotal.Microseconds())/float64(b.N), "resp-µs")
}

// An un-awaited task whose only references are weak (asyncio streams hold their reader
// weakly) must not be garbage-collected mid-I/O: the runtime holds tracked tasks strongly.
func TestPythonUnreferencedTaskIsNotCollected(t *testing.T) {
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
				buf := make([]byte, 64)
				_, _ = c.Read(buf)
				time.Sleep(300 * time.Millisecond) // the reply comes later, after several GCs
				_, _ = c.Write([]byte("+PONG\r\n"))
			}()
		}
	}()
	marker := pyMarker(t)
	p := pyReady(t, fmt.Sprintf(`import asyncio, gc
async def ping():
    r, w = await asyncio.open_connection('127.0.0.1', %d)
    w.write(b'PING\r\n')
    await w.drain()
    line = await r.readline()
    open(%q, 'w').write(line.decode())
async def main(params):
    asyncio.create_task(ping())
    for _ in range(3):
        await asyncio.sleep(0.02)
        gc.collect()
    return {'ok': True}
`, ln.Addr().(*net.TCPAddr).Port, marker))
	pyRun(p, "gc1", "decoupled", nil)
	assertEndAfterMarker(t, collect(p, "gc1"), marker, "asyncio task ping")
}
