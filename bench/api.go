package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxClients is the most concurrent requests a section issues; the transport keeps that many
// idle connections so that a measurement never pays for new TCP handshakes.
const maxClients = 64

// requestTimeout guards single requests; deploys of Go source compile and may take long.
const requestTimeout = 3 * time.Minute

// newHTTPClient returns a keep-alive client shared by the coda and the direct measurements, so
// both see the same client cost.
func newHTTPClient() *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * maxClients,
		MaxIdleConnsPerHost: maxClients,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: requestTimeout}
}

// API talks to coda's OpenWhisk REST API in the default namespace.
type API struct {
	base string // http://host:port/api/v1/namespaces/_
	auth string // "UUID:KEY"
	hc   *http.Client
}

func newAPI(apihost, auth string) *API {
	return &API{base: apihost + "/api/v1/namespaces/_", auth: auth, hc: newHTTPClient()}
}

// Action is the body of PUT /actions/NAME.
type Action struct {
	Exec        Exec       `json:"exec"`
	Annotations []KeyValue `json:"annotations,omitempty"`
	Limits      *Limits    `json:"limits,omitempty"`
}

type Exec struct {
	Kind   string `json:"kind"`
	Code   string `json:"code"`
	Binary bool   `json:"binary,omitempty"`
}

type KeyValue struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

type Limits struct {
	Timeout     int `json:"timeout,omitempty"` // ms
	Memory      int `json:"memory,omitempty"`  // MB
	Concurrency int `json:"concurrency,omitempty"`
}

// Activation is the part of an activation record the bench reads.
type Activation struct {
	ActivationID string     `json:"activationId"`
	Start        int64      `json:"start"`
	End          int64      `json:"end"`
	Duration     int64      `json:"duration"`
	Annotations  []KeyValue `json:"annotations"`
	Response     struct {
		Status  string          `json:"status"`
		Success bool            `json:"success"`
		Result  json.RawMessage `json:"result"`
	} `json:"response"`
}

// Annotation returns the value of annotation key, nil when absent.
func (a *Activation) Annotation(key string) any {
	for _, kv := range a.Annotations {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

// PutAction creates or replaces an action.
func (a *API) PutAction(ctx context.Context, name string, act Action) error {
	body, err := json.Marshal(act)
	if err != nil {
		return fmt.Errorf("encode action: %w", err)
	}
	_, err = a.do(ctx, http.MethodPut, "/actions/"+url.PathEscape(name)+"?overwrite=true", body)
	if err != nil {
		return fmt.Errorf("deploy %s: %w", name, err)
	}
	return nil
}

// Invoker returns a function that invokes name blocking with result=true and the given JSON
// body, reading and discarding the answer: the hot loop of the warm measurements.
func (a *API) Invoker(name string, body []byte) func(context.Context) error {
	u := a.base + "/actions/" + url.PathEscape(name) + "?blocking=true&result=true"
	return func(ctx context.Context) error {
		_, err := a.doURL(ctx, http.MethodPost, u, body)
		return err
	}
}

// Invoke invokes name blocking (result=false) and returns the activation record.
func (a *API) Invoke(ctx context.Context, name string, params any) (*Activation, error) {
	body, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("encode params: %w", err)
	}
	b, err := a.do(ctx, http.MethodPost, "/actions/"+url.PathEscape(name)+"?blocking=true", body)
	if err != nil {
		return nil, fmt.Errorf("invoke %s: %w", name, err)
	}
	var act Activation
	if err := json.Unmarshal(b, &act); err != nil {
		return nil, fmt.Errorf("invoke %s: decode %q: %w", name, trunc(b), err)
	}
	if !act.Response.Success {
		return &act, fmt.Errorf("invoke %s: not successful: %s %s", name, act.Response.Status, act.Response.Result)
	}
	return &act, nil
}

// Activation fetches a record.
func (a *API) Activation(ctx context.Context, id string) (*Activation, error) {
	b, err := a.do(ctx, http.MethodGet, "/activations/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, fmt.Errorf("get activation %s: %w", id, err)
	}
	var act Activation
	if err := json.Unmarshal(b, &act); err != nil {
		return nil, fmt.Errorf("get activation %s: decode: %w", id, err)
	}
	return &act, nil
}

// WaitEnd polls an activation until its end is recorded.
func (a *API) WaitEnd(ctx context.Context, id string, every time.Duration) (*Activation, error) {
	for {
		act, err := a.Activation(ctx, id)
		if err == nil && act.End != 0 {
			return act, nil
		}
		// A 404 right after the response only means the record is not stored yet.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("activation %s: no end: %w (last error %v)", id, ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

func (a *API) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	return a.doURL(ctx, method, a.base+path, body)
}

func (a *API) doURL(ctx context.Context, method, u string, body []byte) ([]byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	user, pass, _ := strings.Cut(a.auth, ":")
	req.SetBasicAuth(user, pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return b, fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, trunc(b))
	}
	return b, nil
}

func trunc(b []byte) string {
	const max = 300
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
