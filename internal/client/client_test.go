package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coda-serverless/coda/internal/client"
	"github.com/coda-serverless/coda/internal/client/clienttest"
	"github.com/coda-serverless/coda/internal/entity"
)

func newClient(t *testing.T) (*client.Client, *clienttest.Server) {
	t.Helper()
	srv := clienttest.New()
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, srv.Auth(), srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func TestBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "http://127.0.0.1:3233/api/v1",
		"localhost:3233":               "http://localhost:3233/api/v1",
		"http://10.0.0.1:80/":          "http://10.0.0.1:80/api/v1",
		"https://coda.example/api/v1/": "https://coda.example/api/v1",
		"https://coda.example/prefix":  "https://coda.example/prefix/api/v1",
	} {
		u, err := client.BaseURL(in)
		if err != nil || u.String() != want {
			t.Errorf("BaseURL(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, bad := range []string{"ftp://x", "http://"} {
		if _, err := client.BaseURL(bad); err == nil {
			t.Errorf("BaseURL(%q) accepted", bad)
		}
	}
	if _, err := client.New("x:1", "nocolon", nil); err == nil {
		t.Error("New accepted an auth key without a colon")
	}
}

func TestActionsRoundTrip(t *testing.T) {
	ctx := context.Background()
	c, srv := newClient(t)

	a := &entity.Action{Name: "hello world", Exec: entity.Exec{Kind: "nodejs:20", Code: "x"}}
	got, err := c.PutAction(ctx, a, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != "0.0.1" || got.Namespace != "guest" {
		t.Errorf("created %+v", got)
	}
	if r, _ := srv.LastRequest(http.MethodPut); r.Path != "/api/v1/namespaces/_/actions/hello world" || r.Query["overwrite"] != "" {
		t.Errorf("PUT went to %q %v", r.Path, r.Query)
	}
	_, err = c.PutAction(ctx, a, false)
	if !client.IsStatus(err, http.StatusConflict) {
		t.Fatalf("second create: %v, want 409", err)
	}
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Message != "resource already exists" || ae.Code != "fake409" || ae.Error() != "resource already exists (code fake409)" {
		t.Errorf("APIError = %#v", err)
	}
	if got, err = c.PutAction(ctx, a, true); err != nil || got.Version != "0.0.2" {
		t.Fatalf("overwrite: %+v, %v", got, err)
	}
	if got, err = c.GetAction(ctx, "/guest/hello world"); err != nil || got.Exec.Code != "x" {
		t.Fatalf("get: %+v, %v", got, err)
	}
	list, err := c.ListActions(ctx, 0, 5)
	if err != nil || len(list) != 1 || list[0].Name != "hello world" {
		t.Fatalf("list: %v, %v", list, err)
	}
	if r, _ := srv.LastRequest(http.MethodGet); r.Query["limit"] != "5" {
		t.Errorf("list query %v", r.Query)
	}
	if err := c.DeleteAction(ctx, "hello world"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAction(ctx, "hello world"); !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	ns, err := c.Namespaces(ctx)
	if err != nil || len(ns) != 1 || ns[0] != "guest" {
		t.Errorf("namespaces: %v, %v", ns, err)
	}
}

func TestBadKey(t *testing.T) {
	srv := clienttest.New()
	defer srv.Close()
	c, err := client.New(srv.URL, srv.UUID+":wrong", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Namespaces(context.Background())
	if !client.IsStatus(err, http.StatusUnauthorized) || !strings.Contains(err.Error(), "authentication is invalid") {
		t.Errorf("err = %v", err)
	}
}

func TestInvoke(t *testing.T) {
	ctx := context.Background()
	c, srv := newClient(t)
	srv.Run = func(a *entity.Action, p map[string]json.RawMessage) clienttest.Outcome {
		if _, ok := p["fail"]; ok {
			return clienttest.Outcome{Result: map[string]string{"error": "boom"}, Failed: true}
		}
		if _, ok := p["slow"]; ok {
			return clienttest.Outcome{Pending: true}
		}
		return clienttest.Outcome{Result: p, Logs: []string{"line"}}
	}
	if _, err := c.PutAction(ctx, &entity.Action{Name: "echo", Exec: entity.Exec{Kind: "python:3.11", Code: "x"}}, false); err != nil {
		t.Fatal(err)
	}

	inv, err := c.Invoke(ctx, "echo", map[string]any{"a": 1}, false, false)
	if err != nil || !inv.Pending() || inv.ActivationID == "" || inv.Activation != nil {
		t.Fatalf("non-blocking: %+v, %v", inv, err)
	}
	if r, _ := srv.LastRequest(http.MethodPost); r.Query["blocking"] != "" || string(r.Body) != `{"a":1}` {
		t.Errorf("request %+v", r)
	}

	inv, err = c.Invoke(ctx, "echo", json.RawMessage(`{"b":"x"}`), true, false)
	if err != nil || inv.Failed() || inv.Pending() || inv.Activation == nil || inv.Activation.ActivationID != inv.ActivationID {
		t.Fatalf("blocking: %+v, %v", inv, err)
	}
	if string(inv.Activation.Response.Result) != `{"b":"x"}` {
		t.Errorf("result %s", inv.Activation.Response.Result)
	}

	inv, err = c.Invoke(ctx, "echo", nil, false, true)
	if err != nil || inv.Activation != nil || strings.TrimSpace(string(inv.Body)) != `{}` {
		t.Fatalf("result only: %+v %s, %v", inv, inv.Body, err)
	}
	if r, _ := srv.LastRequest(http.MethodPost); r.Query["blocking"] != "true" || r.Query["result"] != "true" || string(r.Body) != `{}` {
		t.Errorf("request %+v", r)
	}

	inv, err = c.Invoke(ctx, "echo", map[string]bool{"fail": true}, true, false)
	if err != nil || !inv.Failed() || inv.Activation == nil || inv.Activation.Response.Success {
		t.Fatalf("failed blocking: %+v, %v", inv, err)
	}
	inv, err = c.Invoke(ctx, "echo", map[string]bool{"slow": true}, true, false)
	if err != nil || !inv.Pending() || inv.ActivationID == "" {
		t.Fatalf("outlasted blocking: %+v, %v", inv, err)
	}
	if _, err := c.Invoke(ctx, "nope", nil, true, false); !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("missing action: %v", err)
	}
}

func TestActivations(t *testing.T) {
	ctx := context.Background()
	c, srv := newClient(t)
	if _, err := c.PutAction(ctx, &entity.Action{Name: "a", Exec: entity.Exec{Kind: "nodejs:20", Code: "x"}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutAction(ctx, &entity.Action{Name: "b", Exec: entity.Exec{Kind: "nodejs:20", Code: "x"}}, false); err != nil {
		t.Fatal(err)
	}
	srv.Run = func(a *entity.Action, p map[string]json.RawMessage) clienttest.Outcome {
		return clienttest.Outcome{Result: map[string]string{"n": a.Name}, Logs: []string{"hello from " + a.Name}}
	}
	var ids []string
	for _, n := range []string{"a", "b", "a"} {
		inv, err := c.Invoke(ctx, n, nil, false, false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inv.ActivationID)
	}
	all, err := c.ListActivations(ctx, client.ActivationFilter{})
	if err != nil || len(all) != 3 || all[0].ActivationID != ids[2] {
		t.Fatalf("list: %v, %v", all, err)
	}
	onlyA, err := c.ListActivations(ctx, client.ActivationFilter{Name: "a", Skip: 1, Limit: 1, Since: 1, Upto: 1 << 60, Docs: true})
	if err != nil || len(onlyA) != 1 || onlyA[0].ActivationID != ids[0] {
		t.Fatalf("filtered: %v, %v", onlyA, err)
	}
	r, _ := srv.LastRequest(http.MethodGet)
	for k, v := range map[string]string{"name": "a", "skip": "1", "limit": "1", "since": "1", "docs": "true"} {
		if r.Query[k] != v {
			t.Errorf("query %s = %q, want %q", k, r.Query[k], v)
		}
	}
	rec, err := c.GetActivation(ctx, ids[1])
	if err != nil || rec.Name != "b" {
		t.Fatalf("get: %+v, %v", rec, err)
	}
	res, err := c.ActivationResult(ctx, ids[1])
	if err != nil || !res.Success || string(res.Result) != `{"n":"b"}` {
		t.Fatalf("result: %+v, %v", res, err)
	}
	logs, err := c.ActivationLogs(ctx, ids[1])
	if err != nil || len(logs) != 1 || logs[0] != "hello from b" {
		t.Fatalf("logs: %v, %v", logs, err)
	}
	if _, err := c.GetActivation(ctx, "0123"); !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("missing: %v", err)
	}
}

func TestTraceMasksKey(t *testing.T) {
	c, srv := newClient(t)
	var b strings.Builder
	c.Trace = &b
	if _, err := c.Namespaces(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, srv.Key) || !strings.Contains(out, "GET ") || !strings.Contains(out, "200 OK") {
		t.Errorf("trace:\n%s", out)
	}
}

func TestNonJSONError(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusServiceUnavailable)
	}))
	defer ts.Close()
	c, _ := client.New(ts.URL, "a:b", nil)
	_, err := c.Namespaces(context.Background())
	if !client.IsStatus(err, 503) || !strings.Contains(err.Error(), "upstream down") {
		t.Errorf("err = %v", err)
	}
}
