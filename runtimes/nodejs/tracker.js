'use strict';
// The tracker counts, per activation, the operations its code started that have not finished
// (DESIGN.md, "Knowing when an activation has settled"). It counts operations, not open
// resources: a one-shot libuv request until its callback runs, a ref'd one-shot timer until it
// fires or is cleared, a child process until it exits, a socket the activation wrote to while it
// connects, holds unflushed bytes or awaits a reply, an HTTP request until its response is in.
// Bare promises, intervals, servers, idle sockets and anything created at init are not counted.
//
// Cost matters: async_hooks `destroy` and promise-resolve hooks multiply the price of every
// promise, so only `init` and `before` are used, PROMISE resources return at the first compare,
// and cleared timers or closed sockets are noticed by polling their state instead.

const asyncHooks = require('async_hooks');
const dc = require('diagnostics_channel');
const net = require('net');
const fs = require('fs');

// Kinds of tracked operations.
const K_NONE = 0;
const K_REQ = 1; // one-shot libuv request: pending until its callback runs
const K_FS = 2; // an fs request (one-shot), labelled with the fs function that started it
const K_TIMEOUT = 3;
const K_IMMEDIATE = 4;
const K_PROCESS = 5;
const K_ZLIB = 6; // a zlib handle: pending while a chunk is being processed
const K_SOCKET = 7;
const K_HTTP = 8;
const K_FETCH = 9;
const K_WAIT = 10;
const K_CRYPTO = 11; // a crypto job: one-shot when asynchronous
const K_HOLD = 12; // held by the runtime's own module patches (hooks.js) until released

const FIXED_KINDS = {
  __proto__: null,
  FSREQCALLBACK: K_FS,
  FSREQPROMISE: K_FS,
  FILEHANDLECLOSEREQ: K_FS,
  GETADDRINFOREQWRAP: K_REQ,
  GETNAMEINFOREQWRAP: K_REQ,
  QUERYWRAP: K_REQ,
  TCPCONNECTWRAP: K_REQ,
  PIPECONNECTWRAP: K_REQ,
  WRITEWRAP: K_REQ,
  SHUTDOWNWRAP: K_REQ,
  UDPSENDWRAP: K_REQ,
  Timeout: K_TIMEOUT,
  Immediate: K_IMMEDIATE,
  PROCESSWRAP: K_PROCESS,
  ZLIB: K_ZLIB,
};

function kindOf(type) {
  const k = FIXED_KINDS[type];
  if (k !== undefined) return k;
  // Crypto jobs (PBKDF2REQUEST, SCRYPTREQUEST, RANDOMBYTESREQUEST, KEYGENREQUEST, ...) are all
  // one-shot requests whose provider names end in REQUEST.
  if (type.endsWith('REQUEST')) return K_CRYPTO;
  return K_NONE;
}

// Kinds whose labels are hidden while an HTTP request of the same activation is pending: the
// request already names them and "connect 127.0.0.1:80" beside "http GET ..." is noise.
const TRANSPORT_TYPES = new Set(['GETADDRINFOREQWRAP', 'TCPCONNECTWRAP', 'WRITEWRAP', 'SHUTDOWNWRAP']);

// fs functions whose names label the requests they start.
const FS_NAMES = [
  'access', 'appendFile', 'chmod', 'chown', 'close', 'copyFile', 'cp', 'fchmod', 'fchown',
  'fdatasync', 'fstat', 'fsync', 'ftruncate', 'futimes', 'lchown', 'link', 'lstat', 'lutimes',
  'mkdir', 'mkdtemp', 'open', 'opendir', 'read', 'readdir', 'readFile', 'readlink', 'readv',
  'realpath', 'rename', 'rm', 'rmdir', 'stat', 'statfs', 'symlink', 'truncate', 'unlink',
  'utimes', 'write', 'writeFile', 'writev',
];

class Op {
  constructor(kind, type, res, act, label) {
    this.kind = kind;
    this.type = type;
    this.res = res;
    this.act = act;
    this.label = label;
    this.done = false; // K_FETCH, K_WAIT
    this.awaiting = false; // K_SOCKET: wrote a request, no data read since
    this.response = null; // K_HTTP
    this.exited = false; // K_PROCESS
  }
}

class Tracker {
  // als is the AsyncLocalStorage whose store is the running Activation (fields used here: ops,
  // gen, closed, fsName).
  constructor(als) {
    this.als = als;
    // asyncId → Op for one-shot resources, so `before` (which only gets the id) finds them.
    this.owner = new Map();
    this.kinds = { __proto__: null };
    this.curFs = null; // label of the fs function being called right now
    this.kSock = Symbol('coda.socket');
    this.kClient = Symbol('coda.client');
    this.httpOps = new WeakMap();
    this.fetchOps = new WeakMap();
  }

  enable() {
    const t = this;
    const als = this.als;
    const owner = this.owner;
    const kinds = this.kinds;
    asyncHooks.createHook({
      init(asyncId, type, triggerAsyncId, res) {
        if (type === 'PROMISE') return;
        const act = als.getStore();
        if (act === undefined || act.closed) return;
        let kind = kinds[type];
        if (kind === undefined) kind = kinds[type] = kindOf(type);
        if (kind === K_NONE) return;
        // Intervals never end by themselves and unref'd timers are the user saying "do not
        // wait for this": neither holds the activation open.
        if (kind === K_TIMEOUT && (res._repeat !== null || !res.hasRef())) return;
        const op = new Op(kind, type, res, act, kind === K_FS ? t.curFs || act.fsName : null);
        act.ops.set(asyncId, op);
        if (kind !== K_ZLIB) owner.set(asyncId, op);
        act.gen++;
      },
      before(asyncId) {
        const op = owner.get(asyncId);
        if (op === undefined) return;
        owner.delete(asyncId);
        if (op.kind === K_PROCESS) {
          // Exited; its output may still be in flight to the exec/execFile callback.
          op.exited = true;
          return;
        }
        op.act.ops.delete(asyncId);
      },
    }).enable();
    this.patchFs();
    this.patchNet();
    this.subscribeHttp();
  }

  add(act, key, op) {
    act.ops.set(key, op);
    act.gen++;
  }

  // hold counts an operation that the hooks in hooks.js know about and async_hooks cannot see
  // (a request waiting in a library's queue), labelled label, until op.done is set or gone()
  // says it will never be done. It returns the op, or null when act is not tracked.
  hold(act, label, gone) {
    if (act === undefined || act.closed) return null;
    const op = new Op(K_HOLD, 'hold', gone || null, act, label);
    this.add(act, op, op);
    return op;
  }

  // waitUntil counts p until it settles, whatever it is waiting for.
  waitUntil(act, p) {
    if (act.closed) return;
    const op = new Op(K_WAIT, 'waitUntil', null, act, null);
    this.add(act, op, op);
    const done = () => {
      op.done = true;
    };
    Promise.resolve(p).then(done, done);
  }

  patchFs() {
    const t = this;
    const wrap = (obj, prefix) => {
      for (const name of FS_NAMES) {
        const orig = obj[name];
        if (typeof orig !== 'function') continue;
        const label = prefix + name;
        const w = {
          [name](...args) {
            const act = t.als.getStore();
            if (act === undefined) return orig.apply(this, args);
            // The name also labels the requests this call chains later (writeFile's open,
            // write, close), which start from callbacks where curFs is no longer set.
            act.fsName = label;
            const prev = t.curFs;
            t.curFs = label;
            try {
              return orig.apply(this, args);
            } finally {
              t.curFs = prev;
            }
          },
        }[name];
        for (const k of Reflect.ownKeys(orig)) {
          if (k === 'length' || k === 'name' || k === 'prototype') continue;
          Object.defineProperty(w, k, Object.getOwnPropertyDescriptor(orig, k));
        }
        obj[name] = w;
      }
    };
    wrap(fs, 'fs.');
    wrap(fs.promises, 'fs.promises.');
  }

  patchNet() {
    const t = this;
    const proto = net.Socket.prototype;
    const { kSock, kClient } = this;
    const origConnect = proto.connect;
    // Only sockets this process connected can await a reply; a server's sockets answer requests.
    proto.connect = function connect(...args) {
      this[kClient] = true;
      return origConnect.apply(this, args);
    };
    const origWrite = proto._writeGeneric;
    proto._writeGeneric = function _writeGeneric(writev, data, encoding, cb) {
      const act = t.als.getStore();
      if (act !== undefined && !act.closed) t.noteWrite(act, this);
      return origWrite.call(this, writev, data, encoding, cb);
    };
    const origPush = proto.push;
    // Data read (or EOF) on a socket answers the request written to it.
    proto.push = function push(chunk, encoding) {
      const op = this[kSock];
      if (op !== undefined) op.awaiting = false;
      return origPush.call(this, chunk, encoding);
    };
  }

  noteWrite(act, sock) {
    let op = sock[this.kSock];
    if (op === undefined || op.act !== act) {
      if (op !== undefined) op.act.ops.delete(sock);
      op = new Op(K_SOCKET, 'socket', sock, act, null);
      sock[this.kSock] = op;
    }
    op.awaiting = sock[this.kClient] === true && sock.readable !== false;
    this.add(act, sock, op);
  }

  subscribeHttp() {
    const t = this;
    const start = (kind, map) => (msg) => {
      const act = t.als.getStore();
      if (act === undefined || act.closed) return;
      const op = new Op(kind, kind === K_HTTP ? 'http' : 'fetch', msg.request, act, null);
      map.set(msg.request, op);
      t.add(act, op, op);
    };
    const finish = (map) => (msg) => {
      const op = map.get(msg.request);
      if (op !== undefined) op.done = true;
    };
    dc.subscribe('http.client.request.start', start(K_HTTP, this.httpOps));
    dc.subscribe('http.client.response.finish', (msg) => {
      const op = t.httpOps.get(msg.request);
      if (op !== undefined) op.response = msg.response;
    });
    dc.subscribe('undici:request:create', start(K_FETCH, this.fetchOps));
    dc.subscribe('undici:request:trailers', finish(this.fetchOps));
    dc.subscribe('undici:request:error', finish(this.fetchOps));
  }

  // live says whether op is still pending; gone says it never will be again (so it can be pruned).
  static state(op) {
    const r = op.res;
    switch (op.kind) {
      case K_REQ:
      case K_FS:
        return LIVE;
      case K_CRYPTO:
        // Synchronous jobs (randomBytes(n), pbkdf2Sync) are the same resources but finish inside
        // the call and never get a callback; only asynchronous ones are given `ondone`.
        return typeof r.ondone === 'function' ? LIVE : GONE;
      case K_TIMEOUT:
      case K_IMMEDIATE:
        if (r._destroyed) return GONE;
        return r.hasRef() ? LIVE : IDLE;
      case K_PROCESS: {
        if (!op.exited) return r.hasRef() ? LIVE : IDLE;
        // After the exit, 'close' (and exec's callback) waits for the child's stdio to close.
        const cp = ownerOf(r);
        return cp && cp._closesGot < cp._closesNeeded ? LIVE : GONE;
      }
      case K_ZLIB:
        return r.buffer != null ? LIVE : IDLE;
      case K_SOCKET:
        if (r.destroyed) return GONE;
        return r.connecting || r.writableLength > 0 || op.awaiting ? LIVE : IDLE;
      case K_HTTP: {
        const res = op.response;
        if (res === null) return r.destroyed ? GONE : LIVE;
        if (res.complete || res.destroyed) return GONE;
        // Headers are in; the body counts only while someone reads it, because an unread body
        // of a request nobody listens to would otherwise hold the activation until its deadline.
        const reading = res.readableFlowing === true || res.listenerCount('data') > 0 || res.listenerCount('readable') > 0;
        return reading ? LIVE : IDLE;
      }
      case K_FETCH:
      case K_WAIT:
        return op.done ? GONE : LIVE;
      case K_HOLD:
        return op.done || (r !== null && r()) ? GONE : LIVE;
      default:
        return GONE;
    }
  }

  // count returns how many of act's operations are pending, pruning finished ones.
  count(act) {
    let n = 0;
    for (const [key, op] of act.ops) {
      const s = Tracker.state(op);
      if (s === LIVE) n++;
      else if (s === GONE) {
        act.ops.delete(key);
        if (typeof key === 'number') this.owner.delete(key);
      }
    }
    return n;
  }

  // labels describes act's pending operations in words a user understands.
  labels(act) {
    const live = [];
    let http = false;
    for (const op of act.ops.values()) {
      if (Tracker.state(op) !== LIVE) continue;
      live.push(op);
      if (op.kind === K_HTTP || op.kind === K_FETCH) http = true;
    }
    const counts = new Map();
    for (const op of live) {
      if (http && (op.kind === K_SOCKET || TRANSPORT_TYPES.has(op.type))) continue;
      let l;
      try {
        l = label(op);
      } catch {
        l = op.type;
      }
      counts.set(l, (counts.get(l) || 0) + 1);
    }
    const out = [];
    for (const [l, n] of counts) out.push(n > 1 ? `${l} (×${n})` : l);
    return out;
  }

  // release forgets act's operations once it has ended.
  release(act) {
    for (const key of act.ops.keys()) if (typeof key === 'number') this.owner.delete(key);
    act.ops.clear();
  }
}

const LIVE = 1; // pending now
const IDLE = 2; // not pending now, may be again (an unref'd timer can be ref'd)
const GONE = 3; // finished

function peer(handle) {
  if (handle && typeof handle.getpeername === 'function') {
    const o = {};
    if (handle.getpeername(o) === 0 && o.address) return ` ${o.address}:${o.port}`;
  }
  return '';
}

function sockAddr(s) {
  const a = s.remoteAddress || s._host;
  if (a) return ` ${a}:${s.remotePort || ''}`;
  return s._pipeName ? ` ${s._pipeName}` : '';
}

let ownerSymbol;
function ownerOf(res) {
  if (ownerSymbol === undefined) {
    ownerSymbol = Object.getOwnPropertySymbols(res).find((s) => s.description === 'owner_symbol') || null;
  }
  return ownerSymbol ? res[ownerSymbol] : undefined;
}

function command(res) {
  const cp = ownerOf(res);
  if (!cp || !Array.isArray(cp.spawnargs)) return '';
  let args = cp.spawnargs;
  // exec('sleep 1') runs "/bin/sh -c sleep 1": the command is what the user wrote.
  if (args.length === 3 && args[1] === '-c' && /(^|\/)(ba|da)?sh$/.test(args[0])) args = [args[2]];
  const s = args.join(' ');
  return ' ' + (s.length > 80 ? s.slice(0, 77) + '...' : s);
}

function label(op) {
  const r = op.res;
  switch (op.kind) {
    case K_FS:
      return op.label || 'fs request';
    case K_TIMEOUT:
      return `setTimeout ${r._idleTimeout} ms`;
    case K_IMMEDIATE:
      return 'setImmediate';
    case K_PROCESS:
      return 'child process' + command(r);
    case K_ZLIB:
      return 'zlib';
    case K_SOCKET:
      if (r.connecting) return 'socket connect' + sockAddr(r);
      if (r.writableLength > 0) return 'socket write' + sockAddr(r);
      return 'socket awaiting reply' + sockAddr(r);
    case K_HTTP: {
      const host = (typeof r.getHeader === 'function' && r.getHeader('host')) || r.host || '';
      return `http ${r.method} ${r.protocol || 'http:'}//${host}${r.path || ''}`;
    }
    case K_FETCH:
      return `fetch ${r.method} ${r.origin || ''}${r.path || ''}`;
    case K_WAIT:
      return 'waitUntil promise';
    case K_HOLD:
      return op.label;
    case K_REQ:
      switch (op.type) {
        case 'GETADDRINFOREQWRAP':
          return `dns lookup ${r.hostname}`;
        case 'GETNAMEINFOREQWRAP':
          return `dns lookupService ${r.hostname}:${r.port}`;
        case 'QUERYWRAP':
          return `dns ${r.bindingName || 'query'} ${r.hostname}`;
        case 'TCPCONNECTWRAP':
          return `connect ${r.address}:${r.port}`;
        case 'PIPECONNECTWRAP':
          return `connect ${r.address}`;
        case 'WRITEWRAP':
          return 'socket write' + peer(r.handle);
        case 'SHUTDOWNWRAP':
          return 'socket end' + peer(r.handle);
        case 'UDPSENDWRAP':
          return 'udp send';
        default:
          return op.type;
      }
    case K_CRYPTO:
      return 'crypto ' + op.type.replace(/REQUEST$/, '').toLowerCase();
    default:
      return op.type;
  }
}

module.exports = { Tracker };
