package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// OpenWhisk's wording for the errors clients see (core/.../http/ErrorResponse.scala).
const (
	msgUnauthenticated  = "The supplied authentication is invalid"
	msgNotFound         = "The requested resource does not exist."
	msgExists           = "resource already exists"
	msgInternal         = "There was an internal server error."
	msgShuttingDown     = "The platform is shutting down; try again later."
	msgThrottled        = "Too many requests in the last minute."
	msgMalformed        = "The request content was malformed:\n"
	msgEntityExpected   = "Request entity expected but not supplied"
	msgActivationID     = "The activation id is not valid."
	msgDocsWithCount    = "The parameter 'docs' is not permitted with 'count'."
	msgExecUndefined    = "exec undefined"
	msgMethodNotAllowed = "HTTP method not allowed, supported methods: "
)

func msgForbidden(namespace string) string {
	return "The supplied authentication is not authorized to access '" + namespace + "'."
}

// msgTooLarge follows OpenWhisk's entityTooBig.
func msgTooLarge(size, limit int64) string {
	return "Request larger than allowed: " + strconv.FormatInt(size, 10) + " > " + strconv.FormatInt(limit, 10) + " bytes."
}

// header writes the headers every answer carries.
func (s *server) header(x *exchange, status int, length int) {
	h := x.w.Header()
	h["Content-Type"] = s.jsonContentType
	h["Access-Control-Allow-Origin"] = s.allowOriginAll
	h["X-Request-Id"] = []string{x.id}
	h["Content-Length"] = []string{strconv.Itoa(length)}
	x.status = status
	x.w.WriteHeader(status)
}

// reply writes a JSON body.
func (s *server) reply(x *exchange, status int, body []byte) {
	s.header(x, status, len(body))
	_, _ = x.w.Write(body)
}

// replyValue marshals v with encoding/json (without HTML escaping, so code reads back as sent);
// for the cold paths only.
func (s *server) replyValue(x *exchange, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		s.internal(x, "encode response", err)
		return
	}
	s.reply(x, status, bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
}

// fail writes OpenWhisk's error body {"error": msg, "code": request id}.
func (s *server) fail(x *exchange, status int, msg string) {
	bp := s.getBuf()
	b := append((*bp)[:0], `{"error":`...)
	b = appendString(b, msg)
	b = append(b, `,"code":`...)
	b = appendString(b, x.id)
	b = append(b, '}')
	s.reply(x, status, b)
	*bp = b
	s.putBuf(bp)
}

// internal logs an unexpected error and answers 500 without leaking its text.
func (s *server) internal(x *exchange, what string, err error) {
	s.log.Error("api: "+what, "id", x.id, "method", x.r.Method, "path", x.r.URL.Path, "err", err)
	s.fail(x, http.StatusInternalServerError, msgInternal)
}
