package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

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
// *errBadRequest.
func decodeInvokeBody(body []byte) (map[string]json.RawMessage, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, nil
	}
	if trimmed[0] != '{' {
		return nil, badRequest(msgMalformed + "Object expected")
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &params); err != nil {
		return nil, badRequest(msgMalformed + jsonErrorText(err))
	}
	return params, nil
}
