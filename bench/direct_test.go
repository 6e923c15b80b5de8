package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testGuard only keeps a broken process from hanging the test.
const testGuard = 20 * time.Second

func TestDirectServerEchoes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testGuard)
	defer cancel()
	d, err := startDirect(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	resp, err := d.hc.Post(d.URL, "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != `{"a":1}` {
		t.Fatalf("answer %s %q, want 200 {\"a\":1}", resp.Status, b)
	}
	if _, err := d.hc.Post(d.URL, "application/json", strings.NewReader(`{not json`)); err != nil {
		t.Fatal(err)
	}
	// The hot-loop call must see the failure of a bad request as an error.
	if err := d.Invoker([]byte(`{bad`))(ctx); err == nil {
		t.Error("invoker accepted a 400 answer")
	}
	s, err := Run(ctx, 200, 4, d.Invoker(warmBody))
	if err != nil || s.N != 200 {
		t.Fatalf("Run = %+v, %v", s, err)
	}
}
