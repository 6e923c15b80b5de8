package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/coda-serverless/coda/internal/entity"
)

// Flags shared by the commands that take parameters and annotations.
func paramFlags() []flagSpec {
	return []flagSpec{
		{long: "param", short: "p", kind: pairFlag, help: "parameter KEY VALUE (VALUE is JSON if it parses, else a string); repeatable"},
		{long: "param-file", short: "P", kind: stringFlag, arg: "FILE", help: "parameters from a JSON object in FILE"},
	}
}

func annotationFlags() []flagSpec {
	return []flagSpec{
		{long: "annotation", short: "a", kind: pairFlag, help: "annotation KEY VALUE (VALUE is JSON if it parses, else a string); repeatable"},
		{long: "annotation-file", short: "A", kind: stringFlag, arg: "FILE", help: "annotations from a JSON object in FILE"},
	}
}

// flagValue is wsk's rule for -p/-a values: JSON when it parses, else the string itself.
func flagValue(s string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

// keyValues gathers the pairs of the file flag (each file a JSON object, keys in file order)
// then of the pair flag; a later key replaces an earlier one. It reports whether any was given.
func keyValues(p *parsed, pairFlag, fileFlag string) (entity.KeyValues, bool, error) {
	var kv entity.KeyValues
	given := p.set[pairFlag] || p.set[fileFlag]
	for _, f := range p.strs[fileFlag] {
		pairs, err := readObjectFile(f)
		if err != nil {
			return nil, false, err
		}
		for _, x := range pairs {
			kv = setRaw(kv, x.Key, x.Value)
		}
	}
	for _, pr := range p.pairs[pairFlag] {
		kv = setRaw(kv, pr[0], flagValue(pr[1]))
	}
	return kv, given, nil
}

func setRaw(kv entity.KeyValues, key string, v json.RawMessage) entity.KeyValues {
	for i := range kv {
		if kv[i].Key == key {
			kv[i].Value = v
			return kv
		}
	}
	return append(kv, entity.KeyValue{Key: key, Value: v})
}

// readObjectFile reads a JSON object, keeping its keys in file order.
func readObjectFile(path string) (entity.KeyValues, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("read %s: %v", path, err)
	}
	kv, err := objectPairs(b)
	if err != nil {
		return nil, usagef("%s must hold a JSON object: %v", path, err)
	}
	return kv, nil
}

// objectPairs decodes a JSON object into ordered pairs.
func objectPairs(b []byte) (entity.KeyValues, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("got null")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	var kv entity.KeyValues
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		kv = setRaw(kv, key, v)
	}
	return kv, nil
}
