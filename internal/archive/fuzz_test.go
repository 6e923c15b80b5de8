package archive

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzExtract(f *testing.F) {
	// Small limits keep each iteration cheap, so the fuzzer spends its time
	// on parsing and validation rather than on writing large files.
	lim := Limits{MaxFiles: 64, MaxTotal: 1 << 20, MaxFile: 1 << 19, MaxRatio: 100}
	f.Add(mkzip(f, ent{name: "exec", mode: 0o755, body: "#!/bin/sh\n"}, ent{name: "lib/a.txt", body: "a"}, ent{name: "d/"}))
	f.Add(mkzip(f, ent{name: "../x", body: "x"}))
	f.Add(mkzip(f, ent{name: `a\..\..\x`, body: "x"}))
	f.Add(mkzip(f, ent{name: "link", mode: fs.ModeSymlink | 0o777, body: "/etc"}, ent{name: "link/x", body: "x"}))
	f.Add(mkzip(f, ent{name: "a", body: "1"}, ent{name: "a/b", body: "2"}))
	f.Add(mkzip(f, ent{name: "p", mode: fs.ModeNamedPipe | 0o644}))
	f.Add(lyingZip(f, "liar", 10, 4096))
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))

	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		dir := filepath.Join(base, "out")
		sentinel := filepath.Join(base, "sentinel")
		if err := os.Mkdir(sentinel, 0o755); err != nil {
			t.Fatal(err)
		}
		err := Extract(data, dir, lim)

		assertEmpty(t, sentinel)
		top, rerr := os.ReadDir(base)
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, e := range top {
			if e.Name() != "out" && e.Name() != "sentinel" {
				t.Fatalf("extraction created %q beside the destination", e.Name())
			}
		}
		if err != nil {
			if _, serr := os.Lstat(dir); !os.IsNotExist(serr) {
				t.Fatalf("failed extraction (%v) left the destination behind: %v", err, serr)
			}
			return
		}
		realDir, rerr := filepath.EvalSymlinks(dir)
		if rerr != nil {
			t.Fatal(rerr)
		}
		werr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() && !d.IsDir() {
				t.Errorf("%s has type %v", p, d.Type())
			}
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(realDir, real)
			if err != nil || !filepath.IsLocal(rel) && rel != "." {
				t.Errorf("%s resolves to %s, outside %s", p, real, realDir)
			}
			if !d.IsDir() {
				fi, err := d.Info()
				if err != nil {
					return err
				}
				if m := fi.Mode(); m != 0o644 && m != 0o755 {
					t.Errorf("%s has mode %v", p, m)
				}
			}
			return nil
		})
		if werr != nil {
			t.Fatal(werr)
		}
	})
}
