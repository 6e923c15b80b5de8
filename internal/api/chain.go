package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"
)

// Body limits, as OpenWhisk's: an action's code may be up to 48 MB (a zip, base64), an
// invocation's parameters up to 1 MB.
const (
	maxActionBody = 48 << 20
	maxInvokeBody = 1 << 20
)

// recoverPanics is the first stage: a panicking handler answers 500 instead of dropping the
// connection, and the stack is logged once.
func (s *server) recoverPanics(x *exchange) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if p == http.ErrAbortHandler { // deliberate abort: let net/http handle it
			panic(p)
		}
		s.log.Error("api: panic", "id", x.id, "method", x.r.Method, "path", x.r.URL.Path,
			"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		if x.status == 0 {
			s.fail(x, http.StatusInternalServerError, msgInternal)
		}
	}()
	s.identify(x)
}

// identify assigns the request id and, at Debug level only, logs the request when it is done.
func (s *server) identify(x *exchange) {
	x.id = s.ids.next(x.r.Header["X-Request-Id"])
	if !s.log.Enabled(x.r.Context(), slog.LevelDebug) {
		s.limitBody(x)
		return
	}
	start := time.Now()
	s.limitBody(x)
	s.log.Debug("api: request", "id", x.id, "method", x.r.Method, "path", x.r.URL.Path,
		"status", x.status, "namespace", x.namespace, "elapsed", time.Since(start))
}

// limitBody caps the body before anything reads it: 48 MB for PUT (action code), 1 MB otherwise.
func (s *server) limitBody(x *exchange) {
	limit := int64(maxInvokeBody)
	if x.r.Method == http.MethodPut {
		limit = maxActionBody
	}
	if x.r.Body != nil && x.r.Body != http.NoBody {
		x.r.Body = http.MaxBytesReader(x.w, x.r.Body, limit)
	}
	s.authenticate(x)
}

// authenticate resolves the caller's namespace from Basic auth; /ping, the API info and CORS
// preflights are public, as in OpenWhisk.
func (s *server) authenticate(x *exchange) {
	if isPublic(x.r) {
		s.route(x)
		return
	}
	ns, err := s.auth.lookup(x.r.Context(), s.store, x.r.Header["Authorization"])
	switch {
	case err == errUnauthenticated:
		s.fail(x, http.StatusUnauthorized, msgUnauthenticated)
		return
	case err != nil:
		s.internal(x, "authenticate", err)
		return
	}
	x.namespace = ns
	s.route(x)
}

// isPublic reports whether a request needs no credentials.
func isPublic(r *http.Request) bool {
	if r.Method == http.MethodOptions {
		return true
	}
	switch r.URL.Path {
	case "/ping", "/api/v1", "/api/v1/":
		return true
	}
	return false
}

// idGenerator makes request ids like OpenWhisk's transaction ids (32 alphanumerics): a random
// per-process prefix and a counter, so that no request pays for the system's random source.
type idGenerator struct {
	prefix string
	n      atomic.Uint64
}

func newIDGenerator() *idGenerator {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &idGenerator{prefix: hex.EncodeToString(b[:])}
}

// next returns the client's own X-Request-ID when it is sane (as OpenWhisk honours it), else a
// fresh id.
func (g *idGenerator) next(given []string) string {
	if len(given) == 1 && validRequestID(given[0]) {
		return given[0]
	}
	var b [32]byte
	copy(b[:], g.prefix)
	n := g.n.Add(1)
	digits := strconv.AppendUint(b[16:16], n, 16)
	// right-align the counter, zero-padded, in the last 16 bytes
	pad := 16 - len(digits)
	copy(b[16+pad:], digits)
	for i := 16; i < 16+pad; i++ {
		b[i] = '0'
	}
	return string(b[:])
}

// validRequestID accepts short ids of letters, digits and '-', so that a client cannot inject
// anything odd into logs and error bodies.
func validRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}
