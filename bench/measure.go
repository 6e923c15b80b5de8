package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// maxErrorShare is the share of failed requests above which a measurement is void: a few
// failures on a loaded machine are noise, many mean the figures describe an error path.
const maxErrorShare = 0.01

// Stats summarises one measurement.
type Stats struct {
	N          int           // successful requests
	Errors     int           // failed requests
	Elapsed    time.Duration // wall time of the whole run
	P50, P99   time.Duration
	Mean       time.Duration
	Min, Max   time.Duration
	Throughput float64 // successful requests per second of wall time

	samples []time.Duration // sorted latencies, for Merge
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of sorted by nearest rank, so that it is
// always a value that was observed; 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Summarize computes the order statistics of samples (which it sorts in place).
func Summarize(samples []time.Duration) Stats {
	s := Stats{N: len(samples), samples: samples}
	if len(samples) == 0 {
		return s
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	s.P50 = Percentile(samples, 50)
	s.P99 = Percentile(samples, 99)
	s.Mean = sum / time.Duration(len(samples))
	s.Min, s.Max = samples[0], samples[len(samples)-1]
	return s
}

// Run issues n calls of do from concurrency workers in a closed loop (each worker starts its next
// call when the previous one returns) and reports latencies and throughput. It fails when more
// than maxErrorShare of the calls fail, naming the first error.
func Run(ctx context.Context, n, concurrency int, do func(context.Context) error) (Stats, error) {
	if n <= 0 || concurrency <= 0 {
		return Stats{}, fmt.Errorf("measure: n=%d concurrency=%d: both must be positive", n, concurrency)
	}
	concurrency = min(concurrency, n)
	var (
		next     atomic.Int64
		errCount atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	perWorker := make([][]time.Duration, concurrency)
	start := time.Now()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, n/concurrency+1)
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				t0 := time.Now()
				if err := do(ctx); err != nil {
					errCount.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			perWorker[w] = lat
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	for _, l := range perWorker {
		all = append(all, l...)
	}
	s := Summarize(all)
	s.Errors = int(errCount.Load())
	s.Elapsed = elapsed
	if elapsed > 0 {
		s.Throughput = float64(s.N) / elapsed.Seconds()
	}
	if err := ctx.Err(); err != nil {
		return s, fmt.Errorf("measure: %w", err)
	}
	if float64(s.Errors) > maxErrorShare*float64(n) {
		return s, fmt.Errorf("measure: %d of %d calls failed, first: %w", s.Errors, n, firstErr)
	}
	return s, nil
}

// ms expresses d in milliseconds, the unit every figure of the report uses.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Merge pools the samples of several runs: percentiles over all of them, throughput as all
// successful calls over the runs' summed wall time.
func Merge(runs ...Stats) Stats {
	var all []time.Duration
	var elapsed time.Duration
	errs := 0
	for _, r := range runs {
		all = append(all, r.samples...)
		elapsed += r.Elapsed
		errs += r.Errors
	}
	s := Summarize(all)
	s.Errors, s.Elapsed = errs, elapsed
	if elapsed > 0 {
		s.Throughput = float64(s.N) / elapsed.Seconds()
	}
	return s
}

// Interleave measures several calls against each other: n calls each, split into rounds of
// n/rounds, the calls taking turns (in a rotating order) within every round, so that a slow
// spell of a shared machine lands on all of them alike instead of on whichever ran then.
func Interleave(ctx context.Context, n, concurrency, rounds int, calls ...func(context.Context) error) ([]Stats, error) {
	rounds = max(1, min(rounds, n))
	per := make([][]Stats, len(calls))
	for r := 0; r < rounds; r++ {
		batch := n / rounds
		if r < n%rounds {
			batch++
		}
		for k := range calls {
			i := (k + r) % len(calls)
			s, err := Run(ctx, batch, concurrency, calls[i])
			if err != nil {
				return nil, fmt.Errorf("call %d: %w", i, err)
			}
			per[i] = append(per[i], s)
		}
	}
	out := make([]Stats, len(calls))
	for i, runs := range per {
		out[i] = Merge(runs...)
	}
	return out, nil
}
