package gosdk

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCopyMatchesSDK fails when _sdk drifts from sdk: run go generate ./runtimes/go/.
func TestCopyMatchesSDK(t *testing.T) {
	out := t.TempDir()
	if err := WriteTo(out); err != nil {
		t.Fatal(err)
	}
	want, err := filepath.Glob("sdk/*")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range want {
		name := filepath.Base(p)
		if strings.HasSuffix(name, "_test.go") || !(strings.HasSuffix(name, ".go") || name == "go.mod") {
			continue
		}
		names = append(names, name)
		a, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(a) != string(b) {
			t.Errorf("embedded %s differs from sdk/%s: run go generate ./runtimes/go/", name, name)
		}
	}
	got, _ := os.ReadDir(out)
	if len(got) != len(names) {
		var g []string
		for _, e := range got {
			g = append(g, e.Name())
		}
		slices.Sort(g)
		t.Errorf("embedded files %v, sdk has %v: run go generate ./runtimes/go/", g, names)
	}
	if Digest() == "" {
		t.Error("empty digest")
	}
}
