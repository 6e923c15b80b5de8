package api

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/coda-serverless/coda/internal/entity"
)

// maxSegments bounds the path segments after /api/v1; longer paths match nothing.
const maxSegments = 8

// route dispatches on the path by hand (no regular expressions, no allocation for plain paths).
func (s *server) route(x *exchange) {
	r := x.r
	if r.Method == http.MethodOptions {
		s.preflight(x)
		return
	}
	p := r.URL.EscapedPath()
	if p == "/ping" {
		if s.method(x, "GET") {
			s.reply(x, http.StatusOK, []byte(`{"ok":true}`))
		}
		return
	}
	rest, ok := strings.CutPrefix(p, "/api/v1")
	if !ok || rest != "" && rest[0] != '/' {
		s.fail(x, http.StatusNotFound, msgNotFound)
		return
	}
	rest = strings.TrimPrefix(rest, "/")
	if rest == "" {
		if s.method(x, "GET") {
			s.info(x)
		}
		return
	}
	rest = strings.TrimSuffix(rest, "/") // OpenWhisk accepts one trailing slash
	var segs [maxSegments]string
	n, ok := splitPath(rest, &segs)
	if !ok || segs[0] != "namespaces" {
		s.fail(x, http.StatusNotFound, msgNotFound)
		return
	}
	if n == 1 {
		if s.method(x, "GET") {
			s.listNamespaces(x)
		}
		return
	}
	ns := segs[1]
	if ns != "_" && ns != x.namespace {
		s.fail(x, http.StatusForbidden, msgForbidden(ns))
		return
	}
	ns = x.namespace
	if n == 2 {
		if s.method(x, "GET") {
			s.getNamespace(x, ns)
		}
		return
	}
	switch segs[2] {
	case "actions":
		switch {
		case n == 3:
			if s.method(x, "GET") {
				s.listActions(x, ns)
			}
		case n == 4:
			s.action(x, ns, segs[3])
		default:
			// Packages are not supported yet: "pkg/name" is a name with a '/'.
			if s.method(x, "GET, PUT, DELETE, POST") {
				name := strings.Join(segs[3:n], "/")
				s.fail(x, http.StatusBadRequest, entity.ValidateName("action", name).Error())
			}
		}
	case "activations":
		switch n {
		case 3:
			if s.method(x, "GET") {
				s.listActivations(x, ns)
			}
		case 4, 5:
			if !s.method(x, "GET") {
				return
			}
			what := ""
			if n == 5 {
				what = segs[4]
				if what != "result" && what != "logs" {
					s.fail(x, http.StatusNotFound, msgNotFound)
					return
				}
			}
			s.getActivation(x, ns, segs[3], what)
		default:
			s.fail(x, http.StatusNotFound, msgNotFound)
		}
	case "packages", "triggers", "rules":
		// Not supported yet, but listing them must work for "wsk list" and the npm client.
		if n != 3 {
			s.fail(x, http.StatusNotFound, msgNotFound)
			return
		}
		if s.method(x, "GET") {
			s.reply(x, http.StatusOK, []byte("[]"))
		}
	default:
		s.fail(x, http.StatusNotFound, msgNotFound)
	}
}

// action dispatches the operations on one action.
func (s *server) action(x *exchange, ns, name string) {
	if err := entity.ValidateName("action", name); err != nil {
		if s.method(x, "GET, PUT, DELETE, POST") {
			s.fail(x, http.StatusBadRequest, err.Error())
		}
		return
	}
	switch x.r.Method {
	case http.MethodPost:
		s.invoke(x, ns, name)
	case http.MethodGet:
		s.getAction(x, ns, name)
	case http.MethodPut:
		s.putAction(x, ns, name)
	case http.MethodDelete:
		s.deleteAction(x, ns, name)
	default:
		s.method(x, "GET, PUT, DELETE, POST")
	}
}

// method reports whether the request's method is one of allowed ("GET, PUT"); if not it answers
// 405 with an Allow header.
func (s *server) method(x *exchange, allowed string) bool {
	m := x.r.Method
	if m == allowed {
		return true
	}
	for a := range strings.SplitSeq(allowed, ", ") {
		if a == m {
			return true
		}
	}
	x.w.Header()["Allow"] = []string{allowed}
	s.fail(x, http.StatusMethodNotAllowed, msgMethodNotAllowed+allowed)
	return false
}

// preflight answers a CORS preflight, as OpenWhisk's API does for browser clients.
func (s *server) preflight(x *exchange) {
	h := x.w.Header()
	h["Access-Control-Allow-Origin"] = s.allowOriginAll
	h["Access-Control-Allow-Methods"] = []string{"GET, DELETE, POST, PUT, HEAD"}
	h["Access-Control-Allow-Headers"] = []string{"Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"}
	h["X-Request-Id"] = []string{x.id}
	x.status = http.StatusOK
	x.w.WriteHeader(http.StatusOK)
}

// splitPath splits p on '/' into segs, unescaping segments that need it; it fails on too many
// segments or a bad escape.
func splitPath(p string, segs *[maxSegments]string) (int, bool) {
	n := 0
	for {
		seg, more, found := strings.Cut(p, "/")
		if n == maxSegments {
			return 0, false
		}
		if strings.IndexByte(seg, '%') >= 0 {
			u, err := url.PathUnescape(seg)
			if err != nil {
				return 0, false
			}
			seg = u
		}
		segs[n] = seg
		n++
		if !found {
			return n, true
		}
		p = more
	}
}
