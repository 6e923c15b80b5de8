package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Goals of issue 4.
const (
	goalPythonWarmRatio = 1.2                   // Python warm p50 at most 1.2× Node.js's
	goalGoFreshCold     = 15 * time.Millisecond // a Go binary's fresh cold start
)

// Kind is one language and its no-op action.
type Kind struct {
	Name string
	Code string
}

func benchKinds() []Kind {
	return []Kind{
		{"nodejs:20", noopNode},
		{"python:3.11", "def main(args):\n    return args\n"},
		{"go:1.26", "package main\n\nfunc Main(args map[string]interface{}) map[string]interface{} {\n\treturn args\n}\n"},
	}
}

// kindFigures is what runKinds measures per kind.
type kindFigures struct {
	call             func(context.Context) error // warm invoke on the stem-cell server
	warm             Stats
	stem, fresh      Stats // wall of the first invoke
	stemInit, frInit Stats // initTime annotations
	err              error
}

// runKinds measures every kind's warm latency (all kinds interleaved, so that their ratio is
// fair on a noisy machine) and cold starts with and without stem cells; a kind that fails is
// reported and the others still run.
func runKinds(ctx context.Context, env *Env, r *Result) error {
	if err := needCoda(env); err != nil {
		return err
	}
	stem, fresh, err := stemAndFresh(ctx, env)
	if err != nil {
		return err
	}
	defer stem.Close()
	defer fresh.Close()

	kinds := benchKinds()
	figs := make([]*kindFigures, len(kinds))
	var live []int // kinds that deployed and answered
	for i, k := range kinds {
		figs[i] = &kindFigures{}
		figs[i].call, figs[i].err = prepareKind(ctx, env, stem, fresh, k)
		if figs[i].err == nil {
			live = append(live, i)
		}
	}
	if len(live) > 0 {
		calls := make([]func(context.Context) error, len(live))
		for j, i := range live {
			calls[j] = figs[i].call
		}
		warm, err := Interleave(ctx, max(env.N/2, 50), 1, compareRounds, calls...)
		if err != nil {
			r.Errorf("warm: %v", err)
		}
		for j, i := range live {
			if err == nil {
				figs[i].warm = warm[j]
			}
			series, cerr := coldSeries(ctx, env, []*Server{stem, fresh}, kinds[i].Name, kinds[i].Code, env.Cold)
			if cerr != nil {
				figs[i].err = fmt.Errorf("cold: %w", cerr)
				continue
			}
			f := figs[i]
			f.stem, f.fresh, f.stemInit, f.frInit = walls(series[0]), walls(series[1]), inits(series[0]), inits(series[1])
		}
	}

	r.Row("kind", "warm p50 ms", "warm p99 ms", "cold stem ms", "cold fresh ms", "init stem ms", "init fresh ms")
	got := map[string]*kindFigures{}
	for i, k := range kinds {
		f := figs[i]
		if f.err != nil {
			r.Errorf("%s: %v", k.Name, f.err)
			r.Row(k.Name, "ERROR", "", "", "", "", "")
			continue
		}
		got[k.Name] = f
		r.Row(k.Name, msStr(f.warm.P50), msStr(f.warm.P99), msStr(f.stem.P50), msStr(f.fresh.P50), msStr(f.stemInit.P50), msStr(f.frInit.P50))
		key, _, _ := strings.Cut(k.Name, ":") // nodejs:20 → nodejs
		r.Figure(key+"_warm_p50_ms", ms(f.warm.P50))
		r.Figure(key+"_warm_p99_ms", ms(f.warm.P99))
		r.Figure(key+"_cold_stem_median_ms", ms(f.stem.P50))
		r.Figure(key+"_cold_fresh_median_ms", ms(f.fresh.P50))
		r.Figure(key+"_init_stem_median_ms", ms(f.stemInit.P50))
		r.Figure(key+"_init_fresh_median_ms", ms(f.frInit.P50))
	}
	if n, p := got["nodejs:20"], got["python:3.11"]; n != nil && p != nil && n.warm.N > 0 && p.warm.N > 0 {
		r.Check("python warm p50 / nodejs warm p50", ms(p.warm.P50)/ms(n.warm.P50), "<=", goalPythonWarmRatio, "x")
	}
	if g := got["go:1.26"]; g != nil {
		r.Check("go fresh cold start (median, wall)", ms(g.fresh.P50), "<", ms(goalGoFreshCold), " ms")
	}
	r.Note("Go actions have no stem cells (the invoker prewarms interpreted kinds only): both Go cold columns start a fresh process")
	r.Note("warm: %d requests per kind, kinds interleaved; cold: medians of %d first invokes (wall time of the blocking request); init = the record's initTime",
		max(env.N/2, 50), env.Cold)
	return nil
}

// prepareKind deploys k and warms it up, returning the warm invoke call.
func prepareKind(ctx context.Context, env *Env, stem, fresh *Server, k Kind) (func(context.Context) error, error) {
	// Deploy once untimed on both servers: Go source compiles here (seconds), and later deploys
	// of the same code hit the build cache, so cold starts time the start, not the compiler.
	for _, s := range []*Server{stem, fresh} {
		if err := s.API.PutAction(ctx, env.Unique("deploy"), Action{Exec: Exec{Kind: k.Name, Code: k.Code}, Limits: &Limits{Memory: benchMemory}}); err != nil {
			return nil, err
		}
	}
	name := env.Unique("warm")
	if err := stem.API.PutAction(ctx, name, Action{Exec: Exec{Kind: k.Name, Code: k.Code}, Limits: &Limits{Memory: benchMemory}}); err != nil {
		return nil, err
	}
	call := stem.API.Invoker(name, warmBody)
	if _, err := Run(ctx, max(env.N/8, 20), 1, call); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	return call, nil
}
