package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/coda-serverless/coda/internal/entity"
)

// actionPut is a PUT …/actions/{name} body, OpenWhisk's WhiskActionPut: every field is optional,
// and on update a field left out keeps its old value.
type actionPut struct {
	Exec        *execPut          `json:"exec"`
	Parameters  *entity.KeyValues `json:"parameters"`
	Annotations *entity.KeyValues `json:"annotations"`
	Limits      *limitsPut        `json:"limits"`
	Publish     *bool             `json:"publish"`
}

type execPut struct {
	Kind   string  `json:"kind"`
	Code   *string `json:"code"`
	Binary *bool   `json:"binary"`
	Main   *string `json:"main"`
	Image  *string `json:"image"`
}

type limitsPut struct {
	Timeout     *int `json:"timeout"`
	Memory      *int `json:"memory"`
	Logs        *int `json:"logs"`
	Concurrency *int `json:"concurrency"`
}

// errBadRequest marks a client error (400) whose text is the message to send.
type errBadRequest struct{ msg string }

func (e *errBadRequest) Error() string { return e.msg }

func badRequest(msg string) error { return &errBadRequest{msg: msg} }

// decodeActionPut parses a PUT body; every error is an *errBadRequest.
func decodeActionPut(body []byte) (*actionPut, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, badRequest(msgEntityExpected)
	}
	if trimmed[0] != '{' {
		return nil, badRequest(msgMalformed + "Object expected in field 'action'")
	}
	var p actionPut
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, badRequest(msgMalformed + jsonErrorText(err))
	}
	return &p, nil
}

// jsonErrorText turns a decoding error into a message free of Go type names.
func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return "unexpected " + te.Value + " in field '" + te.Field + "'"
		}
		return "unexpected " + te.Value
	}
	return err.Error()
}

// buildAction makes the action to store from a PUT: on create (old == nil) from the body and
// the defaults, on update from the body over the old action, as OpenWhisk's make and
// updateWhiskAction do. It validates everything it returns; errors are *errBadRequest.
func buildAction(ns, name string, p *actionPut, old *entity.Action) (*entity.Action, error) {
	if err := entity.ValidateName("action", name); err != nil {
		return nil, badRequest(err.Error())
	}
	a := &entity.Action{Namespace: ns, Name: name, Limits: entity.DefaultLimits()}
	if old != nil {
		a.Exec = old.Exec
		a.Parameters = old.Parameters
		a.Annotations = old.Annotations
		a.Limits = old.Limits
		a.Publish = old.Publish
		a.Version = old.Version
	}
	switch {
	case p.Exec != nil:
		exec, err := buildExec(p.Exec)
		if err != nil {
			return nil, err
		}
		a.Exec = exec
	case old == nil:
		return nil, badRequest(msgExecUndefined)
	}
	if p.Parameters != nil {
		kv, err := cleanKeyValues("parameter", *p.Parameters)
		if err != nil {
			return nil, err
		}
		a.Parameters = kv
	}
	if p.Annotations != nil {
		kv, err := cleanKeyValues("annotation", *p.Annotations)
		if err != nil {
			return nil, err
		}
		a.Annotations = kv
	} else {
		a.Annotations = append(entity.KeyValues(nil), a.Annotations...) // do not alias old's
	}
	if l := p.Limits; l != nil {
		setLimit(&a.Limits.Timeout, l.Timeout)
		setLimit(&a.Limits.Memory, l.Memory)
		setLimit(&a.Limits.Logs, l.Logs)
		setLimit(&a.Limits.Concurrency, l.Concurrency)
	}
	if err := a.Limits.Validate(); err != nil {
		return nil, badRequest(err.Error())
	}
	if p.Publish != nil {
		a.Publish = *p.Publish
	}
	if raw, ok := a.Annotations.Get("termination"); ok {
		var mode string
		if json.Unmarshal(raw, &mode) != nil {
			return nil, badRequest("termination annotation must be a string: one of decoupled, await, coupled")
		}
		if err := entity.ValidateMode(mode); err != nil {
			return nil, badRequest(err.Error())
		}
	}
	// OpenWhisk records the kind as the "exec" annotation (wsk action list shows it).
	a.Annotations = a.Annotations.Set("exec", a.Exec.Kind)
	return a, nil
}

func setLimit(dst *int, v *int) {
	if v != nil {
		*dst = *v
	}
}

// buildExec validates an exec and resolves its kind to the canonical one.
func buildExec(e *execPut) (entity.Exec, error) {
	if e.Kind == "" {
		return entity.Exec{}, badRequest(msgMalformed + "kind undefined in field 'exec'")
	}
	kind, ok := entity.CanonicalKind(e.Kind)
	if !ok {
		return entity.Exec{}, badRequest("kind '" + e.Kind + "' is not supported: use one of " + entity.Kinds())
	}
	x := entity.Exec{Kind: kind}
	if e.Code != nil {
		x.Code = *e.Code
	}
	if e.Main != nil {
		x.Main = *e.Main
	}
	if e.Image != nil {
		x.Image = *e.Image
	}
	switch {
	case kind == entity.KindBlackbox:
		if x.Code == "" && x.Image == "" {
			return entity.Exec{}, badRequest(msgMalformed + "code or image undefined in field 'exec'")
		}
	case x.Code == "":
		return entity.Exec{}, badRequest(msgMalformed + "code undefined in field 'exec'")
	}
	if e.Binary != nil {
		x.Binary = *e.Binary
	} else {
		x.Binary = isBinaryCode(x.Code) // as OpenWhisk infers it: the npm client sends zips so
	}
	return x, nil
}

// isBinaryCode is OpenWhisk's test for base64 code when "binary" is left out: a non-empty,
// whitespace-free, padded base64 text. Source code always has a space, brace or newline.
func isBinaryCode(code string) bool {
	t := strings.TrimSpace(code)
	if t == "" || len(t)%4 != 0 {
		return false
	}
	pad := 0
	for i := len(t) - 1; i >= 0 && t[i] == '='; i-- {
		pad++
	}
	if pad > 2 {
		return false
	}
	for i := 0; i < len(t)-pad; i++ {
		c := t[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// cleanKeyValues checks keys and drops duplicates (the last value wins, at the first key's
// place), as OpenWhisk keeps parameters in a map.
func cleanKeyValues(what string, in entity.KeyValues) (entity.KeyValues, error) {
	out := make(entity.KeyValues, 0, len(in))
	idx := make(map[string]int, len(in))
	for _, p := range in {
		if strings.TrimSpace(p.Key) == "" {
			return nil, badRequest(msgMalformed + what + " key undefined")
		}
		v := p.Value
		if len(v) == 0 {
			v = json.RawMessage("null")
		}
		if i, ok := idx[p.Key]; ok {
			out[i].Value = v
			continue
		}
		idx[p.Key] = len(out)
		out = append(out, entity.KeyValue{Key: p.Key, Value: v})
	}
	return out, nil
}
