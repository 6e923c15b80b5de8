package testenv

import (
	"archive/zip"
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

func TestZipRoundTrip(t *testing.T) {
	files := map[string][]byte{"exec": []byte("#!/bin/sh\necho hi\n"), "lib/a.js": []byte("x")}
	zr, err := zip.NewReader(bytes.NewReader(Zip(t, files)), int64(len(Zip(t, files))))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != len(files) {
		t.Fatalf("zip has %d files, want %d", len(zr.File), len(files))
	}
	for _, f := range zr.File {
		if f.Mode().Perm() != 0o755 {
			t.Errorf("%s mode %v, want 0755", f.Name, f.Mode())
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(b, files[f.Name]) {
			t.Errorf("%s = %q, want %q", f.Name, b, files[f.Name])
		}
	}
}

func TestCleanEnvDropsCodaSettings(t *testing.T) {
	t.Setenv("CODA_LISTEN", "0.0.0.0:1")
	t.Setenv("CODA_TEST_REDIS", "127.0.0.1:1")
	env := strings.Join(cleanEnv(), "\n")
	if strings.Contains(env, "CODA_LISTEN") {
		t.Error("CODA_LISTEN leaked into the server's environment")
	}
	if !strings.Contains(env, "CODA_TEST_REDIS=127.0.0.1:1") {
		t.Error("CODA_TEST_REDIS was dropped")
	}
}

func TestServiceFromEnv(t *testing.T) {
	t.Setenv(EnvRedis, "127.0.0.1:6390")
	if got := Redis(t); got != "127.0.0.1:6390" {
		t.Fatalf("Redis = %q", got)
	}
}

func TestMissingServiceSkipsOrFails(t *testing.T) {
	t.Setenv(EnvPostgres, "")
	t.Setenv(EnvRequireServices, "")
	ft := &fakeTB{TB: t}
	ft.run(func() { Postgres(ft) })
	if !ft.skipped || ft.failed {
		t.Errorf("without %s: skipped=%v failed=%v, want a skip", EnvRequireServices, ft.skipped, ft.failed)
	}
	t.Setenv(EnvRequireServices, "1")
	ft = &fakeTB{TB: t}
	ft.run(func() { Postgres(ft) })
	if !ft.failed {
		t.Errorf("with %s=1 a missing service must fail the test", EnvRequireServices)
	}
}

// fakeTB records Skip and Fatal instead of ending the real test.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

type stop struct{}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Skipf(string, ...any)  { f.skipped = true; panic(stop{}) }
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true; panic(stop{}) }
func (f *fakeTB) run(fn func()) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stop); !ok {
				panic(r)
			}
		}
	}()
	fn()
}

// TestServerLifecycle drives the real binary: start, an authenticated request, SIGTERM, exit 0,
// restart on the same data directory.
func TestServerLifecycle(t *testing.T) {
	s := Start(t, "--stem-cells", "0")
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("URL = %q", s.URL)
	}
	status, body, _ := s.Do(t, http.MethodGet, "/namespaces", nil)
	if status != http.StatusOK || !strings.Contains(string(body), "guest") {
		t.Fatalf("GET /namespaces = %d %s", status, body)
	}
	if status, _, _ := s.DoAs(t, "", http.MethodGet, "/namespaces", nil); status != http.StatusUnauthorized {
		t.Errorf("without credentials: %d, want 401", status)
	}
	if code := s.Stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d; log:\n%s", code, s.Logs())
	}
	s2 := s.Restart(t)
	if s2.Data != s.Data || len(s2.Args) != 2 {
		t.Errorf("restart: data %q args %v", s2.Data, s2.Args)
	}
	if _, err := os.Stat(s.Data); err != nil {
		t.Fatal(err)
	}
	s2.Kill9(t)
	if !s2.Exited() {
		t.Fatal("Kill9 returned with the server alive")
	}
}
