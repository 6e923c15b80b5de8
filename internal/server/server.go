// Package server assembles `coda serve`: store, bus, invoker, controller and API in one
// process, and shuts them down in the order that loses nothing.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/coda-serverless/coda/internal/api"
	"github.com/coda-serverless/coda/internal/bus"
	"github.com/coda-serverless/coda/internal/config"
	"github.com/coda-serverless/coda/internal/controller"
	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/gobuild"
	"github.com/coda-serverless/coda/internal/invoker"
	"github.com/coda-serverless/coda/internal/sandbox"
	"github.com/coda-serverless/coda/internal/store"
	"github.com/coda-serverless/coda/runtimes"
)

const (
	// GuestNamespace is the namespace of the key `coda serve` creates or is given.
	GuestNamespace = "guest"
	// invokerID names this node's invoker on the bus.
	invokerID = "invoker0"
	// drainLimit bounds the shutdown wait: the longest activation (300 s) plus margin.
	drainLimit = 310 * time.Second
	// httpShutdownLimit bounds the wait for handlers writing their last responses.
	httpShutdownLimit = 10 * time.Second
	// readHeaderTimeout keeps a slow client from holding a connection open forever.
	readHeaderTimeout = 30 * time.Second
)

// Env is the outside world of a server run.
type Env struct {
	Getenv func(string) string
	Stdout io.Writer // the ready line
	Stderr io.Writer // logs
}

// Main runs `coda serve ARGS` until ctx ends (the caller cancels it on SIGINT/SIGTERM) and
// returns the exit code.
func Main(ctx context.Context, args []string, env Env) int {
	home, _ := os.UserHomeDir()
	cfg, err := config.Parse(args, env.Getenv, home, env.Stderr)
	if err != nil {
		fmt.Fprintf(env.Stderr, "coda serve: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err := Run(ctx, cfg, env, log); err != nil {
		log.Error("coda serve failed", "err", err)
		return 1
	}
	return 0
}

// Run starts the platform, prints the ready line, and serves until ctx ends.
func Run(ctx context.Context, cfg config.Config, env Env, log *slog.Logger) error {
	began := time.Now()
	mark := func(step string) { log.Debug("start-up", "step", step, "at", time.Since(began)) }
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	st, err := store.Open(ctx, cfg.Data)
	if err != nil {
		return err
	}
	defer st.Close()
	if n, err := st.CloseInterrupted(ctx, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("closing interrupted activations: %w", err)
	} else if n > 0 {
		log.Warn("closed activations interrupted by the previous stop", "count", n)
	}
	mark("store opened")
	if err := ensureGuest(ctx, st, cfg); err != nil {
		return err
	}
	rec := store.NewRecorder(st, log)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), httpShutdownLimit)
		defer cancel()
		if err := rec.Close(cctx); err != nil {
			log.Error("flushing activation records", "err", err)
		}
	}()

	launcher, host, err := runtimesFor(ctx, cfg, env, log)
	if err != nil {
		return err
	}
	defer host.Close()

	mark("runtimes and sandbox ready")
	b, err := bus.Embedded(ctx, filepath.Join(cfg.Data, "nats"), log)
	if err != nil {
		return err
	}
	defer b.Close()

	mark("bus ready")
	pool, err := invoker.New(ctx, invoker.Config{Host: host, Launcher: launcher, Recorder: rec, Log: log,
		KeepAlive: cfg.KeepAlive, PauseGrace: cfg.PauseGrace, MemoryMB: cfg.MemoryPool, StemCells: cfg.StemCells})
	if err != nil {
		return err
	}
	svc := &invoker.Service{ID: invokerID, Pool: pool, Bus: b, Store: records{st, rec}, Log: log}
	ctrl, err := controller.New(controller.Config{Bus: b, Invoker: invokerID, Go: launcher.Go, Unzip: launcher.Unzip,
		LimitConcurrent: cfg.LimitConcurrent, LimitPerMinute: cfg.LimitPerMinute, Log: log})
	if err != nil {
		return err
	}
	defer ctrl.Close()
	if err := svc.Start(ctx); err != nil {
		return err
	}
	handler, err := api.New(api.Config{Store: st, Activations: rec, Controller: ctrl, Log: log})
	if err != nil {
		return err
	}
	mark("invoker, controller and API ready")
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	url := "http://" + ln.Addr().String()
	if err := os.WriteFile(filepath.Join(cfg.Data, "apihost"), []byte(url+"\n"), 0o600); err != nil {
		return fmt.Errorf("write apihost: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	if addr := env.Getenv("CODA_PPROF"); addr != "" {
		// Profiling for developers (go tool pprof http://ADDR/debug/pprof/profile); loopback only.
		go servePprof(addr, log)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("coda serving", "url", url, "data", cfg.Data, "isolation", host.Describe(),
		"keep_alive", cfg.KeepAlive, "pause_grace", cfg.PauseGrace, "memory_pool_mb", cfg.MemoryPool)
	fmt.Fprintf(env.Stdout, "coda: ready on %s\n", url)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http: %w", err)
	}
	// Drain: refuse new work, let every running activation end (each within its deadline),
	// then stop the API once the last responses are written.
	log.Info("shutting down: waiting for running activations to end")
	ctrl.Drain()
	svc.Stop()
	dctx, cancel := context.WithTimeout(context.Background(), drainLimit)
	defer cancel()
	if err := pool.Close(dctx); err != nil {
		log.Error("shutdown", "err", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), httpShutdownLimit)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", err)
	}
	log.Info("coda stopped")
	return nil
}

// ensureGuest makes sure the guest namespace has the configured key, or a generated one kept
// in DATA/auth (mode 0600) for the CLI.
func ensureGuest(ctx context.Context, st store.Store, cfg config.Config) error {
	path := filepath.Join(cfg.Data, "auth")
	auth := cfg.Auth
	if auth == "" {
		if b, err := os.ReadFile(path); err == nil {
			auth = strings.TrimSpace(string(b))
		} else {
			auth = newUUID() + ":" + randomKey()
		}
	}
	uuid, key, ok := strings.Cut(auth, ":")
	if !ok {
		return fmt.Errorf("%s does not hold UUID:KEY", path)
	}
	if err := st.EnsureUser(ctx, GuestNamespace, uuid, key); err != nil {
		return fmt.Errorf("guest namespace: %w", err)
	}
	if err := os.WriteFile(path, []byte(auth+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomKey() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	var b [64]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// runtimesFor prepares the sandbox and the launcher of every kind this host can run.
func runtimesFor(ctx context.Context, cfg config.Config, env Env, log *slog.Logger) (*invoker.Runtimes, *sandbox.Host, error) {
	dir := filepath.Join(cfg.Data, "runtimes")
	if err := runtimes.Extract(dir); err != nil {
		return nil, nil, err
	}
	// The data directory holds keys and the store; instances run as other users and must
	// not even list it, so it is world-inaccessible, with the runtime parts readable.
	for _, d := range []string{cfg.Data} {
		_ = os.Chmod(d, 0o711)
	}
	host, err := sandbox.New(ctx, sandbox.Config{Isolate: cfg.Isolate != "off", Hide: []string{cfg.Data}}, log)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Isolate == "on" && !strings.Contains(host.Describe(), "namespaces pid") {
		host.Close()
		return nil, nil, fmt.Errorf("--isolate on, but this host offers only: %s", host.Describe())
	}
	r := &invoker.Runtimes{Dir: dir, Env: invoker.DefaultEnv(env.Getenv), NoStems: cfg.StemCells == 0}
	if p, err := exec.LookPath("node"); err == nil {
		r.Node = p
	} else {
		log.Warn("node not found: nodejs actions cannot run here")
	}
	if p, err := invoker.FindPython(ctx, env.Getenv); err == nil {
		r.Python = p
	} else {
		log.Warn("python 3.11 not found: python actions cannot run here", "err", err)
	}
	if gb, err := gobuild.New(filepath.Join(cfg.Data, "go"), log); err == nil {
		if cache, err := os.UserCacheDir(); err == nil {
			gb.UseBuildCache(filepath.Join(cache, "coda", "gocache"))
		}
		go func() {
			if err := gb.Warm(context.WithoutCancel(ctx)); err != nil {
				log.Warn("warming the go build cache failed", "err", err)
			}
		}()
		r.Go = gb
	} else {
		log.Warn("go toolchain not found: go actions can be prebuilt executables only", "err", err)
	}
	r.Unzip = unzipper(filepath.Join(cfg.Data, "zips"))
	return r, host, nil
}

// records reads actions from the store and activations through the write-behind recorder, so
// a record is visible the moment it was recorded.
type records struct {
	store.Store
	rec *store.Recorder
}

func (r records) GetActivation(ctx context.Context, namespace, id string) (*entity.Activation, error) {
	return r.rec.GetActivation(ctx, namespace, id)
}
