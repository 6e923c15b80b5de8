package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
)

func TestRuntimeOverPipes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testGuard)
	defer cancel()
	root, err := findModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, tracking := range []string{"on", "off"} {
		rt, err := startRuntime([]string{nodeBin, filepath.Join(root, "runtimes", "nodejs", "runner.js")},
			[]string{"CODA_NODE_TRACKING=" + tracking})
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		if err := rt.Init(ctx, "nodejs:20", realisticNode); err != nil {
			t.Fatalf("tracking %s: %v", tracking, err)
		}
		s, err := Run(ctx, 100, 8, rt.Invoker(json.RawMessage(`{}`)))
		if err != nil || s.N != 100 {
			t.Fatalf("tracking %s: Run = %+v, %v", tracking, s, err)
		}
	}
	// A developer error in main comes back as an error of the call.
	rt, err := startRuntime([]string{nodeBin, filepath.Join(root, "runtimes", "nodejs", "runner.js")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Init(ctx, "nodejs:20", `exports.main = () => { throw new Error('boom') }`); err != nil {
		t.Fatal(err)
	}
	if err := rt.Invoker(nil)(ctx); err == nil {
		t.Error("a throwing main was not reported as an error")
	}
}
