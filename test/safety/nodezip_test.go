package safety

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coda-serverless/coda/internal/testenv"
)

// nodeZipFiles returns the files of a Node.js action archive: package.json, index.js and, under
// node_modules/, the given npm packages and everything they depend on, copied from
// test/node/node_modules (installed by npm ci). Type declarations, source maps and docs are
// left out: every cold start unpacks the archive.
func nodeZipFiles(t testing.TB, index string, packages ...string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"package.json": []byte(`{"name":"coda-safety-action","private":true,"main":"index.js"}`),
		"index.js":     []byte(index),
	}
	if len(packages) == 0 {
		return files
	}
	root := testenv.NodeModules(t)
	for _, dir := range dependencyClosure(t, root, packages) {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if d.IsDir() {
				// Nested node_modules are packages of their own, copied when depended on.
				if rel != dir && d.Name() == "node_modules" {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || skipModuleFile(rel) {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files["node_modules/"+rel] = b
			return nil
		})
		if err != nil {
			t.Fatalf("copy node module %s: %v", dir, err)
		}
	}
	return files
}

func skipModuleFile(rel string) bool {
	base := path.Base(rel)
	switch {
	case strings.HasSuffix(base, ".d.ts"), strings.HasSuffix(base, ".d.mts"), strings.HasSuffix(base, ".d.cts"),
		strings.HasSuffix(base, ".map"), strings.HasSuffix(base, ".md"), strings.HasSuffix(base, ".ts"):
		return true
	}
	return false
}

// dependencyClosure resolves packages and their dependencies (and installed optional
// dependencies) the way Node does from the archive's root: a package's own nested
// node_modules first, then the top-level one. It returns directories relative to root.
func dependencyClosure(t testing.TB, root string, packages []string) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	type want struct{ name, from string } // from: the requiring package's dir ("" = top)
	queue := make([]want, 0, len(packages))
	for _, p := range packages {
		queue = append(queue, want{name: p})
	}
	for len(queue) > 0 {
		w := queue[0]
		queue = queue[1:]
		var dir string
		for _, cand := range []string{path.Join(w.from, "node_modules", w.name), w.name} {
			if w.from == "" && cand != w.name {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(cand), "package.json")); err == nil {
				dir = cand
				break
			}
		}
		if dir == "" {
			t.Fatalf("node module %s (needed by %q) is not installed in %s: run npm ci in test/node", w.name, w.from, root)
		}
		if seen[dir] {
			continue
		}
		seen[dir] = true
		out = append(out, dir)
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(dir), "package.json"))
		if err != nil {
			t.Fatal(err)
		}
		var pj struct {
			Dependencies         map[string]string `json:"dependencies"`
			OptionalDependencies map[string]string `json:"optionalDependencies"`
		}
		if err := json.Unmarshal(b, &pj); err != nil {
			t.Fatalf("node module %s: package.json: %v", dir, err)
		}
		for name := range pj.Dependencies {
			queue = append(queue, want{name: name, from: dir})
		}
		for name := range pj.OptionalDependencies {
			// Optional: only when npm installed it (platform-specific ones are often absent).
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(dir), "node_modules", name)); err == nil {
				queue = append(queue, want{name: name, from: dir})
			} else if _, err := os.Stat(filepath.Join(root, name)); err == nil {
				queue = append(queue, want{name: name, from: dir})
			}
		}
	}
	return out
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("jsString: %v", err))
	}
	return string(b)
}
