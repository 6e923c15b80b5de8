'use strict';
// Patches for libraries whose internal queues lose the caller's async context, so that the work
// they do on an activation's behalf is still attributed to it (DESIGN.md, "Knowing when an
// activation has settled").
//
// A library that queues a callback and runs it later from whatever operation frees a resource
// (a pool's release) runs it in the context of the activation that freed it: that one is
// charged with the work, and the caller's activation may end before its own work is done.
// APM agents (OpenTelemetry's instrumentations, dd-trace) fix this the same way: bind the
// queued callback to the caller's context when it is queued. Each patch here is specific to one
// module's shape and does nothing when the shape is not the one it knows.

const Module = require('module');
const { AsyncResource } = require('async_hooks');

const kPatched = Symbol('coda.patched');
const kWaiter = Symbol('coda.waiter'); // on a queued pg-pool PendingItem: {res, op}
const kHold = Symbol('coda.hold'); // on an ioredis Command: its hold op, or null when not held
const kSettle = Symbol('coda.settle'); // on a Command's resolve/reject wrappers

// A package request (or, from an ES module, a file path) naming pg itself, not pg-pool & co.
const PG_REQUEST = /(^|[\\/])pg([\\/]|$)/;

// install wraps Module._load so that modules are patched when they are first loaded, by user
// code or by a library (pg requires pg-pool), from CommonJS or from an ES module.
function install(als, tracker) {
  const origLoad = Module._load;
  Module._load = function _load(request, parent, isMain) {
    const exp = origLoad.apply(this, arguments);
    // The request is a package name or, from an ES module's import, a file path.
    if (typeof request === 'string' && request.includes('pg-pool')) {
      try {
        patchPgPool(exp, als, tracker);
      } catch (e) {
        process.stderr.write(`coda nodejs runtime: not patching pg-pool: ${e.message}\n`);
      }
    } else if (tracker !== null && typeof request === 'string') {
      // Both patches only hold activations, so they are pointless with tracking off.
      try {
        if (request.includes('ioredis')) patchIoredis(exp, als, tracker);
        else if (PG_REQUEST.test(request)) patchPgClient(exp, als, tracker);
      } catch (e) {
        process.stderr.write(`coda nodejs runtime: not patching ${request}: ${e.message}\n`);
      }
    }
    return exp;
  };
}

// patchPgPool patches pg-pool's Pool (3.x; pg's Pool extends it):
//  - a connect() (or query(), which calls it) that has to wait for a client is held open for
//    its caller's activation, and the client is connected or handed over in that caller's
//    context, not in that of the activation whose release freed it;
//  - the idle timer a release starts (idleTimeoutMillis, 10 s by default) is unref'd, as
//    allowExitOnIdle does: an idle pool must never hold an activation open, and the runtime's
//    protocol pipe keeps the process alive anyway.
function patchPgPool(Pool, als, tracker) {
  if (typeof Pool !== 'function' || Pool.prototype == null) return;
  const proto = Pool.prototype;
  if (proto[kPatched]) return;
  const names = ['connect', 'newClient', '_acquireClient', '_release', '_pulseQueue'];
  if (!names.every((n) => typeof proto[n] === 'function')) return;
  proto[kPatched] = true;
  const { connect, newClient, _acquireClient, _release } = proto;

  proto.connect = function connectInCallerContext() {
    const queue = this._pendingQueue;
    const before = Array.isArray(queue) ? queue.length : -1;
    const ret = connect.apply(this, arguments);
    // connect() queues at most one item, last, when no client can be handed over at once.
    if (before >= 0 && this._pendingQueue === queue && queue.length === before + 1) {
      const item = queue[queue.length - 1];
      if (item !== null && typeof item === 'object' && item[kWaiter] === undefined) {
        const op = tracker === null ? null : tracker.hold(als.getStore(), 'pg pool: waiting for a client', () => item.timedOut === true);
        item[kWaiter] = { res: new AsyncResource('coda.pg-pool.waiter'), op };
      }
    }
    return ret;
  };
  // The two ways a queued item gets its client: a new connection or an idle client.
  proto.newClient = function newClient_(pendingItem) {
    return inCallerContext(pendingItem, newClient, this, arguments);
  };
  proto._acquireClient = function _acquireClient_(client, pendingItem) {
    return inCallerContext(pendingItem, _acquireClient, this, arguments);
  };
  proto._release = function _release_() {
    try {
      return _release.apply(this, arguments);
    } finally {
      unrefIdleTimers(this);
    }
  };
}

function inCallerContext(item, fn, self, args) {
  const w = item != null && typeof item === 'object' ? item[kWaiter] : undefined;
  if (w === undefined) return fn.apply(self, args);
  item[kWaiter] = undefined;
  // From here the caller's own tracked operations (connecting, the query's write) keep it open.
  if (w.op !== null) w.op.done = true;
  return w.res.runInAsyncScope(fn, self, ...args);
}

function unrefIdleTimers(pool) {
  const idle = pool._idle;
  if (!Array.isArray(idle)) return;
  for (const item of idle) {
    const t = item != null ? item.timeoutId : undefined;
    if (t != null && typeof t.unref === 'function') t.unref();
  }
}

// ---- clients that multiplex one connection --------------------------------------------------
//
// One client created at init and shared by overlapping activations pipelines their requests on
// one socket, so the tracker's socket-level "awaiting a reply" cannot tell whose reply came in:
// the first reply would count as everyone's. The client library knows which command is whose,
// so each command issued inside an activation holds it until that command settles. This also
// counts commands waiting in the library's own queue (ioredis's offline queue, pg's query queue).

// patchIoredis patches the sendCommand of ioredis's Redis and Cluster (v4/v5): every command
// passes through it, including those that go to the offline queue.
function patchIoredis(exp, als, tracker) {
  if (exp == null || (typeof exp !== 'function' && typeof exp !== 'object')) return;
  const seen = new Set();
  for (const C of [exp, exp.default, exp.Redis, exp.Cluster]) {
    if (typeof C !== 'function' || C.prototype == null || seen.has(C)) continue;
    seen.add(C);
    const proto = C.prototype;
    const orig = proto.sendCommand;
    if (typeof orig !== 'function' || Object.prototype.hasOwnProperty.call(proto, kPatched)) continue;
    proto[kPatched] = true;
    proto.sendCommand = function sendCommand(command) {
      if (command !== null && typeof command === 'object') holdCommand(command, als, tracker);
      return orig.apply(this, arguments);
    };
  }
}

// holdCommand holds the activation that issued command until command settles. A command passes
// through sendCommand more than once (the offline queue's flush, a resend after a reconnect or
// a cluster redirection), from whatever context does that: only the first pass decides whose
// it is. The settling is observed by wrapping command.resolve/reject rather than by a then() on
// command.promise, which would mark a rejection nobody handles as handled.
function holdCommand(command, als, tracker) {
  const prev = command[kHold];
  if (prev === null) return; // issued outside any activation
  if (typeof command.resolve !== 'function' || typeof command.reject !== 'function') return;
  if (prev !== undefined && command.resolve[kSettle] === prev) return; // already held
  let op;
  if (prev !== undefined) {
    // The promise was re-created (a pipeline resent after MOVED): hold again for the same activation.
    prev.done = true;
    op = prev.act.closed ? null : tracker.hold(prev.act, prev.label, null);
  } else {
    const act = als.getStore();
    op = act === undefined ? null : tracker.hold(act, 'redis ' + String(command.name).toUpperCase(), null);
  }
  command[kHold] = op;
  if (op === null) return;
  const { resolve, reject } = command;
  command.resolve = settle(op, resolve);
  command.reject = settle(op, reject);
}

function settle(op, fn) {
  const w = function settleCommand() {
    op.done = true;
    return fn.apply(this, arguments);
  };
  w[kSettle] = op;
  return w;
}

// patchPgClient patches pg's Client.prototype.query (8.x): a query issued inside an activation
// holds it until the client finishes with it, which it always signals by calling the query's
// handleReadyForQuery or handleError (also for a Submittable such as a Cursor, and for queued
// queries failed by end() or a connection error).
function patchPgClient(exp, als, tracker) {
  if (exp == null || (typeof exp !== 'function' && typeof exp !== 'object')) return;
  // Only plain properties are read: pg's `native` is a getter that loads pg-native.
  for (const C of [exp, exp.Client]) {
    if (typeof C !== 'function' || C.prototype == null) continue;
    const proto = C.prototype;
    const orig = proto.query;
    if (typeof orig !== 'function' || typeof proto._pulseQueryQueue !== 'function') continue;
    if (Object.prototype.hasOwnProperty.call(proto, kPatched)) continue;
    proto[kPatched] = true;
    proto.query = function query() {
      const act = als.getStore();
      const queue = this._queryQueue;
      if (act === undefined || act.closed || !Array.isArray(queue)) return orig.apply(this, arguments);
      // query() builds the Query object itself; it is caught as it is queued, before it can be
      // submitted (a query that fails before that is failed on the next tick, and needs no hold).
      queue.push = function push(...items) {
        if (items.length === 1 && items[0] !== null && typeof items[0] === 'object') holdQuery(items[0], act, tracker);
        return Array.prototype.push.apply(this, items);
      };
      try {
        return orig.apply(this, arguments);
      } finally {
        delete queue.push;
      }
    };
  }
}

function holdQuery(q, act, tracker) {
  const { handleReadyForQuery, handleError } = q;
  if (typeof handleReadyForQuery !== 'function' || typeof handleError !== 'function') return;
  const op = tracker.hold(act, 'pg query', null);
  if (op === null) return;
  q.handleReadyForQuery = function handleReadyForQuery_() {
    op.done = true;
    return handleReadyForQuery.apply(this, arguments);
  };
  q.handleError = function handleError_() {
    op.done = true;
    return handleError.apply(this, arguments);
  };
}

module.exports = { install, patchPgPool, patchIoredis, patchPgClient };
