package api

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark measures the API alone.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

// BenchmarkInvokeBlocking measures the API's share of a warm blocking invoke: auth (cached),
// routing, body decoding, the action read and the record's encoding.
func BenchmarkInvokeBlocking(b *testing.B) {
	h := newHarness(b)
	h.createAction("echo", "")
	auth := basicAuth(testUUID, testKey)
	const body = `{"name":"Coda","n":1}`
	req, _ := http.NewRequest("POST", invokePath+"?blocking=true", nil)
	req.Header.Set("Authorization", auth)
	w := &discardWriter{}
	b.ReportAllocs()
	for b.Loop() {
		req.Body = io.NopCloser(strings.NewReader(body))
		req.ContentLength = int64(len(body))
		w.h = http.Header{}
		h.h.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}
