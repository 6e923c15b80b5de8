package runtimes

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/protocol"
)

// nodeInitQuickBound is how long a module whose only leftovers are idle resources may take to
// become ready: below the runtime's 5 s init settle limit, far above any scheduling noise.
const nodeInitQuickBound = 4 * time.Second

// slowGreeter accepts connections and answers each line after a delay, like a database that
// is slow to finish its handshake. It returns the port.
func slowGreeter(t *testing.T, delay time.Duration) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
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
					time.Sleep(delay)
					if _, err := io.WriteString(c, "WELCOME\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestNodeInitWorkAwaited checks that work the module starts while loading has finished before
// `ready`: the first activation sees what that work produced.
func TestNodeInitWorkAwaited(t *testing.T) {
	t.Parallel()
	port := slowGreeter(t, 300*time.Millisecond)
	cases := map[string]string{
		"module timer": `
let flag = false
setTimeout(() => { flag = true }, 100)
exports.main = () => ({ok: flag})`,
		"socket handshake": `
const net = require('net')
let greeting = ''
const s = net.connect(+process.env.GREETER_PORT, '127.0.0.1', () => s.write('HELLO\n'))
s.setEncoding('utf8')
s.on('data', (d) => { greeting += d })
exports.main = () => ({ok: greeting === 'WELCOME\n'})`,
		"exported promise": `
module.exports = (async () => {
  await new Promise((r) => setTimeout(r, 100))
  return {main: () => ({ok: true})}
})()`,
		"es module top-level await": `
await new Promise((r) => setTimeout(r, 100))
let flag = false
setTimeout(() => { flag = true }, 100)
export function main() { return {ok: flag} }`,
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := startNode(t)
			p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Main: "main", Code: code,
				Env: map[string]string{"GREETER_PORT": strconv.Itoa(port)}})
			if m := p.next(protocol.TypeReady); m.Error != "" || !m.End {
				t.Fatalf("ready = %+v; output:\n%s", m, p.rawOutput())
			}
			nodeRun(p, "a1", "decoupled", "")
			if r := nodeResult(t, nodeCollect(p, "a1", nodeHangGuard)); r["ok"] != true {
				t.Fatalf("the first activation ran before the init work finished: result %v", r)
			}
		})
	}
}

// TestNodeInitIdleDoesNotDelay checks that idle things created at init (an interval, a
// listening server, an unref'd timer, a connected quiet socket) do not hold `ready` back.
func TestNodeInitIdleDoesNotDelay(t *testing.T) {
	t.Parallel()
	port := slowGreeter(t, 0)
	p := startNode(t)
	start := time.Now()
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Main: "main", Env: map[string]string{"GREETER_PORT": strconv.Itoa(port)}, Code: `
const net = require('net'), http = require('http')
let ticks = 0
setInterval(() => { ticks++ }, 10000)
setTimeout(() => {}, 60000).unref()
http.createServer((q, r) => r.end()).listen(0, '127.0.0.1')
const s = net.connect(+process.env.GREETER_PORT, '127.0.0.1', () => s.write('HELLO\n'))
s.on('data', () => {})
exports.main = () => ({ticks})`})
	if m := p.next(protocol.TypeReady); m.Error != "" || !m.End {
		t.Fatalf("ready = %+v", m)
	}
	if d := time.Since(start); d > nodeInitQuickBound {
		t.Fatalf("ready took %v: idle init resources held it", d)
	}
	if out := p.rawOutput(); strings.Contains(out, "still pending") {
		t.Fatalf("the runtime waited for idle init resources:\n%s", out)
	}
	nodeRun(p, "a1", "decoupled", "")
	if m, _ := nodeFind(nodeCollect(p, "a1", nodeIdleBound), protocol.TypeEnd); m.Cause != protocol.CauseSettled {
		t.Fatalf("end = %+v", m)
	}
}

// TestNodeInitSettleLimit checks that init work that never finishes delays `ready` only up to
// the runtime's limit, and that the runtime says what it gave up waiting for.
func TestNodeInitSettleLimit(t *testing.T) {
	t.Parallel()
	p := startNode(t)
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Main: "main", Code: `
setTimeout(() => {}, 600000)
exports.main = () => ({ok: true})`})
	if m := p.next(protocol.TypeReady); m.Error != "" || !m.End {
		t.Fatalf("ready = %+v", m)
	}
	// stderr travels apart from fd 4, so the line may arrive a little after `ready`.
	for deadline := time.Now().Add(nodeHangGuard); !strings.Contains(p.rawOutput(), "still pending: setTimeout 600000 ms"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no stderr line naming the pending init work:\n%s", p.rawOutput())
		}
	}
	nodeRun(p, "a1", "decoupled", "")
	if r := nodeResult(t, nodeCollect(p, "a1", nodeIdleBound)); r["ok"] != true {
		t.Fatalf("result = %v", r)
	}
}
