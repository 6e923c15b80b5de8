package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/controller"
	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/store"
)

// The real store and controller are built concurrently with this package, so these tests use
// minimal in-memory stand-ins that honour the documented contracts.

const (
	testUUID = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
	testKey  = "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
	testNS   = "guest"
)

// fakeStore is an in-memory store.Store.
type fakeStore struct {
	mu          sync.Mutex
	actions     map[string]*entity.Action // ns/name
	activations map[string]*entity.Activation
	users       map[string]string // uuid:key → namespace
	authCalls   atomic.Int64
	getCalls    atomic.Int64
	failWith    error // every call fails with it when set
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		actions:     map[string]*entity.Action{},
		activations: map[string]*entity.Activation{},
		users:       map[string]string{testUUID + ":" + testKey: testNS, "other-uuid:other-key": "other"},
	}
}

func (f *fakeStore) PutAction(_ context.Context, a *entity.Action, overwrite bool) (*entity.Action, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := a.Namespace + "/" + a.Name
	old, exists := f.actions[k]
	if exists && !overwrite {
		return nil, fmt.Errorf("put %s: %w", k, store.ErrConflict)
	}
	c := *a
	c.Version = "0.0.1"
	if exists {
		var patch int
		fmt.Sscanf(old.Version, "0.0.%d", &patch)
		c.Version = fmt.Sprintf("0.0.%d", patch+1)
	}
	c.Updated = time.Now().UnixMilli()
	f.actions[k] = &c
	out := c
	return &out, nil
}

func (f *fakeStore) GetAction(_ context.Context, ns, name string) (*entity.Action, error) {
	f.getCalls.Add(1)
	if f.failWith != nil {
		return nil, f.failWith
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.actions[ns+"/"+name]
	if !ok {
		return nil, fmt.Errorf("get %s/%s: %w", ns, name, store.ErrNotFound)
	}
	c := *a
	return &c, nil
}

func (f *fakeStore) ListActions(_ context.Context, ns string, skip, limit int) ([]*entity.Action, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*entity.Action
	for _, a := range f.actions {
		if a.Namespace == ns {
			c := *a
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if limit == 0 {
		limit = 30
	}
	out = out[min(skip, len(out)):]
	return out[:min(limit, len(out))], nil
}

func (f *fakeStore) DeleteAction(_ context.Context, ns, name string) (*entity.Action, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.actions[ns+"/"+name]
	if !ok {
		return nil, fmt.Errorf("delete: %w", store.ErrNotFound)
	}
	delete(f.actions, ns+"/"+name)
	return a, nil
}

func (f *fakeStore) PutActivation(_ context.Context, a *entity.Activation) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := *a
	f.activations[a.ActivationID] = &c
	return nil
}

func (f *fakeStore) GetActivation(_ context.Context, ns, id string) (*entity.Activation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.activations[id]
	if !ok || a.Namespace != ns {
		return nil, fmt.Errorf("activation %s: %w", id, store.ErrNotFound)
	}
	c := *a
	return &c, nil
}

func (f *fakeStore) ListActivations(_ context.Context, ns string, fl store.ActivationFilter) ([]*entity.Activation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*entity.Activation
	for _, a := range f.activations {
		if a.Namespace != ns || fl.Name != "" && a.Name != fl.Name ||
			fl.Since != 0 && a.Start < fl.Since || fl.Upto != 0 && a.Start > fl.Upto {
			continue
		}
		c := *a
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ActivationID > out[j].ActivationID })
	limit := fl.Limit
	if limit == 0 {
		limit = 30
	}
	out = out[min(fl.Skip, len(out)):]
	return out[:min(limit, len(out))], nil
}

func (f *fakeStore) CloseInterrupted(context.Context, int64) (int, error)    { return 0, nil }
func (f *fakeStore) CreateUser(context.Context, string) (*store.User, error) { return nil, nil }
func (f *fakeStore) EnsureUser(context.Context, string, string, string) error {
	return nil
}
func (f *fakeStore) DeleteUser(context.Context, string) error         { return nil }
func (f *fakeStore) ListUsers(context.Context) ([]*store.User, error) { return nil, nil }
func (f *fakeStore) IntegrityCheck(context.Context) error             { return nil }
func (f *fakeStore) Close() error                                     { return nil }
func (f *fakeStore) Authenticate(_ context.Context, uuid, key string) (string, error) {
	f.authCalls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	ns, ok := f.users[uuid+":"+key]
	if !ok {
		return "", fmt.Errorf("authenticate: %w", store.ErrNotFound)
	}
	return ns, nil
}

// fakeController records requests and answers through invokeFn (default: echo the params).
type fakeController struct {
	st       *fakeStore
	mu       sync.Mutex
	last     controller.Request
	invokeFn func(r controller.Request) (controller.Outcome, error)
}

func (c *fakeController) Prepare(_ context.Context, a *entity.Action) error {
	if strings.Contains(a.Exec.Code, "COMPILE_ERROR") {
		return &controller.InvalidActionError{Msg: "main.go:1: syntax error"}
	}
	return nil
}

func (c *fakeController) Invoke(ctx context.Context, r controller.Request) (controller.Outcome, error) {
	c.mu.Lock()
	c.last = r
	fn := c.invokeFn
	c.mu.Unlock()
	if fn != nil {
		return fn(r)
	}
	return c.echo(ctx, r, entity.StatusSuccess)
}

// echo runs a pretend action whose result is its parameters, and records it.
func (c *fakeController) echo(ctx context.Context, r controller.Request, code int) (controller.Outcome, error) {
	now := time.Now()
	id := entity.NewActivationID(now)
	result, _ := json.Marshal(r.Params)
	if r.Params == nil {
		result = []byte("{}")
	}
	if code != entity.StatusSuccess {
		result = entity.ErrorResult("it failed")
	}
	a := &entity.Activation{
		Namespace: r.Namespace, Name: r.Action.Name, Version: r.Action.Version, Subject: r.Subject,
		ActivationID: id, Start: now.UnixMilli(), End: now.UnixMilli() + 3, Duration: 3,
		StatusCode: code, Response: entity.NewResponse(code, result),
		Logs:        []string{entity.LogLine(now, "stdout", "hello")},
		Annotations: entity.KeyValues{}.Set("kind", r.Action.Exec.Kind),
	}
	if err := c.st.PutActivation(ctx, a); err != nil {
		return controller.Outcome{}, err
	}
	if !r.Blocking {
		return controller.Outcome{ActivationID: id}, nil
	}
	return controller.Outcome{ActivationID: id, Activation: a}, nil
}

func (c *fakeController) lastRequest() controller.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// harness is a running API over the fakes.
type harness struct {
	t   testing.TB
	st  *fakeStore
	ctl *fakeController
	h   http.Handler
	srv *httptest.Server
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	st := newFakeStore()
	ctl := &fakeController{st: st}
	h, err := New(Config{Store: st, Controller: ctl})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &harness{t: t, st: st, ctl: ctl, h: h, srv: srv}
}

func basicAuth(uuid, key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(uuid+":"+key))
}

// result is one answer, decoded.
type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// errorBody checks OpenWhisk's error shape and returns its message.
func (r result) errorBody(t testing.TB) string {
	t.Helper()
	var e map[string]any
	r.json(t, &e)
	msg, ok1 := e["error"].(string)
	code, ok2 := e["code"].(string)
	if !ok1 || !ok2 || len(e) != 2 || code == "" {
		t.Fatalf("error body %s is not {error, code}", r.body)
	}
	if got := r.header.Get("X-Request-Id"); got != code {
		t.Errorf("code %q differs from X-Request-Id %q", code, got)
	}
	return msg
}

func (h *harness) do(method, path, body string) result {
	return h.doAuth(method, path, body, basicAuth(testUUID, testKey))
}

func (h *harness) doAuth(method, path, body, auth string) result {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); method != http.MethodOptions && ct != "application/json" {
		h.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

// expect checks the status and returns the answer.
func (h *harness) expect(status int, method, path, body string) result {
	h.t.Helper()
	r := h.do(method, path, body)
	if r.status != status {
		h.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.status, status, r.body)
	}
	return r
}

// createAction puts a node action through the API.
func (h *harness) createAction(name, extra string) {
	h.t.Helper()
	body := `{"exec":{"kind":"nodejs:default","code":"function main(p) { return p }"}` + extra + `}`
	h.expect(http.StatusOK, "PUT", "/api/v1/namespaces/_/actions/"+name, body)
}

func TestPingIsPublic(t *testing.T) {
	h := newHarness(t)
	r := h.doAuth("GET", "/ping", "", "")
	if r.status != http.StatusOK || string(r.body) != `{"ok":true}` {
		t.Fatalf("ping: %d %s", r.status, r.body)
	}
}

func TestInfo(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"/api/v1", "/api/v1/"} {
		r := h.doAuth("GET", p, "", "")
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d", p, r.status)
		}
		var info struct {
			APIPaths    []string `json:"api_paths"`
			Description string   `json:"description"`
		}
		r.json(t, &info)
		if info.Description != "Coda" || len(info.APIPaths) != 1 || info.APIPaths[0] != "/api/v1" {
			t.Errorf("%s: %s", p, r.body)
		}
	}
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	for name, auth := range map[string]string{
		"missing":   "",
		"wrong key": basicAuth(testUUID, "nope"),
		"not basic": "Bearer abc",
		"bad b64":   "Basic !!!",
		"no colon":  "Basic " + base64.StdEncoding.EncodeToString([]byte("justuuid")),
	} {
		r := h.doAuth("GET", "/api/v1/namespaces", "", auth)
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: status %d", name, r.status)
			continue
		}
		if msg := r.errorBody(t); msg != msgUnauthenticated {
			t.Errorf("%s: message %q", name, msg)
		}
	}
	// Unknown routes need credentials too.
	if r := h.doAuth("GET", "/nowhere", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("unknown route without auth: %d", r.status)
	}
}

func TestAuthCacheSkipsStore(t *testing.T) {
	h := newHarness(t)
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces", "")
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces", "")
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces", "")
	if n := h.st.authCalls.Load(); n != 1 {
		t.Fatalf("store authenticated %d times, want 1", n)
	}
	// A rejected key is never cached.
	h.doAuth("GET", "/api/v1/namespaces", "", basicAuth(testUUID, "bad"))
	h.doAuth("GET", "/api/v1/namespaces", "", basicAuth(testUUID, "bad"))
	if n := h.st.authCalls.Load(); n != 3 {
		t.Fatalf("store authenticated %d times, want 3", n)
	}
}

func TestNamespaces(t *testing.T) {
	h := newHarness(t)
	var list []string
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces", "").json(t, &list)
	if len(list) != 1 || list[0] != testNS {
		t.Fatalf("namespaces: %v", list)
	}
	r := h.expect(http.StatusForbidden, "GET", "/api/v1/namespaces/other/actions", "")
	if msg := r.errorBody(t); msg != "The supplied authentication is not authorized to access 'other'." {
		t.Errorf("403 message %q", msg)
	}
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces/guest/actions", "")
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces/_/actions", "")
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces/_/packages", "")
	var ns map[string]json.RawMessage
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces/_", "").json(t, &ns)
	if _, ok := ns["actions"]; !ok {
		t.Errorf("namespace get: %v", ns)
	}
}

func TestRoutesNotFoundAndMethodNotAllowed(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"/api/v2", "/api/v1x", "/api/v1/namespaces/_/widgets", "/api/v1/things",
		"/api/v1/namespaces/_/activations/0123456789abcdef0123456789abcdef/other", "/a/b/c/d/e/f/g/h/i/j"} {
		r := h.expect(http.StatusNotFound, "GET", p, "")
		if msg := r.errorBody(t); msg != msgNotFound {
			t.Errorf("%s: %q", p, msg)
		}
	}
	r := h.expect(http.StatusMethodNotAllowed, "POST", "/api/v1/namespaces/_/actions", "{}")
	r.errorBody(t)
	if r.header.Get("Allow") != "GET" {
		t.Errorf("Allow %q", r.header.Get("Allow"))
	}
	r = h.expect(http.StatusMethodNotAllowed, "PATCH", "/api/v1/namespaces/_/actions/x", "{}")
	if r.header.Get("Allow") != "GET, PUT, DELETE, POST" {
		t.Errorf("Allow %q", r.header.Get("Allow"))
	}
	h.expect(http.StatusMethodNotAllowed, "DELETE", "/api/v1/namespaces/_/activations/0123456789abcdef0123456789abcdef", "")
}

func TestPreflight(t *testing.T) {
	h := newHarness(t)
	r := h.doAuth("OPTIONS", "/api/v1/namespaces/_/actions/x", "", "")
	if r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("preflight: %d %v", r.status, r.header)
	}
}

func TestPanicIs500(t *testing.T) {
	h := newHarness(t)
	h.createAction("boom", "")
	h.ctl.invokeFn = func(controller.Request) (controller.Outcome, error) { panic("kaboom") }
	r := h.expect(http.StatusInternalServerError, "POST", "/api/v1/namespaces/_/actions/boom?blocking=true", "{}")
	if msg := r.errorBody(t); msg != msgInternal {
		t.Fatalf("message %q", msg)
	}
}

func TestStoreFailureIs500(t *testing.T) {
	h := newHarness(t)
	h.st.failWith = fmt.Errorf("disk on fire")
	r := h.expect(http.StatusInternalServerError, "GET", "/api/v1/namespaces/_/actions/x", "")
	if msg := r.errorBody(t); strings.Contains(msg, "fire") {
		t.Fatalf("internal error leaked: %q", msg)
	}
}

func TestRequestIDHonoured(t *testing.T) {
	h := newHarness(t)
	req, _ := http.NewRequest("GET", h.srv.URL+"/api/v1/namespaces/_/actions/missing", nil)
	req.Header.Set("Authorization", basicAuth(testUUID, testKey))
	req.Header.Set("X-Request-ID", "abc-123")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !bytes.Contains(b, []byte(`"code":"abc-123"`)) {
		t.Fatalf("body %s", b)
	}
}

func TestIDGenerator(t *testing.T) {
	g := newIDGenerator()
	seen := map[string]bool{}
	for range 1000 {
		id := g.next(nil)
		if len(id) != 32 || !validRequestID(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
	if g.next([]string{"bad id\n"}) == "bad id\n" {
		t.Fatal("an unsafe client id was kept")
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	if _, err := New(Config{Controller: &fakeController{}}); err == nil {
		t.Error("nil store accepted")
	}
	if _, err := New(Config{Store: newFakeStore()}); err == nil {
		t.Error("nil controller accepted")
	}
}

func TestRequestsLogAtDebugOnly(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	st := newFakeStore()
	h, err := New(Config{Store: st, Controller: &fakeController{st: st},
		Log: slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/api/v1/namespaces", nil)
	req.Header.Set("Authorization", basicAuth(testUUID, testKey))
	h.ServeHTTP(httptest.NewRecorder(), req)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "status=200") || strings.Contains(out, "level=INFO") {
		t.Fatalf("log: %s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
