package safety

import (
	"fmt"
	"net"
	"testing"

	"github.com/coda-serverless/coda/internal/testenv"
)

// pythonKind is the Python runtime the suite proves.
const pythonKind = "python:3.11"

// pythonPrelude is shared by every Python action: the Redis address, the background delay and
// two writers that speak RESP by hand (standard library only), one for asyncio, one blocking.
func pythonPrelude(d deps) string {
	host, port, _ := net.SplitHostPort(d.redis)
	return fmt.Sprintf(`import asyncio
import socket
import threading
import time

REDIS = (%q, %s)
BG = %g


def resp(*args):
    out = [b"*%%d\r\n" %% len(args)]
    for a in args:
        b = str(a).encode()
        out.append(b"$%%d\r\n%%s\r\n" %% (len(b), b))
    return b"".join(out)


async def write_async(key):
    reader, writer = await asyncio.open_connection(*REDIS)
    writer.write(resp("SET", key, int(time.time() * 1000)))
    await writer.drain()
    reply = await reader.readline()
    writer.close()
    await writer.wait_closed()
    if not reply.startswith(b"+OK"):
        raise RuntimeError("redis answered %%r" %% reply)


async def sleep_then_write(key):
    await asyncio.sleep(BG)
    await write_async(key)


def write_blocking(key):
    time.sleep(BG)
    with socket.create_connection(REDIS) as s:
        s.sendall(resp("SET", key, int(time.time() * 1000)))
        reply = s.recv(64)
    if not reply.startswith(b"+OK"):
        raise RuntimeError("redis answered %%r" %% reply)
`, host, port, bgDelay.Seconds())
}

// An un-awaited asyncio task.
const pyCreateTask = `

async def main(params):
    asyncio.create_task(sleep_then_write(params["key"]))
    return {"ok": True}
`

// A loop.call_later callback that starts the write.
const pyCallLater = `

async def main(params):
    key = params["key"]
    loop = asyncio.get_running_loop()
    loop.call_later(BG, lambda: loop.create_task(write_async(key)))
    return {"ok": True}
`

// A plain (non-daemon) thread, from a synchronous main.
const pyThread = `

def main(params):
    threading.Thread(target=write_blocking, args=(params["key"],)).start()
    return {"ok": True}
`

// An executor job (the loop's default ThreadPoolExecutor).
const pyExecutor = `

async def main(params):
    asyncio.get_running_loop().run_in_executor(None, write_blocking, params["key"])
    return {"ok": True}
`

func pythonScenarios(d deps) []scenario {
	src := func(code string) func(t testing.TB, s *testenv.Server, action, mode string) {
		return func(t testing.TB, s *testenv.Server, action, mode string) {
			t.Helper()
			s.Deploy(t, action, pythonKind, pythonPrelude(d)+code, modeAnnotations(mode), actionLimits(0))
		}
	}
	rs := redisStore{addr: d.redis}
	return []scenario{
		{name: "python/create_task", store: rs, deploy: src(pyCreateTask)},
		{name: "python/call_later", store: rs, deploy: src(pyCallLater)},
		{name: "python/thread", store: rs, deploy: src(pyThread)},
		{name: "python/run_in_executor", store: rs, deploy: src(pyExecutor)},
	}
}

// TestPythonBackgroundWrites is the Python safety suite (python:3.11, standard library only).
func TestPythonBackgroundWrites(t *testing.T) {
	d := needDeps(t)
	s := startServer(t)
	runScenarios(t, s, pythonScenarios(d))
}
