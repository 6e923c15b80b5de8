// Package sdk is the Go runtime of Coda: it speaks the instance protocol (docs/protocol.md) on
// fd 3 and 4 and lets a Go action tell Coda about the work it leaves running after its response.
//
// # Why Go needs an SDK
//
// Coda ends an activation only when the asynchronous work it started has finished. The Node.js
// and Python runtimes find that work by themselves (async_hooks, the asyncio event loop, thread
// hooks). Go offers no such hook: a goroutine carries no owner, the scheduler exposes no
// creation or exit events, and the runtime cannot tell a goroutine flushing a write from one that
// idles forever in a connection pool. So a Go action names its background work explicitly:
//
//	func Main(ctx context.Context, params map[string]any) map[string]any {
//		sdk.Go(ctx, func(ctx context.Context) { flush(ctx, params) }) // Coda waits for it
//		return map[string]any{"ok": true}                            // the caller gets this at once
//	}
//
// Work started with a plain go statement is invisible to Coda: the activation may end, and the
// instance be paused or retired, while it still runs.
//
// # Entry points
//
// Coda builds a Go source action by generating func main() { sdk.Serve(Main) }, so an action
// only defines Main with one of the signatures listed in [Func]. A program that defines its own
// main calls [Serve] itself (for instance a prebuilt executable in a blackbox or Go zip action).
//
// The context given to Main belongs to the activation: it carries the activation's deadline and,
// unlike a net/http request context, stays valid after Main returns, until the activation ends.
//
// # Output
//
// Whatever the function writes to os.Stdout and os.Stderr (fmt.Println, log.Print) reaches the
// invoker raw, which attributes it when exactly one activation is in flight. [Logf] sends a line
// attributed to its activation exactly, also while several activations overlap.
package sdk
