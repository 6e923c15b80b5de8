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

module.exports = { install, patchPgPool };
