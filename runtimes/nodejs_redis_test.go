package runtimes

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/protocol"
	"github.com/coda-serverless/coda/internal/testenv"
)

// nodeRedisDefault is where a developer's Redis usually is when CODA_TEST_REDIS is unset.
const nodeRedisDefault = "127.0.0.1:6390"

// nodeOverlapGap is how long after A the test starts B: long enough for A's command to be on
// the wire first, far shorter than A's 0.3 s blocking command, so the two overlap.
const nodeOverlapGap = 50 * time.Millisecond

// redisConn is a minimal RESP client, enough to ask whether a key exists.
type redisConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// nodeRedis connects to a reachable Redis, or skips.
func nodeRedis(t *testing.T) (string, *redisConn) {
	t.Helper()
	addr := os.Getenv(testenv.EnvRedis)
	if addr == "" {
		addr = nodeRedisDefault
		if c, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
			addr = testenv.Redis(t) // skips (or fails when services are required)
		} else {
			c.Close()
		}
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return addr, &redisConn{t: t, c: c, r: bufio.NewReader(c)}
}

// do sends an inline command (arguments without spaces) and returns the reply line.
func (rc *redisConn) do(args ...string) string {
	rc.t.Helper()
	_ = rc.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(rc.c, "%s\r\n", strings.Join(args, " ")); err != nil {
		rc.t.Fatalf("redis %v: %v", args, err)
	}
	line, err := rc.r.ReadString('\n')
	if err != nil {
		rc.t.Fatalf("redis %v: %v", args, err)
	}
	return strings.TrimSpace(line)
}

// nodeOverlapping runs activations A and B (B nodeOverlapGap after A) on p, whose action makes
// a blocking call on a client shared since init and then writes params.key, and fails unless
// each one ends, settled, only after done(its key) says its write is in.
func nodeOverlapping(t *testing.T, p *proc, keys map[string]string, done func(key string) bool) {
	t.Helper()
	nodeRun(p, "A", "decoupled", fmt.Sprintf(`{"key":%s}`, jsString(keys["A"])))
	time.Sleep(nodeOverlapGap)
	nodeRun(p, "B", "decoupled", fmt.Sprintf(`{"key":%s}`, jsString(keys["B"])))
	ended := map[string]bool{}
	var logs []string
	timeout := time.After(nodeHangGuard)
	for len(ended) < 2 {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				t.Fatalf("runtime exited:\n%s", p.rawOutput())
			}
			switch m.Type {
			case protocol.TypeLog:
				logs = append(logs, m.ID+": "+m.Line)
			case protocol.TypeEnd:
				ended[m.ID] = true
				// Checked right away: once ended, the instance may be terminated (--keep-alive 0).
				if !done(keys[m.ID]) {
					t.Errorf("%s ended before its write was in (end %+v; logs %q)", m.ID, m, logs)
				}
				if m.Cause != protocol.CauseSettled {
					t.Errorf("end of %s = %+v", m.ID, m)
				}
			}
		case <-timeout:
			t.Fatalf("no ends within %v: %v; logs %q; output:\n%s", nodeHangGuard, ended, logs, p.rawOutput())
		}
	}
}

// TestNodeRedisSharedClient checks that with one ioredis client shared by overlapping
// activations, each one is held by its own commands: the reply to A's BLPOP on the shared
// socket does not count as B's, so B ends only after its own follow-up SET is in.
func TestNodeRedisSharedClient(t *testing.T) {
	t.Parallel()
	addr, rc := nodeRedis(t)
	modules := testenv.NodeModules(t)
	prefix := fmt.Sprintf("coda:rt:node:%d", time.Now().UnixNano())
	keys := map[string]string{"A": prefix + ":A", "B": prefix + ":B"}
	t.Cleanup(func() { rc.do("DEL", keys["A"], keys["B"]) })

	p := startNode(t)
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Main: "main",
		Env: map[string]string{"REDIS_MODULE": filepath.Join(modules, "ioredis"), "REDIS_ADDR": addr},
		Code: `
const Redis = require(process.env.REDIS_MODULE)
const [host, port] = process.env.REDIS_ADDR.split(':')
const redis = new Redis({ host, port: Number(port) })
exports.main = (p) => {
  redis.blpop(p.key + ':never', 0.3).then(() => redis.set(p.key, Date.now()))
    .then(() => console.log('set ' + p.key), (e) => console.error(e.message))
  return {}
}`})
	if m := p.next(protocol.TypeReady); m.Error != "" || !m.End {
		t.Fatalf("ready = %+v", m)
	}
	nodeOverlapping(t, p, keys, func(key string) bool { return rc.do("EXISTS", key) == ":1" })
}

// TestNodePgSharedClient is the same with one pg.Client shared since init: B's query waits in
// the client's own queue, not on the socket, and must still hold B.
func TestNodePgSharedClient(t *testing.T) {
	t.Parallel()
	dsn, conn := nodePostgres(t)
	modules := testenv.NodeModules(t)
	table, committed := pgScratchTable(t, conn, "coda_rt_node_client")

	p := startNode(t)
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Main: "main",
		Env: map[string]string{"PG_MODULE": filepath.Join(modules, "pg"), "PG_URL": dsn, "TABLE": table},
		Code: `
const { Client } = require(process.env.PG_MODULE)
const client = new Client({ connectionString: process.env.PG_URL })
client.connect().catch((e) => console.error(e.message))
exports.main = (p) => {
  client.query('SELECT pg_sleep(0.3)')
    .then(() => client.query('INSERT INTO ' + process.env.TABLE + ' (key) VALUES ($1)', [p.key]))
    .then(() => console.log('inserted ' + p.key), (e) => console.error(e.message))
  return {}
}`})
	if m := p.next(protocol.TypeReady); m.Error != "" || !m.End {
		t.Fatalf("ready = %+v", m)
	}
	nodeOverlapping(t, p, map[string]string{"A": "A", "B": "B"}, committed)
}
