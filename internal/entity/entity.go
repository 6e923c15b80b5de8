// Package entity holds Coda's entities in OpenWhisk's JSON shapes: actions, their limits and
// kinds, and activation records; and the validation rules every entry point shares.
package entity

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// KeyValue is OpenWhisk's {"key": ..., "value": ...} pair used for parameters and annotations.
type KeyValue struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// KeyValues is an ordered list of pairs; it always marshals as a JSON array, never null.
type KeyValues []KeyValue

// MarshalJSON writes [] for an empty list, as OpenWhisk does.
func (kv KeyValues) MarshalJSON() ([]byte, error) {
	if kv == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]KeyValue(kv))
}

// Get returns the raw value for key.
func (kv KeyValues) Get(key string) (json.RawMessage, bool) {
	for _, p := range kv {
		if p.Key == key {
			return p.Value, true
		}
	}
	return nil, false
}

// GetString returns the value for key when it is a JSON string.
func (kv KeyValues) GetString(key string) (string, bool) {
	raw, ok := kv.Get(key)
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// Set replaces or appends key; v is marshalled to JSON.
func (kv KeyValues) Set(key string, v any) KeyValues {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte("null")
	}
	for i := range kv {
		if kv[i].Key == key {
			kv[i].Value = b
			return kv
		}
	}
	return append(kv, KeyValue{Key: key, Value: b})
}

// Object turns the pairs into one JSON object (later keys win), as parameters reach main.
func (kv KeyValues) Object() map[string]json.RawMessage {
	m := make(map[string]json.RawMessage, len(kv))
	for _, p := range kv {
		m[p.Key] = p.Value
	}
	return m
}

// Exec is an action's code.
type Exec struct {
	Kind   string `json:"kind"`
	Code   string `json:"code,omitempty"`
	Binary bool   `json:"binary"`
	Main   string `json:"main,omitempty"`
	Image  string `json:"image,omitempty"`
}

// Limits are an action's resource limits in OpenWhisk's units.
type Limits struct {
	Timeout     int `json:"timeout"`     // ms
	Memory      int `json:"memory"`      // MB
	Logs        int `json:"logs"`        // MB
	Concurrency int `json:"concurrency"` // activations that have not yet responded
}

// Limit bounds, as in OpenWhisk's defaults (timeout to 300 s, concurrency to 500).
const (
	MinTimeout     = 100
	MaxTimeout     = 300_000
	DefaultTimeout = 60_000
	MinMemory      = 128
	MaxMemory      = 2048
	DefaultMemory  = 256
	MinLogs        = 0
	MaxLogs        = 10
	DefaultLogs    = 10
	MinConcurrency = 1
	MaxConcurrency = 500
)

// DefaultLimits are what an action gets for every limit it leaves out.
func DefaultLimits() Limits {
	return Limits{Timeout: DefaultTimeout, Memory: DefaultMemory, Logs: DefaultLogs, Concurrency: 1}
}

// Validate reports the first limit out of range, with its bounds.
func (l Limits) Validate() error {
	switch {
	case l.Timeout < MinTimeout || l.Timeout > MaxTimeout:
		return fmt.Errorf("timeout %d ms is out of range: it must be between %d and %d ms", l.Timeout, MinTimeout, MaxTimeout)
	case l.Memory < MinMemory || l.Memory > MaxMemory:
		return fmt.Errorf("memory %d MB is out of range: it must be between %d and %d MB", l.Memory, MinMemory, MaxMemory)
	case l.Logs < MinLogs || l.Logs > MaxLogs:
		return fmt.Errorf("logs %d MB is out of range: it must be between %d and %d MB", l.Logs, MinLogs, MaxLogs)
	case l.Concurrency < MinConcurrency || l.Concurrency > MaxConcurrency:
		return fmt.Errorf("concurrency %d is out of range: it must be between %d and %d", l.Concurrency, MinConcurrency, MaxConcurrency)
	}
	return nil
}

// Action is a deployed function.
type Action struct {
	Namespace   string    `json:"namespace"`
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	Publish     bool      `json:"publish"`
	Exec        Exec      `json:"exec"`
	Annotations KeyValues `json:"annotations"`
	Parameters  KeyValues `json:"parameters"`
	Limits      Limits    `json:"limits"`
	Updated     int64     `json:"updated"` // ms since the epoch
}

// Termination modes, chosen by the annotation "termination".
const (
	ModeDecoupled = "decoupled"
	ModeAwait     = "await"
	ModeCoupled   = "coupled"
)

// Mode returns the action's termination mode (decoupled when unset).
func (a *Action) Mode() string {
	if m, ok := a.Annotations.GetString("termination"); ok && m != "" {
		return m
	}
	return ModeDecoupled
}

// ValidateMode checks a termination annotation value.
func ValidateMode(m string) error {
	switch m {
	case ModeDecoupled, ModeAwait, ModeCoupled:
		return nil
	}
	return fmt.Errorf("termination mode %q is not one of decoupled, await, coupled", m)
}

// Kinds Coda runs, and the aliases users may write.
const (
	KindNode     = "nodejs:20"
	KindPython   = "python:3.11"
	KindGo       = "go:1.26"
	KindBlackbox = "blackbox"
)

var kindAliases = map[string]string{
	"nodejs:20": KindNode, "nodejs:default": KindNode,
	"python:3.11": KindPython, "python:3": KindPython, "python:default": KindPython,
	"go:1.26": KindGo, "go:default": KindGo,
	"blackbox": KindBlackbox,
}

// CanonicalKind resolves an alias; it reports false for a kind Coda does not run.
func CanonicalKind(kind string) (string, bool) {
	k, ok := kindAliases[kind]
	return k, ok
}

// Kinds lists the kinds users may write, for error messages.
func Kinds() string {
	return "nodejs:20, nodejs:default, python:3.11, python:3, python:default, go:1.26, go:default, blackbox"
}

// MaxNameLength is OpenWhisk's bound on entity and namespace names.
const MaxNameLength = 256

// namePattern is OpenWhisk's entity name rule: word characters, and inside also @ . - and space.
var namePattern = regexp.MustCompile(`^[\w@.-]$|^[\w][\w@ .-]*[\w@.-]$`)

// ValidateName checks an entity (or namespace) name.
func ValidateName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name is empty", what)
	case len(name) > MaxNameLength:
		return fmt.Errorf("%s name is longer than %d characters", what, MaxNameLength)
	case !namePattern.MatchString(name) || strings.ContainsAny(name, "\x00/"):
		return fmt.Errorf("%s name %q is not valid: use letters, digits, _, @, ., - and inner spaces", what, name)
	}
	return nil
}
