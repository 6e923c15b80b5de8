// Command bench measures Coda against its performance goals (issues 2, 3 and 4) in one run:
// warm invoke versus a plain Node.js server, cold starts with and without stem cells, the
// activity tracker's overhead, response latency per termination mode, the lag from the last
// background write to the record's end, and every kind's warm and cold figures.
//
//	go run ./bench [-n 2000] [-only REGEX] [-coda PATH] [-json FILE]
//
// Each section starts the servers it needs and fails alone: an ERROR line, then the next one.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// sectionTimeout keeps one hung section from eating the whole run.
const sectionTimeout = 6 * time.Minute

// Defaults sized so that the whole run takes about three minutes on two cores.
const (
	defaultN       = 2000 // requests per warm measurement
	defaultCold    = 10   // cold starts per figure
	defaultSamples = 20   // activations per mode and end-lag figure
)

// Env is what every section gets: the coda binary, a scratch directory and the sizes.
type Env struct {
	Repo    string // module root, for runtimes/ and ./cmd/coda
	Tmp     string
	Coda    string // the coda binary
	N       int
	Cold    int
	Samples int
	Log     *slog.Logger

	seq atomic.Int64
}

// Unique returns a fresh action name, so that its first invocation is cold.
func (e *Env) Unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, e.seq.Add(1))
}

// Server starts a `coda serve` for one section; the caller closes it.
func (e *Env) Server(ctx context.Context, opts ServerOptions) (*Server, error) {
	return startServer(ctx, e.Coda, e.Tmp, opts)
}

// Section is one independent measurement.
type Section struct {
	Name  string
	Title string
	Run   func(ctx context.Context, env *Env, r *Result) error
}

func sections() []Section {
	return []Section{
		{"warm", "warm no-op Node.js invoke vs a plain Node.js HTTP server", runWarm},
		{"cold", "cold start with and without a stem cell", runCold},
		{"tracker", "tracker overhead on a realistic Node.js handler", runTracker},
		{"modes", "response latency by termination mode (200 ms of background work)", runModes},
		{"endlag", "lag from the last background write's completion to the record's end", runEndLag},
		{"kinds", "warm and cold figures per kind", runKinds},
	}
}

func main() {
	n := flag.Int("n", defaultN, "requests per warm measurement")
	cold := flag.Int("cold", defaultCold, "cold starts per cold-start figure")
	samples := flag.Int("samples", defaultSamples, "activations per termination-mode and end-lag figure")
	only := flag.String("only", "", "run only the sections whose name matches this regexp (warm|cold|tracker|modes|endlag|kinds)")
	coda := flag.String("coda", "", "prebuilt coda binary (default: build ./cmd/coda)")
	jsonOut := flag.String("json", "", "also write the figures to this file as JSON")
	repo := flag.String("repo", "", "module root (default: found from the working directory)")
	verbose := flag.Bool("v", false, "log progress to stderr")
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *n, *cold, *samples, *only, *coda, *jsonOut, *repo); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, n, cold, samples int, only, coda, jsonOut, repo string) error {
	if n < 50 || cold < 1 || samples < 1 {
		return fmt.Errorf("-n must be ≥ 50, -cold and -samples ≥ 1")
	}
	var filter *regexp.Regexp
	if only != "" {
		var err error
		if filter, err = regexp.Compile(only); err != nil {
			return fmt.Errorf("-only: %w", err)
		}
	}
	if repo == "" {
		var err error
		if repo, err = findModuleRoot(); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp("", "coda-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	env := &Env{Repo: repo, Tmp: tmp, N: n, Cold: cold, Samples: samples, Log: log}
	if coda != "" {
		env.Coda, err = filepath.Abs(coda)
		if err != nil {
			return err
		}
	} else {
		fmt.Println("building ./cmd/coda …")
		env.Coda, err = buildCoda(ctx, repo, tmp)
		if err != nil {
			fmt.Printf("ERROR: %v\n", err) // sections that need no server still run
		}
	}

	rep := &Report{Started: time.Now().UTC(), Host: hostInfo(), Config: map[string]any{
		"n": n, "cold": cold, "samples": samples, "only": only, "coda": env.Coda}}
	fmt.Printf("coda bench: n=%d cold=%d samples=%d on %s, load average %s\n", n, cold, samples, rep.Host["summary"], loadAvg())
	begin := time.Now()
	for _, s := range sections() {
		if filter != nil && !filter.MatchString(s.Name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		r := runSection(ctx, env, s)
		r.Print(os.Stdout)
		rep.Sections = append(rep.Sections, r)
	}
	rep.Host["load_after"] = loadAvg()
	fmt.Printf("\ntotal %.0fs, load average %s\n", time.Since(begin).Seconds(), rep.Host["load_after"])
	if jsonOut != "" {
		return writeJSON(jsonOut, rep)
	}
	return ctx.Err()
}

// runSection runs s under its own deadline, turning errors and panics into the section's ERROR.
func runSection(ctx context.Context, env *Env, s Section) (r *Result) {
	r = newResult(s.Name, s.Title)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, sectionTimeout)
	defer cancel()
	defer func() {
		r.Seconds = time.Since(start).Seconds()
		if p := recover(); p != nil {
			r.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	env.Log.Info("section", "name", s.Name)
	if err := s.Run(ctx, env, r); err != nil {
		r.Errorf("%v", err)
	}
	return r
}

// needCoda fails a section early when no coda binary could be built.
func needCoda(env *Env) error {
	if env.Coda == "" {
		return fmt.Errorf("no coda binary (the build failed; see above)")
	}
	return nil
}

func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/coda-serverless/coda\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("not inside the coda module; run from /work/main or pass -repo")
		}
		dir = parent
	}
}

func hostInfo() map[string]string {
	h := map[string]string{"goos": runtime.GOOS, "goarch": runtime.GOARCH, "cpus": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	h["load_before"] = loadAvg()
	h["summary"] = fmt.Sprintf("%s cpus, %s", h["cpus"], h["cpu"])
	return h
}

// loadAvg is the 1, 5 and 15 minute load average: figures from a busy shared machine are noisy,
// and the report should say so.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
