package sdk

import (
	"context"
	"os"
	"strings"
	"time"
)

// The protocol as seen from the runtime: the invoker sends init and run on fd 3; the runtime
// answers ready (end: true: it reports end itself), the response at once, a snapshot of what is
// still pending, and end when the background work has finished.
func ExampleServe() {
	main := func(ctx context.Context, params map[string]any) map[string]any {
		GoNamed(ctx, "flush audit log", func(ctx context.Context) {
			time.Sleep(200 * time.Millisecond) // stands for a slow write
		})
		return map[string]any{"greeting": "hello " + params["name"].(string)}
	}
	in := strings.NewReader(`{"type":"init","id":"i-1","kind":"go:1.26","code":""}
{"type":"run","id":"a1","params":{"name":"Ada"},"deadline":4102444800000,"mode":"decoupled"}
`)
	// Serve(main) does this on fd 3 and fd 4.
	_ = serve(context.Background(), in, os.Stdout, main)
	// Output:
	// {"type":"ready","id":"i-1","end":true}
	// {"type":"response","id":"a1","result":{"greeting":"hello Ada"}}
	// {"type":"pending","id":"a1","pending":["flush audit log"]}
	// {"type":"end","id":"a1","cause":"settled"}
}
