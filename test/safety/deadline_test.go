package safety

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/testenv"
)

const (
	// deadlineTimeoutMS is the actions' timeout: the deadline bounds the background phase too.
	// A warm-up invocation loads the action first, so that a slow cold start on a loaded
	// machine cannot use up this budget (init is bounded by the timeout as well).
	deadlineTimeoutMS = 2000
	// deadlineWork is how long the background work would run: far past the deadline.
	deadlineWork = 6 * time.Second
)

// TestDeadlineCutsOffBackgroundWork checks that background work still running at the deadline
// is cut off, and that the record says so: cause deadline, and the pending work in words.
func TestDeadlineCutsOffBackgroundWork(t *testing.T) {
	// Instances stay warm, so that the measured invocation reuses the warmed-up one.
	s := testenv.Start(t, "--keep-alive", "10m")
	ms := deadlineWork.Milliseconds()
	cases := []struct {
		name, kind, code string
		wantPending      string
	}{
		{"node/setTimeout", nodeKind, fmt.Sprintf(`
exports.main = (params) => {
  if (params.warm) return { warm: true };
  setTimeout(() => console.log('too late'), %d);
  return { ok: true };
};`, ms), fmt.Sprintf("setTimeout %d ms", ms)},
		{"python/call_later", pythonKind, fmt.Sprintf(`
import asyncio

async def main(params):
    if params.get("warm"):
        return {"warm": True}
    asyncio.get_running_loop().call_later(%g, print, "too late")
    return {"ok": True}
`, deadlineWork.Seconds()), "call_later"},
		{"go/sdk.GoNamed", goKind, fmt.Sprintf(`package main

import (
	"context"
	"time"

	"github.com/coda-serverless/coda/runtimes/go/sdk"
)

func Main(ctx context.Context, params map[string]any) map[string]any {
	if params["warm"] == true {
		return map[string]any{"warm": true}
	}
	// The work ignores ctx, as blocking calls without a context do: only the platform's
	// cut-off stops it. (Work that honours ctx returns at the deadline by itself.)
	sdk.GoNamed(ctx, "flush audit log", func(ctx context.Context) {
		time.Sleep(%d * time.Millisecond)
	})
	return map[string]any{"ok": true}
}
`, ms), "flush audit log"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			action := fmt.Sprintf("safety-deadline-%d", i)
			s.Deploy(t, action, c.kind, c.code, nil, actionLimits(deadlineTimeoutMS))
			if status, body, _ := s.Invoke(t, action, map[string]any{"warm": true}, true); status != 200 {
				t.Fatalf("warm-up: HTTP %d %s", status, body)
			}
			status, body, id := s.Invoke(t, action, nil, true)
			if status != 200 || id == "" {
				t.Fatalf("HTTP %d %s", status, body)
			}
			rec := s.WaitEnded(t, id, endedWithin)
			tm := testenv.TerminationOf(rec)
			t.Logf("SAFETY deadline %s duration=%dms responseTime=%dms termination=%+v", c.name, rec.End-rec.Start, annotationInt(rec, "responseTime"), tm)
			if !rec.Response.Success {
				t.Errorf("the response (before the deadline) should stand: %s", rec.Response.Result)
			}
			if tm.Cause != "deadline" {
				t.Errorf("cause %q, want deadline", tm.Cause)
			}
			if !containsSubstring(tm.Pending, c.wantPending) {
				t.Errorf("pending %q does not mention %q", tm.Pending, c.wantPending)
			}
			if dur := rec.End - rec.Start; dur < deadlineTimeoutMS-int64(clockSkew.Milliseconds()) || dur >= ms {
				t.Errorf("ended %d ms after its start; want the deadline (%d ms), not the work's end (%d ms)", dur, deadlineTimeoutMS, ms)
			}
			for _, l := range rec.Logs {
				if strings.Contains(l, "too late") {
					t.Errorf("work past the deadline ran and logged into the record: %q", l)
				}
			}
		})
	}
}

func containsSubstring(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
