package main

import (
	"strings"
	"testing"
)

func TestChecksAndPrint(t *testing.T) {
	r := newResult("x", "title")
	r.Check("le pass", 2, "<=", 2, "x")
	r.Check("lt miss", 30, "<", 30, " ms")
	r.Check("ge pass", 0.6, ">=", 0.5, "x")
	r.CheckRange("in range", -0.5, -1, 1, " ms")
	r.CheckRange("out of range", 300, 180, 260, " ms")
	want := []bool{true, false, true, true, false}
	for i, c := range r.Checks {
		if c.Pass != want[i] {
			t.Errorf("%s: pass=%v, want %v", c.Name, c.Pass, want[i])
		}
	}
	r.Row("", "a")
	r.Row("row", "1")
	r.Errorf("kind %s failed", "go")
	var b strings.Builder
	r.Print(&b)
	out := b.String()
	for _, s := range []string{"== x: title", "PASS  le pass", "MISS  lt miss", "ERROR: kind go failed", "within [180, 260] ms"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

func TestNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.123: "0.12", 12.34: "12.3", 1234.5: "1234", -3.5: "-3.50"} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
}
