"""Coda's Python runtime: a stem cell that loads one action and runs its activations.

It speaks docs/protocol.md over fd 3 (init, run, cutoff in) and fd 4 (ready, response, log,
pending, end out) and reports each activation's end itself: a ContextVar names the activation
whose code is running, and asyncio tasks, loop timers, executor jobs and threads started under it
are pending work until they finish (see DESIGN.md, "Knowing when an activation has settled").

Everything heavy is imported here, before init, because the process is prewarmed: the cold start
of an action is then only the cost of loading the action's own code.
"""

import asyncio
import asyncio.futures
import asyncio.tasks
import asyncio.timeouts
import base64
import concurrent.futures
import concurrent.futures.thread
import contextvars
import functools
import glob
import importlib.util
import inspect
import io
import itertools
import json
import linecache
import os
import site
import sys
import tempfile
import threading
import time
import traceback
import types
import zipfile
from collections import deque

IN_FD = 3
OUT_FD = 4

# Settled = nothing pending for this long: long enough that a callback chain which hands work
# from one operation to the next (a task that schedules a timer when it finishes) is not cut.
QUIET_WINDOW = 0.020
# Pending snapshots are rate-limited so that a busy activation cannot flood the invoker.
SNAPSHOT_INTERVAL = 0.050
# A user line longer than this is sent in pieces, so no log message nears the protocol's
# 16 MiB line limit even after JSON escaping (up to 6 bytes per character).
LOG_LINE_MAX = 256 * 1024
# Below malloc's mmap threshold, so a read does not map and unmap a fresh megabyte each time.
READ_CHUNK = 64 * 1024

TRACKING = os.environ.get("CODA_PY_TRACKING", "on").lower() not in ("off", "0", "false", "no")

# The activation whose code is running in the current context; None for the runtime itself and
# for anything created at import or init time.
ACT = contextvars.ContextVar("coda_activation", default=None)
# The pristine context the runtime's own callbacks run in, so they are never attributed.
ROOT = contextvars.Context()

_tokens = itertools.count(1)
_tls = threading.local()
_send_lock = threading.RLock()
_real_stdout = sys.stdout
_real_stderr = sys.stderr


def _write_locked(data):
    view = memoryview(data)
    while view:
        n = os.write(OUT_FD, view)
        view = view[n:]


def send_raw(data):
    with _send_lock:
        _write_locked(data)


def send(msg):
    send_raw(json.dumps(msg, separators=(",", ":")).encode() + b"\n")


def _describe_callable(fn):
    while isinstance(fn, functools.partial):
        # asyncio.to_thread submits partial(context.run, func, ...): name the func.
        if getattr(fn.func, "__self__", None).__class__ is contextvars.Context and fn.args:
            fn = fn.args[0]
        else:
            fn = fn.func
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def _describe_awaitable(aw):
    if isinstance(aw, asyncio.Task):
        aw = aw.get_coro()
    name = getattr(aw, "__name__", None)
    if name:
        return name
    return type(aw).__name__


def _format_exc(exc):
    return "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__


class Activation:
    """One run: its pending work, its log line buffers and where it is in its life."""

    def __init__(self, rt, msg):
        self.rt = rt
        self.id = msg.get("id") or ""
        self.mode = msg.get("mode") or "decoupled"
        self.deadline = msg.get("deadline") or 0
        self.pending = {}  # token -> words; touched on the loop thread only
        self.main_done = False
        self.responded = False
        self.ended = False
        self.held = None  # response bytes held back in await mode
        self.last_change = 0.0
        self.quiet_timer = None
        self.snap_timer = None
        self.last_snap = None
        self.last_snap_time = 0.0
        self.partial = {"stdout": "", "stderr": ""}

    # Logs may come from any thread; the send lock orders them against end.
    def log(self, stream, text):
        with _send_lock:
            if self.ended:
                return False
            buf = self.partial[stream] + text
            lines = buf.split("\n")
            rest = lines.pop()
            while len(rest) > LOG_LINE_MAX:
                lines.append(rest[:LOG_LINE_MAX])
                rest = rest[LOG_LINE_MAX:]
            self.partial[stream] = rest
            for line in lines:
                self._send_log_locked(stream, line)
            return True

    def _send_log_locked(self, stream, line):
        _write_locked(
            json.dumps({"type": "log", "id": self.id, "stream": stream, "line": line},
                       separators=(",", ":")).encode() + b"\n")

    def log_lines(self, stream, text):
        """Logs a complete block (a traceback) as whole lines."""
        if not text.endswith("\n"):
            text += "\n"
        self.log(stream, text)

    def end(self, cause, pending=None):
        with _send_lock:
            if self.ended:
                return
            for stream, rest in self.partial.items():
                if rest:
                    self._send_log_locked(stream, rest)
            msg = {"type": "end", "id": self.id, "cause": cause}
            if pending:
                msg["pending"] = pending
            _write_locked(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
            self.ended = True
        self.rt.activations.pop(self.id, None)
        for timer in (self.quiet_timer, self.snap_timer):
            if timer is not None:
                timer.cancel()

    def send_response(self, data):
        with _send_lock:
            if self.responded or self.ended:
                return
            self.responded = True
            _write_locked(data)


class Context:
    """The optional second argument of main: the activation's tracking helpers."""

    __slots__ = ("_act", "activation_id", "deadline")

    def __init__(self, act):
        self._act = act
        self.activation_id = act.id
        self.deadline = act.deadline

    def remaining_time(self):
        """Milliseconds left until the deadline (which bounds background work too)."""
        return max(0, int(self.deadline - time.time() * 1000))

    def wait_until(self, aw):
        """Keeps the activation open until aw (coroutine, task, future) completes."""
        return self._act.rt.wait_until(self._act, aw)


class Stream(io.TextIOBase):
    """Replaces sys.stdout/sys.stderr: writes become log lines of the activation whose code
    wrote them, and go to the real fd 1/2 outside any activation (or after its end)."""

    def __init__(self, name, real):
        super().__init__()
        self._name = name
        self._real = real

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        act = ACT.get()
        if act is None or not act.log(self._name, s):
            self._real.write(s)
            self._real.flush()
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        self._real.flush()

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._real.fileno()

    @property
    def encoding(self):
        return self._real.encoding

    @property
    def errors(self):
        return self._real.errors

    @property
    def buffer(self):
        return self._real.buffer


class Loop(asyncio.SelectorEventLoop):
    """An event loop whose call_later/call_at timers count as pending work of the activation
    that scheduled them until they fire or are cancelled."""

    def __init__(self, rt):
        self._rt = rt
        self._timer_tokens = {}
        super().__init__()

    def call_later(self, delay, callback, *args, context=None):
        if delay is None:
            raise TypeError("delay must not be None")
        return self._tracked_at(self.time() + delay, "call_later %.1f s" % delay,
                                callback, args, context)

    def call_at(self, when, callback, *args, context=None):
        return self._tracked_at(when, "call_at in %.1f s" % max(0.0, when - self.time()),
                                callback, args, context)

    def _tracked_at(self, when, words, callback, args, context):
        act = ACT.get() if context is None else context.get(ACT)
        if act is None or act.ended or _wakes_a_task(callback):
            return asyncio.SelectorEventLoop.call_at(self, when, callback, *args, context=context)
        rt = self._rt
        token = next(_tokens)

        def fire(*a):
            self._timer_tokens.pop(id(handle), None)
            try:
                callback(*a)
            finally:
                rt.untrack(act, token)

        handle = asyncio.SelectorEventLoop.call_at(self, when, fire, *args, context=context)
        self._timer_tokens[id(handle)] = (act, token)
        rt.track(act, token, words)
        return handle

    def _timer_handle_cancelled(self, handle):
        super()._timer_handle_cancelled(handle)
        entry = self._timer_tokens.pop(id(handle), None)
        if entry is not None:
            self._rt.untrack(*entry)


_TASK_WAKERS = (asyncio.futures._set_result_unless_cancelled, asyncio.tasks._release_waiter)


def _wakes_a_task(callback):
    # asyncio.sleep, wait_for and asyncio.timeout schedule timers that only wake a task; the
    # task itself is already pending, so listing its timer too would only be noise.
    if callback in _TASK_WAKERS:
        return True
    return isinstance(getattr(callback, "__self__", None), asyncio.timeouts.Timeout)


class Runtime:
    def __init__(self):
        self.loop = Loop(self)
        asyncio.set_event_loop(self.loop)
        # Tracked tasks, strongly held: asyncio keeps only weak references to tasks, so an
        # un-awaited task blocked on a stream (whose reader is also weakly held) could be
        # garbage-collected mid-write, and its activation would wait for it until the deadline.
        self._live_tasks = set()
        self.loop.set_task_factory(self._task_factory)
        self.loop_thread = threading.get_ident()
        self.activations = {}
        self.inbuf = b""
        self.main = None
        self.main_is_async = False
        self.pass_ctx = False
        self.base_ctx = contextvars.copy_context()
        self.idle_workers = deque()
        self.initialized = False

    # ---- tracking (state is touched on the loop thread only; other threads post to it) ----

    def on_loop(self):
        return threading.get_ident() == self.loop_thread

    def track(self, act, token, words):
        if self.on_loop():
            self._track(act, token, words)
        else:
            self.loop.call_soon_threadsafe(self._track, act, token, words, context=ROOT)

    def untrack(self, act, token):
        if self.on_loop():
            self._untrack(act, token)
        else:
            self.loop.call_soon_threadsafe(self._untrack, act, token, context=ROOT)

    def _track(self, act, token, words):
        if act.ended or not TRACKING:
            return
        act.pending[token] = words
        self._changed(act)

    def _untrack(self, act, token):
        if act.pending.pop(token, None) is None or act.ended:
            return
        self._changed(act)

    def _changed(self, act):
        act.last_change = self.loop.time()
        if act.main_done:
            self._schedule_snapshot(act)
            self._maybe_settle(act)

    def _maybe_settle(self, act):
        if act.ended or not act.main_done or act.pending or act.quiet_timer is not None:
            return
        act.quiet_timer = self.loop.call_later(QUIET_WINDOW, self._quiet_check, act, context=ROOT)

    def _quiet_check(self, act):
        act.quiet_timer = None
        if act.ended or act.pending:
            return
        left = act.last_change + QUIET_WINDOW - self.loop.time()
        if left > 0:
            act.quiet_timer = self.loop.call_later(left, self._quiet_check, act, context=ROOT)
            return
        if act.held is not None:
            act.send_response(act.held)
            act.held = None
        act.end("settled")

    def _schedule_snapshot(self, act):
        if act.snap_timer is not None or act.ended:
            return
        delay = max(0.0, act.last_snap_time + SNAPSHOT_INTERVAL - self.loop.time())
        act.snap_timer = self.loop.call_later(delay, self._snapshot, act, context=ROOT)

    def _snapshot(self, act):
        act.snap_timer = None
        words = list(act.pending.values())
        if act.ended or not words or words == act.last_snap:
            return
        act.last_snap = words
        act.last_snap_time = self.loop.time()
        send({"type": "pending", "id": act.id, "pending": words})

    def _task_factory(self, loop, coro, context=None):
        task = asyncio.Task(coro, loop=loop, context=context)
        act = ACT.get() if context is None else context.get(ACT)
        if act is not None and not act.ended:
            token = next(_tokens)
            self._track(act, token, "asyncio task " + _describe_awaitable(coro))
            self._live_tasks.add(task)
            task.add_done_callback(self._live_tasks.discard, context=ROOT)
            task.add_done_callback(functools.partial(self._tracked_done, act, token), context=ROOT)
        return task

    def _tracked_done(self, act, token, fut):
        self._untrack(act, token)
        if not fut.cancelled() and getattr(fut, "_log_traceback", False):
            # Whoever awaits fut retrieves its exception in a step queued before this check.
            self.loop.call_soon(self._report_unretrieved, act, fut, context=ROOT)

    def _report_unretrieved(self, act, fut):
        if not fut._log_traceback:
            return
        # Nobody awaited it: say so in the activation's own log rather than in a "never
        # retrieved" warning on the process's stderr at some later garbage collection.
        exc = fut.exception()
        act.log_lines("stderr", "Unhandled exception in background work:\n" + "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def wait_until(self, act, aw):
        token = next(_tokens)
        self.track(act, token, "wait_until " + _describe_awaitable(aw))
        ctx = contextvars.copy_context()

        def attach():
            if asyncio.iscoroutine(aw):
                fut = asyncio.Task(aw, loop=self.loop, context=ctx)
            elif isinstance(aw, concurrent.futures.Future):
                fut = asyncio.wrap_future(aw, loop=self.loop)
            else:
                fut = asyncio.ensure_future(aw, loop=self.loop)
            fut.add_done_callback(functools.partial(self._tracked_done, act, token), context=ROOT)
            return fut

        if self.on_loop():
            return attach()
        self.loop.call_soon_threadsafe(attach, context=ROOT)
        return None

    # ---- protocol ----

    def on_readable(self):
        data = os.read(IN_FD, READ_CHUNK)
        if not data:
            # The invoker is gone: nobody is left to report to.
            os._exit(0)
        buf = self.inbuf + data
        lines = buf.split(b"\n")
        self.inbuf = lines.pop()
        for line in lines:
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError as e:
                _real_stderr.write("coda runner: bad protocol line: %s\n" % e)
                continue
            if not isinstance(msg, dict):
                continue
            kind = msg.get("type")
            if kind == "run":
                self.on_run(msg)
            elif kind == "cutoff":
                self.on_cutoff(msg)
            elif kind == "init":
                self.on_init(msg)

    def on_init(self, msg):
        global TRACKING
        rid = msg.get("id")
        if self.initialized:
            send({"type": "ready", "id": rid, "error": "the runtime is already initialized"})
            return
        env = msg.get("env") or {}
        os.environ.update({str(k): str(v) for k, v in env.items()})
        TRACKING = os.environ.get("CODA_PY_TRACKING", "on").lower() not in ("off", "0", "false", "no")
        try:
            self.base_ctx.run(self._load, msg)
        except Exception as e:  # noqa: BLE001 - any failure of user code is an init error
            send({"type": "ready", "id": rid, "error": _init_error(e)})
            return
        self.initialized = True
        send({"type": "ready", "id": rid, "end": True})

    def _load(self, msg):
        name = msg.get("main") or "main"
        code = msg.get("code") or ""
        if msg.get("binary"):
            module = _load_zip(code)
        else:
            module = _load_source(code)
        fn = getattr(module, name, None)
        if fn is None:
            raise InitError("the action code has no function named %r" % name)
        if not callable(fn):
            raise InitError("%r in the action code is not a function" % name)
        self.main = fn
        self.main_is_async = inspect.iscoroutinefunction(fn)
        self.pass_ctx = _takes_two_args(fn)

    def on_run(self, msg):
        act = Activation(self, msg)
        if not self.initialized:
            send({"type": "response", "id": act.id, "error": "the action is not initialized"})
            act.end("settled")
            return
        self.activations[act.id] = act
        env = msg.get("env")
        if env:
            os.environ.update({str(k): str(v) for k, v in env.items()})
        params = msg.get("params")
        if not isinstance(params, dict):
            params = {}
        args = (params, Context(act)) if self.pass_ctx else (params,)
        ctx = self.base_ctx.copy()
        ctx.run(ACT.set, act)
        if self.main_is_async:
            try:
                coro = self.main(*args)
            except BaseException as e:  # noqa: BLE001
                self.finish(act, error=e)
                self.main_finished(act)
                return
            self._await_main(act, coro, ctx)
        else:
            self._dispatch(functools.partial(ctx.run, self._call_sync, act, args, ctx))

    def _await_main(self, act, coro, ctx):
        # Created directly, not through the task factory: main is not background work.
        asyncio.Task(self._main_task(act, coro), loop=self.loop, context=ctx)

    async def _main_task(self, act, coro):
        # Finishing inside the task rather than in a done callback saves a loop iteration on
        # the warm path.
        try:
            result = await coro
        except BaseException as e:  # noqa: BLE001 - whatever main raised is its error
            self.finish(act, error=e)
        else:
            self.finish(act, result=result)
        self.main_finished(act)

    def _call_sync(self, act, args, ctx):
        # Runs on a runtime worker thread, so that a blocking main leaves the loop free to
        # serve other activations' background work and cutoffs, and can use asyncio.run itself.
        try:
            result = self.main(*args)
        except BaseException as e:  # noqa: BLE001
            self.finish(act, error=e)
        else:
            if inspect.isawaitable(result):
                self.loop.call_soon_threadsafe(self._await_main, act, result, ctx, context=ROOT)
                return
            self.finish(act, result=result)
        self.loop.call_soon_threadsafe(self.main_finished, act, context=ROOT)

    def finish(self, act, result=None, error=None):
        """Builds the response and sends it, or holds it back in await mode."""
        if error is None:
            if result is None:
                result = {}
            if not isinstance(result, dict):
                error = TypeError("main must return a dict, not %s" % type(result).__name__)
            else:
                try:
                    body = json.dumps(result, separators=(",", ":"))
                except (TypeError, ValueError) as e:
                    error = e
        if error is not None:
            if error.__traceback__ is not None:
                act.log_lines("stderr", "".join(
                    traceback.format_exception(type(error), error, error.__traceback__)))
            data = json.dumps({"type": "response", "id": act.id, "error": _format_exc(error)},
                              separators=(",", ":")).encode() + b"\n"
        else:
            data = ('{"type":"response","id":%s,"result":%s}\n'
                    % (json.dumps(act.id), body)).encode()
        if act.mode == "await" and TRACKING:
            act.held = data
        else:
            act.send_response(data)

    def main_finished(self, act):
        if act.ended:
            return
        act.main_done = True
        if act.mode == "coupled":
            act.end("coupled")
            return
        if not TRACKING:
            if act.held is not None:
                act.send_response(act.held)
            act.end("settled")
            return
        act.last_change = self.loop.time()
        if act.pending:
            self._snapshot(act)
        self._maybe_settle(act)

    def on_cutoff(self, msg):
        act = self.activations.get(msg.get("id"))
        if act is None:
            return
        pending = list(act.pending.values())
        if not act.main_done:
            pending.insert(0, "main")
        if act.held is not None:
            act.send_response(act.held)
            act.held = None
        act.end("deadline", pending)

    # ---- sync main workers: reused threads, so the warm path creates none ----

    def _dispatch(self, job):
        try:
            worker = self.idle_workers.pop()
        except IndexError:
            worker = self._new_worker()
        worker[0].append(job)
        worker[1].release()

    def _new_worker(self):
        worker = (deque(), threading.Semaphore(0))
        # Not a daemon: threads inherit daemon-ness from their creator, and a thread that main
        # starts must be non-daemon by default, as it would be on a main thread.
        t = threading.Thread(target=self._worker, args=worker, name="coda-worker")
        _orig_thread_start(t)
        return worker

    def _worker(self, jobs, ready):
        me = (jobs, ready)
        policy = asyncio.get_event_loop_policy()
        while True:
            ready.acquire()
            job = jobs.popleft()
            # Each run finds a loop of its own, so that sync code written for OpenWhisk's main
            # thread (asyncio.get_event_loop().run_until_complete(...)) works here too, even
            # after an earlier run's asyncio.run() cleared it.
            try:
                if policy.get_event_loop().is_closed():
                    raise RuntimeError
            except RuntimeError:
                asyncio.set_event_loop(asyncio.new_event_loop())
            job()
            self.idle_workers.append(me)

    def serve(self):
        # Prewarmed with the stem cell, so the first run does not pay for a thread.
        self.idle_workers.append(self._new_worker())
        ROOT.run(self.loop.add_reader, IN_FD, self.on_readable)
        self.loop.run_forever()


class InitError(Exception):
    pass


def _init_error(e):
    if isinstance(e, InitError):
        return str(e)
    if isinstance(e, SyntaxError):
        return "%s: %s (line %s)" % (type(e).__name__, e.msg, e.lineno)
    msg = _format_exc(e)
    # Point at the line of the action's own code that failed, not at the runtime's.
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == _SOURCE_NAME or frame.filename.endswith(os.sep + "__main__.py"):
            line = frame.lineno
    if line is not None:
        msg += " (line %d)" % line
    return msg


_SOURCE_NAME = "__main__.py"
_MODULE_NAME = "main__"  # as OpenWhisk's Python runtime names the action's module


def _load_source(code):
    module = types.ModuleType(_MODULE_NAME)
    module.__file__ = _SOURCE_NAME
    compiled = compile(code, _SOURCE_NAME, "exec", dont_inherit=True)
    # Tracebacks of the action can then quote its lines.
    linecache.cache[_SOURCE_NAME] = (len(code), None, code.splitlines(True), _SOURCE_NAME)
    sys.modules[_MODULE_NAME] = module
    exec(compiled, module.__dict__)
    return module


def _load_zip(code):
    try:
        data = base64.b64decode(code, validate=False)
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (ValueError, zipfile.BadZipFile) as e:
        raise InitError("the action's zip file is invalid: %s" % e) from None
    root = os.path.realpath(tempfile.mkdtemp(prefix="coda-action-"))
    for info in archive.infolist():
        target = os.path.realpath(os.path.join(root, info.filename))
        if target != root and not target.startswith(root + os.sep):
            raise InitError("the action's zip file has an entry outside its folder: %r"
                            % info.filename)
        archive.extract(info, root)
    entry = os.path.join(root, "__main__.py")
    if not os.path.isfile(entry):
        raise InitError("the action's zip file has no __main__.py at its top level")
    paths = [root]
    paths += sorted(glob.glob(os.path.join(root, "virtualenv", "lib", "python3*", "site-packages")))
    if os.path.isdir(os.path.join(root, "site-packages")):
        paths.append(os.path.join(root, "site-packages"))
    for p in reversed(paths):
        site.addsitedir(p)  # processes .pth files too
        sys.path.remove(p)
        sys.path.insert(0, p)
    os.chdir(root)  # actions read files shipped beside their code by relative path
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, entry)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


def _takes_two_args(fn):
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


# ---- patches: executor jobs and threads started by an activation are its pending work ----

_orig_thread_start = threading.Thread.start
_orig_submit = concurrent.futures.ThreadPoolExecutor.submit
_runtime = None


def _is_machinery(thread):
    # Pools' manager threads live as long as their pool, like idle executor workers.
    module = type(thread).__module__ or ""
    return module.startswith(("concurrent.futures", "multiprocessing"))


def _thread_start(self):
    act = ACT.get()
    if act is None or getattr(_tls, "in_submit", False) or _is_machinery(self):
        return _orig_thread_start(self)
    ctx = contextvars.copy_context()
    run = self.run
    token = None
    if not self.daemon and not act.ended:
        token = next(_tokens)
        _runtime.track(act, token, "thread " + self.name)

    def body():
        try:
            run()
        except BaseException:  # noqa: BLE001
            # Report it inside the context, so the traceback is the activation's log.
            print("Exception in thread %s:" % self.name, file=sys.stderr)
            traceback.print_exc(file=sys.stderr)

    def tracked_run():
        try:
            ctx.run(body)
        finally:
            if token is not None:
                _runtime.untrack(act, token)

    self.run = tracked_run
    try:
        return _orig_thread_start(self)
    except BaseException:
        if token is not None:
            _runtime.untrack(act, token)
        raise


def _submit(self, fn, /, *args, **kwargs):
    act = ACT.get()
    _tls.in_submit = True  # worker threads the pool starts now are not the activation's
    try:
        if act is None or act.ended:
            return _orig_submit(self, fn, *args, **kwargs)
        ctx = contextvars.copy_context()
        fut = _orig_submit(self, ctx.run, fn, *args, **kwargs)
    finally:
        _tls.in_submit = False
    token = next(_tokens)
    _runtime.track(act, token, "executor job " + _describe_callable(fn))
    fut.add_done_callback(lambda _f: _runtime.untrack(act, token))
    return fut


def main():
    global _runtime
    for fd in (IN_FD, OUT_FD):
        os.set_inheritable(fd, False)  # user child processes must not hold the protocol pipes
    _runtime = Runtime()
    # Installed even with tracking off: init's env may turn it back on, and _track ignores
    # work when it is off.
    threading.Thread.start = _thread_start
    concurrent.futures.ThreadPoolExecutor.submit = _submit
    sys.stdout = Stream("stdout", _real_stdout)
    sys.stderr = Stream("stderr", _real_stderr)
    try:
        _runtime.serve()
    except BaseException:  # noqa: BLE001
        traceback.print_exc(file=_real_stderr)
    # Worker threads are not daemons; nothing may keep a broken runtime alive.
    _real_stderr.flush()
    os._exit(1)


if __name__ == "__main__":
    main()
