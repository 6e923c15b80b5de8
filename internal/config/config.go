// Package config turns `coda serve`'s flags and CODA_* environment variables into a validated
// Config. It is a pure function of its inputs: no globals, no exits.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Config is everything `coda serve` needs to know.
type Config struct {
	Listen          string
	Data            string
	Auth            string // UUID:KEY of the guest namespace; empty: generated on first start
	KeepAlive       time.Duration
	PauseGrace      time.Duration
	MemoryPool      int // MB
	StemCells       int
	Isolate         string // auto, on, off
	LimitConcurrent int
	LimitPerMinute  int
	LogLevel        slog.Level
}

// Defaults, as the README documents them.
const (
	DefaultListen          = "127.0.0.1:3233"
	DefaultKeepAlive       = 10 * time.Minute
	DefaultPauseGrace      = 50 * time.Millisecond
	DefaultMemoryPool      = 2048
	DefaultStemCells       = 2
	DefaultLimitConcurrent = 100
	DefaultLimitPerMinute  = 6000
	minMemoryPool          = 128 // the smallest action must fit
)

var authPattern = regexp.MustCompile(`^[0-9a-fA-F-]{8,64}:[A-Za-z0-9]{16,128}$`)

// Parse reads args (after "serve") and the environment (getenv) into a Config. Flags win over
// CODA_<NAME> variables, which win over defaults. home is the user's home directory.
func Parse(args []string, getenv func(string) string, home string, usage io.Writer) (Config, error) {
	c := Config{}
	fs := flag.NewFlagSet("coda serve", flag.ContinueOnError)
	fs.SetOutput(usage)
	var logLevel string
	fs.StringVar(&c.Listen, "listen", DefaultListen, "address of the API (HOST:PORT; port 0 picks a free one)")
	fs.StringVar(&c.Data, "data", filepath.Join(home, ".coda"), "data directory (store, keys, caches)")
	fs.StringVar(&c.Auth, "auth", "", "UUID:KEY of the guest namespace (default: generated once, kept in DATA/auth)")
	fs.DurationVar(&c.KeepAlive, "keep-alive", DefaultKeepAlive, "how long a quiescent instance is kept (0: terminate at once)")
	fs.DurationVar(&c.PauseGrace, "pause-grace", DefaultPauseGrace, "quiescent time before an instance is frozen (0: never pause)")
	fs.IntVar(&c.MemoryPool, "memory-pool", DefaultMemoryPool, "MB that instances may use together")
	fs.IntVar(&c.StemCells, "stem-cells", DefaultStemCells, "prewarmed runtime processes per interpreted kind")
	fs.StringVar(&c.Isolate, "isolate", "auto", "instance isolation: auto (what the host offers), on (require namespaces), off")
	fs.IntVar(&c.LimitConcurrent, "limit-concurrent", DefaultLimitConcurrent, "per-namespace concurrent activations (0: unlimited)")
	fs.IntVar(&c.LimitPerMinute, "limit-per-minute", DefaultLimitPerMinute, "per-namespace invocations per minute (0: unlimited)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")

	// Environment first, so that explicit flags parsed afterwards override it.
	var envErrs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := "CODA_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		envErrs = append(envErrs, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " ")))
	}
	errs := envErrs
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %w", c.Listen, err))
	}
	if c.Data == "" {
		errs = append(errs, errors.New("--data must not be empty"))
	} else if abs, err := filepath.Abs(c.Data); err == nil {
		c.Data = abs
	}
	if c.Auth != "" && !authPattern.MatchString(c.Auth) {
		errs = append(errs, errors.New("--auth must be UUID:KEY (hex UUID, alphanumeric key of 16–128 characters)"))
	}
	if c.KeepAlive < 0 {
		errs = append(errs, errors.New("--keep-alive must not be negative"))
	}
	if c.PauseGrace < 0 {
		errs = append(errs, errors.New("--pause-grace must not be negative"))
	}
	if c.MemoryPool < minMemoryPool {
		errs = append(errs, fmt.Errorf("--memory-pool %d is below %d MB, the smallest action", c.MemoryPool, minMemoryPool))
	}
	if c.StemCells < 0 || c.StemCells > 64 {
		errs = append(errs, errors.New("--stem-cells must be between 0 and 64"))
	}
	switch c.Isolate {
	case "auto", "on", "off":
	default:
		errs = append(errs, fmt.Errorf("--isolate %q is not one of auto, on, off", c.Isolate))
	}
	if c.LimitConcurrent < 0 || c.LimitPerMinute < 0 {
		errs = append(errs, errors.New("--limit-concurrent and --limit-per-minute must not be negative"))
	}
	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q is not one of debug, info, warn, error", logLevel))
	}
	return c, errors.Join(errs...)
}
