package gobuild

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/protocol"
)

// shared is one builder for the whole package: its GOCACHE then compiles the standard library
// once, not once per test.
var shared *Builder

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gobuild-test-")
	if err != nil {
		panic(err)
	}
	shared, err = New(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const helloSource = `package main

import "fmt"

func Main(params map[string]interface{}) map[string]interface{} {
	fmt.Println("hello from main")
	name, _ := params["name"].(string)
	return map[string]interface{}{"greeting": "hello " + name}
}
`

func mustBuild(t *testing.T, code []byte, binary bool) string {
	t.Helper()
	path, err := shared.Build(context.Background(), code, binary)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return path
}

func TestSourceActionRuns(t *testing.T) {
	p := startInstance(t, mustBuild(t, []byte(helloSource), false))
	p.init()
	msgs := p.run("a1", "decoupled", map[string]any{"name": "Ada"})
	if r := response(t, msgs); r["greeting"] != "hello Ada" {
		t.Fatalf("result %v", r)
	}
	if end := msgs[len(msgs)-1]; end.Cause != protocol.CauseSettled {
		t.Fatalf("end %+v", end)
	}
	// stdout travels apart from the protocol pipe: give its copier time (a hang guard only).
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.rawOutput(), "hello from main") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(p.rawOutput(), "hello from main") {
		t.Errorf("stdout %q lacks the function's print", p.rawOutput())
	}
}

func TestCompileError(t *testing.T) {
	src := "package main\n\nfunc Main(p map[string]any) map[string]any {\n\treturn foo(p)\n}\n"
	_, err := shared.Build(context.Background(), []byte(src), false)
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *CompileError", err)
	}
	if !strings.Contains(ce.Msg, "main.go:4:9: undefined: foo") {
		t.Errorf("message %q lacks the line of the error", ce.Msg)
	}
	if strings.Contains(ce.Msg, shared.dir) {
		t.Errorf("message %q leaks the build directory", ce.Msg)
	}
}

func TestRejectsBadActions(t *testing.T) {
	cases := map[string]struct {
		code   string
		binary bool
		want   string
	}{
		"wrong signature": {"package main\n\nfunc Main(s string) string { return s }\n", false, "does not satisfy"},
		"own main":        {"package main\n\nfunc main() {}\n", false, "defines func main"},
		"no Main":         {"package main\n\nfunc Other() {}\n", false, "no func Main"},
		"not main":        {"package action\n\nfunc Main(p map[string]any) map[string]any { return p }\n", false, "want package main"},
		"syntax":          {"package main\n\nfunc Main( {\n", false, "main.go:3"},
		"garbage binary":  {"not a zip", true, "must be a zip"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := shared.Build(context.Background(), []byte(c.code), c.binary)
			var ce *CompileError
			if !errors.As(err, &ce) || !strings.Contains(ce.Msg, c.want) {
				t.Fatalf("err = %v, want a CompileError containing %q", err, c.want)
			}
		})
	}
}

func TestCacheAndSingleflight(t *testing.T) {
	src := []byte(strings.Replace(helloSource, "hello from main", "cache test", 1))
	before := shared.builds.Load()
	paths := make([]string, 4)
	var wg sync.WaitGroup
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i] = mustBuild(t, src, false)
		}()
	}
	wg.Wait()
	if n := shared.builds.Load() - before; n != 1 {
		t.Fatalf("%d compilations for 4 concurrent builds of the same code, want 1", n)
	}
	fi, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", fi.Mode().Perm())
	}
	again := mustBuild(t, src, false)
	if n := shared.builds.Load() - before; n != 1 || again != paths[0] {
		t.Fatalf("rebuild: %d compilations, path %s vs %s", n, again, paths[0])
	}
	for _, p := range paths {
		if p != paths[0] {
			t.Fatalf("paths differ: %v", paths)
		}
	}
}

func zipOf(t *testing.T, files map[string]string, mode os.FileMode) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestZipModule(t *testing.T) {
	code := zipOf(t, map[string]string{
		// An old go directive: the SDK's newer one must not break the build.
		"go.mod": "module example.com/shout\n\ngo 1.22\n",
		"main.go": `package main

import (
	"context"

	"example.com/shout/upper"
)

func Main(ctx context.Context, p map[string]interface{}) (map[string]interface{}, error) {
	return map[string]interface{}{"shout": upper.Shout(p["word"].(string)) + suffix}, nil
}
`,
		"suffix.go":      "package main\n\nconst suffix = \"!\"\n",
		"upper/upper.go": "package upper\n\nimport \"strings\"\n\nfunc Shout(s string) string { return strings.ToUpper(s) }\n",
	}, 0o644)
	p := startInstance(t, mustBuild(t, code, true))
	p.init()
	if r := response(t, p.run("z", "decoupled", map[string]any{"word": "hey"})); r["shout"] != "HEY!" {
		t.Fatalf("result %v", r)
	}
}

func TestPrebuiltExecutable(t *testing.T) {
	exe, err := os.ReadFile(mustBuild(t, []byte(helloSource), false))
	if err != nil {
		t.Fatal(err)
	}
	before := shared.builds.Load()
	fromZip := mustBuild(t, zipOf(t, map[string]string{"exec": string(exe)}, 0o755), true)
	raw := mustBuild(t, exe, true)
	if n := shared.builds.Load() - before; n != 0 {
		t.Fatalf("prebuilt executables were compiled (%d)", n)
	}
	for _, path := range []string{fromZip, raw} {
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, exe) {
			t.Fatalf("%s is not the executable as given (%v)", path, err)
		}
		p := startInstance(t, path)
		p.init()
		if r := response(t, p.run("e", "decoupled", map[string]any{"name": "Bo"})); r["greeting"] != "hello Bo" {
			t.Fatalf("result %v", r)
		}
	}
	if _, err := shared.Build(context.Background(), []byte("\x7fELF garbage"), true); err == nil {
		t.Fatal("a broken ELF was accepted")
	}
}

func TestBackgroundWorkDelaysEnd(t *testing.T) {
	src := `package main

import (
	"context"
	"os"
	"time"

	"github.com/coda-serverless/coda/runtimes/go/sdk"
)

func Main(ctx context.Context, p map[string]any) map[string]any {
	sdk.GoNamed(ctx, "write marker", func(ctx context.Context) {
		time.Sleep(300 * time.Millisecond)
		os.WriteFile(p["marker"].(string), []byte("done"), 0o644)
		sdk.Logf(ctx, "marker written")
	})
	return map[string]any{"ok": true}
}
`
	marker := t.TempDir() + "/marker"
	p := startInstance(t, mustBuild(t, []byte(src), false))
	p.init()
	msgs := p.run("bg", "decoupled", map[string]any{"marker": marker})
	var types []string
	for _, m := range msgs {
		types = append(types, m.Type)
	}
	want := []string{"response", "pending", "log", "end"}
	if strings.Join(types, ",") != strings.Join(want, ",") {
		t.Fatalf("messages %v, want %v", types, want)
	}
	if msgs[1].Pending[0] != "write marker" || msgs[2].Line != "marker written" {
		t.Fatalf("pending %v, log %q", msgs[1].Pending, msgs[2].Line)
	}
	// end came after the work: the marker exists by then.
	if b, err := os.ReadFile(marker); err != nil || string(b) != "done" {
		t.Fatalf("marker %q %v at end", b, err)
	}
}

func TestOwnMainServingThroughSDK(t *testing.T) {
	src := `package main

import "github.com/coda-serverless/coda/runtimes/go/sdk"

func hello(p map[string]any) map[string]any { return map[string]any{"own": true} }

func main() { sdk.Serve(hello) }
`
	p := startInstance(t, mustBuild(t, []byte(src), false))
	p.init()
	if r := response(t, p.run("o", "decoupled", map[string]any{})); r["own"] != true {
		t.Fatalf("result %v", r)
	}
}
