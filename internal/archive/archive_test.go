package archive

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ent describes one zip member for mkzip. mode 0 leaves the header's mode
// unset (as zips from non-Unix tools do).
type ent struct {
	name  string
	mode  fs.FileMode
	body  string
	flags uint16
}

func mkzip(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		fh := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Flags: e.flags}
		if e.mode != 0 {
			fh.SetMode(e.mode)
		}
		w, err := zw.CreateHeader(fh)
		if err != nil {
			t.Fatalf("create %q: %v", e.name, err)
		}
		if _, err := io.WriteString(w, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zeros streams n zero bytes into a single deflated entry without holding
// them in memory: the bomb stays cheap to build.
func zeroBomb(t testing.TB, name string, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, mib)
	for left := n; left > 0; left -= int64(len(chunk)) {
		if _, err := w.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// setup returns a destination path (not yet created) and an empty sentinel
// sibling that must stay empty whatever the archive does.
func setup(t testing.TB) (dir, sentinel string) {
	t.Helper()
	base := t.TempDir()
	sentinel = filepath.Join(base, "sentinel")
	if err := os.Mkdir(sentinel, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(base, "out"), sentinel
}

func assertEmpty(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("%s should be empty, has %d entries (first %q)", dir, len(ents), ents[0].Name())
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExtractTree(t *testing.T) {
	dir, sentinel := setup(t)
	data := mkzip(t,
		ent{name: "./", mode: fs.ModeDir | 0o755},
		ent{name: "exec", mode: 0o755, body: "#!/bin/sh\necho hi\n"},
		ent{name: "lib/", mode: fs.ModeDir | 0o700},
		ent{name: "lib/data.txt", mode: 0o600, body: "data"},
		ent{name: "lib/deep/er/file", mode: 0o644, body: "deep"},
		ent{name: `win\style.txt`, body: "backslash"},
		ent{name: "suid", mode: 0o755 | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky, body: "x"},
		ent{name: "nomode", body: "plain"},
		ent{name: "empty/", mode: fs.ModeDir | 0o755},
	)
	if err := Extract(data, dir, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		perm fs.FileMode
		body string
	}{
		"exec":             {0o755, "#!/bin/sh\necho hi\n"},
		"lib/data.txt":     {0o644, "data"},
		"lib/deep/er/file": {0o644, "deep"},
		"win/style.txt":    {0o644, "backslash"},
		"suid":             {0o755, "x"},
		"nomode":           {0o644, "plain"},
	}
	for name, w := range want {
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() || fi.Mode() != w.perm {
			t.Errorf("%s: mode %v, want regular %v", name, fi.Mode(), w.perm)
		}
		if got := readFile(t, p); got != w.body {
			t.Errorf("%s: body %q, want %q", name, got, w.body)
		}
	}
	for _, d := range []string{".", "lib", "lib/deep", "lib/deep/er", "empty", "win"} {
		fi, err := os.Lstat(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != fs.ModeDir|0o755 {
			t.Errorf("dir %s: mode %v, want drwxr-xr-x", d, fi.Mode())
		}
	}
	assertEmpty(t, sentinel)
}

func TestExtractRejects(t *testing.T) {
	tight := Limits{MaxFiles: 3}
	cases := []struct {
		name   string
		data   []byte
		lim    Limits
		entry  string // expected Error.Entry
		reason string // substring of Error.Reason
	}{
		{"dotdot", mkzip(t, ent{name: "../x", body: "x"}), Limits{}, "../x", `".."`},
		{"absolute", mkzip(t, ent{name: "/etc/x", body: "x"}), Limits{}, "/etc/x", "absolute"},
		{"inner dotdot", mkzip(t, ent{name: "a/../../x", body: "x"}), Limits{}, "a/../../x", `".."`},
		{"harmless dotdot", mkzip(t, ent{name: "a/../b", body: "x"}), Limits{}, "a/../b", `".."`},
		{"backslash dotdot", mkzip(t, ent{name: `a\..\..\x`, body: "x"}), Limits{}, `a\..\..\x`, `".."`},
		{"backslash absolute", mkzip(t, ent{name: `\etc\x`, body: "x"}), Limits{}, `\etc\x`, "absolute"},
		{"nul", mkzip(t, ent{name: "x\x00y", body: "x"}), Limits{}, "x\x00y", "NUL"},
		{"empty name", mkzip(t, ent{name: "", body: "x"}), Limits{}, "", "empty"},
		{"long component", mkzip(t, ent{name: strings.Repeat("a", 300), body: "x"}), Limits{}, strings.Repeat("a", 300), "longer"},
		{"symlink", mkzip(t, ent{name: "ok", body: "x"}, ent{name: "link", mode: fs.ModeSymlink | 0o777, body: "/etc/passwd"}), Limits{}, "link", "symbolic link"},
		{"block device", mkzip(t, ent{name: "sda", mode: fs.ModeDevice | 0o660}), Limits{}, "sda", "device"},
		{"char device", mkzip(t, ent{name: "null", mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}), Limits{}, "null", "character device"},
		{"fifo", mkzip(t, ent{name: "p", mode: fs.ModeNamedPipe | 0o644}), Limits{}, "p", "fifo"},
		{"socket", mkzip(t, ent{name: "s", mode: fs.ModeSocket | 0o644}), Limits{}, "s", "socket"},
		{"duplicate", mkzip(t, ent{name: "a", body: "1"}, ent{name: "a", body: "2"}), Limits{}, "a", "duplicate"},
		{"duplicate after clean", mkzip(t, ent{name: "d/a", body: "1"}, ent{name: "./d//a", body: "2"}), Limits{}, "./d//a", "duplicate"},
		{"duplicate dir", mkzip(t, ent{name: "d/"}, ent{name: "d/"}), Limits{}, "d/", "duplicate"},
		{"file as parent", mkzip(t, ent{name: "a", body: "1"}, ent{name: "a/b", body: "2"}), Limits{}, "a/b", "parent"},
		{"encrypted", mkzip(t, ent{name: "secret", body: "x", flags: encryptedFlag}), Limits{}, "secret", "encrypted"},
		{"too many files", mkzip(t, ent{name: "1"}, ent{name: "2"}, ent{name: "3"}, ent{name: "4"}), tight, "", "4 entries, limit is 3"},
		{"not a zip", []byte("definitely not a zip"), Limits{}, "", "not a valid zip"},
		{"per-file limit", mkzip(t, ent{name: "big", body: strings.Repeat("x", 100)}), Limits{MaxFile: 99}, "big", "per-file limit"},
		{"total limit", mkzip(t, ent{name: "a", body: strings.Repeat("x", 60)}, ent{name: "b", body: strings.Repeat("x", 60)}), Limits{MaxTotal: 100}, "b", "total declared size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, sentinel := setup(t)
			err := Extract(tc.data, dir, tc.lim)
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("want *Error, got %v", err)
			}
			if ae.Entry != tc.entry || !strings.Contains(ae.Reason, tc.reason) {
				t.Fatalf("got entry %q reason %q; want entry %q reason containing %q", ae.Entry, ae.Reason, tc.entry, tc.reason)
			}
			if _, err := os.Lstat(dir); !os.IsNotExist(err) {
				t.Fatalf("destination should not exist after rejection: %v", err)
			}
			assertEmpty(t, sentinel)
		})
	}
}

func TestErrorMessage(t *testing.T) {
	if got := (&Error{Entry: "../x", Reason: "bad"}).Error(); got != `zip entry "../x": bad` {
		t.Errorf("got %q", got)
	}
	if got := (&Error{Reason: "bad"}).Error(); got != "zip: bad" {
		t.Errorf("got %q", got)
	}
}

func TestExtractBomb(t *testing.T) {
	const size = 100 * mib
	data := zeroBomb(t, "bomb", size)
	if len(data) > mib {
		t.Fatalf("bomb compressed to %d bytes; test premise broken", len(data))
	}
	dir, sentinel := setup(t)
	err := Extract(data, dir, Limits{MaxFile: 10 * mib, MaxTotal: 10 * mib})
	var ae *Error
	if !errors.As(err, &ae) || ae.Entry != "bomb" || !strings.Contains(ae.Reason, "per-file limit") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatalf("destination should not exist: %v", err)
	}
	assertEmpty(t, sentinel)
}

func TestExtractRatio(t *testing.T) {
	data := zeroBomb(t, "z", 20*mib)
	dir, _ := setup(t)
	err := Extract(data, dir, Limits{MaxRatio: 200})
	var ae *Error
	if !errors.As(err, &ae) || !strings.Contains(ae.Reason, "compression ratio") {
		t.Fatalf("got %v", err)
	}
	// The same file passes when the ratio bound allows it: proves the limit,
	// not something else, rejected it.
	if err := Extract(data, dir, Limits{MaxRatio: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "z")); err != nil || fi.Size() != 20*mib {
		t.Fatalf("stat: %v %v", fi, err)
	}
}

// lyingZip holds one deflated entry whose headers declare only declared
// bytes while the data inflates to actual bytes.
func lyingZip(t testing.TB, name string, declared uint64, actual int) []byte {
	t.Helper()
	plain := make([]byte, actual)
	var comp bytes.Buffer
	fw, err := flate.NewWriter(&comp, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{
		Name:               name,
		Method:             zip.Deflate,
		CRC32:              crc32.ChecksumIEEE(plain),
		CompressedSize64:   uint64(comp.Len()),
		UncompressedSize64: declared,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(comp.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractLyingHeader(t *testing.T) {
	data := lyingZip(t, "liar", 1000, 5*mib)
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil || zr.File[0].UncompressedSize64 != 1000 {
		t.Fatalf("crafted zip does not lie as intended: %v", err)
	}
	dir, sentinel := setup(t)
	err = Extract(data, dir, DefaultLimits())
	var ae *Error
	if !errors.As(err, &ae) || ae.Entry != "liar" {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatalf("destination should not exist: %v", err)
	}
	assertEmpty(t, sentinel)
}

// endless yields zeros forever and counts what was taken from it.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	clear(p)
	e.n += int64(len(p))
	return len(p), nil
}

// TestCopyLimited proves the size guard independently of archive/zip's own
// checks: a source that never ends is cut off just past the limit.
func TestCopyLimited(t *testing.T) {
	src := &endless{}
	var dst bytes.Buffer
	n, err := copyLimited(&dst, src, 1000)
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("want errTooLarge, got %v", err)
	}
	if n != 1001 || src.n > 1001 {
		t.Fatalf("copied %d, read %d; want exactly limit+1", n, src.n)
	}
	n, err = copyLimited(&dst, strings.NewReader("12345"), 5)
	if err != nil || n != 5 {
		t.Fatalf("exact fit: n=%d err=%v", n, err)
	}
	_, err = copyLimited(&dst, io.MultiReader(strings.NewReader("ab"), errReader{}), 10)
	var re *readError
	if !errors.As(err, &re) {
		t.Fatalf("read error not tagged: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

// A failure midway through must remove what was written, yet leave files
// that were in a pre-existing destination alone.
func TestExtractUndoKeepsExisting(t *testing.T) {
	dir, sentinel := setup(t)
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := mkzip(t, ent{name: "a/b/c", body: "c"}, ent{name: "lib/x", body: "x"}, ent{name: "top", body: "t"})
	// The liar comes last so several entries are on disk when it fails.
	data := appendZip(t, good, lyingZip(t, "z-liar", 10, 2*mib))

	err := Extract(data, dir, DefaultLimits())
	var ae *Error
	if !errors.As(err, &ae) || ae.Entry != "z-liar" {
		t.Fatalf("got %v", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "keep,lib" {
		t.Fatalf("destination holds %v, want [keep lib]", names)
	}
	assertEmpty(t, filepath.Join(dir, "lib"))
	if readFile(t, filepath.Join(dir, "keep")) != "mine" {
		t.Fatal("pre-existing file changed")
	}
	assertEmpty(t, sentinel)
}

// appendZip merges the members of b after those of a, raw (no recompression,
// so lies in b's headers survive).
func appendZip(t testing.TB, a, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, src := range [][]byte{a, b} {
		zr, err := zip.NewReader(bytes.NewReader(src), int64(len(src)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range zr.File {
			if err := zw.Copy(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Symlinks already present in the destination must not redirect writes.
func TestExtractExistingSymlinks(t *testing.T) {
	dir, sentinel := setup(t)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sentinel, filepath.Join(dir, "evil")); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(sentinel, "f")
	if err := os.Symlink(target, filepath.Join(dir, "f")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"evil/x", "f"} {
		err := Extract(mkzip(t, ent{name: name, body: "pwned"}), dir, DefaultLimits())
		if err == nil {
			t.Fatalf("%s: extraction through a symlink succeeded", name)
		}
		assertEmpty(t, sentinel)
	}
	// Existing regular files are not clobbered either.
	if err := os.WriteFile(filepath.Join(dir, "mine"), []byte("orig"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Extract(mkzip(t, ent{name: "mine", body: "new"}), dir, DefaultLimits()); err == nil {
		t.Fatal("overwrote an existing file")
	}
	if readFile(t, filepath.Join(dir, "mine")) != "orig" {
		t.Fatal("existing file modified")
	}
}

func TestLimitsDefaults(t *testing.T) {
	if got := (Limits{}).withDefaults(); got != DefaultLimits() {
		t.Fatalf("zero limits became %+v", got)
	}
	l := Limits{MaxFiles: 1, MaxTotal: -1}.withDefaults()
	if l.MaxFiles != 1 || l.MaxTotal != DefaultLimits().MaxTotal {
		t.Fatalf("got %+v", l)
	}
}
