package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coda-serverless/coda/internal/controller"
	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/store"
)

// activationIDHeader is set on every invoke answer that has an activation, as OpenWhisk does.
const activationIDHeader = "x-openwhisk-activation-id"

// invoke is POST …/actions/{name}[?blocking=true][&result=true][&timeout=ms]: the hot path. It
// reads the action once, hands it to the controller and writes the record by hand.
func (s *server) invoke(x *exchange, ns, name string) {
	q := x.r.URL.RawQuery
	var blocking, result bool
	var wait time.Duration
	if q != "" {
		var msg string
		if blocking, msg = queryBool(q, "blocking", false); msg != "" {
			s.fail(x, http.StatusBadRequest, msg)
			return
		}
		if result, msg = queryBool(q, "result", false); msg != "" {
			s.fail(x, http.StatusBadRequest, msg)
			return
		}
		if wait, msg = waitParam(q); msg != "" {
			s.fail(x, http.StatusBadRequest, msg)
			return
		}
	}
	bp := s.getBuf()
	defer s.putBuf(bp)
	body, ok := s.readBody(x, bp, maxInvokeBody)
	if !ok {
		return
	}
	params, err := decodeInvokeBody(body)
	if err != nil {
		s.fail(x, http.StatusBadRequest, err.Error())
		return
	}
	ctx := x.r.Context()
	a, err := s.store.GetAction(ctx, ns, name)
	if err != nil {
		s.storeError(x, "get action", err)
		return
	}
	out, err := s.ctl.Invoke(ctx, controller.Request{
		Namespace: ns,
		Subject:   x.namespace,
		Action:    a,
		Params:    params,
		Blocking:  blocking,
		Wait:      wait,
	})
	if err != nil {
		s.invokeError(x, err)
		return
	}
	if out.ActivationID != "" {
		x.w.Header()[activationIDHeader] = []string{out.ActivationID}
	}
	b := (*bp)[:0]
	act := out.Activation
	if !blocking || act == nil { // non-blocking, or blocking that outlasted its wait
		b = appendActivationID(b, out.ActivationID)
		s.reply(x, http.StatusAccepted, b)
		*bp = b
		return
	}
	if act.ActivationID != "" && out.ActivationID == "" {
		x.w.Header()[activationIDHeader] = []string{act.ActivationID}
	}
	if result {
		b = appendRaw(b, act.Response.Result, "{}")
	} else {
		b = appendActivation(b, act, false)
	}
	s.reply(x, invokeStatus(act.Response.StatusCode), b)
	*bp = b
}

// invokeStatus is OpenWhisk's status for a blocking answer: application and developer errors are
// 502 (Bad Gateway), internal errors 500.
func invokeStatus(code int) int {
	switch code {
	case entity.StatusSuccess:
		return http.StatusOK
	case entity.StatusApplicationError, entity.StatusDeveloperError:
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// invokeError maps the controller's errors to status codes.
func (s *server) invokeError(x *exchange, err error) {
	var inv *controller.InvalidActionError
	switch {
	case errors.Is(err, controller.ErrThrottled):
		s.fail(x, http.StatusTooManyRequests, throttleMessage(err))
	case errors.Is(err, controller.ErrShuttingDown):
		s.fail(x, http.StatusServiceUnavailable, msgShuttingDown)
	case errors.Is(err, store.ErrNotFound): // deleted while invoking
		s.fail(x, http.StatusNotFound, msgNotFound)
	case errors.As(err, &inv):
		s.fail(x, http.StatusBadRequest, inv.Msg)
	default:
		s.internal(x, "invoke", err)
	}
}

// throttleMessage keeps the controller's own words ("Too many concurrent requests in flight
// (count: 12, allowed: 10)") when it wrapped ErrThrottled with them, and OpenWhisk's generic
// wording otherwise.
func throttleMessage(err error) string {
	msg := strings.TrimSuffix(err.Error(), ": "+controller.ErrThrottled.Error())
	if msg == "" || msg == controller.ErrThrottled.Error() {
		return msgThrottled
	}
	return msg
}

// maxWait is the longest a caller may ask a blocking invoke to wait, as in OpenWhisk.
const maxWait = controller.BlockingWait

// waitParam parses ?timeout=ms for blocking invokes (0 when absent: the controller's default).
func waitParam(q string) (time.Duration, string) {
	v, ok := queryParam(q, "timeout")
	if !ok {
		return 0, ""
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || time.Duration(n)*time.Millisecond > maxWait {
		return 0, "Timeout must be number of milliseconds up to " + strconv.FormatInt(maxWait.Milliseconds(), 10) + "."
	}
	return time.Duration(n) * time.Millisecond, ""
}

// decodeInvokeBody parses the parameters of an invoke: nothing, or one JSON object. Errors are
// *errBadRequest. It gives the same map as json.Unmarshal (the fuzz test checks it) but splits
// the validated object by hand: one copy of the body backs every value, where encoding/json
// would reflect and allocate per value.
func decodeInvokeBody(body []byte) (map[string]json.RawMessage, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, nil
	}
	if trimmed[0] != '{' {
		return nil, badRequest(msgMalformed + "Object expected")
	}
	if !json.Valid(trimmed) {
		var params map[string]json.RawMessage
		err := json.Unmarshal(trimmed, &params)
		if err == nil { // cannot happen: Valid and Unmarshal agree
			err = errors.New("invalid JSON")
		}
		return nil, badRequest(msgMalformed + jsonErrorText(err))
	}
	src := bytes.Clone(trimmed) // the body's buffer is reused; the values must outlive it
	params := make(map[string]json.RawMessage, 8)
	i := skipSpace(src, 1)
	if src[i] == '}' {
		return params, nil
	}
	for {
		end := stringEnd(src, i)
		key, err := keyString(src[i:end])
		if err != nil {
			return nil, badRequest(msgMalformed + err.Error())
		}
		i = skipSpace(src, end)
		i = skipSpace(src, i+1) // past ':'
		vend := valueEnd(src, i)
		params[key] = src[i:vend:vend]
		i = skipSpace(src, vend)
		if src[i] == '}' {
			return params, nil
		}
		i = skipSpace(src, i+1) // past ','
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i] == '"'.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the index just past the (valid) JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i // number, true, false, null
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\r' && b[j] != '\n' {
		j++
	}
	return j
}

// keyString decodes a quoted key; only keys with escapes or non-ASCII bytes need encoding/json
// (which also replaces invalid UTF-8, as json.Unmarshal would).
func keyString(tok []byte) (string, error) {
	plain := true
	for _, c := range tok {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return string(tok[1 : len(tok)-1]), nil
	}
	var k string
	err := json.Unmarshal(tok, &k)
	return k, err
}
