// Package gobuild compiles Go actions into executables that speak the instance protocol. It runs
// when an action is created or updated, never on its first invocation, and caches every result
// by the digest of the code, so that an unchanged action is never compiled twice.
//
// Accepted code:
//   - source text: package main with func Main (any signature of sdk.Func);
//   - a zip holding a module (go.mod, optional) whose root is package main with func Main,
//     possibly importing subpackages and third-party modules (fetched through GOPROXY);
//   - a prebuilt executable for the host platform: the raw ELF bytes, or a zip with "exec" at
//     its root. It is used as is and must speak the protocol itself (built with the SDK, or a
//     blackbox runtime).
//
// For Main, the builder generates coda_main_gen.go with func main() calling sdk.Serve(Main),
// through a generic constraint that rejects a wrong signature at compile time. A program that
// defines func main itself is built as is if it imports the SDK (it is expected to call
// sdk.Serve); otherwise it is rejected, since it could not speak the protocol. The entry point is
// always Main: the action's "main" setting does not apply to compiled code.
package gobuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosdk "github.com/coda-serverless/coda/runtimes/go"
)

// maxBuildTime caps one build whatever the caller's context says: a module download stuck on a
// slow proxy must not hold an action update (and the builds waiting on it) forever.
const maxBuildTime = 5 * time.Minute

// staleWork is the age past which a build directory is a leftover of a crashed process.
const staleWork = 2 * maxBuildTime

// fallbackGo is where the toolchain lives when PATH does not have it (e.g. under systemd).
const fallbackGo = "/usr/local/go/bin/go"

// Builder compiles Go actions into cacheDir/bin/<digest>.
type Builder struct {
	goBin     string
	goVersion string // e.g. go1.26.8; part of the cache key, since another toolchain builds another binary
	dir       string
	gocache   string // the go build cache; shareable between servers (it is safe for concurrent use)
	log       *slog.Logger

	mu     sync.Mutex
	calls  map[string]*call // builds in progress by digest
	builds atomic.Int64     // compilations run, for tests
}

// call is one build in progress that concurrent requests for the same code share.
type call struct {
	done chan struct{}
	path string
	err  error
}

// CompileError means the action's code is at fault: it does not compile, is not a Go action or
// not a usable executable. Its message is meant for the action's author (the API answers 400).
type CompileError struct {
	Msg string
}

func (e *CompileError) Error() string { return e.Msg }

func userErrorf(format string, args ...any) error {
	return &CompileError{Msg: fmt.Sprintf(format, args...)}
}

// New returns a builder caching under cacheDir. It fails when no Go toolchain is installed.
func New(cacheDir string, log *slog.Logger) (*Builder, error) {
	if log == nil {
		log = slog.Default()
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		if _, serr := os.Stat(fallbackGo); serr != nil {
			return nil, fmt.Errorf("gobuild: no Go toolchain: %w", err)
		}
		goBin = fallbackGo
	}
	dir, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("gobuild: %w", err)
	}
	for _, d := range []string{"bin", "work", "gocache", "gopath"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("gobuild: %w", err)
		}
	}
	out, err := exec.Command(goBin, "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("gobuild: %s env GOVERSION: %w", goBin, err)
	}
	b := &Builder{
		goBin:     goBin,
		goVersion: strings.TrimSpace(string(out)),
		dir:       dir,
		gocache:   filepath.Join(dir, "gocache"),
		log:       log,
		calls:     map[string]*call{},
	}
	b.removeStaleWork()
	return b, nil
}

// Build returns the path of the executable for code (binary: code is a zip or an executable
// rather than source text), compiling it unless the cache has it. Concurrent calls for the same
// code share one compilation. Errors the author must fix are *CompileError.
func (b *Builder) Build(ctx context.Context, code []byte, binary bool) (string, error) {
	digest := b.digest(code, binary)
	final := filepath.Join(b.dir, "bin", digest)
	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() {
		return final, nil
	}
	b.mu.Lock()
	if c := b.calls[digest]; c != nil {
		b.mu.Unlock()
		select {
		case <-c.done:
			return c.path, c.err
		case <-ctx.Done():
			return "", fmt.Errorf("gobuild: %w", ctx.Err())
		}
	}
	c := &call{done: make(chan struct{})}
	b.calls[digest] = c
	b.mu.Unlock()

	c.path, c.err = b.build(ctx, digest, final, code, binary)
	b.mu.Lock()
	delete(b.calls, digest)
	b.mu.Unlock()
	close(c.done)
	return c.path, c.err
}

// digest keys the cache: the code, and everything else that shapes the executable.
func (b *Builder) digest(code []byte, binary bool) string {
	h := sha256.New()
	fmt.Fprintf(h, "coda-gobuild-v1\x00%s\x00%s\x00%t\x00", b.goVersion, gosdk.Digest(), binary)
	h.Write(code)
	return hex.EncodeToString(h.Sum(nil))
}

func (b *Builder) build(ctx context.Context, digest, final string, code []byte, binary bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, maxBuildTime)
	defer cancel()
	work, err := os.MkdirTemp(filepath.Join(b.dir, "work"), digest[:16]+"-")
	if err != nil {
		return "", fmt.Errorf("gobuild: %w", err)
	}
	defer os.RemoveAll(work)
	out := filepath.Join(work, "out")
	start := time.Now()
	compiled, err := b.produce(ctx, work, out, code, binary)
	if err != nil {
		var ce *CompileError
		if !errors.As(err, &ce) {
			b.log.Warn("go action build failed", "digest", digest[:16], "err", err)
		}
		return "", err
	}
	if err := os.Chmod(out, 0o755); err != nil {
		return "", fmt.Errorf("gobuild: %w", err)
	}
	// Rename is atomic: a reader sees no executable or a whole one, never a partial write.
	if err := os.Rename(out, final); err != nil {
		return "", fmt.Errorf("gobuild: %w", err)
	}
	if compiled {
		b.log.Info("go action built", "digest", digest[:16], "took", time.Since(start).Round(time.Millisecond))
	}
	return final, nil
}

func (b *Builder) removeStaleWork() {
	entries, err := os.ReadDir(filepath.Join(b.dir, "work"))
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleWork {
			_ = os.RemoveAll(filepath.Join(b.dir, "work", e.Name()))
		}
	}
}

// UseBuildCache points compilations at a shared go build cache, so that a new data directory
// does not recompile the standard library (minutes on a small machine).
func (b *Builder) UseBuildCache(dir string) { b.gocache = dir }

// Warm compiles a trivial action so that the standard library and the SDK are in the build
// cache before the first user's deploy needs them.
func (b *Builder) Warm(ctx context.Context) error {
	_, err := b.Build(ctx, []byte(warmSource), false)
	return err
}

const warmSource = "package main\n\nfunc Main(p map[string]interface{}) map[string]interface{} { return p }\n"
