package main

import (
	"context"
	"fmt"
)

// Goals of issue 2, as ratios to the direct Node.js server measured in the same run.
const (
	goalWarmP50Ratio = 2.0 // coda p50 at most 2× direct
	goalWarmP99Ratio = 3.0 // coda p99 at most 3× direct
	goalThroughput16 = 0.5 // coda throughput at 16 clients at least half of direct
)

// warmConcurrency is the action's concurrency limit in the warm section: one instance then
// serves all 16 clients, as the one direct Node.js process does, so both sides use one event loop.
const warmConcurrency = 16

const noopNode = `exports.main = (p) => p`

// warmBody is the request both sides get: a small JSON object echoed back.
var warmBody = []byte(`{"name":"bench","n":1}`)

// runWarm compares a warm blocking invoke of a no-op action with the same request to a plain
// Node.js server, at 1 and 16 concurrent clients.
func runWarm(ctx context.Context, env *Env, r *Result) error {
	direct, err := startDirect(ctx, env.Tmp)
	if err != nil {
		return err
	}
	defer direct.Close()
	directCall := direct.Invoker(warmBody)

	var codaCall func(context.Context) error
	codaErr := needCoda(env)
	if codaErr == nil {
		var srv *Server
		srv, codaErr = env.Server(ctx, ServerOptions{StemCells: 2})
		if codaErr == nil {
			defer srv.Close()
			codaErr = srv.API.PutAction(ctx, "noop", Action{
				Exec:   Exec{Kind: "nodejs:20", Code: noopNode},
				Limits: &Limits{Memory: 128, Concurrency: warmConcurrency},
			})
			codaCall = srv.API.Invoker("noop", warmBody)
		}
	}
	if codaErr != nil {
		r.Errorf("coda: %v (direct server measured alone)", codaErr)
		codaCall = nil
	}

	warmup := max(env.N/5, 50)
	type pair struct{ direct, coda Stats }
	res := map[int]*pair{}
	for _, c := range []int{1, 16} {
		p := &pair{}
		res[c] = p
		// Warm up at this concurrency, so that coda has its instance and both sides have their
		// connections and JIT-compiled paths before anything is timed.
		if _, err := Run(ctx, warmup, c, directCall); err != nil {
			return fmt.Errorf("direct warm-up: %w", err)
		}
		if codaCall == nil {
			if p.direct, err = Run(ctx, env.N, c, directCall); err != nil {
				return fmt.Errorf("direct c=%d: %w", c, err)
			}
			continue
		}
		if _, err := Run(ctx, warmup, c, codaCall); err != nil {
			return fmt.Errorf("coda warm-up: %w", err)
		}
		s, err := Interleave(ctx, env.N, c, compareRounds, directCall, codaCall)
		if err != nil {
			return fmt.Errorf("%d clients: %w", c, err)
		}
		p.direct, p.coda = s[0], s[1]
	}

	r.Row("", "p50 ms", "p99 ms", "req/s", "p50 ms @16", "p99 ms @16", "req/s @16")
	row := func(name string, s1, s16 Stats) {
		r.Row(name, msStr(s1.P50), msStr(s1.P99), num(s1.Throughput), msStr(s16.P50), msStr(s16.P99), num(s16.Throughput))
		r.Figure(name+"_c1_p50_ms", ms(s1.P50))
		r.Figure(name+"_c1_p99_ms", ms(s1.P99))
		r.Figure(name+"_c1_rps", s1.Throughput)
		r.Figure(name+"_c16_p50_ms", ms(s16.P50))
		r.Figure(name+"_c16_p99_ms", ms(s16.P99))
		r.Figure(name+"_c16_rps", s16.Throughput)
	}
	row("direct node", res[1].direct, res[16].direct)
	if codaCall == nil {
		return nil
	}
	row("coda", res[1].coda, res[16].coda)
	d1, c1, d16, c16 := res[1].direct, res[1].coda, res[16].direct, res[16].coda
	ratio := func(a, b float64) float64 { return a / b }
	rp50 := ratio(ms(c1.P50), ms(d1.P50))
	rp99 := ratio(ms(c1.P99), ms(d1.P99))
	rt16 := ratio(c16.Throughput, d16.Throughput)
	r.Row("coda/direct", ratioStr(rp50), ratioStr(rp99), ratioStr(ratio(c1.Throughput, d1.Throughput)),
		ratioStr(ratio(ms(c16.P50), ms(d16.P50))), ratioStr(ratio(ms(c16.P99), ms(d16.P99))), ratioStr(rt16))
	r.Figure("ratio_c1_p50", rp50)
	r.Figure("ratio_c1_p99", rp99)
	r.Figure("ratio_c16_rps", rt16)
	r.Check("p50 coda/direct (1 client)", rp50, "<=", goalWarmP50Ratio, "x")
	r.Check("p99 coda/direct (1 client)", rp99, "<=", goalWarmP99Ratio, "x")
	r.Check("throughput coda/direct (16 clients)", rt16, ">=", goalThroughput16, "x")
	r.Note("coda adds %s ms at p50 (1 client); the no-op action runs with concurrency %d, like the one direct process",
		num(ms(c1.P50-d1.P50)), warmConcurrency)
	return nil
}
