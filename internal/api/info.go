package api

import (
	"net/http"

	"github.com/coda-serverless/coda/internal/entity"
)

// apiInfo is GET /api/v1: OpenWhisk's root and v1 info merged (the wsk CLI reads build and
// buildno; clients read api_paths, limits and runtimes).
type apiInfo struct {
	APIPaths       []string             `json:"api_paths"`
	Description    string               `json:"description"`
	APIVersion     string               `json:"api_version"`
	APIVersionPath string               `json:"api_version_path"`
	Build          string               `json:"build"`
	BuildNo        string               `json:"buildno"`
	Limits         map[string]int64     `json:"limits"`
	Runtimes       map[string][]runtime `json:"runtimes"`
}

type runtime struct {
	Kind       string   `json:"kind"`
	Default    bool     `json:"default"`
	Deprecated bool     `json:"deprecated"`
	Aliases    []string `json:"aliases,omitempty"`
}

func (s *server) info(x *exchange) {
	const mb = 1 << 20
	s.replyValue(x, http.StatusOK, apiInfo{
		APIPaths:       []string{"/api/v1"},
		Description:    "Coda",
		APIVersion:     "1.0.0",
		APIVersionPath: "v1",
		Build:          "coda",
		BuildNo:        "1",
		Limits: map[string]int64{
			"min_action_duration":    entity.MinTimeout,
			"max_action_duration":    entity.MaxTimeout,
			"min_action_memory":      entity.MinMemory * mb,
			"max_action_memory":      entity.MaxMemory * mb,
			"min_action_logs":        entity.MinLogs * mb,
			"max_action_logs":        entity.MaxLogs * mb,
			"max_action_concurrency": entity.MaxConcurrency,
			"max_action_code_size":   maxActionBody,
			"max_parameters_size":    maxInvokeBody,
		},
		Runtimes: map[string][]runtime{
			"nodejs":   {{Kind: entity.KindNode, Default: true, Aliases: []string{"nodejs:default"}}},
			"python":   {{Kind: entity.KindPython, Default: true, Aliases: []string{"python:3", "python:default"}}},
			"go":       {{Kind: entity.KindGo, Default: true, Aliases: []string{"go:default"}}},
			"blackbox": {{Kind: entity.KindBlackbox, Default: true}},
		},
	})
}

// listNamespaces answers the caller's own namespace only, as OpenWhisk does.
func (s *server) listNamespaces(x *exchange) {
	s.replyValue(x, http.StatusOK, []string{x.namespace})
}

// getNamespace is OpenWhisk's GET /namespaces/{ns}: the entities of the namespace by collection
// (older wsk CLIs use it for "wsk namespace get").
func (s *server) getNamespace(x *exchange, ns string) {
	list, err := s.store.ListActions(x.r.Context(), ns, 0, maxListLimit)
	if err != nil {
		s.internal(x, "list actions", err)
		return
	}
	out := make([]actionSummary, len(list))
	for i, a := range list {
		out[i] = summarizeAction(a)
	}
	s.replyValue(x, http.StatusOK, map[string]any{
		"actions": out, "packages": []any{}, "triggers": []any{}, "rules": []any{},
	})
}
