// Package client is a small Go client of Coda's OpenWhisk-compatible REST API (v1). The coda
// CLI, the end-to-end tests and the benchmark all use it, so it stays plain: one method per
// endpoint, entity types from package entity, and *APIError for every non-2xx answer.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// DefaultAPIHost is where `coda serve` listens unless told otherwise.
const DefaultAPIHost = "http://127.0.0.1:3233"

// ActivationIDHeader carries the activation id of every invocation answer.
const ActivationIDHeader = "x-openwhisk-activation-id"

// maxErrorBody bounds how much of an unexpected (non-JSON) error body ends up in a message.
const maxErrorBody = 512

// Client talks to one Coda API as one namespace identity. It is safe for concurrent use as
// long as Trace is not changed while requests run.
type Client struct {
	base *url.URL // ends in /api/v1
	uuid string
	key  string
	http *http.Client

	// Trace, when set, receives every request and response (the CLI's -v). The key is masked.
	Trace io.Writer
}

// New returns a client of apihost ("host:port", "http://host:port" or a full ".../api/v1" URL)
// authenticating with auth ("UUID:KEY"). A nil httpClient means http.DefaultClient.
func New(apihost, auth string, httpClient *http.Client) (*Client, error) {
	base, err := BaseURL(apihost)
	if err != nil {
		return nil, err
	}
	uuid, key, ok := strings.Cut(auth, ":")
	if !ok || uuid == "" || key == "" {
		return nil, errors.New("auth key must have the form UUID:KEY")
	}
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &Client{base: base, uuid: uuid, key: key, http: httpClient}, nil
}

// BaseURL turns an API host as users write it into the API's base URL (…/api/v1).
func BaseURL(apihost string) (*url.URL, error) {
	h := strings.TrimSpace(apihost)
	if h == "" {
		h = DefaultAPIHost
	}
	if !strings.Contains(h, "://") {
		h = "http://" + h
	}
	u, err := url.Parse(h)
	if err != nil {
		return nil, fmt.Errorf("api host %q: %w", apihost, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("api host %q: scheme must be http or https", apihost)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("api host %q has no host", apihost)
	}
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, "/api/v1") {
		p += "/api/v1"
	}
	u.Path, u.RawPath, u.RawQuery, u.Fragment = p, "", "", ""
	return u, nil
}

// BaseURL is the API's base URL (…/api/v1).
func (c *Client) BaseURL() string { return c.base.String() }

// APIError is a non-2xx answer: OpenWhisk's {"error": msg, "code": id} and the HTTP status.
type APIError struct {
	Status  int
	Message string
	Code    string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return fmt.Sprintf("%s (code %s)", e.Message, e.Code)
}

// IsStatus reports whether err is an *APIError with the given HTTP status.
func IsStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}

// SplitName resolves "name" or "/namespace/name" to a namespace ("_" = own) and a name.
func SplitName(name string) (ns, n string) {
	if rest, ok := strings.CutPrefix(name, "/"); ok {
		if ns, n, ok := strings.Cut(rest, "/"); ok {
			return ns, n
		}
	}
	return "_", name
}

// endpoint builds base + path segments (each escaped) + query.
func (c *Client) endpoint(q url.Values, segments ...string) string {
	u := *c.base
	var b strings.Builder
	b.WriteString(u.Path)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	u.Path = ""
	s := u.String() + b.String()
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// response is one raw answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request with a JSON body (when in is non-nil) and returns the raw answer;
// only transport failures are errors here.
func (c *Client) do(ctx context.Context, method, target string, in any) (*response, error) {
	var body []byte
	if in != nil {
		var err error
		if raw, ok := in.(json.RawMessage); ok {
			body = raw
		} else if body, err = json.Marshal(in); err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.SetBasicAuth(c.uuid, c.key)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.traceRequest(req, body)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, target, err)
	}
	c.traceResponse(resp, out)
	return &response{status: resp.StatusCode, header: resp.Header, body: out}, nil
}

// call sends a request and decodes a 2xx JSON answer into out (when non-nil).
func (c *Client) call(ctx context.Context, method, target string, in, out any) error {
	r, err := c.do(ctx, method, target, in)
	if err != nil {
		return err
	}
	if r.status < 200 || r.status > 299 {
		return apiError(r)
	}
	if out == nil || len(bytes.TrimSpace(r.body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, target, err)
	}
	return nil
}

// apiError decodes an error body; a body that is not OpenWhisk's shape becomes the message.
func apiError(r *response) *APIError {
	e := &APIError{Status: r.status}
	var body struct {
		Error string          `json:"error"`
		Code  json.RawMessage `json:"code"`
	}
	if json.Unmarshal(r.body, &body) == nil && body.Error != "" {
		e.Message = body.Error
		var s string
		if json.Unmarshal(body.Code, &s) == nil {
			e.Code = s
		} else if len(body.Code) > 0 && string(body.Code) != "null" {
			e.Code = string(body.Code) // OpenWhisk once sent numeric codes
		}
		return e
	}
	msg := strings.TrimSpace(string(r.body))
	if len(msg) > maxErrorBody {
		msg = msg[:maxErrorBody] + "…"
	}
	if msg == "" {
		msg = http.StatusText(r.status)
	}
	e.Message = fmt.Sprintf("%d %s", r.status, msg)
	return e
}

func (c *Client) traceRequest(req *http.Request, body []byte) {
	if c.Trace == nil {
		return
	}
	fmt.Fprintf(c.Trace, "REQUEST: %s %s\n", req.Method, req.URL)
	fmt.Fprintf(c.Trace, "Authorization: Basic %s:***\n", c.uuid)
	if len(body) > 0 {
		fmt.Fprintf(c.Trace, "Body: %s\n", body)
	}
}

func (c *Client) traceResponse(resp *http.Response, body []byte) {
	if c.Trace == nil {
		return
	}
	fmt.Fprintf(c.Trace, "RESPONSE: %s\n", resp.Status)
	if id := resp.Header.Get(ActivationIDHeader); id != "" {
		fmt.Fprintf(c.Trace, "%s: %s\n", ActivationIDHeader, id)
	}
	fmt.Fprintf(c.Trace, "Body: %s\n", bytes.TrimSpace(body))
}

// itoa formats an integer query parameter.
func itoa[T int | int64](v T) string { return strconv.FormatInt(int64(v), 10) }
