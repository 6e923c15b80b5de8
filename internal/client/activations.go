package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/coda-serverless/coda/internal/entity"
)

// ActivationFilter narrows ListActivations, as OpenWhisk's list parameters do.
type ActivationFilter struct {
	Name  string // action name; empty for all
	Skip  int
	Limit int   // 0 means the server's default
	Since int64 // ms since the epoch, inclusive; 0 for no bound
	Upto  int64 // ms since the epoch, inclusive; 0 for no bound
	Docs  bool  // full records (response result and logs) rather than summaries
}

// ListActivations returns the caller's activation records, newest first.
func (c *Client) ListActivations(ctx context.Context, f ActivationFilter) ([]*entity.Activation, error) {
	q := url.Values{}
	if f.Name != "" {
		q.Set("name", f.Name)
	}
	if f.Skip > 0 {
		q.Set("skip", itoa(f.Skip))
	}
	if f.Limit > 0 {
		q.Set("limit", itoa(f.Limit))
	}
	if f.Since > 0 {
		q.Set("since", itoa(f.Since))
	}
	if f.Upto > 0 {
		q.Set("upto", itoa(f.Upto))
	}
	if f.Docs {
		q.Set("docs", "true")
	}
	var out []*entity.Activation
	err := c.call(ctx, http.MethodGet, c.endpoint(q, "namespaces", "_", "activations"), nil, &out)
	return out, err
}

// GetActivation fetches one record.
func (c *Client) GetActivation(ctx context.Context, id string) (*entity.Activation, error) {
	var out entity.Activation
	if err := c.call(ctx, http.MethodGet, c.endpoint(nil, "namespaces", "_", "activations", id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ActivationResult fetches a record's response (status, success and result).
func (c *Client) ActivationResult(ctx context.Context, id string) (*entity.Response, error) {
	var out entity.Response
	if err := c.call(ctx, http.MethodGet, c.endpoint(nil, "namespaces", "_", "activations", id, "result"), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ActivationLogs fetches a record's log lines.
func (c *Client) ActivationLogs(ctx context.Context, id string) ([]string, error) {
	var out struct {
		Logs []string `json:"logs"`
	}
	if err := c.call(ctx, http.MethodGet, c.endpoint(nil, "namespaces", "_", "activations", id, "logs"), nil, &out); err != nil {
		return nil, err
	}
	return out.Logs, nil
}
