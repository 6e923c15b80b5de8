package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coda-serverless/coda/internal/client/clienttest"
	"github.com/coda-serverless/coda/internal/entity"
)

// result is one run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// harness runs the CLI against a fake API with the key and host in the environment.
type harness struct {
	t   *testing.T
	srv *clienttest.Server
	env map[string]string
	dir string // working directory for files
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv := clienttest.New()
	t.Cleanup(srv.Close)
	return &harness{t: t, srv: srv, dir: t.TempDir(), env: map[string]string{
		"CODA_APIHOST": srv.URL,
		"CODA_AUTH":    srv.Auth(),
		"CODA_DATA":    t.TempDir(),
		"HOME":         t.TempDir(),
	}}
}

func (h *harness) run(args ...string) result {
	h.t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), Env{
		Args:   args,
		Getenv: func(k string) string { return h.env[k] },
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errb,
	})
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// ok runs a command that must succeed.
func (h *harness) ok(args ...string) string {
	h.t.Helper()
	r := h.run(args...)
	if r.code != 0 {
		h.t.Fatalf("coda %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// file writes a file in the harness's directory and returns its path.
func (h *harness) file(name string, data []byte) string {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func wantCode(t *testing.T, r result, code int, stderrPart string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stderr, stderrPart) {
		t.Errorf("exit %d, stderr %q; want exit %d with %q (stdout %q)", r.code, r.stderr, code, stderrPart, r.stdout)
	}
}

func TestFlagValues(t *testing.T) {
	specs := append(paramFlags(), flagSpec{long: "blocking", short: "b", kind: boolFlag}, flagSpec{long: "result", short: "r", kind: boolFlag}, flagSpec{long: "memory", short: "m", kind: intFlag})
	p, err := parseFlags([]string{"x", "-p", "n", "-5", "--param=k", "v", "-br", "--memory=512", "y", "--", "-p"}, specs)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.args, ",") != "x,y,-p" || !p.bool("blocking") || !p.bool("result") || p.ints["memory"] != 512 || p.pairs["param"][0] != [2]string{"n", "-5"} || p.pairs["param"][1] != [2]string{"k", "v"} {
		t.Errorf("parsed %+v", p)
	}
	for _, bad := range [][]string{{"--nope"}, {"-p", "k"}, {"-m", "lots"}, {"-bx"}, {"--blocking=true"}} {
		if _, err := parseFlags(bad, specs); err == nil {
			t.Errorf("parseFlags(%v) accepted", bad)
		}
	}
	for in, want := range map[string]string{`42`: `42`, `true`: `true`, `{"a":[1]}`: `{"a":[1]}`, `hello`: `"hello"`, `"q"`: `"q"`, ``: `""`, `1 2`: `"1 2"`} {
		if got := string(flagValue(in)); got != want {
			t.Errorf("flagValue(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestActionCreateFlags(t *testing.T) {
	h := newHarness(t)
	js := h.file("hello.js", []byte("function main(p) { return p }"))
	params := h.file("params.json", []byte(`{"z": 1, "name": "file", "nested": {"a": true}}`))
	annots := h.file("annots.json", []byte(`{"description": "says hello"}`))
	out := h.ok("action", "create", "hello", js, "-p", "name", "World", "-p", "count", "3", "-P", params,
		"--annotation", "team", `{"x":1}`, "-A", annots, "--termination", "await",
		"-m", "512", "-t", "30000", "-l", "5", "-c", "4", "--main", "entry", "-i")
	if out != "ok: created action hello\n" {
		t.Errorf("stdout %q", out)
	}
	a := h.srv.Action("hello")
	if a == nil {
		t.Fatal("not created")
	}
	if a.Exec.Kind != entity.KindNode || a.Exec.Binary || a.Exec.Code != "function main(p) { return p }" || a.Exec.Main != "entry" {
		t.Errorf("exec %+v", a.Exec)
	}
	if want := (entity.Limits{Timeout: 30000, Memory: 512, Logs: 5, Concurrency: 4}); a.Limits != want {
		t.Errorf("limits %+v, want %+v", a.Limits, want)
	}
	ps, _ := json.Marshal(a.Parameters)
	if string(ps) != `[{"key":"z","value":1},{"key":"name","value":"World"},{"key":"nested","value":{"a":true}},{"key":"count","value":3}]` {
		t.Errorf("parameters %s", ps)
	}
	if v, _ := a.Annotations.GetString("termination"); v != "await" {
		t.Errorf("termination %q", v)
	}
	if v, _ := a.Annotations.GetString("description"); v != "says hello" {
		t.Errorf("description %q", v)
	}
	if v, _ := a.Annotations.Get("team"); string(v) != `{"x":1}` {
		t.Errorf("team %s", v)
	}

	r := h.run("action", "create", "hello", js)
	wantCode(t, r, 1, "error: unable to create action hello: resource already exists (code fake409)")
}

func TestActionCreateKinds(t *testing.T) {
	h := newHarness(t)
	elf := append([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0}, 0xff, 0xfe, 0x00)
	zip := []byte("PK\x03\x04 not really a zip but binary enough")
	for _, c := range []struct {
		file   string
		data   []byte
		flags  []string
		kind   string
		binary bool
	}{
		{"a.py", []byte("def main(a):\n    return a\n"), nil, entity.KindPython, false},
		{"b.go", []byte("package main\n"), nil, entity.KindGo, false},
		{"c.mjs", []byte("export function main() {}"), nil, entity.KindNode, false},
		{"d.js", []byte("x"), []string{"--kind", "python:3"}, entity.KindPython, false}, // --kind wins, aliases resolve
		{"e.zip", zip, []string{"--kind", "nodejs:20"}, entity.KindNode, true},
		{"exec", elf, []string{"--kind", "blackbox"}, entity.KindBlackbox, true},
		{"f.go", []byte("package main\x00"), nil, entity.KindGo, true}, // a NUL byte is binary too
		{"g.py", []byte("# caf\xc3\xa9 is valid UTF-8\n"), nil, entity.KindPython, false},
	} {
		name := strings.ReplaceAll(c.file, ".", "-")
		h.ok(append([]string{"action", "create", name, h.file(c.file, c.data)}, c.flags...)...)
		a := h.srv.Action(name)
		if a.Exec.Kind != c.kind || a.Exec.Binary != c.binary {
			t.Errorf("%s: exec kind %s binary %v, want %s %v", c.file, a.Exec.Kind, a.Exec.Binary, c.kind, c.binary)
		}
		code := a.Exec.Code
		if c.binary {
			b, err := base64.StdEncoding.DecodeString(code)
			if err != nil {
				t.Errorf("%s: code is not base64: %v", c.file, err)
			}
			code = string(b)
		}
		if code != string(c.data) {
			t.Errorf("%s: code %q", c.file, code)
		}
	}
	wantCode(t, h.run("action", "create", "z", h.file("z.zip", zip)), 2, "--kind")
	wantCode(t, h.run("action", "create", "z", h.file("z.rb", []byte("x"))), 2, "cannot infer the kind")
	wantCode(t, h.run("action", "create", "z", h.file("z.js", []byte("x")), "--kind", "cobol"), 2, `kind "cobol" is not supported`)
	wantCode(t, h.run("action", "create", "z", filepath.Join(h.dir, "missing.js")), 2, "read action code")
	wantCode(t, h.run("action", "create", "z", h.file("y.js", []byte("x")), "--termination", "eventually"), 2, "not one of decoupled, await, coupled")
	wantCode(t, h.run("action", "create", "z", h.file("y.js", []byte("x")), "-a", "termination", "later"), 2, "not one of decoupled")
	wantCode(t, h.run("action", "create", "z", h.file("y.js", []byte("x")), "-P", h.file("arr.json", []byte("[1]"))), 2, "JSON object")
	wantCode(t, h.run("action", "create", "z", h.file("y.js", []byte("x")), "--web", "true"), 2, "unknown flag --web")
	wantCode(t, h.run("action", "create", "z"), 2, "usage: coda action create NAME FILE")
	if _, ok := h.srv.LastRequest(http.MethodPut); !ok {
		t.Fatal("no PUT at all")
	}
	if h.srv.Action("z") != nil {
		t.Error("a failed create reached the server")
	}
}

func TestActionUpdateMerges(t *testing.T) {
	h := newHarness(t)
	h.ok("action", "create", "hello", h.file("hello.js", []byte("v1")), "-p", "a", "1", "-a", "keep", "yes", "-t", "1000", "--termination", "coupled")

	if out := h.ok("action", "update", "hello", "-m", "1024", "--termination", "decoupled"); out != "ok: updated action hello\n" {
		t.Errorf("stdout %q", out)
	}
	a := h.srv.Action("hello")
	if a.Exec.Code != "v1" || a.Limits.Memory != 1024 || a.Limits.Timeout != 1000 || a.Version != "0.0.2" {
		t.Errorf("after update: %+v", a)
	}
	if v, _ := a.Annotations.GetString("keep"); v != "yes" {
		t.Error("annotation lost")
	}
	if a.Mode() != entity.ModeDecoupled {
		t.Errorf("mode %s", a.Mode())
	}
	if _, ok := a.Parameters.Get("a"); !ok {
		t.Error("parameters lost although no -p was given")
	}
	h.ok("action", "update", "hello", h.file("hello.py", []byte("v2")), "-p", "b", "2")
	a = h.srv.Action("hello")
	if a.Exec.Code != "v2" || a.Exec.Kind != entity.KindPython || len(a.Parameters) != 1 || a.Parameters[0].Key != "b" {
		t.Errorf("after code update: %+v", a)
	}
	if r, _ := h.srv.LastRequest(http.MethodPut); r.Query["overwrite"] != "true" {
		t.Errorf("update PUT query %v", r.Query)
	}
	// update creates a missing action when given its code, and fails without.
	h.ok("action", "update", "fresh", h.file("fresh.js", []byte("x")))
	if h.srv.Action("fresh") == nil {
		t.Error("update did not create")
	}
	wantCode(t, h.run("action", "update", "ghost", "-m", "256"), 1, "does not exist")
	wantCode(t, h.run("action", "update", "hello", "--kind", "nodejs:20"), 2, "--kind needs")
}

func TestActionGetListDelete(t *testing.T) {
	h := newHarness(t)
	h.ok("action", "create", "hello", h.file("hello.js", []byte("code")), "-p", "name", "x", "-a", "description", "greets")
	h.ok("action", "create", "bye", h.file("bye.py", []byte("code")))

	out := h.ok("action", "get", "hello")
	head, body, _ := strings.Cut(out, "\n")
	if head != "ok: got action hello" {
		t.Errorf("head %q", head)
	}
	var a entity.Action
	if err := json.Unmarshal([]byte(body), &a); err != nil || a.Name != "hello" || a.Exec.Code != "code" {
		t.Errorf("body %q: %v", body, err)
	}
	if !strings.Contains(body, "\n    \"namespace\": \"guest\"") {
		t.Errorf("not pretty-printed with wsk's indent:\n%s", body)
	}
	sum := h.ok("action", "get", "hello", "--summary")
	if !strings.HasPrefix(sum, "action /guest/hello: greets\n   (parameters: name)\n") || !strings.Contains(sum, "termination: decoupled") {
		t.Errorf("summary %q", sum)
	}

	list := h.ok("action", "list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 3 || lines[0] != "actions" || !strings.HasPrefix(lines[1], "/guest/bye ") || !strings.HasSuffix(lines[1], " private python:3.11") || !strings.HasSuffix(lines[2], " private nodejs:20") {
		t.Errorf("list:\n%s", list)
	}
	h.ok("action", "list", "--limit", "1", "-s", "1")
	if r, _ := h.srv.LastRequest(http.MethodGet); r.Query["limit"] != "1" || r.Query["skip"] != "1" {
		t.Errorf("list query %v", r.Query)
	}

	if out := h.ok("action", "delete", "hello"); out != "ok: deleted action hello\n" {
		t.Errorf("delete %q", out)
	}
	wantCode(t, h.run("action", "get", "hello"), 1, "error: unable to get action hello: The requested resource does not exist. (code fake404)")
	wantCode(t, h.run("action", "delete", "hello"), 1, "(code fake404)")
}

func TestActionInvoke(t *testing.T) {
	h := newHarness(t)
	h.srv.Run = func(a *entity.Action, p map[string]json.RawMessage) clienttest.Outcome {
		if _, ok := p["fail"]; ok {
			return clienttest.Outcome{Result: map[string]string{"error": "boom"}, Failed: true}
		}
		if _, ok := p["slow"]; ok {
			return clienttest.Outcome{Pending: true}
		}
		return clienttest.Outcome{Result: p}
	}
	h.ok("action", "create", "echo", h.file("echo.js", []byte("x")))

	out := h.ok("action", "invoke", "echo", "-p", "n", "1")
	id := strings.TrimPrefix(strings.TrimSpace(out), "ok: invoked /_/echo with id ")
	if len(id) != 32 {
		t.Errorf("non-blocking: %q", out)
	}
	if r, _ := h.srv.LastRequest(http.MethodPost); r.Query["blocking"] != "" || string(r.Body) != `{"n":1}` {
		t.Errorf("request %+v", r)
	}

	out = h.ok("action", "invoke", "echo", "-b", "-p", "s", "text", "-P", h.file("p.json", []byte(`{"s": "file", "o": {"k": [1, 2]}}`)))
	head, body, _ := strings.Cut(out, "\n")
	var rec entity.Activation
	if err := json.Unmarshal([]byte(body), &rec); err != nil || !strings.HasPrefix(head, "ok: invoked /_/echo with id ") || !strings.HasSuffix(head, rec.ActivationID) {
		t.Fatalf("blocking: %q (%v)", out, err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, rec.Response.Result); err != nil || compact.String() != `{"o":{"k":[1,2]},"s":"text"}` {
		got := compact.String()
		t.Errorf("result %s", got)
	}

	out = h.ok("action", "invoke", "/guest/echo", "-r", "-p", "x", "null")
	if out != "{\n    \"x\": null\n}\n" {
		t.Errorf("-r: %q", out)
	}
	if r, _ := h.srv.LastRequest(http.MethodPost); r.Path != "/api/v1/namespaces/guest/actions/echo" || r.Query["blocking"] != "true" || r.Query["result"] != "true" {
		t.Errorf("request %+v", r)
	}

	// A failed activation still prints its result or record, and exits 1 without more words.
	r := h.run("action", "invoke", "echo", "-r", "-p", "fail", "1")
	if r.code != 1 || r.stdout != "{\n    \"error\": \"boom\"\n}\n" || r.stderr != "" {
		t.Errorf("failed -r: %+v", r)
	}
	r = h.run("action", "invoke", "echo", "-b", "-p", "fail", "1")
	if r.code != 1 || !strings.HasPrefix(r.stdout, "ok: invoked /_/echo with id ") || !strings.Contains(r.stdout, `"status": "application error"`) {
		t.Errorf("failed -b: %+v", r)
	}
	out = h.ok("action", "invoke", "echo", "-b", "-p", "slow", "1")
	if !strings.HasPrefix(out, "ok: invoked /_/echo, but the request has not yet finished, with id ") {
		t.Errorf("outlasted: %q", out)
	}
	wantCode(t, h.run("action", "invoke", "nope"), 1, "error: unable to invoke action nope: The requested resource does not exist. (code fake404)")
}

func TestActivationCommands(t *testing.T) {
	h := newHarness(t)
	wantCode(t, h.run("activation", "get", "--last"), 1, "no activations yet")
	h.srv.Run = func(a *entity.Action, p map[string]json.RawMessage) clienttest.Outcome {
		return clienttest.Outcome{Result: map[string]string{"from": a.Name}, Logs: []string{
			entity.LogLine(testTime, "stdout", "hello "+a.Name), entity.LogLine(testTime, "stderr", "warn")}}
	}
	h.ok("action", "create", "a", h.file("a.js", []byte("x")))
	h.ok("action", "create", "b", h.file("b.py", []byte("x")))
	var ids []string
	for _, n := range []string{"a", "b"} {
		out := h.ok("action", "invoke", n)
		ids = append(ids, out[strings.LastIndex(out, " ")+1:len(out)-1])
	}

	list := h.ok("activation", "list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "Datetime") || !strings.Contains(lines[1], ids[1]) || !strings.Contains(lines[2], ids[0]) {
		t.Fatalf("list:\n%s", list)
	}
	for _, want := range []string{"python:3.11", "warm", "5ms", "success", "settled", "guest/b:0.0.1"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %q", lines[1], want)
		}
	}
	h.ok("activation", "list", "a", "--limit", "5", "--skip", "0", "--since", "10", "--upto", "20000000000000")
	if r, _ := h.srv.LastRequest(http.MethodGet); r.Query["name"] != "a" || r.Query["limit"] != "5" || r.Query["since"] != "10" || r.Query["upto"] != "20000000000000" {
		t.Errorf("list query %v", r.Query)
	}

	out := h.ok("activation", "get", ids[0])
	if !strings.HasPrefix(out, "ok: got activation "+ids[0]+"\n{\n") || !strings.Contains(out, `"name": "a"`) {
		t.Errorf("get: %q", out)
	}
	if out := h.ok("activation", "get", "--last"); !strings.HasPrefix(out, "ok: got activation "+ids[1]+"\n") {
		t.Errorf("get --last: %q", out)
	}
	if out := h.ok("activation", "result", ids[0]); out != "{\n    \"from\": \"a\"\n}\n" {
		t.Errorf("result: %q", out)
	}
	if out := h.ok("activation", "result", "-l"); !strings.Contains(out, `"from": "b"`) {
		t.Errorf("result --last: %q", out)
	}
	if out := h.ok("activation", "logs", ids[0]); out != entity.LogLine(testTime, "stdout", "hello a")+"\n"+entity.LogLine(testTime, "stderr", "warn")+"\n" {
		t.Errorf("logs: %q", out)
	}
	if out := h.ok("activation", "logs", "--last", "--strip"); out != "hello b\nwarn\n" {
		t.Errorf("logs --last --strip: %q", out)
	}
	wantCode(t, h.run("activation", "get"), 2, "give an activation ID")
	wantCode(t, h.run("activation", "get", ids[0], "--last"), 2, "not both")
	wantCode(t, h.run("activation", "result", "ffff"), 1, "(code fake404)")
}

func TestNamespaceList(t *testing.T) {
	h := newHarness(t)
	if out := h.ok("namespace", "list"); out != "namespaces\nguest\n" {
		t.Errorf("namespaces: %q", out)
	}
}

func TestHostAndKeyResolution(t *testing.T) {
	h := newHarness(t)
	data := h.env["CODA_DATA"]
	good, bad := h.srv.Auth(), h.srv.UUID+":wrong"

	// the data directory's files, written by coda serve, are the last resort.
	delete(h.env, "CODA_APIHOST")
	delete(h.env, "CODA_AUTH")
	wantCode(t, h.run("namespace", "list"), 1, "no authorization key")
	if err := os.WriteFile(filepath.Join(data, "auth"), []byte(good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "apihost"), []byte(h.srv.URL+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.ok("namespace", "list")

	// the environment beats the files, and the flags beat the environment.
	h.env["CODA_AUTH"] = bad
	wantCode(t, h.run("namespace", "list"), 1, "authentication is invalid")
	h.ok("namespace", "list", "-u", good)
	h.ok("--auth", good, "namespace", "list")
	h.ok("--auth="+good, "namespace", "list")
	h.env["CODA_AUTH"] = good
	h.env["CODA_APIHOST"] = "127.0.0.1:1" // nothing listens there
	wantCode(t, h.run("namespace", "list"), 1, "connection refused")
	h.ok("namespace", "list", "--apihost", strings.TrimPrefix(h.srv.URL, "http://")) // host:port form
	h.ok("-i", "--apihost", h.srv.URL+"/api/v1", "namespace", "list")

	// without CODA_DATA the data directory is ~/.coda.
	delete(h.env, "CODA_DATA")
	delete(h.env, "CODA_APIHOST")
	delete(h.env, "CODA_AUTH")
	home := filepath.Join(h.env["HOME"], ".coda")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(home, "auth"), []byte(good), 0o600)
	os.WriteFile(filepath.Join(home, "apihost"), []byte(h.srv.URL), 0o600)
	h.ok("namespace", "list")

	// -v traces requests on stderr without the key.
	r := h.run("namespace", "list", "-v")
	if r.code != 0 || !strings.Contains(r.stderr, "REQUEST: GET "+h.srv.URL+"/api/v1/namespaces") || strings.Contains(r.stderr, h.srv.Key) {
		t.Errorf("verbose: %+v", r)
	}
}

func TestUsageAndHelp(t *testing.T) {
	h := newHarness(t)
	for _, args := range [][]string{{}, {"help"}, {"-h"}, {"--help"}, {"help", "action"}, {"action", "-h"}} {
		r := h.run(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "action create NAME FILE") {
			t.Errorf("coda %v: %+v", args, r)
		}
	}
	for _, args := range [][]string{{"action", "create", "-h"}, {"help", "action", "create"}, {"action", "create", "x", "--help"}} {
		r := h.run(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "usage: coda action create NAME FILE [flags]") || !strings.Contains(r.stdout, "-p, --param KEY VALUE") || !strings.Contains(r.stdout, "--termination MODE") {
			t.Errorf("coda %v: %+v", args, r)
		}
	}
	wantCode(t, h.run("frobnicate"), 2, `unknown command "frobnicate"`)
	wantCode(t, h.run("action", "frob"), 2, `unknown command "action frob"`)
	wantCode(t, h.run("action"), 2, "coda action needs a command")
	wantCode(t, h.run("action", "list", "extra"), 2, "usage: coda action list")
	wantCode(t, h.run("action", "list", "--bogus"), 2, "Run 'coda action list -h' for usage.")
	wantCode(t, h.run("--bogus", "action", "list"), 2, "unknown flag --bogus")
	wantCode(t, h.run("serve"), 1, "without the server")
	if out := h.ok("version"); !strings.HasPrefix(out, "coda ") {
		t.Errorf("version %q", out)
	}
}

func TestServeIsHandedOver(t *testing.T) {
	var got []string
	code := Main(context.Background(), Env{
		Args:   []string{"-v", "serve", "--port", "1", "-x"},
		Getenv: func(string) string { return "" },
		Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{},
		Serve: func(_ context.Context, args []string) int { got = args; return 7 },
	})
	if code != 7 || strings.Join(got, " ") != "--port 1 -x" {
		t.Errorf("serve got %v, exit %d", got, code)
	}
}
