package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	cases := []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {1, 1}, {0.001, 1}}
	for _, c := range cases {
		if got := Percentile(s, c.p); got != c.want {
			t.Errorf("Percentile(1..100, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
	if got := Percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("Percentile([7], 99) = %v, want 7", got)
	}
	// With 10 samples the p99 is the largest: nearest rank never interpolates past the data.
	ten := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if got := Percentile(ten, 99); got != 10 {
		t.Errorf("Percentile(1..10, 99) = %v, want 10", got)
	}
	if got := Percentile(ten, 50); got != 5 {
		t.Errorf("Percentile(1..10, 50) = %v, want 5", got)
	}
}

func TestSummarizeUnsorted(t *testing.T) {
	s := Summarize([]time.Duration{5, 1, 4, 2, 3})
	if s.N != 5 || s.Min != 1 || s.Max != 5 || s.P50 != 3 || s.Mean != 3 {
		t.Errorf("Summarize = %+v", s)
	}
}

func TestRunCountsEveryCall(t *testing.T) {
	var calls, inFlight, peak atomic.Int64
	do := func(context.Context) error {
		calls.Add(1)
		cur := inFlight.Add(1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		inFlight.Add(-1)
		return nil
	}
	s, err := Run(context.Background(), 200, 8, do)
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 200 || s.N != 200 || s.Errors != 0 {
		t.Errorf("calls=%d N=%d errors=%d, want 200/200/0", calls.Load(), s.N, s.Errors)
	}
	if peak.Load() > 8 {
		t.Errorf("peak concurrency %d exceeds 8", peak.Load())
	}
	if s.P50 < time.Millisecond || s.P99 < s.P50 || s.Throughput <= 0 {
		t.Errorf("implausible stats %+v", s)
	}
	// 200 calls of ≥1 ms on 8 workers cannot take less than 25 ms of wall time.
	if s.Elapsed < 25*time.Millisecond {
		t.Errorf("elapsed %v below the 25 ms floor", s.Elapsed)
	}
}

func TestRunFailsOnErrors(t *testing.T) {
	boom := errors.New("boom")
	var i atomic.Int64
	s, err := Run(context.Background(), 100, 4, func(context.Context) error {
		if i.Add(1)%10 == 0 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want wrapping boom", err)
	}
	if s.Errors != 10 || s.N != 90 {
		t.Errorf("errors=%d N=%d, want 10/90", s.Errors, s.N)
	}
}

func TestRunToleratesRareErrors(t *testing.T) {
	var i atomic.Int64
	s, err := Run(context.Background(), 1000, 2, func(context.Context) error {
		if i.Add(1) == 500 {
			return errors.New("one blip")
		}
		return nil
	})
	if err != nil || s.Errors != 1 {
		t.Fatalf("err=%v errors=%d, want nil/1", err, s.Errors)
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	if _, err := Run(context.Background(), 0, 1, func(context.Context) error { return nil }); err == nil {
		t.Error("n=0 accepted")
	}
	if _, err := Run(context.Background(), 1, 0, func(context.Context) error { return nil }); err == nil {
		t.Error("concurrency=0 accepted")
	}
}

func TestMergePoolsSamples(t *testing.T) {
	a := Summarize([]time.Duration{1, 2, 3})
	a.Elapsed = time.Second
	b := Summarize([]time.Duration{10, 20, 30, 40, 50})
	b.Elapsed = time.Second
	m := Merge(a, b)
	if m.N != 8 || m.Min != 1 || m.Max != 50 || m.P50 != 10 {
		t.Errorf("Merge = %+v", m)
	}
	if m.Throughput != 4 {
		t.Errorf("throughput = %v, want 8 calls / 2 s = 4", m.Throughput)
	}
}

func TestInterleaveTakesTurns(t *testing.T) {
	var order []int
	mk := func(i int, d time.Duration) func(context.Context) error {
		return func(context.Context) error {
			if len(order) == 0 || order[len(order)-1] != i {
				order = append(order, i)
			}
			time.Sleep(d)
			return nil
		}
	}
	got, err := Interleave(context.Background(), 10, 1, 5, mk(0, time.Millisecond), mk(1, 3*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].N != 10 || got[1].N != 10 {
		t.Fatalf("N = %d, %d; want 10 each", got[0].N, got[1].N)
	}
	// 5 rounds of two calls with rotating order: 0 1 | 1 0 | 0 1 | 1 0 | 0 1 (merged runs).
	want := []int{0, 1, 0, 1, 0, 1}
	if len(order) != len(want) {
		t.Fatalf("turns %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("turns %v, want %v", order, want)
		}
	}
	if got[1].P50 <= got[0].P50 {
		t.Errorf("slower call has p50 %v ≤ faster's %v", got[1].P50, got[0].P50)
	}
}
