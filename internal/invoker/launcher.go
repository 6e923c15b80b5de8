package invoker

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/sandbox"
)

// PidsMax bounds an instance's processes and threads: Node.js alone runs about eleven threads,
// and several activations in their background phase may each have a child runtime; a fork
// bomb still stops here.
const PidsMax = 512

// Builder turns Go code into an executable (internal/gobuild).
type Builder interface {
	Build(ctx context.Context, code []byte, binary bool) (string, error)
}

// Extractor unpacks a zip into a content-addressed directory (internal/archive).
type Extractor func(data []byte) (dir string, err error)

// Runtimes is the Launcher for Coda's kinds.
type Runtimes struct {
	Dir     string // where runtimes.Extract wrote nodejs/ and python/
	Node    string // absolute path of node
	Python  string // absolute path of the real python3.11 (never a shell shim)
	Go      Builder
	Unzip   Extractor
	Env     []string // the whole environment of every instance
	NoStems bool     // keep no stem cells (they are also off when StemCells is 0)
}

// DefaultEnv is the environment instances start with; the tracking switches pass through so
// an operator (or the benchmark) can turn tracking off to measure its cost.
func DefaultEnv(getenv func(string) string) []string {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "TMPDIR=/tmp", "LANG=C.UTF-8"}
	for _, k := range []string{"CODA_NODE_TRACKING", "CODA_PY_TRACKING"} {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// FindPython returns the absolute path of a real Python 3.11 interpreter. The pyenv shim on
// PATH adds ~100 ms to every start (and asking it costs as much), so look for the real
// interpreter where installers put it; a shim is used only to ask, as a last resort.
func FindPython(ctx context.Context, getenv func(string) string) (string, error) {
	var candidates []string
	if p := getenv("CODA_PYTHON"); p != "" {
		candidates = append(candidates, p)
	}
	for _, root := range []string{getenv("PYENV_ROOT"), filepath.Join(getenv("HOME"), ".pyenv"), "/root/.pyenv"} {
		if root == "" {
			continue
		}
		m, _ := filepath.Glob(filepath.Join(root, "versions", "3.11*", "bin", "python3.11"))
		slices.Reverse(m) // newest patch release first
		candidates = append(candidates, m...)
	}
	candidates = append(candidates, "/usr/local/bin/python3.11", "/usr/bin/python3.11")
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	path, err := exec.LookPath("python3.11")
	if err != nil {
		return "", fmt.Errorf("invoker: no Python 3.11 interpreter found")
	}
	out, err := exec.CommandContext(ctx, path, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		return "", fmt.Errorf("invoker: %s: %w", path, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// StemKinds lists the interpreted kinds, whose start-up is worth prewarming.
func (r *Runtimes) StemKinds() []string {
	if r.NoStems {
		return nil
	}
	var kinds []string
	if r.Node != "" {
		kinds = append(kinds, entity.KindNode)
	}
	if r.Python != "" {
		kinds = append(kinds, entity.KindPython)
	}
	return kinds
}

// InitCode sends source to interpreters; executables carry their code.
func (r *Runtimes) InitCode(kind string, a *entity.Action) (string, bool) {
	switch kind {
	case entity.KindNode, entity.KindPython:
		return a.Exec.Code, a.Exec.Binary
	}
	return "", false
}

// Spec says how to start an instance of kind (a stem cell when a is nil).
func (r *Runtimes) Spec(ctx context.Context, kind string, a *entity.Action) (sandbox.Spec, error) {
	spec := sandbox.Spec{Env: r.Env, Dir: "/tmp", ReadOnly: []string{r.Dir}, PidsMax: PidsMax}
	switch kind {
	case entity.KindNode:
		if r.Node == "" {
			return spec, fmt.Errorf("node is not installed on this invoker")
		}
		spec.Path, spec.Args = r.Node, []string{r.Node, filepath.Join(r.Dir, "nodejs", "runner.js")}
	case entity.KindPython:
		if r.Python == "" {
			return spec, fmt.Errorf("python 3.11 is not installed on this invoker")
		}
		spec.Path, spec.Args = r.Python, []string{r.Python, "-u", filepath.Join(r.Dir, "python", "runner.py")}
	case entity.KindGo, entity.KindBlackbox:
		if a == nil {
			return spec, fmt.Errorf("no stem cells for %s", kind)
		}
		code, err := decodeCode(a)
		if err != nil {
			return spec, &initError{msg: err.Error()}
		}
		var path string
		if kind == entity.KindGo {
			if path, err = r.Go.Build(ctx, code, a.Exec.Binary); err != nil {
				return spec, &initError{msg: "Initialization has failed due to: " + err.Error()}
			}
		} else {
			dir, err := r.Unzip(code)
			if err != nil {
				return spec, &initError{msg: "Initialization has failed due to: " + err.Error()}
			}
			path, spec.Dir = filepath.Join(dir, "exec"), dir
			if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
				return spec, &initError{msg: "Initialization has failed due to: the zip has no executable file named exec at its root"}
			}
		}
		spec.Path, spec.Args = path, []string{path}
		spec.ReadOnly = append(spec.ReadOnly, filepath.Dir(path))
	default:
		return spec, fmt.Errorf("kind %q is not supported", kind)
	}
	return spec, nil
}

// decodeCode returns the action's code bytes (binary code travels base64-encoded).
func decodeCode(a *entity.Action) ([]byte, error) {
	if !a.Exec.Binary {
		return []byte(a.Exec.Code), nil
	}
	b, err := base64.StdEncoding.DecodeString(a.Exec.Code)
	if err != nil {
		return nil, fmt.Errorf("the action's binary code is not valid base64: %w", err)
	}
	return b, nil
}
