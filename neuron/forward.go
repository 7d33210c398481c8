package neuron

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/internal/httpx"
	"github.com/helexa-ai/helexa-go/internal/reqscan"
)

// handleInference forwards an OpenAI request to the engine of the model
// named in its body, through the model's admission gate.
func (a *Agent) handleInference(w http.ResponseWriter, r *http.Request) {
	if !a.enter() {
		writeError(w, ErrShuttingDown)
		return
	}
	defer a.leave()
	if err := checkJSON(r.Header); err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(w, r, a.opts.maxBodyBytes, a.opts.bodyTimeout)
	if err != nil {
		a.inferenceError(w, r, err)
		return
	}
	id, err := modelField(body)
	if err != nil {
		writeError(w, err)
		return
	}
	allow, err := allowance(r.Header)
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := a.h.Endpoint(id); err != nil {
		a.inferenceError(w, r, err)
		return
	}
	release, err := a.adm.acquire(r.Context(), id, principalOf(r))
	if err != nil {
		if r.Context().Err() != nil {
			return // the client left while queued: nobody to answer
		}
		writeError(w, err)
		return
	}
	defer release()
	// The endpoint may have changed (an engine restart) while queued.
	target, err := a.h.Endpoint(id)
	if err != nil {
		a.inferenceError(w, r, err)
		return
	}
	if e := accessOf(r.Context()); e != nil {
		e.model = id
	}
	ctx := context.WithValue(context.WithValue(r.Context(), allowanceKey{}, allow), modelKey{}, id)
	out := r.WithContext(ctx)
	out.Header = r.Header.Clone()
	out.Header.Del(HeaderMaxOutputTokens)
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	out.ContentLength = int64(len(body))
	a.proxies.get(id, target).ServeHTTP(w, out)
}

// modelKey is the request context key of the model a forwarded request
// is for.
type modelKey struct{}

// proxyError answers a request whose engine failed before answering: no
// byte of an answer has gone out. When the engine is no longer the
// model's loaded engine (its liveness probes failed and it was killed, it
// crashed and was seen to, it was unloaded), the answer says so: 503
// model_not_ready, or 404 model_not_found once unloaded, which cortex may
// retry elsewhere. Otherwise it is 502 upstream_connection_error. The
// transport error, which names addresses and ports, goes to the log only.
func (a *Agent) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		a.log.DebugContext(r.Context(), "neuron: client left during forward", "path", r.URL.Path, "err", err)
		return
	}
	id, _ := r.Context().Value(modelKey{}).(string)
	if id != "" {
		ep, epErr := a.h.Endpoint(id)
		switch {
		case errors.Is(epErr, ErrModelNotFound):
			a.log.WarnContext(r.Context(), "neuron: model unloaded during a request", "model", id, "path", r.URL.Path, "err", err)
			writeError(w, fmt.Errorf("%w: %s was unloaded during the request", ErrModelNotFound, id))
			return
		case epErr != nil && a.status(id) == StatusUnloading:
			a.log.WarnContext(r.Context(), "neuron: model unloaded during a request", "model", id, "path", r.URL.Path, "err", err)
			writeError(w, fmt.Errorf("%w: %s was unloaded during the request", ErrNotReady, id))
			return
		case epErr != nil || ep.Host != r.URL.Host:
			a.log.WarnContext(r.Context(), "neuron: engine failed during a request", "model", id, "path", r.URL.Path, "err", err)
			writeError(w, fmt.Errorf("%w: the engine of %s failed during the request and is being restarted", ErrNotReady, id))
			return
		}
	}
	a.log.WarnContext(r.Context(), "neuron: engine unreachable", "model", id, "path", r.URL.Path, "err", err)
	writeError(w, ErrUpstream)
}

// status returns model id's status at the harness ("" when unknown).
func (a *Agent) status(id string) ModelStatus {
	for _, m := range a.h.Models() {
		if m.ID == id {
			return m.Status
		}
	}
	return ""
}

// inferenceError answers an inference request with err. A client of the
// inference routes learns nothing of the host from it: a body that could
// not be read and an unexpected error are answered with a bare message,
// their detail logged.
func (a *Agent) inferenceError(w http.ResponseWriter, r *http.Request, err error) {
	var bre *bodyReadError
	if errors.As(err, &bre) {
		a.log.DebugContext(r.Context(), "neuron: reading a request body failed", "path", r.URL.Path, "err", bre.err)
	}
	if ae := apiErrorFor(err); ae.Code == CodeInternal {
		a.log.ErrorContext(r.Context(), "neuron: inference request failed", "path", r.URL.Path, "err", err)
		err = &APIError{Status: ae.Status, Code: ae.Code, Message: "internal error"}
	}
	writeError(w, err)
}

// principalOf is the admission principal of r: its account and key ids,
// or "" (the anonymous principal) when it has neither.
func principalOf(r *http.Request) string {
	acc, key := r.Header.Get(HeaderAccountID), r.Header.Get(HeaderKeyID)
	if acc == "" && key == "" {
		return ""
	}
	return acc + "\x00" + key
}

// checkJSON refuses a request body whose Content-Type is not JSON:
// application/json or application/*+json, with any parameters. A request
// without a Content-Type is taken as JSON (clients such as curl -d send
// form types by mistake far less often than none). Refusing the form and
// text types also keeps a browser page from posting to the API with a
// "simple" cross-site request.
func checkJSON(h http.Header) error {
	v := h.Get("Content-Type")
	if v == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(v)
	if err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return fmt.Errorf("%w: got %q", ErrUnsupportedMediaType, v)
}

// readBody reads r's body, at most limit bytes (a larger body is an
// *http.MaxBytesError, 413) within timeout (else an error wrapping
// httpx.ErrBodyTimeout, 408); any other failure is a *bodyReadError
// (ErrInvalidRequest).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) ([]byte, error) {
	body, err := httpx.ReadBody(w, r, limit, timeout)
	var mbe *http.MaxBytesError
	if err != nil && !errors.As(err, &mbe) && !errors.Is(err, httpx.ErrBodyTimeout) {
		return nil, &bodyReadError{err: err}
	}
	return body, err
}

// bodyReadError is a request body that could not be read. Its message
// leaves out the transport error, which names the addresses of the
// connection.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string   { return "neuron: invalid request: the body could not be read" }
func (e *bodyReadError) Unwrap() []error { return []error{ErrInvalidRequest, e.err} }

// modelField returns the "model" of a JSON request body, read by the
// gateway's own reader with its rules (internal/reqscan): valid UTF-8, one
// object, no duplicate keys and no variant of a field it reads, so that a
// body that reaches the neuron by another path than cortex is refused (400
// ambiguous_request) rather than read by the engine its own way.
func modelField(body []byte) (string, error) {
	var req reqscan.Request
	if err := reqscan.Scan(body, &req); err != nil {
		code := CodeInvalidBody
		var se *reqscan.Error
		if errors.As(err, &se) && se.Ambiguous {
			code = CodeAmbiguousRequest
		}
		return "", &APIError{Status: http.StatusBadRequest, Code: code, Message: err.Error()}
	}
	if req.Model == "" {
		return "", &APIError{Status: http.StatusBadRequest, Code: CodeMissingModel,
			Message: `request body has no "model"`}
	}
	return req.Model, nil
}

// allowanceKey is the request context key of the output allowance.
type allowanceKey struct{}

// allowance reads HeaderMaxOutputTokens: the output tokens the request may
// generate, 0 when it has none.
func allowance(h http.Header) (int64, error) {
	v := h.Get(HeaderMaxOutputTokens)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, &APIError{Status: http.StatusBadRequest, Code: CodeInvalidBody,
			Message: HeaderMaxOutputTokens + " must be a positive integer"}
	}
	return n, nil
}

// openAIModel and openAIModelList are GET /v1/models.
type openAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type openAIModelList struct {
	Object string        `json:"object"`
	Data   []openAIModel `json:"data"`
}

// handleOpenAIModels lists the loaded models in the OpenAI format.
func (a *Agent) handleOpenAIModels(w http.ResponseWriter, r *http.Request) {
	list := openAIModelList{Object: "list", Data: []openAIModel{}}
	for _, m := range a.h.Models() {
		if m.Status != StatusLoaded {
			continue
		}
		var created int64
		if !m.LoadedAt.IsZero() {
			created = m.LoadedAt.Unix()
		}
		list.Data = append(list.Data, openAIModel{ID: m.ID, Object: "model", Created: created, OwnedBy: "helexa"})
	}
	writeJSON(w, http.StatusOK, list)
}

// proxyCache holds one ReverseProxy per model, built again only when the
// model's endpoint URL changes. All proxies share one transport.
type proxyCache struct {
	transport    *resender
	errorLog     *log.Logger
	errorHandler func(http.ResponseWriter, *http.Request, error)

	mu      sync.Mutex
	byModel map[string]proxyEntry
}

type proxyEntry struct {
	target string
	rp     *httputil.ReverseProxy
}

// engineIdleTimeout is how long the neuron keeps an idle connection to an
// engine. It must be shorter than the engines' own keep-alive timeouts,
// so that the neuron, not the engine, closes an idle connection and never
// sends on one the engine is closing: llama-server (cpp-httplib) closes
// idle connections after 5 s, and so do the uvicorn servers of vLLM and
// SGLang by default. The Keep-Alive header an engine announces is not
// worth reading: llama-server announces timeout=5 yet closes the
// connection after every streamed answer, and Go's transport keeps one
// idle timeout for all hosts. Against local engines a new connection
// costs far less than any inference, so a short timeout costs nothing
// that matters.
const engineIdleTimeout = 2 * time.Second

func newProxyCache(errorLog *log.Logger, errorHandler func(http.ResponseWriter, *http.Request, error)) *proxyCache {
	// Engines are local or on the host's network: no proxy from the
	// environment, and enough idle connections for every slot.
	pooled := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       engineIdleTimeout,
		ExpectContinueTimeout: time.Second,
	}
	fresh := pooled.Clone()
	fresh.DisableKeepAlives = true
	return &proxyCache{
		transport:    &resender{pooled: pooled, fresh: fresh},
		errorLog:     errorLog,
		errorHandler: errorHandler,
		byModel:      make(map[string]proxyEntry),
	}
}

// resender sends a request to an engine over pooled connections and, when
// it failed on a reused connection before any byte of an answer came
// back, sends it once more on a new connection (fresh keeps none). It
// covers what Go's transport does not resend by itself: a request whose
// first bytes went out before the engine's close was seen, so that writing
// the rest failed (a broken pipe). See the package documentation for why
// this neither answers a request twice nor charges it twice.
type resender struct {
	pooled, fresh *http.Transport
}

// RoundTrip implements http.RoundTripper.
func (rs *resender) RoundTrip(req *http.Request) (*http.Response, error) {
	var reused, answered atomic.Bool
	trace := &httptrace.ClientTrace{
		GotConn:              func(i httptrace.GotConnInfo) { reused.Store(i.Reused) },
		GotFirstResponseByte: func() { answered.Store(true) },
	}
	resp, err := rs.pooled.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if err == nil || !reused.Load() || answered.Load() || req.Context().Err() != nil {
		return resp, err
	}
	again := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, err
		}
		body, gerr := req.GetBody()
		if gerr != nil {
			return nil, err
		}
		again.Body = body
	}
	return rs.fresh.RoundTrip(again)
}

// get returns the proxy to target for model id.
func (c *proxyCache) get(id string, target *url.URL) *httputil.ReverseProxy {
	key := target.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byModel[id]; ok && e.target == key {
		return e.rp
	}
	t := *target
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&t)
			// The neuron's token is not the engine's.
			pr.Out.Header.Del("Authorization")
			// An engine may close a pooled connection as the neuron
			// sends on it: llama-server closes it after every streamed
			// answer, although it announces keep-alive, and after 5 s
			// idle. Marked idempotent (a nil header is not sent), the
			// request is sent again by Go's transport when the old
			// connection failed before any answer came back, instead of
			// failing with a 502; the body can be sent again (GetBody).
			// The resender covers the failures the transport does not
			// resend. See the package documentation.
			pr.Out.Header["X-Idempotency-Key"] = nil
		},
		Transport:      c.transport,
		ModifyResponse: countOutput,
		FlushInterval:  -1, // SSE and every other answer pass through unbuffered
		ErrorLog:       c.errorLog,
		ErrorHandler:   c.errorHandler,
	}
	c.byModel[id] = proxyEntry{target: key, rp: rp}
	return rp
}

func (c *proxyCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byModel, id)
}

func (c *proxyCache) closeIdle() { c.transport.pooled.CloseIdleConnections() }
