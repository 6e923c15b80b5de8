package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/coda-serverless/coda/internal/entity"
)

// Namespaces lists the namespaces the key may use (GET /namespaces).
func (c *Client) Namespaces(ctx context.Context) ([]string, error) {
	var out []string
	err := c.call(ctx, http.MethodGet, c.endpoint(nil, "namespaces"), nil, &out)
	return out, err
}

// ListActions lists the caller's actions by name; limit 0 means the server's default.
func (c *Client) ListActions(ctx context.Context, skip, limit int) ([]*entity.Action, error) {
	q := url.Values{}
	if skip > 0 {
		q.Set("skip", itoa(skip))
	}
	if limit > 0 {
		q.Set("limit", itoa(limit))
	}
	var out []*entity.Action
	err := c.call(ctx, http.MethodGet, c.endpoint(q, "namespaces", "_", "actions"), nil, &out)
	return out, err
}

// GetAction fetches one action, code included. name is "name" or "/namespace/name".
func (c *Client) GetAction(ctx context.Context, name string) (*entity.Action, error) {
	ns, n := SplitName(name)
	var out entity.Action
	if err := c.call(ctx, http.MethodGet, c.endpoint(nil, "namespaces", ns, "actions", n), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutAction creates a.Name in a.Namespace (the caller's own when empty), or replaces it when
// overwrite is set; it returns the action as stored (with its new version).
func (c *Client) PutAction(ctx context.Context, a *entity.Action, overwrite bool) (*entity.Action, error) {
	ns := a.Namespace
	if ns == "" {
		ns = "_"
	}
	q := url.Values{}
	if overwrite {
		q.Set("overwrite", "true")
	}
	var out entity.Action
	if err := c.call(ctx, http.MethodPut, c.endpoint(q, "namespaces", ns, "actions", a.Name), a, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteAction removes an action.
func (c *Client) DeleteAction(ctx context.Context, name string) error {
	ns, n := SplitName(name)
	return c.call(ctx, http.MethodDelete, c.endpoint(nil, "namespaces", ns, "actions", n), nil, nil)
}

// Invocation is the answer to an invoke.
type Invocation struct {
	// ActivationID comes from the x-openwhisk-activation-id header, else from the body when
	// that is a record or {"activationId"} (a result-only answer without the header has none).
	ActivationID string
	// Status is the HTTP status: 202 when not blocking or when a blocking call outlasted the
	// API's wait; 200 for a successful blocking call; 502 when the activation failed.
	Status int
	// Body is the raw answer: {"activationId"} (202), the activation record (blocking), or just
	// the result (blocking with result).
	Body json.RawMessage
	// Activation is the decoded record for a blocking call without result (nil otherwise).
	Activation *entity.Activation
}

// Pending reports whether the answer carries no outcome yet (non-blocking, or blocking but
// the activation outlasted the API's wait): fetch it later with GetActivation.
func (inv *Invocation) Pending() bool { return inv.Status == http.StatusAccepted }

// Failed reports whether a blocking activation ended in failure (application or developer
// error): the body still carries its record or result.
func (inv *Invocation) Failed() bool { return inv.Status >= 300 }

// Invoke runs an action with params (a map, a struct, json.RawMessage or nil for {}). A failed
// blocking activation (502) is not an error: it comes back as an Invocation whose Failed is true.
func (c *Client) Invoke(ctx context.Context, name string, params any, blocking, result bool) (*Invocation, error) {
	ns, n := SplitName(name)
	q := url.Values{}
	if blocking || result {
		q.Set("blocking", "true")
	}
	if result {
		q.Set("result", "true")
	}
	if params == nil {
		params = json.RawMessage("{}")
	}
	r, err := c.do(ctx, http.MethodPost, c.endpoint(q, "namespaces", ns, "actions", n), params)
	if err != nil {
		return nil, err
	}
	blockingFailure := (blocking || result) && r.status == http.StatusBadGateway
	if (r.status < 200 || r.status > 299) && !blockingFailure {
		return nil, apiError(r)
	}
	inv := &Invocation{ActivationID: r.header.Get(ActivationIDHeader), Status: r.status, Body: r.body}
	if inv.Pending() || (blocking && !result) {
		var rec entity.Activation
		if err := json.Unmarshal(r.body, &rec); err != nil {
			return nil, &APIError{Status: r.status, Message: "invoke " + name + ": undecodable answer: " + err.Error()}
		}
		if inv.ActivationID == "" {
			inv.ActivationID = rec.ActivationID
		}
		if !inv.Pending() {
			inv.Activation = &rec
		}
	}
	return inv, nil
}
