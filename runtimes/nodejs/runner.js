'use strict';
// Coda's Node.js runtime: a stem cell that loads one action and runs its activations.
//
// It speaks docs/protocol.md over fd 3 (init, run, cutoff in) and fd 4 (ready, response, log,
// pending, end out) and reports each activation's end itself: an AsyncLocalStorage names the
// activation whose code is running, and tracker.js counts the operations that code started
// until they finish (DESIGN.md, "Knowing when an activation has settled").

const NODE_MAJOR = '20';
if (process.versions.node.split('.')[0] !== NODE_MAJOR) {
  process.stderr.write(`coda nodejs runtime: needs Node.js ${NODE_MAJOR}.x, this is ${process.version}\n`);
  process.exit(1);
}

const fs = require('fs');
const net = require('net');
const { AsyncLocalStorage } = require('async_hooks');
const { Tracker } = require('./tracker');
const loader = require('./loader');
const hooks = require('./hooks');

const IN_FD = 3;
const OUT_FD = 4;

// Settled = nothing pending for this long: long enough that work handed from one operation to
// the next through promises or untracked callbacks is not cut in between.
const QUIET_MS = 20;
// How often activations in their background phase are checked: cleared timers, closed sockets
// and finished requests are noticed by polling, because the hooks that would report them
// (destroy, promise resolve) cost more on every promise than this costs in total.
const POLL_MS = 5;
// Pending snapshots are rate-limited so that a busy activation cannot flood the invoker.
const SNAPSHOT_MS = 50;
// A user line longer than this is cut, so no log message nears the protocol's 16 MiB line limit
// even after JSON escaping (up to 6 bytes per character).
const LOG_LINE_MAX = 256 * 1024;
// Work the action's module starts while loading (a client connecting at module scope) is waited
// for before `ready`, as an activation's work is before its end, or the first activation would
// run against a half-connected client whose queued commands no activation owns. Work that never
// settles must not stop the instance from starting: past this bound `ready` goes out anyway
// (with what was pending on stderr), well within the invoker's 10 s init limit.
const INIT_SETTLE_MAX_MS = 5000;

const TRACKING = !/^(off|0|false|no)$/i.test(process.env.CODA_NODE_TRACKING || '');

const als = new AsyncLocalStorage();
const tracker = TRACKING ? new Tracker(als) : null;

// ---- protocol output ----------------------------------------------------------------------

// fd 4 is written synchronously: that creates no async resource that could be attributed to an
// activation, and costs one syscall per message. The pipes are reopened through /proc so that
// the runtime owns file descriptions of its own: blocking for those writes whatever flags the
// other end set, and close-on-exec (as Node.js also marks inherited descriptors) so that child
// processes of user code never hold the protocol pipes.
function reopen(fd, flags) {
  try {
    const nfd = fs.openSync(`/proc/self/fd/${fd}`, flags);
    fs.closeSync(fd);
    return nfd;
  } catch {
    return fd;
  }
}

const outFd = reopen(OUT_FD, fs.constants.O_WRONLY);
const sleeper = new Int32Array(new SharedArrayBuffer(4));

function send(line) {
  const b = Buffer.from(line + '\n', 'utf8');
  let off = 0;
  while (off < b.length) {
    try {
      off += fs.writeSync(outFd, b, off, b.length - off);
    } catch (e) {
      if (e.code === 'EAGAIN') {
        Atomics.wait(sleeper, 0, 0, 1); // a non-blocking pipe is full: the invoker will drain it
        continue;
      }
      // The invoker is gone; nobody is left to report to.
      process.exit(e.code === 'EPIPE' ? 0 : 1);
    }
  }
}

// ---- activations ----------------------------------------------------------------------------

class Activation {
  constructor(msg) {
    this.id = msg.id;
    this.idJson = JSON.stringify(msg.id);
    this.mode = msg.mode || 'decoupled';
    this.deadline = typeof msg.deadline === 'number' ? msg.deadline : 0;
    // tracker state
    this.ops = new Map();
    this.gen = 0;
    this.closed = false;
    this.fsName = null;
    // lifecycle
    this.mainDone = false;
    this.held = null; // await mode: the response line, sent when settled
    this.quietSince = -1; // -1: not quiet
    this.quietGen = -1;
    this.lastSnap = -Infinity;
    this.lastKey = '';
    this.partial = { stdout: '', stderr: '' };
  }

  log(stream, text) {
    let s = this.partial[stream] + text;
    let nl = s.indexOf('\n');
    if (nl === -1) {
      this.partial[stream] = s.length > LOG_LINE_MAX ? (this.logLine(stream, s), '') : s;
      return;
    }
    let start = 0;
    while (nl !== -1) {
      this.logLine(stream, s.slice(start, nl));
      start = nl + 1;
      nl = s.indexOf('\n', start);
    }
    this.partial[stream] = s.slice(start);
  }

  logLine(stream, line) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.length > LOG_LINE_MAX) line = line.slice(0, LOG_LINE_MAX) + ' [truncated]';
    send(`{"type":"log","id":${this.idJson},"stream":"${stream}","line":${JSON.stringify(line)}}`);
  }

  flushLogs() {
    for (const stream of ['stdout', 'stderr']) {
      if (this.partial[stream] !== '') {
        this.logLine(stream, this.partial[stream]);
        this.partial[stream] = '';
      }
    }
  }
}

// Ctx is main's second argument.
class Ctx {
  constructor(act) {
    this.activationId = act.id;
    this.deadline = act.deadline;
    Object.defineProperty(this, 'act', { value: act });
  }

  // waitUntil keeps the activation open until p settles, whatever p waits for.
  waitUntil(p) {
    if (tracker !== null) tracker.waitUntil(this.act, p);
    return p;
  }

  remainingTime() {
    return Math.max(0, this.deadline - Date.now());
  }
}

const acts = new Map(); // id → Activation, until its end
const watching = new Set(); // activations between their result and their end
let action = null; // {fn, self} once init succeeded
let initializing = false;
const queued = [];
let pollTimer = null;

function onRun(msg) {
  const act = new Activation(msg);
  if (typeof act.id !== 'string' || acts.has(act.id)) return;
  acts.set(act.id, act);
  if (action === null) {
    finishMain(act, new Error('the action is not initialized'), true);
    return;
  }
  const env = msg.env;
  if (env) for (const k in env) process.env[k] = env[k];
  let ret;
  try {
    ret = als.run(act, callMain, act, msg.params == null ? {} : msg.params);
  } catch (e) {
    finishMain(act, e, true);
    return;
  }
  if (ret !== null && typeof ret === 'object' && typeof ret.then === 'function') {
    try {
      ret.then(
        (v) => finishMain(act, v, false),
        (e) => finishMain(act, e, true),
      );
    } catch (e) {
      finishMain(act, e, true); // a thenable whose then throws
    }
  } else {
    finishMain(act, ret, false);
  }
}

function callMain(act, params) {
  return action.fn.call(action.self, params, new Ctx(act));
}

function errorText(e) {
  if (e instanceof Error || (e !== null && typeof e === 'object' && typeof e.message === 'string')) {
    return `${e.name || 'Error'}: ${e.message}`;
  }
  if (typeof e === 'string') return e;
  try {
    return JSON.stringify(e) ?? String(e);
  } catch {
    return String(e);
  }
}

function describeType(v) {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  return `a ${typeof v}`;
}

// finishMain records main's outcome: sends the response (held in await mode) and starts
// watching the activation until it settles.
function finishMain(act, value, threw, logged) {
  if (act.mainDone || act.closed) return;
  act.mainDone = true;
  let line;
  if (threw) {
    if (!logged && value instanceof Error && typeof value.stack === 'string') act.log('stderr', value.stack + '\n');
    line = errorLine(act, errorText(value));
  } else if (value === undefined || value === null) {
    line = `{"type":"response","id":${act.idJson},"result":{}}`;
  } else if (typeof value !== 'object' || Array.isArray(value)) {
    line = errorLine(act, `TypeError: the action returned ${describeType(value)}, not a JSON object`);
  } else {
    let json;
    try {
      json = JSON.stringify(value);
    } catch (e) {
      json = e;
    }
    if (typeof json === 'string' && json.charCodeAt(0) === 123 /* { */) {
      line = `{"type":"response","id":${act.idJson},"result":${json}}`;
    } else if (typeof json === 'string' || json === undefined) {
      line = errorLine(act, 'TypeError: the action returned a value that is not a JSON object');
    } else {
      line = errorLine(act, `TypeError: the action's result cannot be JSON-encoded: ${json.message}`);
    }
  }
  if (act.mode === 'await' && tracker !== null) {
    act.held = line;
  } else {
    send(line);
  }
  if (act.mode === 'coupled') {
    end(act, 'coupled', null);
    return;
  }
  if (tracker === null) {
    end(act, 'settled', null);
    return;
  }
  watching.add(act);
  check(act, performance.now(), true);
  arm();
}

function errorLine(act, text) {
  return `{"type":"response","id":${act.idJson},"error":${JSON.stringify(text)}}`;
}

// check decides whether act has settled: nothing pending for QUIET_MS, with no operation started
// and finished unseen in between (gen counts operations started).
function check(act, now, first) {
  const n = tracker.count(act);
  if (n > 0 && (first || now - act.lastSnap >= SNAPSHOT_MS)) snapshot(act, now);
  if (quiet(act, n, now)) end(act, 'settled', null);
}

// quiet moves act's quiet window on, given n operations pending now, and reports whether it has
// lasted QUIET_MS.
function quiet(act, n, now) {
  if (n > 0) {
    act.quietSince = -1;
    return false;
  }
  if (act.quietSince < 0 || act.quietGen !== act.gen) {
    act.quietSince = now;
    act.quietGen = act.gen;
    return false;
  }
  return now - act.quietSince >= QUIET_MS;
}

function snapshot(act, now) {
  act.lastSnap = now;
  const labels = tracker.labels(act);
  if (labels.length === 0) return;
  const key = labels.join('\n');
  if (key === act.lastKey) return;
  act.lastKey = key;
  send(`{"type":"pending","id":${act.idJson},"pending":${JSON.stringify(labels)}}`);
}

function arm() {
  if (pollTimer !== null || watching.size === 0) return;
  // Outside every activation, so the runtime's own timer is never counted as user work.
  als.exit(() => {
    pollTimer = setTimeout(poll, POLL_MS);
  });
}

function poll() {
  pollTimer = null;
  const now = performance.now();
  for (const act of watching) check(act, now, false);
  arm();
}

function end(act, cause, pending) {
  if (act.closed) return;
  act.flushLogs();
  if (act.held !== null) {
    send(act.held);
    act.held = null;
  }
  act.closed = true;
  let line = `{"type":"end","id":${act.idJson},"cause":"${cause}"`;
  if (pending !== null) line += `,"pending":${JSON.stringify(pending)}`;
  send(line + '}');
  watching.delete(act);
  acts.delete(act.id);
  if (tracker !== null) tracker.release(act);
}

function onCutoff(msg) {
  const act = acts.get(msg.id);
  if (act === undefined) return;
  const pending = tracker !== null ? tracker.labels(act) : [];
  act.held = null; // the response was never due: the invoker records the deadline
  end(act, 'deadline', pending);
}

async function onInit(msg) {
  const idJson = JSON.stringify(msg.id ?? '');
  if (action !== null || initializing) {
    send(`{"type":"ready","id":${idJson},"error":"the runtime is already initialized"}`);
    return;
  }
  initializing = true;
  const env = msg.env;
  if (env && typeof env === 'object') for (const k in env) process.env[k] = String(env[k]);
  // Loading runs as a pseudo-activation, so that the tracker counts the work it starts; its
  // output still goes to fd 1/2 (no activation is in flight) and it ends before `ready`.
  const initAct = new Activation({ id: msg.id ?? '', mode: 'init' });
  initAct.init = true;
  try {
    const a = await als.run(initAct, loader.load, msg);
    if (tracker !== null && initAct.gen > 0) await settleInit(initAct);
    action = a;
    send(`{"type":"ready","id":${idJson},"end":true}`);
  } catch (e) {
    send(`{"type":"ready","id":${idJson},"error":${JSON.stringify(loader.describe(e))}}`);
  } finally {
    // From now on the init work's callbacks run as no activation's: nothing they start counts.
    initAct.closed = true;
    if (tracker !== null) tracker.release(initAct);
    initializing = false;
  }
  while (queued.length > 0 && !initializing) dispatch(queued.shift());
}

// settleInit resolves once the work started while loading has settled (the activations' rule:
// nothing pending for QUIET_MS), or after INIT_SETTLE_MAX_MS.
function settleInit(act) {
  return new Promise((resolve) => {
    const limit = performance.now() + INIT_SETTLE_MAX_MS;
    const tick = () => {
      const now = performance.now();
      const n = tracker.count(act);
      if (quiet(act, n, now)) {
        resolve();
        return;
      }
      if (now >= limit) {
        const labels = tracker.labels(act);
        process.stderr.write(`coda nodejs runtime: ready after ${INIT_SETTLE_MAX_MS} ms although work started at init is still pending: ${labels.join(', ')}\n`);
        resolve();
        return;
      }
      // Outside every activation, as the poll timer: the runtime's timers are no user work.
      als.exit(() => setTimeout(tick, POLL_MS));
    };
    als.exit(tick);
  });
}

function dispatch(msg) {
  if (initializing && msg.type !== 'cutoff') {
    queued.push(msg);
    return;
  }
  switch (msg.type) {
    case 'run':
      onRun(msg);
      break;
    case 'cutoff':
      onCutoff(msg);
      break;
    case 'init':
      onInit(msg);
      break;
    default: // unknown types are ignored, as the protocol says
  }
}

function onLine(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    process.stderr.write(`coda nodejs runtime: bad protocol line: ${e.message}\n`);
    return;
  }
  if (msg !== null && typeof msg === 'object') dispatch(msg);
}

// ---- user output ----------------------------------------------------------------------------

// stdout/stderr writes made by an activation's code become its log lines, also after its
// response; writes outside any activation (or after its end) go to the real fd 1/2.
function redirect(stream, name) {
  const orig = stream.write;
  stream.write = function write(chunk, encoding, cb) {
    const act = als.getStore();
    if (act === undefined || act.closed || act.init) return orig.apply(this, arguments);
    if (typeof encoding === 'function') cb = encoding;
    let text;
    if (typeof chunk === 'string') text = chunk;
    else if (chunk instanceof Uint8Array) text = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
    else text = String(chunk);
    act.log(name, text);
    if (typeof cb === 'function') process.nextTick(cb);
    return true;
  };
}

function uncaught(kind) {
  return (err) => {
    const act = als.getStore();
    const text = `${kind}: ${err instanceof Error && err.stack ? err.stack : errorText(err)}\n`;
    if (act === undefined || act.closed || act.init) {
      process.stderr.write(text);
      return;
    }
    act.log('stderr', text);
    if (!act.mainDone) finishMain(act, err, true, true);
  };
}

// ---- start --------------------------------------------------------------------------------

function start() {
  redirect(process.stdout, 'stdout');
  redirect(process.stderr, 'stderr');
  process.on('uncaughtException', uncaught('Uncaught exception'));
  process.on('unhandledRejection', uncaught('Unhandled rejection'));
  if (tracker !== null) tracker.enable();
  hooks.install(als, tracker);
  // Node.js loads fetch's HTTP client on the first call, which costs tens of milliseconds: a
  // stem cell pays that before it has an action, so that no activation does.
  fetch('data:,').then((r) => r.arrayBuffer()).catch(() => {});

  const input = new net.Socket({ fd: reopen(IN_FD, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK), readable: true, writable: false });
  input.setEncoding('utf8');
  let parts = [];
  input.on('data', (chunk) => {
    let nl = chunk.indexOf('\n');
    if (nl === -1) {
      parts.push(chunk); // part of a long line (an init with a big archive)
      return;
    }
    let first = chunk.slice(0, nl);
    if (parts.length > 0) {
      parts.push(first);
      first = parts.join('');
      parts = [];
    }
    if (first.length > 0) onLine(first);
    let start = nl + 1;
    while ((nl = chunk.indexOf('\n', start)) !== -1) {
      if (nl > start) onLine(chunk.slice(start, nl));
      start = nl + 1;
    }
    if (start < chunk.length) parts.push(chunk.slice(start));
  });
  // The invoker closed the pipe: nothing more will come.
  input.on('end', () => process.exit(0));
  input.on('error', (e) => {
    process.stderr.write(`coda nodejs runtime: reading fd ${IN_FD}: ${e.message}\n`);
    process.exit(1);
  });
}

start();
