package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/store"
)

// listActivations is GET …/activations[?name&limit&skip&since&upto&docs&count]: newest first;
// summaries (no response, logs or subject) unless docs=true, as OpenWhisk lists them.
func (s *server) listActivations(x *exchange, ns string) {
	q := x.r.URL.RawQuery
	skip, limit, msg := listParams(q, "activations")
	if msg != "" {
		s.fail(x, http.StatusBadRequest, msg)
		return
	}
	f := store.ActivationFilter{Skip: skip, Limit: limit}
	var docs, count bool
	if docs, msg = queryBool(q, "docs", false); msg == "" {
		count, msg = queryBool(q, "count", false)
	}
	if msg == "" {
		f.Name, msg = nameFilter(q)
	}
	if msg == "" {
		f.Since, msg = epochParam(q, "since")
	}
	if msg == "" {
		f.Upto, msg = epochParam(q, "upto")
	}
	if msg == "" && count && docs {
		msg = msgDocsWithCount
	}
	if msg != "" {
		s.fail(x, http.StatusBadRequest, msg)
		return
	}
	ctx := x.r.Context()
	if count {
		n := 0
		for {
			page, err := s.activations.ListActivations(ctx, ns, store.ActivationFilter{
				Name: f.Name, Skip: skip + n, Limit: maxListLimit, Since: f.Since, Upto: f.Upto})
			if err != nil {
				s.internal(x, "count activations", err)
				return
			}
			n += len(page)
			if len(page) < maxListLimit {
				break
			}
		}
		s.replyValue(x, http.StatusOK, map[string]int{"activations": n})
		return
	}
	list, err := s.activations.ListActivations(ctx, ns, f)
	if err != nil {
		s.internal(x, "list activations", err)
		return
	}
	bp := s.getBuf()
	b := append((*bp)[:0], '[')
	for i, a := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendActivation(b, a, !docs)
	}
	b = append(b, ']')
	s.reply(x, http.StatusOK, b)
	*bp = b
	s.putBuf(bp)
}

// nameFilter checks ?name=: a simple name or "package/name", as OpenWhisk accepts.
func nameFilter(q string) (string, string) {
	v, ok := queryParam(q, "name")
	v = strings.TrimSpace(v)
	if !ok || v == "" {
		return "", ""
	}
	parts := strings.Split(v, "/")
	bad := len(parts) > 2
	for _, p := range parts {
		if entity.ValidateName("action", p) != nil {
			bad = true
		}
	}
	if bad {
		return "", "Parameter may be a 'simple' name or 'package-name/simple' name: " + v
	}
	return v, ""
}

// epochParam parses ?since= and ?upto= (ms since the epoch).
func epochParam(q, key string) (int64, string) {
	v, ok := queryParam(q, key)
	if !ok {
		return 0, ""
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, "Parameter is not a valid value for epoch seconds: " + v
	}
	return n, ""
}

// getActivation is GET …/activations/{id}[/result|/logs].
func (s *server) getActivation(x *exchange, ns, id, what string) {
	if msg := checkActivationID(id); msg != "" {
		s.fail(x, http.StatusBadRequest, msg)
		return
	}
	a, err := s.activations.GetActivation(x.r.Context(), ns, id)
	if err != nil {
		s.storeError(x, "get activation", err)
		return
	}
	bp := s.getBuf()
	b := (*bp)[:0]
	switch what {
	case "result":
		b = appendResponse(b, &a.Response)
	case "logs":
		b = append(b, `{"logs":[`...)
		for i, l := range a.Logs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, l)
		}
		b = append(b, "]}"...)
	default:
		b = appendActivation(b, a, false)
	}
	s.reply(x, http.StatusOK, b)
	*bp = b
	s.putBuf(bp)
}

// checkActivationID is OpenWhisk's ActivationId.parse: 32 lowercase hex digits.
func checkActivationID(id string) string {
	if len(id) != 32 {
		return "Activation id length is " + strconv.Itoa(len(id)) + " but must be 32."
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return msgActivationID
		}
	}
	return ""
}
