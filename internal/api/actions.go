package api

import (
	"errors"
	"io"
	"net/http"

	"github.com/coda-serverless/coda/internal/controller"
	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/store"
)

// actionSummary is an action as OpenWhisk lists it: no parameters, and exec without its code.
type actionSummary struct {
	Namespace   string           `json:"namespace"`
	Name        string           `json:"name"`
	Version     string           `json:"version"`
	Publish     bool             `json:"publish"`
	Annotations entity.KeyValues `json:"annotations"`
	Limits      entity.Limits    `json:"limits"`
	Exec        execMeta         `json:"exec"`
	Updated     int64            `json:"updated"`
}

// execMeta is an exec without its code (lists, and GET with ?code=false).
type execMeta struct {
	Kind   string `json:"kind"`
	Binary bool   `json:"binary"`
	Main   string `json:"main,omitempty"`
	Image  string `json:"image,omitempty"`
}

func metaOf(e entity.Exec) execMeta {
	return execMeta{Kind: e.Kind, Binary: e.Binary, Main: e.Main, Image: e.Image}
}

func summarizeAction(a *entity.Action) actionSummary {
	return actionSummary{Namespace: a.Namespace, Name: a.Name, Version: a.Version, Publish: a.Publish,
		Annotations: a.Annotations, Limits: a.Limits, Exec: metaOf(a.Exec), Updated: a.Updated}
}

// actionMeta is GET …/actions/{name}?code=false: the whole action but its code.
type actionMeta struct {
	Namespace   string           `json:"namespace"`
	Name        string           `json:"name"`
	Version     string           `json:"version"`
	Publish     bool             `json:"publish"`
	Exec        execMeta         `json:"exec"`
	Annotations entity.KeyValues `json:"annotations"`
	Parameters  entity.KeyValues `json:"parameters"`
	Limits      entity.Limits    `json:"limits"`
	Updated     int64            `json:"updated"`
}

// listActions is GET …/actions[?skip&limit&count].
func (s *server) listActions(x *exchange, ns string) {
	q := x.r.URL.RawQuery
	skip, limit, msg := listParams(q, "actions")
	if msg != "" {
		s.fail(x, http.StatusBadRequest, msg)
		return
	}
	count, msg := queryBool(q, "count", false)
	if msg != "" {
		s.fail(x, http.StatusBadRequest, msg)
		return
	}
	if count {
		n, err := s.countActions(x, ns, skip)
		if err != nil {
			s.internal(x, "count actions", err)
			return
		}
		s.replyValue(x, http.StatusOK, map[string]int{"actions": n})
		return
	}
	list, err := s.store.ListActions(x.r.Context(), ns, skip, limit)
	if err != nil {
		s.internal(x, "list actions", err)
		return
	}
	out := make([]actionSummary, len(list))
	for i, a := range list {
		out[i] = summarizeAction(a)
	}
	s.replyValue(x, http.StatusOK, out)
}

// countActions pages through the listing: the store has no count and counts are rare.
func (s *server) countActions(x *exchange, ns string, skip int) (int, error) {
	n := 0
	for {
		page, err := s.store.ListActions(x.r.Context(), ns, skip+n, maxListLimit)
		if err != nil {
			return 0, err
		}
		n += len(page)
		if len(page) < maxListLimit {
			return n, nil
		}
	}
}

// getAction is GET …/actions/{name}[?code=false].
func (s *server) getAction(x *exchange, ns, name string) {
	code, msg := queryBool(x.r.URL.RawQuery, "code", true)
	if msg != "" {
		s.fail(x, http.StatusBadRequest, msg)
		return
	}
	a, err := s.store.GetAction(x.r.Context(), ns, name)
	if err != nil {
		s.storeError(x, "get action", err)
		return
	}
	if code {
		s.replyValue(x, http.StatusOK, a)
		return
	}
	s.replyValue(x, http.StatusOK, actionMeta{Namespace: a.Namespace, Name: a.Name, Version: a.Version,
		Publish: a.Publish, Exec: metaOf(a.Exec), Annotations: a.Annotations, Parameters: a.Parameters,
		Limits: a.Limits, Updated: a.Updated})
}

// deleteAction is DELETE …/actions/{name}: 200 with the deleted action.
func (s *server) deleteAction(x *exchange, ns, name string) {
	a, err := s.store.DeleteAction(x.r.Context(), ns, name)
	if err != nil {
		s.storeError(x, "delete action", err)
		return
	}
	s.replyValue(x, http.StatusOK, a)
}

// putAction is PUT …/actions/{name}[?overwrite=true]: create, or update keeping what the body
// leaves out. The action is checked (and, for Go, compiled) by the controller before it is stored.
func (s *server) putAction(x *exchange, ns, name string) {
	ctx := x.r.Context()
	overwrite, msg := queryBool(x.r.URL.RawQuery, "overwrite", false)
	if msg != "" {
		s.fail(x, http.StatusBadRequest, msg)
		return
	}
	bp := s.getBuf()
	defer s.putBuf(bp)
	body, ok := s.readBody(x, bp, maxActionBody)
	if !ok {
		return
	}
	put, err := decodeActionPut(body)
	if err != nil {
		s.fail(x, http.StatusBadRequest, err.Error())
		return
	}
	// Look first: a create that would conflict must not pay for a compilation.
	old, err := s.store.GetAction(ctx, ns, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		old = nil
	case err != nil:
		s.internal(x, "get action", err)
		return
	case !overwrite:
		s.fail(x, http.StatusConflict, msgExists)
		return
	}
	a, err := buildAction(ns, name, put, old)
	if err != nil {
		s.fail(x, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.ctl.Prepare(ctx, a); err != nil {
		var inv *controller.InvalidActionError
		if errors.As(err, &inv) {
			s.fail(x, http.StatusBadRequest, inv.Msg)
			return
		}
		s.internal(x, "prepare action", err)
		return
	}
	stored, err := s.store.PutAction(ctx, a, overwrite)
	if err != nil {
		s.storeError(x, "put action", err)
		return
	}
	s.replyValue(x, http.StatusOK, stored)
}

// storeError maps the store's errors: not found 404, conflict 409, anything else 500.
func (s *server) storeError(x *exchange, what string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.fail(x, http.StatusNotFound, msgNotFound)
	case errors.Is(err, store.ErrConflict):
		s.fail(x, http.StatusConflict, msgExists)
	default:
		s.internal(x, what, err)
	}
}

// readBody reads the whole body into *bp; over limit it answers 413, on a read error 400.
func (s *server) readBody(x *exchange, bp *[]byte, limit int64) ([]byte, bool) {
	r := x.r
	if r.ContentLength > limit {
		s.fail(x, http.StatusRequestEntityTooLarge, msgTooLarge(r.ContentLength, limit))
		return nil, false
	}
	b := (*bp)[:0]
	if r.Body == nil || r.Body == http.NoBody {
		return b, true
	}
	if r.ContentLength > 0 && int64(cap(b)) < r.ContentLength {
		b = make([]byte, 0, r.ContentLength)
	}
	for {
		if len(b) == cap(b) { // double: append's 1.25x growth copies a big zip too often
			nb := make([]byte, len(b), max(2*cap(b), 4096))
			copy(nb, b)
			b = nb
		}
		n, err := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*bp = b
			return b, true
		}
		if err != nil {
			*bp = b
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				// the true size is unknown: reading stopped at the limit
				s.fail(x, http.StatusRequestEntityTooLarge, msgTooLarge(limit+1, limit))
				return nil, false
			}
			s.fail(x, http.StatusBadRequest, msgMalformed+"the body could not be read")
			return nil, false
		}
	}
}
