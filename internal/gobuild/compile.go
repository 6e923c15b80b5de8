package gobuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	gosdk "github.com/coda-serverless/coda/runtimes/go"
)

// killGrace bounds the wait for the go command's output after its process group was killed.
const killGrace = 5 * time.Second

// compile builds the module in src (the SDK sits in work/sdk) into out.
func (b *Builder) compile(ctx context.Context, work, src, out string) error {
	b.builds.Add(1)
	// The SDK comes from the copy in the coda binary: no network, and the version Coda speaks.
	if _, err := b.goCmd(ctx, src, "mod", "edit",
		"-require="+gosdk.ModulePath+"@v0.0.0",
		"-replace="+gosdk.ModulePath+"=../sdk"); err != nil {
		return err
	}
	_, err := b.goCmd(ctx, src, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	return err
}

// goCmd runs the go command in dir. A failure is a *CompileError carrying the command's output
// with the build directory's paths removed, unless ctx ended or the command could not start.
func (b *Builder) goCmd(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, b.goBin, args...)
	cmd.Dir = dir
	cmd.Env = b.env()
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	// The go command forks compilers and linkers: kill the whole group, not just go.
	// Pdeathsig: a compile must not outlive a killed coda serve and keep writing into its data.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killGrace
	err := cmd.Run()
	if err == nil {
		return output.Bytes(), nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("gobuild: go %s: %w", args[0], ctx.Err())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return nil, fmt.Errorf("gobuild: go %s: %w", args[0], err)
	}
	msg := relativize(strings.TrimSpace(output.String()), dir)
	if msg == "" {
		msg = fmt.Sprintf("go %s failed: %v", args[0], err)
	}
	return nil, &CompileError{Msg: msg}
}

// env is the process environment with the settings that make builds hermetic and cached here;
// GOPROXY and friends stay inherited, since modules with third-party dependencies need them.
func (b *Builder) env() []string {
	set := map[string]string{
		"CGO_ENABLED": "0",
		// -modcacherw: the module cache lives in cacheDir and must stay removable.
		"GOFLAGS":     "-mod=mod -modcacherw -buildvcs=false",
		"GOCACHE":     b.gocache,
		"GOPATH":      filepath.Join(b.dir, "gopath"),
		"GOMODCACHE":  filepath.Join(b.dir, "gopath", "pkg", "mod"),
		"GOTOOLCHAIN": "local",
		"GOWORK":      "off", // a go.work above the cache must not pull other modules in
		"GOOS":        runtime.GOOS,
		"GOARCH":      runtime.GOARCH,
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

// relativize removes the build directory from compiler output, leaving paths such as main.go:3:2.
func relativize(msg, dir string) string {
	msg = strings.ReplaceAll(msg, dir+string(filepath.Separator), "")
	msg = strings.ReplaceAll(msg, filepath.Dir(dir)+string(filepath.Separator), "")
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		if l == "# action" { // the header of the generated module: says nothing to the author
			continue
		}
		lines = append(lines, strings.TrimPrefix(l, "./"))
	}
	return strings.Join(lines, "\n")
}
