package testenv

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
)

// pollInterval is how often WaitEnded asks for a record: short enough not to slow tests,
// long enough not to load the server.
const pollInterval = 25 * time.Millisecond

// Do sends one request as the guest namespace. path is relative to /api/v1 (e.g.
// "/namespaces/_/actions"); body is marshalled to JSON unless it is []byte or nil.
func (s *Server) Do(t testing.TB, method, path string, body any) (status int, respBody []byte, header http.Header) {
	t.Helper()
	return s.DoAs(t, s.Auth, method, path, body)
}

// DoAs is Do with another key ("UUID:KEY"); an empty key sends no credentials.
func (s *Server) DoAs(t testing.TB, auth, method, path string, body any) (status int, respBody []byte, header http.Header) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("testenv: encode body: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.URL+"/api/v1"+path, rd)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if auth != "" {
		u, k, _ := strings.Cut(auth, ":")
		req.SetBasicAuth(u, k)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.HTTP.Do(req)
	if err != nil {
		t.Fatalf("testenv: %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("testenv: %s %s: read answer: %v", method, path, err)
	}
	return resp.StatusCode, out, resp.Header
}

// ActionBody is the PUT body for an action, in OpenWhisk's shape.
func ActionBody(kind, code string, binary bool, annotations map[string]any, limits map[string]int) map[string]any {
	body := map[string]any{"exec": map[string]any{"kind": kind, "code": code, "binary": binary}}
	if len(annotations) > 0 {
		keys := make([]string, 0, len(annotations))
		for k := range annotations {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var kv []map[string]any
		for _, k := range keys {
			kv = append(kv, map[string]any{"key": k, "value": annotations[k]})
		}
		body["annotations"] = kv
	}
	if len(limits) > 0 {
		body["limits"] = limits
	}
	return body
}

// Deploy creates or replaces the guest action name (PUT ?overwrite=true) and fails the test
// when the API refuses it. limits uses OpenWhisk's keys: timeout (ms), memory (MB),
// concurrency, logs (MB).
func (s *Server) Deploy(t testing.TB, name, kind, code string, annotations map[string]any, limits map[string]int) {
	t.Helper()
	s.put(t, name, ActionBody(kind, code, false, annotations, limits))
}

// DeployZip deploys files zipped in memory (binary: true). Every file is stored executable,
// so a blackbox `exec` runs.
func (s *Server) DeployZip(t testing.TB, name, kind string, files map[string][]byte, annotations map[string]any, limits map[string]int) {
	t.Helper()
	s.put(t, name, ActionBody(kind, base64.StdEncoding.EncodeToString(Zip(t, files)), true, annotations, limits))
}

func (s *Server) put(t testing.TB, name string, body map[string]any) {
	t.Helper()
	status, resp, _ := s.Do(t, http.MethodPut, "/namespaces/_/actions/"+url.PathEscape(name)+"?overwrite=true", body)
	if status != http.StatusOK {
		t.Fatalf("testenv: deploy %s: %d %s", name, status, resp)
	}
}

// Zip returns a zip archive of files (paths may contain /), each with mode 0755.
func Zip(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h := &zip.FileHeader{Name: n, Method: zip.Deflate}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatalf("testenv: zip %s: %v", n, err)
		}
		if _, err := w.Write(files[n]); err != nil {
			t.Fatalf("testenv: zip %s: %v", n, err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("testenv: zip: %v", err)
	}
	return buf.Bytes()
}

// Invoke posts to the guest action name with params (nil means {}) and returns the HTTP status,
// the body and the activation id (from the x-openwhisk-activation-id header, else the body).
// It never fails the test for a non-2xx status: callers assert on it.
func (s *Server) Invoke(t testing.TB, name string, params any, blocking bool) (status int, body []byte, activationID string) {
	t.Helper()
	return s.InvokeQuery(t, s.Auth, name, params, "blocking="+boolString(blocking))
}

// InvokeQuery is Invoke with another key and a raw query (e.g. "blocking=true&result=true").
func (s *Server) InvokeQuery(t testing.TB, auth, name string, params any, query string) (status int, body []byte, activationID string) {
	t.Helper()
	if params == nil {
		params = map[string]any{}
	}
	path := "/namespaces/_/actions/" + url.PathEscape(name)
	if strings.HasPrefix(name, "/") { // "/namespace/name"
		path = "/namespaces" + name
	}
	if query != "" {
		path += "?" + query
	}
	status, body, h := s.DoAs(t, auth, http.MethodPost, path, params)
	activationID = h.Get("x-openwhisk-activation-id")
	if activationID == "" {
		var b struct {
			ID string `json:"activationId"`
		}
		if json.Unmarshal(body, &b) == nil {
			activationID = b.ID
		}
	}
	return status, body, activationID
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// Activation fetches one record; ok is false while the API answers 404.
func (s *Server) Activation(t testing.TB, id string) (a *entity.Activation, ok bool) {
	t.Helper()
	status, body, _ := s.Do(t, http.MethodGet, "/namespaces/_/activations/"+url.PathEscape(id), nil)
	switch status {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, false
	default:
		t.Fatalf("testenv: get activation %s: %d %s", id, status, body)
	}
	a = &entity.Activation{}
	if err := json.Unmarshal(body, a); err != nil {
		t.Fatalf("testenv: decode activation %s: %v\n%s", id, err, body)
	}
	return a, true
}

// WaitEnded polls the record until its end is set (the activation terminated) and returns
// it; within is a hang guard, not a timing assertion.
func (s *Server) WaitEnded(t testing.TB, id string, within time.Duration) *entity.Activation {
	t.Helper()
	deadline := time.Now().Add(within)
	var last *entity.Activation
	for {
		if a, ok := s.Activation(t, id); ok {
			last = a
			if a.End != 0 {
				return a
			}
		}
		if time.Now().After(deadline) {
			rec, _ := json.Marshal(last)
			t.Fatalf("testenv: activation %s did not end within %v; last record: %s\nserver log tail:\n%s", id, within, rec, s.tail())
		}
		time.Sleep(pollInterval)
	}
}

// Annotation decodes one annotation of a record into v; it reports whether it was there.
func Annotation(a *entity.Activation, key string, v any) bool {
	raw, ok := a.Annotations.Get(key)
	if !ok {
		return false
	}
	return json.Unmarshal(raw, v) == nil
}

// TerminationOf returns the record's termination annotation (zero when absent).
func TerminationOf(a *entity.Activation) entity.Termination {
	var tm entity.Termination
	Annotation(a, "termination", &tm)
	return tm
}
