package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
)

// goalTrackerOverhead is issue 3's bound on what tracking adds to a realistic handler (p50).
const goalTrackerOverhead = 0.10

// compareRounds splits each comparison into this many alternating batches (see Interleave).
const compareRounds = 10

// realisticNode is the handler of issue 3: twenty awaits (resolved promises and setImmediate
// turns) and a small file read, each of which the tracker sees.
const realisticNode = `const fs = require('fs')
exports.main = async (p) => {
  let n = 0
  for (let i = 0; i < 10; i++) n += await Promise.resolve(i)
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve))
  const self = await fs.promises.readFile(__filename)
  return { n, size: self.length }
}`

// trackingEnv is how coda (which passes it to instances) and the runtime turn tracking off.
const trackingEnv = "CODA_NODE_TRACKING=off"

type onOff struct{ on, off Stats }

// measureOnOff measures on and off at 1 and 16 clients, interleaved.
func measureOnOff(ctx context.Context, n int, on, off func(context.Context) error) (c1, c16 onOff, err error) {
	warm := max(n/5, 50)
	for _, f := range []func(context.Context) error{on, off} {
		if _, err := Run(ctx, warm, 16, f); err != nil {
			return c1, c16, fmt.Errorf("warm-up: %w", err)
		}
	}
	for _, m := range []struct {
		c   int
		dst *onOff
	}{{1, &c1}, {16, &c16}} {
		s, err := Interleave(ctx, n, m.c, compareRounds, on, off)
		if err != nil {
			return c1, c16, fmt.Errorf("%d clients: %w", m.c, err)
		}
		m.dst.on, m.dst.off = s[0], s[1]
	}
	return c1, c16, nil
}

// runTracker measures the tracker's cost twice: on the bare runtime over the instance protocol
// (what tracking itself costs) and through coda (what a caller sees).
func runTracker(ctx context.Context, env *Env, r *Result) error {
	r.Row("", "off p50 ms", "on p50 ms", "p50 overhead", "off req/s @16", "on req/s @16", "req/s overhead")
	report := func(label, key string, c1, c16 onOff) float64 {
		p50 := ms(c1.on.P50)/ms(c1.off.P50) - 1
		rps := c16.off.Throughput/c16.on.Throughput - 1
		r.Row(label, msStr(c1.off.P50), msStr(c1.on.P50), pct(p50), num(c16.off.Throughput), num(c16.on.Throughput), pct(rps))
		r.Figure(key+"_off_p50_ms", ms(c1.off.P50))
		r.Figure(key+"_on_p50_ms", ms(c1.on.P50))
		r.Figure(key+"_p50_overhead_pct", 100*p50)
		r.Figure(key+"_off_c16_rps", c16.off.Throughput)
		r.Figure(key+"_on_c16_rps", c16.on.Throughput)
		r.Figure(key+"_rps_overhead_pct", 100*rps)
		return p50
	}

	// The bare runtime: one runner.js per setting, driven as the invoker drives it.
	runner := filepath.Join(env.Repo, "runtimes", "nodejs", "runner.js")
	start := func(extra ...string) (*Runtime, error) {
		rt, err := startRuntime([]string{nodeBin, runner}, extra)
		if err != nil {
			return nil, err
		}
		if err := rt.Init(ctx, "nodejs:20", realisticNode); err != nil {
			rt.Close()
			return nil, err
		}
		return rt, nil
	}
	params := json.RawMessage(`{"name":"bench"}`)
	if on, err := start("CODA_NODE_TRACKING=on"); err != nil {
		r.Errorf("runtime: %v", err)
	} else {
		defer on.Close()
		if off, err := start(trackingEnv); err != nil {
			r.Errorf("runtime: %v", err)
		} else {
			defer off.Close()
			c1, c16, err := measureOnOff(ctx, env.N, on.Invoker(params), off.Invoker(params))
			if err != nil {
				r.Errorf("runtime: %v", err)
			} else {
				over := report("runtime (pipes)", "runtime", c1, c16)
				r.Check("tracker overhead, bare runtime p50", 100*over, "<", 100*goalTrackerOverhead, "%")
			}
		}
	}

	// Through coda: two servers, one of which passes CODA_NODE_TRACKING=off to its instances.
	if err := needCoda(env); err != nil {
		return err
	}
	on, err := env.Server(ctx, ServerOptions{StemCells: 2})
	if err != nil {
		return err
	}
	defer on.Close()
	off, err := env.Server(ctx, ServerOptions{StemCells: 2, Env: []string{trackingEnv}})
	if err != nil {
		return err
	}
	defer off.Close()
	for _, s := range []*Server{on, off} {
		if err := s.API.PutAction(ctx, "realistic", Action{Exec: Exec{Kind: "nodejs:20", Code: realisticNode},
			Limits: &Limits{Memory: benchMemory, Concurrency: warmConcurrency}}); err != nil {
			return err
		}
	}
	body := []byte(`{"name":"bench"}`)
	c1, c16, err := measureOnOff(ctx, env.N, on.API.Invoker("realistic", body), off.API.Invoker("realistic", body))
	if err != nil {
		return fmt.Errorf("coda: %w", err)
	}
	over := report("coda (API)", "coda", c1, c16)
	r.Check("tracker overhead through coda p50", 100*over, "<", 100*goalTrackerOverhead, "%")
	r.Note("overhead = on/off − 1 for p50 (1 client), off/on − 1 for req/s (16 clients), i.e. the extra time per request; %d alternating rounds; tracking off via %s", compareRounds, trackingEnv)
	return nil
}

func pct(f float64) string { return fmt.Sprintf("%+.1f%%", 100*f) }
