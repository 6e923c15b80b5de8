// Package clienttest is an in-memory imitation of just enough of Coda's REST API for the
// client's and the CLI's tests: auth, actions, invocations and activation records. It runs
// nothing: a Run function decides each activation's outcome.
package clienttest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/coda-serverless/coda/internal/entity"
)

// Request is one request the fake received, for tests to inspect.
type Request struct {
	Method string
	Path   string // unescaped
	Query  map[string]string
	Body   []byte
}

// Outcome is what Run decides for one activation.
type Outcome struct {
	Result  any  // marshalled into response.result
	Failed  bool // application error: the blocking answer is 502
	Pending bool // the blocking call "outlasts the wait": the answer is 202
	Logs    []string
}

// Server is the fake API.
type Server struct {
	*httptest.Server
	Namespace string // the namespace the key opens
	UUID, Key string

	// Run decides an activation's outcome; by default the result echoes the parameters.
	Run func(a *entity.Action, params map[string]json.RawMessage) Outcome

	mu          sync.Mutex
	actions     map[string]*entity.Action
	activations []*entity.Activation // oldest first
	requests    []Request
	clock       int64
}

// New starts a fake for namespace "guest" with a fixed key; Close it when done.
func New() *Server {
	s := &Server{
		Namespace: "guest",
		UUID:      "23bc46b1-71f6-4ed5-8c54-816aa4f8c502",
		Key:       "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP",
		actions:   map[string]*entity.Action{},
		clock:     1_700_000_000_000,
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Auth is the key as the CLI takes it.
func (s *Server) Auth() string { return s.UUID + ":" + s.Key }

// Requests returns what the fake received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// LastRequest returns the latest request with the given method.
func (s *Server) LastRequest(method string) (Request, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.requests) - 1; i >= 0; i-- {
		if s.requests[i].Method == method {
			return s.requests[i], true
		}
	}
	return Request{}, false
}

// Action returns a stored action (nil when absent).
func (s *Server) Action(name string) *entity.Action {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.actions[name]
}

// AddActivation stores a record directly.
func (s *Server) AddActivation(a *entity.Activation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.activations = append(s.activations, a)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": "fake" + strconv.Itoa(status)})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	q := map[string]string{}
	for k, v := range r.URL.Query() {
		q[k] = v[0]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: q, Body: body})

	if u, k, ok := r.BasicAuth(); !ok || u != s.UUID || k != s.Key {
		writeError(w, http.StatusUnauthorized, "The supplied authentication is invalid.")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/namespaces")
	if !ok {
		writeError(w, http.StatusNotFound, "The requested resource does not exist.")
		return
	}
	if rest == "" || rest == "/" {
		writeJSON(w, http.StatusOK, []string{s.Namespace})
		return
	}
	parts := strings.Split(strings.TrimPrefix(rest, "/"), "/")
	if ns := parts[0]; ns != "_" && ns != s.Namespace {
		writeError(w, http.StatusForbidden, "The supplied authentication is not authorized to access '"+ns+"'.")
		return
	}
	switch {
	case len(parts) == 2 && parts[1] == "actions" && r.Method == http.MethodGet:
		s.listActions(w, q)
	case len(parts) == 3 && parts[1] == "actions":
		s.action(w, r.Method, parts[2], q, body)
	case len(parts) == 2 && parts[1] == "activations" && r.Method == http.MethodGet:
		s.listActivations(w, q)
	case len(parts) >= 3 && parts[1] == "activations" && r.Method == http.MethodGet:
		s.activation(w, parts[2:])
	default:
		writeError(w, http.StatusNotFound, "The requested resource does not exist.")
	}
}

func (s *Server) listActions(w http.ResponseWriter, q map[string]string) {
	names := make([]string, 0, len(s.actions))
	for n := range s.actions {
		names = append(names, n)
	}
	sort.Strings(names)
	out := []*entity.Action{}
	skip, _ := strconv.Atoi(q["skip"])
	limit, _ := strconv.Atoi(q["limit"])
	for i, n := range names {
		if i < skip || (limit > 0 && len(out) >= limit) {
			continue
		}
		out = append(out, s.actions[n])
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) action(w http.ResponseWriter, method, name string, q map[string]string, body []byte) {
	a := s.actions[name]
	switch method {
	case http.MethodGet, http.MethodDelete:
		if a == nil {
			writeError(w, http.StatusNotFound, "The requested resource does not exist.")
			return
		}
		if method == http.MethodDelete {
			delete(s.actions, name)
		}
		writeJSON(w, http.StatusOK, a)
	case http.MethodPut:
		if a != nil && q["overwrite"] != "true" {
			writeError(w, http.StatusConflict, "resource already exists")
			return
		}
		var in entity.Action
		if err := json.Unmarshal(body, &in); err != nil {
			writeError(w, http.StatusBadRequest, "The request content was malformed: "+err.Error())
			return
		}
		if _, ok := entity.CanonicalKind(in.Exec.Kind); !ok {
			writeError(w, http.StatusBadRequest, "kind "+in.Exec.Kind+" is not supported")
			return
		}
		in.Namespace, in.Name = s.Namespace, name
		in.Version = "0.0.1"
		if a != nil {
			var patch int
			fmt.Sscanf(a.Version, "0.0.%d", &patch)
			in.Version = fmt.Sprintf("0.0.%d", patch+1)
		}
		if in.Limits == (entity.Limits{}) {
			in.Limits = entity.DefaultLimits()
		}
		s.actions[name] = &in
		writeJSON(w, http.StatusOK, &in)
	case http.MethodPost:
		s.invoke(w, a, name, q, body)
	default:
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

func (s *Server) invoke(w http.ResponseWriter, a *entity.Action, name string, q map[string]string, body []byte) {
	if a == nil {
		writeError(w, http.StatusNotFound, "The requested resource does not exist.")
		return
	}
	params := map[string]json.RawMessage{}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &params); err != nil {
			writeError(w, http.StatusBadRequest, "The request content was malformed: "+err.Error())
			return
		}
	}
	merged := a.Parameters.Object()
	for k, v := range params {
		merged[k] = v
	}
	out := Outcome{Result: merged}
	if s.Run != nil {
		out = s.Run(a, merged)
	}
	result, _ := json.Marshal(out.Result)
	code := entity.StatusSuccess
	if out.Failed {
		code = entity.StatusApplicationError
	}
	s.clock += 1000
	rec := &entity.Activation{
		Namespace: s.Namespace, Name: name, Version: a.Version, Subject: s.Namespace,
		ActivationID: fmt.Sprintf("%032x", s.clock), Start: s.clock, End: s.clock + 5, Duration: 5,
		StatusCode: code, Response: entity.NewResponse(code, result), Logs: out.Logs,
		Annotations: entity.KeyValues{}.Set("kind", a.Exec.Kind).Set("termination", entity.Termination{Mode: a.Mode(), Cause: "settled", Pending: []string{}}),
	}
	if rec.Logs == nil {
		rec.Logs = []string{}
	}
	s.activations = append(s.activations, rec)
	w.Header().Set("x-openwhisk-activation-id", rec.ActivationID)
	blocking := q["blocking"] == "true"
	if !blocking || out.Pending {
		writeJSON(w, http.StatusAccepted, map[string]string{"activationId": rec.ActivationID})
		return
	}
	status := http.StatusOK
	if out.Failed {
		status = http.StatusBadGateway
	}
	if q["result"] == "true" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(result)
		return
	}
	writeJSON(w, status, rec)
}

func (s *Server) listActivations(w http.ResponseWriter, q map[string]string) {
	skip, _ := strconv.Atoi(q["skip"])
	limit, _ := strconv.Atoi(q["limit"])
	if limit == 0 {
		limit = 30
	}
	since, _ := strconv.ParseInt(q["since"], 10, 64)
	upto, _ := strconv.ParseInt(q["upto"], 10, 64)
	out := []*entity.Activation{}
	seen := 0
	for i := len(s.activations) - 1; i >= 0 && len(out) < limit; i-- {
		a := s.activations[i]
		if (q["name"] != "" && a.Name != q["name"]) || (since > 0 && a.Start < since) || (upto > 0 && a.Start > upto) {
			continue
		}
		if seen++; seen <= skip {
			continue
		}
		c := *a
		if q["docs"] != "true" { // summaries, as OpenWhisk lists them
			c.Logs, c.Response.Result = nil, nil
		}
		out = append(out, &c)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) activation(w http.ResponseWriter, parts []string) {
	var a *entity.Activation
	for _, x := range s.activations {
		if x.ActivationID == parts[0] {
			a = x
		}
	}
	if a == nil {
		writeError(w, http.StatusNotFound, "The requested resource does not exist.")
		return
	}
	switch {
	case len(parts) == 1:
		writeJSON(w, http.StatusOK, a)
	case len(parts) == 2 && parts[1] == "result":
		writeJSON(w, http.StatusOK, a.Response)
	case len(parts) == 2 && parts[1] == "logs":
		writeJSON(w, http.StatusOK, map[string][]string{"logs": a.Logs})
	default:
		writeError(w, http.StatusNotFound, "The requested resource does not exist.")
	}
}
