package api

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/coda-serverless/coda/internal/entity"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "nl\n cr\r tab\t", "\x00\x01\x1f",
		"<html>&amp;", "héllo ✓ 𝄞", "bad\xffutf8\xc3", "\u2028\u2029", string([]byte{0xed, 0xa0, 0x80})} {
		b := appendString(nil, s)
		if !json.Valid(b) {
			t.Errorf("%q: invalid JSON %s", s, b)
			continue
		}
		var got string
		json.Unmarshal(b, &got)
		want, _ := json.Marshal(s)
		var wantS string
		json.Unmarshal(want, &wantS)
		if got != wantS {
			t.Errorf("%q: decodes to %q, encoding/json to %q", s, got, wantS)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("a\"b\\c\n\x00\xff\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q: %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var wantS string
		json.Unmarshal(want, &wantS)
		if got != wantS {
			t.Fatalf("%q: %q vs %q", s, got, wantS)
		}
	})
}

func TestAppendActivationRoundTrips(t *testing.T) {
	a := &entity.Activation{
		Namespace: "guest", Name: "x", Version: "0.0.3", Subject: "guest",
		ActivationID: "0123456789abcdef0123456789abcdef", Start: 1, End: 9, Duration: 8, StatusCode: 1,
		Response:    entity.NewResponse(1, entity.ErrorResult("no <way>")),
		Logs:        []string{"a", "b\"c"},
		Annotations: entity.KeyValues{}.Set("termination", entity.Termination{Mode: "decoupled", Cause: "settled", Pending: []string{}}),
		Publish:     true,
	}
	b := appendActivation(nil, a, false)
	var got entity.Activation
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	want := *a
	// Raw values compare as text.
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// Empty lists are [], never null.
	b = appendActivation(nil, &entity.Activation{ActivationID: "x"}, false)
	var m map[string]json.RawMessage
	json.Unmarshal(b, &m)
	if string(m["logs"]) != "[]" || string(m["annotations"]) != "[]" {
		t.Errorf("empty lists: %s", b)
	}
}
