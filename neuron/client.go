package neuron

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
	"time"

	"github.com/helexa-ai/helexa-go/internal/oaierr"
)

// maxClientAnswer bounds the 2xx answers a Client decodes.
const maxClientAnswer = 16 << 20

// Doer sends HTTP requests; *http.Client is one.
//
// Concurrency: a Client calls Do from many goroutines at once.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Client is the typed client of a neuron's management API. Every non-2xx
// answer is returned as an *APIError, which errors.Is maps to the
// package's sentinel errors. A Client is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	doer  Doer
}

// NewClient returns a Client of the neuron at baseURL, an absolute http or
// https URL such as "http://10.0.0.5:31400" (a path prefix is kept).
func NewClient(baseURL string, opts ...ClientOption) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("neuron: NewClient: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("neuron: NewClient: %q is not an absolute http(s) URL", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("neuron: NewClient: %q has a query, fragment or user info", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	o := clientOptions{doer: http.DefaultClient}
	for _, opt := range opts {
		if opt != nil {
			opt.applyClient(&o)
		}
	}
	if o.doer == nil {
		return nil, errors.New("neuron: NewClient: nil Doer")
	}
	return &Client{base: u, token: o.token, doer: o.doer}, nil
}

// BaseURL returns a copy of the neuron's base URL.
func (c *Client) BaseURL() *url.URL {
	u := *c.base
	return &u
}

// Discovery returns GET /discovery.
func (c *Client) Discovery(ctx context.Context) (Discovery, error) {
	var d Discovery
	err := c.call(ctx, http.MethodGet, "/discovery", nil, &d)
	return d, err
}

// Health returns GET /health.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.call(ctx, http.MethodGet, "/health", nil, &h)
	return h, err
}

// Version returns GET /version.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	err := c.call(ctx, http.MethodGet, "/version", nil, &v)
	return v, err
}

// Models returns GET /models.
func (c *Client) Models(ctx context.Context) ([]ModelInfo, error) {
	var l modelList
	err := c.call(ctx, http.MethodGet, "/models", nil, &l)
	return l.Models, err
}

// Load asks the neuron to load spec and returns when the model is ready.
// Leaving early (ctx) does not stop the load on the neuron.
func (c *Client) Load(ctx context.Context, spec LoadSpec) (ModelInfo, error) {
	var m ModelInfo
	err := c.call(ctx, http.MethodPost, "/models/load", spec, &m)
	return m, err
}

// Check asks the neuron whether a load of spec could start there, without
// starting anything: POST /models/check. It returns nil when the model is
// already there or its load could start (after evictions: free VRAM is not
// checked), else the *APIError a load would get before starting an engine:
// ErrCannotStart (422 model_cannot_start: the engine's command or the
// model's local file is missing; errors.Is(err, ErrLoadFailed) holds too),
// ErrUnknownEngine, ErrInsufficientVRAM (the model does not fit the
// neuron's devices even when empty), ErrCUDAUnavailable,
// ErrShuttingDown, ErrInvalidRequest. Call it before evicting anything for
// a load.
func (c *Client) Check(ctx context.Context, spec LoadSpec) error {
	return c.call(ctx, http.MethodPost, "/models/check", spec, nil)
}

// Unload asks the neuron to stop model id; with force even while requests
// are in flight (otherwise ErrModelBusy).
func (c *Client) Unload(ctx context.Context, id string, force bool) error {
	return c.call(ctx, http.MethodPost, "/models/unload", UnloadRequest{ModelID: id, Force: force}, nil)
}

// ClaimReplica asks the neuron, as the arbiter of claim.Model's replicas,
// for the right to load one on claim.Neuron: POST /replicas/claim. A
// refusal (the model is at claim.Max) is a ClaimResult with Granted false
// and a nil error. Errors: ErrInvalidRequest (400), ErrClaimTableFull and
// ErrShuttingDown (503), and transport errors; on any of them the caller
// decides without the arbiter.
func (c *Client) ClaimReplica(ctx context.Context, claim ReplicaClaim) (ClaimResult, error) {
	var res ClaimResult
	err := c.call(ctx, http.MethodPost, "/replicas/claim", claim, &res)
	return res, err
}

// ReleaseReplica drops the replica claim of neuron for model: POST
// /replicas/release. Releasing a claim the neuron does not hold (expired,
// released, or forgotten in a restart) succeeds.
func (c *Client) ReleaseReplica(ctx context.Context, model, neuron string) error {
	return c.call(ctx, http.MethodPost, "/replicas/release", ReplicaRelease{Model: model, Neuron: neuron}, nil)
}

// Endpoint returns the URL at which the neuron serves inference for model id.
func (c *Client) Endpoint(ctx context.Context, id string) (string, error) {
	var e Endpoint
	err := c.call(ctx, http.MethodGet, "/models/"+url.PathEscape(id)+"/endpoint", nil, &e)
	return e.URL, err
}

// Logs returns the last lines printed by model id's engine, oldest first.
func (c *Client) Logs(ctx context.Context, id string) ([]string, error) {
	var l logsAnswer
	err := c.call(ctx, http.MethodGet, "/models/"+url.PathEscape(id)+"/logs", nil, &l)
	return l.Lines, err
}

// call sends a request to path (escaped) with in as JSON body (nil: none)
// and decodes a 2xx answer into out (nil: discard).
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	u := *c.base
	u.RawPath = c.base.EscapedPath() + path
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return fmt.Errorf("neuron: bad path %q: %w", path, err)
	}
	u.Path = p
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("neuron: encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("neuron: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.doer.Do(req)
	if err != nil {
		return fmt.Errorf("neuron: %s %s: %w", method, path, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxClientAnswer)).Decode(out); err != nil {
		return fmt.Errorf("neuron: decoding %s %s: %w", method, path, err)
	}
	return nil
}

// decodeAPIError turns a non-2xx answer into an *APIError.
func decodeAPIError(resp *http.Response) *APIError {
	e := &APIError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var v struct {
		Error      *oaierr.Body `json:"error"`
		FreeMB     uint64       `json:"free_mb"`
		RequiredMB uint64       `json:"required_mb"`
	}
	if json.Unmarshal(raw, &v) == nil && v.Error != nil {
		e.Code, e.Message = v.Error.Code, v.Error.Message
		e.FreeMB, e.RequiredMB = v.FreeMB, v.RequiredMB
		return e
	}
	msg := strings.TrimSpace(string(raw))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	e.Message = msg
	return e
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
