package main

import (
	"context"
	"fmt"
	"time"
)

// modesBackground is the un-awaited work of the modes action; await mode should be slower by
// about this much, the other two not at all.
const modesBackground = 200 * time.Millisecond

// modesNoise is the largest p50 difference between decoupled and coupled that still counts as
// "equal within noise": a millisecond, or a quarter of the latency when that is more.
const (
	modesNoiseAbs = time.Millisecond
	modesNoiseRel = 0.25
)

// awaitSlack is how much more than the background time await may add: the tracker's quiet
// window (~20 ms), its polling and scheduling.
const awaitSlack = 60 * time.Millisecond

var modesCode = fmt.Sprintf(`exports.main = (p) => {
  setTimeout(() => {}, %d)
  return { ok: true }
}`, modesBackground.Milliseconds())

// runModes compares the response latency of one action in the three termination modes.
func runModes(ctx context.Context, env *Env, r *Result) error {
	if err := needCoda(env); err != nil {
		return err
	}
	srv, err := env.Server(ctx, ServerOptions{StemCells: 2, Args: []string{"--pause-grace", "0"}})
	if err != nil {
		return err
	}
	defer srv.Close()
	modes := []string{"decoupled", "coupled", "await"}
	calls := map[string]func(context.Context) error{}
	for _, m := range modes {
		name := "bg-" + m
		if err := srv.API.PutAction(ctx, name, Action{Exec: Exec{Kind: "nodejs:20", Code: modesCode},
			Annotations: []KeyValue{{Key: "termination", Value: m}}, Limits: &Limits{Memory: benchMemory}}); err != nil {
			return err
		}
		calls[m] = srv.API.Invoker(name, []byte(`{}`))
		for i := 0; i < 3; i++ { // warm: instance started, code paths compiled
			if err := calls[m](ctx); err != nil {
				return fmt.Errorf("%s warm-up: %w", m, err)
			}
		}
	}
	// Rounds alternate the modes so that all three see the same noise.
	lat := map[string][]time.Duration{}
	for i := 0; i < env.Samples; i++ {
		for _, m := range modes {
			t0 := time.Now()
			if err := calls[m](ctx); err != nil {
				return fmt.Errorf("%s: %w", m, err)
			}
			lat[m] = append(lat[m], time.Since(t0))
		}
	}
	st := map[string]Stats{}
	r.Row("mode", "p50 ms", "p99 ms", "min ms", "samples")
	for _, m := range modes {
		st[m] = Summarize(lat[m])
		r.Row(m, msStr(st[m].P50), msStr(st[m].P99), msStr(st[m].Min), fmt.Sprint(st[m].N))
		r.Figure(m+"_p50_ms", ms(st[m].P50))
		r.Figure(m+"_p99_ms", ms(st[m].P99))
	}
	d, c, a := st["decoupled"].P50, st["coupled"].P50, st["await"].P50
	noise := max(modesNoiseAbs, time.Duration(modesNoiseRel*float64(c)))
	r.CheckRange("decoupled − coupled p50", ms(d-c), -ms(noise), ms(noise), " ms")
	r.CheckRange("await − decoupled p50", ms(a-d), 0.9*ms(modesBackground), ms(modesBackground+awaitSlack), " ms")
	r.Note("each invocation leaves a %v un-awaited setTimeout behind; modes alternate, with pausing off (--pause-grace 0) so that no mode pays for a resume the others do not", modesBackground)
	return nil
}
