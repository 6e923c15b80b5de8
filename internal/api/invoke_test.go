package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/controller"
	"github.com/coda-serverless/coda/internal/entity"
)

const invokePath = "/api/v1/namespaces/_/actions/echo"

func TestInvokeNonBlocking(t *testing.T) {
	h := newHarness(t)
	h.createAction("echo", "")
	r := h.expect(http.StatusAccepted, "POST", invokePath, `{"a":1}`)
	var body map[string]string
	r.json(t, &body)
	id := body["activationId"]
	if len(id) != 32 || len(body) != 1 {
		t.Fatalf("body %s", r.body)
	}
	if r.header.Get(activationIDHeader) != id {
		t.Errorf("header %q, want %q", r.header.Get(activationIDHeader), id)
	}
	req := h.ctl.lastRequest()
	if req.Blocking || req.Namespace != testNS || req.Subject != testNS || req.Action.Name != "echo" ||
		string(req.Params["a"]) != "1" {
		t.Errorf("request %+v", req)
	}
}

func TestInvokeBlockingFullRecord(t *testing.T) {
	h := newHarness(t)
	h.createAction("echo", "")
	before := h.st.getCalls.Load()
	r := h.expect(http.StatusOK, "POST", invokePath+"?blocking=true", `{"name":"Coda"}`)
	var a entity.Activation
	r.json(t, &a)
	if !a.Response.Success || a.Response.Status != "success" || string(a.Response.Result) != `{"name":"Coda"}` {
		t.Fatalf("record %s", r.body)
	}
	if a.Name != "echo" || a.Subject != testNS || len(a.Logs) != 1 || a.End == 0 {
		t.Errorf("record %s", r.body)
	}
	if r.header.Get(activationIDHeader) != a.ActivationID {
		t.Errorf("header %q, want %q", r.header.Get(activationIDHeader), a.ActivationID)
	}
	if got := h.ctl.lastRequest(); !got.Blocking || got.Wait != 0 {
		t.Errorf("request %+v", got)
	}
	if n := h.st.getCalls.Load() - before; n != 1 {
		t.Errorf("the action was read %d times", n)
	}
}

func TestInvokeResultOnly(t *testing.T) {
	h := newHarness(t)
	h.createAction("echo", "")
	r := h.expect(http.StatusOK, "POST", invokePath+"?blocking=true&result=true", `{"x":[1,2]}`)
	if string(r.body) != `{"x":[1,2]}` {
		t.Fatalf("result %s", r.body)
	}
	if r.header.Get(activationIDHeader) == "" {
		t.Error("no activation id header")
	}
	// No body at all: the action gets no parameters.
	r = h.expect(http.StatusOK, "POST", invokePath+"?blocking=true&result=true", "")
	if string(r.body) != `{}` {
		t.Fatalf("result %s", r.body)
	}
}

func TestInvokeErrorStatuses(t *testing.T) {
	h := newHarness(t)
	h.createAction("echo", "")
	for _, c := range []struct {
		code, status int
	}{
		{entity.StatusApplicationError, http.StatusBadGateway},
		{entity.StatusDeveloperError, http.StatusBadGateway},
		{entity.StatusInternalError, http.StatusInternalServerError},
	} {
		h.ctl.invokeFn = func(r controller.Request) (controller.Outcome, error) {
			return h.ctl.echo(t.Context(), r, c.code)
		}
		r := h.expect(c.status, "POST", invokePath+"?blocking=true", `{}`)
		var a entity.Activation
		r.json(t, &a)
		if a.Response.StatusCode != c.code || a.Response.Success {
			t.Errorf("code %d: record %s", c.code, r.body)
		}
		if r.header.Get(activationIDHeader) != a.ActivationID {
			t.Errorf("code %d: no header", c.code)
		}
		r = h.expect(c.status, "POST", invokePath+"?blocking=true&result=true", `{}`)
		if string(r.body) != `{"error":"it failed"}` {
			t.Errorf("code %d: result %s", c.code, r.body)
		}
	}
}

func TestInvokeBlockingOutlastedWait(t *testing.T) {
	h := newHarness(t)
	h.createAction("echo", "")
	h.ctl.invokeFn = func(r controller.Request) (controller.Outcome, error) {
		return controller.Outcome{ActivationID: "0123456789abcdef0123456789abcdef"}, nil
	}
	r := h.expect(http.StatusAccepted, "POST", invokePath+"?blocking=true&timeout=1500", `{}`)
	if string(r.body) != `{"activationId":"0123456789abcdef0123456789abcdef"}` {
		t.Fatalf("body %s", r.body)
	}
	if r.header.Get(activationIDHeader) != "0123456789abcdef0123456789abcdef" {
		t.Error("no header")
	}
	if w := h.ctl.lastRequest().Wait; w != 1500*time.Millisecond {
		t.Errorf("wait %v", w)
	}
}

func TestInvokeControllerErrors(t *testing.T) {
	h := newHarness(t)
	h.createAction("echo", "")
	cases := []struct {
		err    error
		status int
		msg    string
	}{
		{controller.ErrThrottled, http.StatusTooManyRequests, msgThrottled},
		{fmt.Errorf("Too many concurrent requests in flight (count: 3, allowed: 2): %w", controller.ErrThrottled),
			http.StatusTooManyRequests, "Too many concurrent requests in flight (count: 3, allowed: 2)"},
		{fmt.Errorf("draining: %w", controller.ErrShuttingDown), http.StatusServiceUnavailable, msgShuttingDown},
		{&controller.InvalidActionError{Msg: "bad zip"}, http.StatusBadRequest, "bad zip"},
		{fmt.Errorf("bus down"), http.StatusInternalServerError, msgInternal},
	}
	for _, c := range cases {
		h.ctl.invokeFn = func(controller.Request) (controller.Outcome, error) { return controller.Outcome{}, c.err }
		r := h.expect(c.status, "POST", invokePath+"?blocking=true", `{}`)
		if msg := r.errorBody(t); msg != c.msg {
			t.Errorf("%v: message %q, want %q", c.err, msg, c.msg)
		}
	}
}

func TestInvokeBadRequests(t *testing.T) {
	h := newHarness(t)
	h.createAction("echo", "")
	for name, c := range map[string]struct{ query, body string }{
		"array":           {"", `[1,2]`},
		"string":          {"", `"x"`},
		"null":            {"", `null`},
		"number":          {"", `42`},
		"malformed":       {"", `{"a":`},
		"trailing":        {"", `{"a":1} {}`},
		"bad blocking":    {"?blocking=maybe", `{}`},
		"bad result":      {"?result=2", `{}`},
		"bad timeout":     {"?blocking=true&timeout=abc", `{}`},
		"timeout too big": {"?blocking=true&timeout=60001", `{}`},
	} {
		r := h.do("POST", invokePath+c.query, c.body)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: status %d %s", name, r.status, r.body)
			continue
		}
		r.errorBody(t)
	}
	r := h.expect(http.StatusNotFound, "POST", "/api/v1/namespaces/_/actions/missing", `{}`)
	if msg := r.errorBody(t); msg != msgNotFound {
		t.Errorf("404 message %q", msg)
	}
	h.expect(http.StatusBadRequest, "POST", "/api/v1/namespaces/_/actions/bad%00name", `{}`)
}

func TestInvokeTooLarge(t *testing.T) {
	h := newHarness(t)
	h.createAction("echo", "")
	big := `{"a":"` + strings.Repeat("x", maxInvokeBody) + `"}`
	// Known length: refused before reading.
	r := h.expect(http.StatusRequestEntityTooLarge, "POST", invokePath, big)
	if msg := r.errorBody(t); msg != msgTooLarge(int64(len(big)), maxInvokeBody) {
		t.Errorf("message %q", msg)
	}
	// Unknown length (chunked): refused while reading.
	req, _ := http.NewRequest("POST", h.srv.URL+invokePath, io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", basicAuth(testUUID, testKey))
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: status %d", resp.StatusCode)
	}
	// Exactly at the limit is fine.
	exact := `{"a":"` + strings.Repeat("x", maxInvokeBody-8) + `"}`
	h.expect(http.StatusAccepted, "POST", invokePath, exact)
}

func TestDecodeInvokeBody(t *testing.T) {
	for _, ok := range []string{"", "  \n", "{}", `{"a":{"b":[1,null]}}`, " {\"a\":1}\n"} {
		if _, err := decodeInvokeBody([]byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	p, _ := decodeInvokeBody([]byte(`{"k":"v","n":1}`))
	var s string
	if json.Unmarshal(p["k"], &s); s != "v" || string(p["n"]) != "1" {
		t.Errorf("params %v", p)
	}
}
