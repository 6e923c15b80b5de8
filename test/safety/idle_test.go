package safety

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/testenv"
)

const (
	// idleRounds is how many times each idle-resource action runs: the first is a cold start,
	// the others reuse the warm instance whose pooled sockets earlier activations used.
	idleRounds = 6
	// idleHangGuard bounds end - start - responseTime for an activation that left nothing but
	// idle resources: it should end within the runtime's quiet window (~20 ms); a second only
	// catches the resource holding it open (pg.Pool's idle timer is 10 s, the deadline 60 s).
	idleHangGuard = time.Second
)

// Resources a Node.js action creates at init and leaves idle: a pooled Redis client (used by
// every activation, then idle), an HTTP keep-alive agent (its socket stays pooled after each
// request), and intervals, one created at init and one by the activation itself.
const nodeIdle = `
const http = require('http');
const Redis = require('ioredis');
const redis = new Redis({ host: REDIS_HOST, port: REDIS_PORT, maxRetriesPerRequest: 2 });
redis.on('error', (e) => console.error('redis:', e.message));
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
let ticks = 0;
setInterval(() => { ticks++; }, 25);

function get(url) {
  return new Promise((resolve, reject) => {
    http.get(url, { agent }, (res) => {
      res.resume();
      res.on('end', resolve);
    }).on('error', reject);
  });
}

exports.main = async (params) => {
  await redis.set(params.key, String(Date.now()));
  await get(SINK + '/ping?key=' + encodeURIComponent(params.key));
  setInterval(() => { ticks++; }, 1000);
  return { ok: true, ticks };
};
`

// A pg.Pool with its default options, used (awaited) by the activation and then idle. pg-pool
// arms a ref'd idleTimeoutMillis (10 s) timer when a client goes back to the pool.
const nodeIdlePg = `
const { Pool } = require('pg');
const pool = new Pool({ connectionString: PG_URL });
pool.on('error', (e) => console.error('pg pool:', e.message));

exports.main = async (params) => {
  const r = await pool.query('SELECT 1 AS one');
  return { ok: r.rows[0].one === 1 };
};
`

// Python resources created at import time: a non-daemon heartbeat thread that never ends, an
// executor whose worker stays idle after use, and a connected socket.
func pythonIdle(d deps) string {
	host, port, _ := net.SplitHostPort(d.redis)
	return fmt.Sprintf(`import asyncio
import concurrent.futures
import socket
import threading
import time

BEATS = [0]


def heartbeat():
    while True:
        BEATS[0] += 1
        time.sleep(0.05)


threading.Thread(target=heartbeat, name="heartbeat").start()
POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2)
CONN = socket.create_connection((%q, %s))


async def main(params):
    loop = asyncio.get_running_loop()
    total = await loop.run_in_executor(POOL, sum, [1, 2, 3])
    return {"ok": total == 6, "beats": BEATS[0]}
`, host, port)
}

// TestIdleResourcesDoNotHoldActivations checks that pools, keep-alive sockets, intervals and
// import-time threads left idle never keep an activation open: each record ends settled, within
// the quiet window rather than at some idle timeout.
func TestIdleResourcesDoNotHoldActivations(t *testing.T) {
	d := needDeps(t)
	// Warm reuse matters here: pooled sockets used by one activation sit idle in the next.
	s := startServer(t, "--keep-alive", "10m")
	run := runID(t)
	cases := []struct {
		name   string
		deploy func(t testing.TB, action string)
	}{
		{"node/ioredis+keepalive-agent+setInterval", func(t testing.TB, action string) {
			s.DeployZip(t, action, nodeKind, nodeZipFiles(t, nodePrelude(d)+nodeIdle, "ioredis"), nil, actionLimits(0))
		}},
		{"node/pg.Pool-default", func(t testing.TB, action string) {
			s.DeployZip(t, action, nodeKind, nodeZipFiles(t, nodePrelude(d)+nodeIdlePg, "pg"), nil, actionLimits(0))
		}},
		{"python/thread+executor+socket", func(t testing.TB, action string) {
			s.Deploy(t, action, pythonKind, pythonIdle(d), nil, actionLimits(0))
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			action := fmt.Sprintf("safety-idle-%d", i)
			c.deploy(t, action)
			var keys []string
			var worst int64
			for round := range idleRounds {
				key := fmt.Sprintf("coda:safety:%s:%s:%d", run, action, round)
				keys = append(keys, key)
				status, body, id := s.Invoke(t, action, map[string]any{"key": key}, true)
				if status != 200 || id == "" {
					t.Fatalf("round %d: HTTP %d %s", round, status, body)
				}
				rec := s.WaitEnded(t, id, endedWithin)
				tail := backgroundMS(rec)
				worst = max(worst, tail)
				tm := testenv.TerminationOf(rec)
				if !rec.Response.Success || tm.Cause != "settled" || tail > idleHangGuard.Milliseconds() {
					t.Errorf("round %d: success=%v result=%s termination=%+v end-after-response=%d ms (want settled within %v); logs %q",
						round, rec.Response.Success, rec.Response.Result, tm, tail, idleHangGuard, rec.Logs)
				}
			}
			redisDelete(t, d.redis, keys)
			t.Logf("SAFETY idle %s rounds=%d end-after-response.max=%dms", c.name, idleRounds, worst)
		})
	}
}

// backgroundMS is end - start - responseTime: how long the activation outlived its response.
func backgroundMS(rec *entity.Activation) int64 {
	rt := annotationInt(rec, "responseTime")
	if rt < 0 {
		return rec.End - rec.Start
	}
	return rec.End - rec.Start - rt
}
