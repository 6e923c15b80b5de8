package archive

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func manyFiles(t testing.TB, n int) ([]byte, map[string]string) {
	t.Helper()
	want := make(map[string]string, n)
	ents := make([]ent, 0, n)
	for i := range n {
		name := fmt.Sprintf("d%02d/f%04d", i%10, i)
		body := fmt.Sprintf("body of %d\n", i)
		want[name] = body
		ents = append(ents, ent{name: name, mode: 0o644, body: body})
	}
	return mkzip(t, ents...), want
}

func checkTree(t testing.TB, dir string, want map[string]string) {
	t.Helper()
	for name, body := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		if string(got) != body {
			t.Errorf("%s: got %q want %q", name, got, body)
			return
		}
	}
}

// assertNoTemps checks that only finished entries remain under root.
func assertNoTemps(t testing.TB, root string) {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("leftover temp dir %s", e.Name())
		}
	}
}

func TestExtractToReuse(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cache")
	data, want := manyFiles(t, 20)
	dir, err := ExtractTo(data, root, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(dir) != root || len(filepath.Base(dir)) != 64 {
		t.Fatalf("unexpected dir %s", dir)
	}
	checkTree(t, dir, want)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("cache dir mode: %v %v", fi, err)
	}
	// A marker survives the second call only if the tree is reused rather
	// than re-extracted.
	marker := filepath.Join(dir, "marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir2, err := ExtractTo(data, root, DefaultLimits())
	if err != nil || dir2 != dir {
		t.Fatalf("second call: %s %v", dir2, err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("tree was not reused: %v", err)
	}
	other, _ := manyFiles(t, 3)
	dir3, err := ExtractTo(other, root, DefaultLimits())
	if err != nil || dir3 == dir {
		t.Fatalf("different data: %s %v", dir3, err)
	}
	assertNoTemps(t, root)
}

func TestExtractToConcurrent(t *testing.T) {
	root := t.TempDir()
	data, want := manyFiles(t, 300)
	const callers = 8
	dirs := make([]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			d, err := ExtractTo(data, root, DefaultLimits())
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
				return
			}
			// Checked right away: a caller must never see a partial tree.
			checkTree(t, d, want)
			dirs[i] = d
		})
	}
	wg.Wait()
	for i, d := range dirs {
		if d != dirs[0] {
			t.Fatalf("caller %d got %s, caller 0 got %s", i, d, dirs[0])
		}
	}
	assertNoTemps(t, root)
	ents, err := os.ReadDir(root)
	if err != nil || len(ents) != 1 {
		t.Fatalf("root should hold exactly one entry: %v %v", ents, err)
	}
}

func TestExtractToRejects(t *testing.T) {
	root := t.TempDir()
	data := mkzip(t, ent{name: "ok", body: "fine"}, ent{name: "../escape", body: "x"})
	_, err := ExtractTo(data, root, DefaultLimits())
	var ae *Error
	if !errors.As(err, &ae) || ae.Entry != "../escape" {
		t.Fatalf("got %v", err)
	}
	assertEmpty(t, root)
}

func TestExtractToSweepsStaleTemps(t *testing.T) {
	root := t.TempDir()
	stale := filepath.Join(root, tmpPrefix+"crashed")
	fresh := filepath.Join(root, tmpPrefix+"inflight")
	for _, d := range []string{stale, fresh} {
		if err := os.MkdirAll(filepath.Join(d, "half"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTmpAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := ExtractTo(mkzip(t, ent{name: "x", body: "x"}), root, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp dir not removed: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("in-flight temp dir removed: %v", err)
	}
}
