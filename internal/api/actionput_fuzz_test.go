package api

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/coda-serverless/coda/internal/entity"
)

// FuzzActionPut: decoding and validating a PUT body never panics and never yields an action that
// breaks the entity rules, both on create and on update of an existing action.
func FuzzActionPut(f *testing.F) {
	for _, s := range []string{
		`{"exec":{"kind":"nodejs:default","code":"function main(){}"}}`,
		`{"exec":{"kind":"python:3","code":"def main(a): return a","main":"main"},"limits":{"timeout":1000,"memory":128}}`,
		`{"exec":{"kind":"blackbox","image":"x"},"publish":true}`,
		`{"exec":{"kind":"go:1.26","code":"UEsDBA==","binary":true}}`,
		`{"annotations":[{"key":"termination","value":"await"}],"parameters":[{"key":"a","value":[1]}]}`,
		`{"limits":{"concurrency":501}}`,
		`{"annotations":[{"key":"termination","value":7}]}`,
		`{"exec":{"kind":"sequence","components":["/_/a"]}}`,
		`{"exec":null,"limits":null}`,
		`[]`, ``, `{`,
	} {
		f.Add([]byte(s), "action")
	}
	old := &entity.Action{Namespace: "guest", Name: "old", Version: "0.0.1",
		Exec:   entity.Exec{Kind: entity.KindNode, Code: "function main(){}"},
		Limits: entity.DefaultLimits(), Annotations: entity.KeyValues{}.Set("exec", entity.KindNode)}
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		put, err := decodeActionPut(body)
		if err != nil {
			var br *errBadRequest
			if !errors.As(err, &br) {
				t.Fatalf("decode error %v is not a bad request", err)
			}
			return
		}
		for _, prev := range []*entity.Action{nil, old} {
			a, err := buildAction("guest", name, put, prev)
			if err != nil {
				var br *errBadRequest
				if !errors.As(err, &br) {
					t.Fatalf("build error %v is not a bad request", err)
				}
				continue
			}
			checkValidAction(t, a)
		}
	})
}

// checkValidAction fails on an action that must never be stored.
func checkValidAction(t *testing.T, a *entity.Action) {
	t.Helper()
	if err := entity.ValidateName("action", a.Name); err != nil {
		t.Fatalf("stored name: %v", err)
	}
	if k, ok := entity.CanonicalKind(a.Exec.Kind); !ok || k != a.Exec.Kind {
		t.Fatalf("kind %q is not canonical", a.Exec.Kind)
	}
	if a.Exec.Kind != entity.KindBlackbox && a.Exec.Code == "" {
		t.Fatal("no code")
	}
	if err := a.Limits.Validate(); err != nil {
		t.Fatalf("limits: %v", err)
	}
	if err := entity.ValidateMode(a.Mode()); err != nil {
		t.Fatalf("mode: %v", err)
	}
	if k, _ := a.Annotations.GetString("exec"); k != a.Exec.Kind {
		t.Fatalf("exec annotation %q, kind %q", k, a.Exec.Kind)
	}
	for _, list := range []entity.KeyValues{a.Parameters, a.Annotations} {
		seen := map[string]bool{}
		for _, kv := range list {
			if strings.TrimSpace(kv.Key) == "" || !json.Valid(kv.Value) {
				t.Fatalf("bad pair %q=%q", kv.Key, kv.Value)
			}
			if seen[kv.Key] {
				t.Fatalf("duplicate key %q", kv.Key)
			}
			seen[kv.Key] = true
		}
	}
	if _, err := json.Marshal(a); err != nil {
		t.Fatalf("action does not marshal: %v", err)
	}
}
