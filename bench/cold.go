package main

import (
	"context"
	"fmt"
	"time"
)

// goalColdOverWarm is issue 2's bound on a cold start from a stem cell, above the warm p50.
const goalColdOverWarm = 10 * time.Millisecond

// refillPause lets the invoker replace the stem cell the previous cold start used, so that every
// "with stem cell" sample really finds one (a Node.js stem cell starts in well under this).
const refillPause = 700 * time.Millisecond

// benchMemory is the memory limit (MB) of every bench action: small, so that the dozens of
// actions a section deploys fit the default pool without evictions skewing cold starts.
const benchMemory = 128

// ColdSample is one cold start: the blocking invoke's wall time and the record's initTime.
type ColdSample struct {
	Wall time.Duration
	Init time.Duration // initTime annotation; 0 when absent
}

// coldStart deploys a new action of the kind and code and times its first (so cold) invocation.
func coldStart(ctx context.Context, env *Env, srv *Server, kind, code string) (ColdSample, error) {
	name := env.Unique("cold")
	if err := srv.API.PutAction(ctx, name, Action{Exec: Exec{Kind: kind, Code: code}, Limits: &Limits{Memory: benchMemory}}); err != nil {
		return ColdSample{}, err
	}
	start := time.Now()
	act, err := srv.API.Invoke(ctx, name, map[string]any{"cold": true})
	wall := time.Since(start)
	if err != nil {
		return ColdSample{}, err
	}
	s := ColdSample{Wall: wall}
	if v, ok := act.Annotation("initTime").(float64); ok {
		s.Init = time.Duration(v * float64(time.Millisecond))
	}
	return s, nil
}

// coldSeries takes count cold starts on each server, alternating between them so that both
// series see the same machine noise, pausing before each one so that the pool is refilled.
func coldSeries(ctx context.Context, env *Env, servers []*Server, kind, code string, count int) ([][]ColdSample, error) {
	out := make([][]ColdSample, len(servers))
	for i := 0; i < count; i++ {
		for j, srv := range servers {
			select {
			case <-time.After(refillPause):
			case <-ctx.Done():
				return out, ctx.Err()
			}
			s, err := coldStart(ctx, env, srv, kind, code)
			if err != nil {
				return out, err
			}
			out[j] = append(out[j], s)
		}
	}
	return out, nil
}

// warmP50 measures the warm blocking invoke (full record, like coldStart) of a fresh action.
func warmP50(ctx context.Context, env *Env, srv *Server, kind, code string) (Stats, error) {
	name := env.Unique("warm")
	if err := srv.API.PutAction(ctx, name, Action{Exec: Exec{Kind: kind, Code: code}, Limits: &Limits{Memory: benchMemory}}); err != nil {
		return Stats{}, err
	}
	call := func(ctx context.Context) error {
		_, err := srv.API.Invoke(ctx, name, map[string]any{"cold": false})
		return err
	}
	n := max(env.N/4, 50)
	if _, err := Run(ctx, n/2, 1, call); err != nil {
		return Stats{}, fmt.Errorf("warm-up %s: %w", kind, err)
	}
	return Run(ctx, n, 1, call)
}

func walls(ss []ColdSample) Stats {
	d := make([]time.Duration, len(ss))
	for i, s := range ss {
		d[i] = s.Wall
	}
	return Summarize(d)
}

func inits(ss []ColdSample) Stats {
	d := make([]time.Duration, len(ss))
	for i, s := range ss {
		d[i] = s.Init
	}
	return Summarize(d)
}

// runCold compares cold starts with stem cells (default) and without (--stem-cells 0).
func runCold(ctx context.Context, env *Env, r *Result) error {
	if err := needCoda(env); err != nil {
		return err
	}
	stem, fresh, err := stemAndFresh(ctx, env)
	if err != nil {
		return err
	}
	defer stem.Close()
	defer fresh.Close()

	warm, err := warmP50(ctx, env, stem, "nodejs:20", noopNode)
	if err != nil {
		return err
	}
	series, err := coldSeries(ctx, env, []*Server{stem, fresh}, "nodejs:20", noopNode, env.Cold)
	if err != nil {
		return err
	}
	ws, wf := walls(series[0]), walls(series[1])
	is, ifr := inits(series[0]), inits(series[1])
	r.Row("", "median ms", "p99/max ms", "min ms", "initTime median ms", "samples")
	r.Row("warm", msStr(warm.P50), msStr(warm.P99), msStr(warm.Min), "", fmt.Sprint(warm.N))
	r.Row("cold, stem cell", msStr(ws.P50), msStr(ws.P99), msStr(ws.Min), msStr(is.P50), fmt.Sprint(ws.N))
	r.Row("cold, no stem cell", msStr(wf.P50), msStr(wf.P99), msStr(wf.Min), msStr(ifr.P50), fmt.Sprint(wf.N))
	r.Figure("warm_p50_ms", ms(warm.P50))
	r.Figure("cold_stem_median_ms", ms(ws.P50))
	r.Figure("cold_stem_max_ms", ms(ws.Max))
	r.Figure("cold_fresh_median_ms", ms(wf.P50))
	r.Figure("cold_fresh_max_ms", ms(wf.Max))
	r.Figure("init_stem_median_ms", ms(is.P50))
	r.Figure("init_fresh_median_ms", ms(ifr.P50))
	if is.P50 == 0 {
		r.Note("the records carry no initTime annotation")
	}
	over := ws.P50 - warm.P50
	r.Figure("cold_stem_over_warm_ms", ms(over))
	r.Check("cold (stem cell) − warm p50", ms(over), "<=", ms(goalColdOverWarm), " ms")
	r.Note("a stem cell saves %s ms per cold start (median, fresh − stem cell)", num(ms(wf.P50-ws.P50)))
	return nil
}

// stemAndFresh starts two servers that differ only in their stem cells (2 and none).
func stemAndFresh(ctx context.Context, env *Env) (stem, fresh *Server, err error) {
	if stem, err = env.Server(ctx, ServerOptions{StemCells: 2}); err != nil {
		return nil, nil, err
	}
	if fresh, err = env.Server(ctx, ServerOptions{StemCells: 0}); err != nil {
		stem.Close()
		return nil, nil, err
	}
	return stem, fresh, nil
}
