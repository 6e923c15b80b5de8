package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// FuzzInvokeBody: decoding an invoke body never panics, every error is a client error, and the
// whole handler answers 2xx or 4xx (never 5xx) whatever the body.
func FuzzInvokeBody(f *testing.F) {
	for _, s := range []string{"", "{}", `{"a":1}`, `[1]`, `null`, `{"a":`, `{"a":"\u0000"}`, "\xff", `{"a":{"b":[]}} `} {
		f.Add([]byte(s))
	}
	h := newHarness(f)
	h.createAction("echo", "")
	f.Fuzz(func(t *testing.T, body []byte) {
		params, err := decodeInvokeBody(body)
		if err != nil {
			var br *errBadRequest
			if !errors.As(err, &br) {
				t.Fatalf("%q: error %v is not a bad request", body, err)
			}
			if params != nil {
				t.Fatalf("%q: params with an error", body)
			}
		}
		if err == nil && len(bytes.TrimSpace(body)) > 0 {
			var want map[string]json.RawMessage
			if json.Unmarshal(body, &want) != nil || !reflect.DeepEqual(params, want) {
				t.Fatalf("%q: decoded %q, encoding/json %q", body, params, want)
			}
		}
		if err != nil && json.Unmarshal(body, new(map[string]json.RawMessage)) == nil && bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{")) {
			t.Fatalf("%q: rejected, but encoding/json takes it", body)
		}
		req := httptest.NewRequest("POST", invokePath+"?blocking=true&result=true", strings.NewReader(string(body)))
		req.Header.Set("Authorization", basicAuth(testUUID, testKey))
		rec := httptest.NewRecorder()
		h.h.ServeHTTP(rec, req)
		switch {
		case err == nil && rec.Code != http.StatusOK:
			t.Fatalf("%q: decoded, but status %d: %s", body, rec.Code, rec.Body.Bytes())
		case err != nil && rec.Code != http.StatusBadRequest:
			t.Fatalf("%q: rejected, but status %d", body, rec.Code)
		}
	})
}
