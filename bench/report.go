package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what one section measured: a table for people, figures and checks for machines.
type Result struct {
	Name    string             `json:"name"`
	Title   string             `json:"title"`
	Figures map[string]float64 `json:"figures,omitempty"` // name → value; units are in the names
	Checks  []Check            `json:"checks,omitempty"`
	Notes   []string           `json:"notes,omitempty"`
	Errors  []string           `json:"errors,omitempty"`
	Seconds float64            `json:"seconds"`

	rows [][]string // the table printed under the title; first row is the header
}

// Check compares a figure with its goal.
type Check struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Op     string  `json:"op"` // "<=", "<", ">=", "within"
	Target float64 `json:"target"`
	Unit   string  `json:"unit"`
	Pass   bool    `json:"pass"`
	Detail string  `json:"detail,omitempty"`
}

func newResult(name, title string) *Result {
	return &Result{Name: name, Title: title, Figures: map[string]float64{}}
}

// Figure records a value for the JSON output.
func (r *Result) Figure(name string, v float64) { r.Figures[name] = round3(v) }

// Row appends a line to the printed table.
func (r *Result) Row(cells ...string) { r.rows = append(r.rows, cells) }

// Note adds a line of explanation under the table.
func (r *Result) Note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Errorf records a failure of part of the section; the rest of it still reports.
func (r *Result) Errorf(format string, args ...any) {
	r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
}

// Check records a goal: value op target.
func (r *Result) Check(name string, value float64, op string, target float64, unit string) {
	pass := false
	switch op {
	case "<=":
		pass = value <= target
	case "<":
		pass = value < target
	case ">=":
		pass = value >= target
	case ">":
		pass = value > target
	}
	r.Checks = append(r.Checks, Check{Name: name, Value: round3(value), Op: op, Target: target, Unit: unit, Pass: pass})
}

// CheckRange records a goal that value lie in [lo, hi].
func (r *Result) CheckRange(name string, value, lo, hi float64, unit string) {
	r.Checks = append(r.Checks, Check{Name: name, Value: round3(value), Op: "within", Target: hi, Unit: unit,
		Pass: value >= lo && value <= hi, Detail: fmt.Sprintf("[%s, %s]", num(lo), num(hi))})
}

// Print writes the section for people.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "\n== %s: %s (%.0fs)\n", r.Name, r.Title, r.Seconds)
	if len(r.rows) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		for _, row := range r.rows {
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		tw.Flush()
	}
	for _, c := range r.Checks {
		verdict := "MISS"
		if c.Pass {
			verdict = "PASS"
		}
		goal := fmt.Sprintf("%s %s%s", c.Op, num(c.Target), c.Unit)
		if c.Op == "within" {
			goal = "within " + c.Detail + c.Unit
		}
		fmt.Fprintf(w, "  %-4s  %-48s %10s%s  (goal %s)\n", verdict, c.Name, num(c.Value), c.Unit, goal)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  ERROR: %s\n", e)
	}
}

// Report is the JSON document written by -json.
type Report struct {
	Started  time.Time         `json:"started"`
	Host     map[string]string `json:"host"`
	Config   map[string]any    `json:"config"`
	Sections []*Result         `json:"sections"`
}

func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// num formats a figure with precision that suits its size.
func num(v float64) string {
	switch a := abs(v); {
	case a == 0:
		return "0"
	case a < 10:
		return fmt.Sprintf("%.2f", v)
	case a < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func msStr(d time.Duration) string { return num(ms(d)) }

func ratioStr(r float64) string { return fmt.Sprintf("%.2fx", r) }

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func round3(v float64) float64 {
	if v != v { // NaN does not encode as JSON
		return 0
	}
	return float64(int64(v*1000+0.5*sign(v))) / 1000
}

func sign(v float64) float64 {
	if v < 0 {
		return -1
	}
	return 1
}
