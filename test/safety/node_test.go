package safety

import (
	"fmt"
	"net"
	"testing"

	"github.com/coda-serverless/coda/internal/testenv"
)

// nodeKind is the Node.js runtime the suite proves.
const nodeKind = "nodejs:20"

// deps are the external services one test run writes to.
type deps struct {
	redis string // host:port
	pg    string // postgres:// URL
	sink  *sink
}

func needDeps(t testing.TB) deps {
	t.Helper()
	d := deps{redis: redisAddr(t), pg: pgURL(t)}
	testenv.NodeModules(t)
	requireRedis(t, d.redis)
	d.sink = newSink(t, bgDelay)
	return d
}

// nodePrelude defines the constants and helpers every Node.js action of the suite shares. The
// services' addresses are compiled into the code, because pooled clients are created at init,
// before any parameter arrives, exactly as real actions create them.
func nodePrelude(d deps) string {
	host, port, _ := net.SplitHostPort(d.redis)
	return fmt.Sprintf(`'use strict';
const REDIS_HOST = %s;
const REDIS_PORT = %s;
const PG_URL = %s;
const SINK = %s;
const BG_MS = %d;

// resp encodes one Redis command (RESP), for actions that talk to Redis over a raw socket.
function resp(args) {
  let s = '*' + args.length + '\r\n';
  for (const a of args) {
    const b = String(a);
    s += '$' + Buffer.byteLength(b) + '\r\n' + b + '\r\n';
  }
  return s;
}
`, jsString(host), port, jsString(d.pg), jsString(d.sink.URL()), bgDelay.Milliseconds())
}

// Scenario 1: a pooled ioredis client created at init; main leaves a command chain running.
// BLPOP on a list that nobody fills stands for a slow command; the write depends on its answer,
// so it is only sent after the response.
const nodeRedisPool = `
const Redis = require('ioredis');
const redis = new Redis({ host: REDIS_HOST, port: REDIS_PORT, maxRetriesPerRequest: 2 });
redis.on('error', (e) => console.error('redis:', e.message));

exports.main = (params) => {
  const key = params.key;
  redis.blpop(key + ':never', BG_MS / 1000)
    .then(() => redis.set(key, String(Date.now())))
    .catch((e) => console.error('write failed:', e.message));
  return { ok: true };
};
`

// Scenario 2: an un-awaited INSERT through a pg.Pool created at init, with pg's default options
// (idle timeout included) except a small max, as small instances use: activations that find
// every client busy then wait in the pool's queue and get a client when another activation's
// query releases it. The statement takes BG_MS on the server (pg_sleep) before its row is
// inserted.
const nodePgPool = `
const { Pool } = require('pg');
const pool = new Pool({ connectionString: PG_URL, max: 4 });
pool.on('error', (e) => console.error('pg pool:', e.message));

exports.main = (params) => {
  pool.query('INSERT INTO ` + pgTable + ` (key, issued) SELECT $1, $2 FROM pg_sleep($3)',
    [params.key, Date.now(), BG_MS / 1000])
    .catch((e) => console.error('insert failed:', e.message));
  return { ok: true };
};
`

// Scenario 3: an un-awaited fetch POST to a slow HTTP service.
const nodeFetch = `
exports.main = (params) => {
  fetch(SINK + '/write?key=' + encodeURIComponent(params.key), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ key: params.key, at: Date.now() }),
  }).catch((e) => console.error('post failed:', e.message));
  return { ok: true };
};
`

// Scenario 4: a write after setTimeout, over a connection opened in the timer's callback.
const nodeTimeout = `
const net = require('net');

exports.main = (params) => {
  const key = params.key;
  setTimeout(() => {
    const sock = net.connect(REDIS_PORT, REDIS_HOST, () => sock.write(resp(['SET', key, Date.now()])));
    sock.once('data', () => sock.end());
    sock.on('error', (e) => console.error('write failed:', e.message));
  }, BG_MS);
  return { ok: true };
};
`

// Scenario 5: a child process that writes after BG_MS (a separate node writing RESP by hand).
const nodeChild = `
const { spawn } = require('child_process');

const CHILD = [
  'const [host, port, key, delay] = process.argv.slice(1);',
  'setTimeout(() => {',
  '  const v = String(Date.now());',
  '  const cmd = "*3\\r\\n$3\\r\\nSET\\r\\n$" + Buffer.byteLength(key) + "\\r\\n" + key + "\\r\\n$" + v.length + "\\r\\n" + v + "\\r\\n";',
  '  const s = require("net").connect(+port, host, () => s.write(cmd));',
  '  s.once("data", () => s.end());',
  '}, +delay);',
].join('\n');

exports.main = (params) => {
  const child = spawn(process.execPath, ['-e', CHILD, REDIS_HOST, String(REDIS_PORT), params.key, String(BG_MS)], { stdio: 'ignore' });
  child.on('error', (e) => console.error('spawn failed:', e.message));
  return { ok: true };
};
`

// Scenario 6: a file written, then read back and uploaded, all after the response.
const nodeUpload = `
const fs = require('fs');
const os = require('os');
const path = require('path');

exports.main = (params) => {
  const key = params.key;
  const file = path.join(os.tmpdir(), key.replace(/[^A-Za-z0-9]/g, '_') + '.json');
  fs.promises.writeFile(file, JSON.stringify({ key, at: Date.now() }))
    .then(() => fs.promises.readFile(file))
    .then((body) => fetch(SINK + '/upload?key=' + encodeURIComponent(key), { method: 'POST', body }))
    .then(() => fs.promises.unlink(file))
    .catch((e) => console.error('upload failed:', e.message));
  return { ok: true };
};
`

// Scenario 7: work registered with ctx.waitUntil. The delay is an unref'd timer, which the
// automatic tracking deliberately ignores: only waitUntil keeps the activation open.
const nodeWaitUntil = `
const Redis = require('ioredis');
const redis = new Redis({ host: REDIS_HOST, port: REDIS_PORT, maxRetriesPerRequest: 2 });
redis.on('error', (e) => console.error('redis:', e.message));

exports.main = (params, ctx) => {
  const key = params.key;
  const later = new Promise((resolve) => setTimeout(resolve, BG_MS).unref());
  ctx.waitUntil(later.then(() => redis.set(key, String(Date.now()))));
  return { ok: true };
};
`

// nodeScenarios are the seven Node.js background writes of the suite.
func nodeScenarios(d deps) []scenario {
	zip := func(code string, packages ...string) func(t testing.TB, s *testenv.Server, action, mode string) {
		return func(t testing.TB, s *testenv.Server, action, mode string) {
			t.Helper()
			files := nodeZipFiles(t, nodePrelude(d)+code, packages...)
			s.DeployZip(t, action, nodeKind, files, modeAnnotations(mode), actionLimits(0))
		}
	}
	rs := redisStore{addr: d.redis}
	ss := sinkStore{s: d.sink}
	return []scenario{
		{name: "node/redis-pool", store: rs, deploy: zip(nodeRedisPool, "ioredis")},
		{name: "node/pg-pool", store: pgStore{url: d.pg}, deploy: zip(nodePgPool, "pg")},
		{name: "node/fetch", store: ss, deploy: zip(nodeFetch)},
		{name: "node/setTimeout", store: rs, deploy: zip(nodeTimeout)},
		{name: "node/child-process", store: rs, deploy: zip(nodeChild)},
		{name: "node/file-upload", store: ss, deploy: zip(nodeUpload)},
		{name: "node/waitUntil", store: rs, deploy: zip(nodeWaitUntil, "ioredis")},
	}
}

// TestNodeBackgroundWrites is the Node.js safety suite: seven kinds of background write, each
// invoked hundreds of times under each termination mode with --keep-alive 0.
func TestNodeBackgroundWrites(t *testing.T) {
	d := needDeps(t)
	s := startServer(t)
	runScenarios(t, s, nodeScenarios(d))
	t.Logf("sink: %d requests aborted by their client before commit", d.sink.abortedCount())
}
