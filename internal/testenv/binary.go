// Package testenv holds helpers for tests that drive the real coda binary: it builds
// ./cmd/coda, starts `coda serve` on a free port with a throwaway data directory, talks to its
// API, and finds the external services (Redis, PostgreSQL, npm modules) the safety suites need.
package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildTimeout bounds `go build ./cmd/coda`: a cold build of the server with SQLite and NATS
// takes a minute or two on a 2-core machine; far beyond that something hangs.
const buildTimeout = 10 * time.Minute

// built caches the one build per test binary. A package variable is the simplest way to
// share it across tests without forcing every package to write a TestMain.
var built struct {
	once sync.Once
	path string
	err  error
}

// RepoRoot is the repository's root directory (where go.mod lives).
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("testenv: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary builds ./cmd/coda once per test binary and returns the path of the executable.
// Test binaries of several packages may run at once (go test -p N): the build goes to a
// path private to this repository, under a file lock, and is renamed into place atomically,
// so they share one executable without clobbering each other.
func Binary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() { built.path, built.err = build() })
	if built.err != nil {
		t.Fatalf("testenv: build coda: %v", built.err)
	}
	return built.path
}

func build() (string, error) {
	root := RepoRoot()
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), "coda-testenv-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too

	// Instances run as an unprivileged uid and re-execute the binary (/proc/self/exe) as
	// their sandbox shim: it must be readable and executable by everyone.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "coda")
	tmp := filepath.Join(dir, fmt.Sprintf("coda.%d.tmp", os.Getpid()))
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "./cmd/coda")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build ./cmd/coda: %w\n%s", err, stderr.String())
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return out, nil
}
