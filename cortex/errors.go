package cortex

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/httpx"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/internal/redact"
	"github.com/helexa-ai/helexa-go/internal/reqscan"
	"github.com/helexa-ai/helexa-go/neuron"
)

// Error codes in the envelopes the gateway writes. A neuron's own error
// answers reach the client unchanged, with the neuron's codes.
const (
	CodeInvalidAPIKey         = "invalid_api_key"              // 401
	CodeRateLimitExceeded     = "rate_limit_exceeded"          // 429 + Retry-After
	CodeInsufficientQuota     = "insufficient_quota"           // 429
	CodeExceedsBudgetCap      = "request_exceeds_budget_cap"   // 400
	CodeModelNotPriced        = "model_not_priced"             // 400
	CodeContextLengthExceeded = "context_length_exceeded"      // 400
	CodeMissingModel          = "missing_model_field"          // 400
	CodeInvalidBody           = "invalid_request_body"         // 400
	CodeAmbiguousRequest      = "ambiguous_request"            // 400: decoders could read the body differently
	CodeModelNotDeployable    = "model_not_deployable"         // 400
	CodeCapabilityUnsupported = "model_capability_unsupported" // 400: the route is not among the model's capabilities
	CodeModelNotAllowed       = "model_not_allowed"            // 403: the key's allow-list does not include the model
	CodeModelNotFound         = "model_not_found"              // 404
	CodeRequestTimeout        = "request_timeout"              // 408: the body came too slowly
	CodeRequestTooLarge       = "request_too_large"            // 413
	CodeUnsupportedMediaType  = "unsupported_media_type"       // 415
	CodeServiceUnavailable    = "service_unavailable"          // 503 + Retry-After
	CodeShuttingDown          = "shutting_down"                // 503 + Retry-After
	CodeUpstreamConnection    = "upstream_connection_error"    // 502
	CodeUpstreamError         = "upstream_error"               // a neuron's answer that was not an error envelope
	CodeUpstreamTimeout       = "upstream_timeout"             // 504
	CodeModelLoadFailed       = "model_load_failed"            // 502
	CodeNotFound              = "not_found"                    // 404: no such route
	CodeMethodNotAllowed      = "method_not_allowed"           // 405
	CodeInternal              = "internal_error"               // 500
	CodeInvalidConfig         = "invalid_config"               // 400: POST /admin/reload
	CodeReloadFailed          = "reload_failed"                // 500: POST /admin/reload
)

// Errors of the request path. Route errors are in router.go.
var (
	// ErrShuttingDown: Shutdown has begun; new requests are refused (503
	// shutting_down with Retry-After).
	ErrShuttingDown = errors.New("cortex: shutting down")
	// ErrMissingModel: the request body has no "model" (400
	// missing_model_field).
	ErrMissingModel = errors.New("cortex: request body has no model")
	// ErrUnauthorized: the API key is missing or unknown and the gateway
	// requires one (401 invalid_api_key).
	ErrUnauthorized = errors.New("cortex: missing or unknown API key")
	// ErrContextLength: the prompt is longer than the model's context (400
	// context_length_exceeded); see *ContextLengthError.
	ErrContextLength = errors.New("cortex: prompt exceeds the model's context")
	// ErrUpstream: a neuron could not be reached, or answered the gateway
	// with something it cannot use (502 upstream_connection_error); see
	// *UpstreamError.
	ErrUpstream = errors.New("cortex: neuron unreachable")
	// ErrLoadFailed: a cold load failed; see *LoadError.
	ErrLoadFailed = errors.New("cortex: model load failed")
	// ErrUnsupportedMediaType: the request's Content-Type is not JSON (415
	// unsupported_media_type).
	ErrUnsupportedMediaType = errors.New("cortex: the request body must be JSON (Content-Type: application/json)")
	// ErrModelNotPriced: the key's budget counts US dollars and the model
	// has no cost in the catalogue, so the request cannot be priced (400
	// model_not_priced). Nothing was reserved.
	ErrModelNotPriced = errors.New("cortex: model not priced")
	// ErrExceedsBudgetCap: the request's worst case is more than the key's
	// whole cap per rolling window, so no wait can make it fit (400
	// request_exceeds_budget_cap); see *ExceedsCapError.
	ErrExceedsBudgetCap = errors.New("cortex: request exceeds the budget cap")
)

// ExceedsCapError is a request whose smallest acceptable reservation is
// more than the key's whole cap per rolling window: retrying after the
// window resets cannot help. errors.Is(err, ErrExceedsBudgetCap) holds.
type ExceedsCapError struct {
	// Requested is the reservation the request needs, in the key's unit:
	// its worst case, or with clamp_max_tokens its prompt and one output
	// token.
	Requested entitlements.Amount
	// Cap is the key's cap per window.
	Cap entitlements.Amount
	// Unit is what the amounts count.
	Unit entitlements.Unit
}

// Error implements error.
func (e *ExceedsCapError) Error() string {
	return fmt.Sprintf("cortex: the request needs up to %d (%s) but the key's cap per window is %d", e.Requested, e.Unit, e.Cap)
}

// Is reports whether target is ErrExceedsBudgetCap.
func (e *ExceedsCapError) Is(target error) bool { return target == ErrExceedsBudgetCap }

// ContextLengthError is a request whose estimated prompt is over the
// model's limit. errors.Is(err, ErrContextLength) holds.
type ContextLengthError struct {
	// Model is the model id.
	Model string
	// Limit is the limit exceeded: the model's input limit, else its
	// context.
	Limit int64
	// Estimate is the estimated prompt, in tokens.
	Estimate int64
}

// Error implements error.
func (e *ContextLengthError) Error() string {
	return fmt.Sprintf("cortex: the prompt (about %d tokens) exceeds the %d-token limit of model %s", e.Estimate, e.Limit, e.Model)
}

// Is reports whether target is ErrContextLength.
func (e *ContextLengthError) Is(target error) bool { return target == ErrContextLength }

// UpstreamError is a failed call to a neuron: a connection that failed, or
// an endpoint the gateway refuses. errors.Is(err, ErrUpstream) holds.
type UpstreamError struct {
	// Neuron is the name of the neuron.
	Neuron string
	// Err is the cause.
	Err error
}

// Error implements error.
func (e *UpstreamError) Error() string {
	return fmt.Sprintf("cortex: neuron %s: %v", e.Neuron, e.Err)
}

// Unwrap returns Err.
func (e *UpstreamError) Unwrap() error { return e.Err }

// Is reports whether target is ErrUpstream.
func (e *UpstreamError) Is(target error) bool { return target == ErrUpstream }

// LoadError is a cold load that failed: unloading a victim, or loading the
// model. errors.Is(err, ErrLoadFailed) holds, and errors.Is and errors.As
// see the cause (a *neuron.APIError, neuron.ErrModelBusy,
// neuron.ErrInsufficientVRAM, ...).
type LoadError struct {
	// Neuron and Model name the load.
	Neuron, Model string
	// Op is "unload <victim>" or "load".
	Op string
	// Err is the cause.
	Err error
	// RetryAfter is the Retry-After to send when the load may succeed
	// later (VRAM still in use, a busy victim); 0 when retrying does not
	// help.
	RetryAfter time.Duration
}

// Error implements error.
func (e *LoadError) Error() string {
	return fmt.Sprintf("cortex: %s of %s on neuron %s: %v", e.Op, e.Model, e.Neuron, e.Err)
}

// Unwrap returns Err.
func (e *LoadError) Unwrap() error { return e.Err }

// Is reports whether target is ErrLoadFailed.
func (e *LoadError) Is(target error) bool { return target == ErrLoadFailed }

// routeError is a request for a path the gateway does not serve (404), or
// with a method the path does not take (405).
type routeError struct {
	method bool // 405 rather than 404
	msg    string
}

func (e *routeError) Error() string { return e.msg }

// httpError is an error as the gateway answers it.
type httpError struct {
	status     int
	code       string
	msg        string
	retryAfter time.Duration
}

// httpErrorFor maps err to the gateway's answer. It is the one place where
// errors become statuses and codes; DESIGN.md has the table. Messages of
// 5xx answers do not name hosts or addresses: the log has the details.
func httpErrorFor(err error, retryHint time.Duration) httpError {
	msg := strings.TrimPrefix(err.Error(), "cortex: ")
	e := func(status int, code string) httpError { return httpError{status: status, code: code, msg: msg} }
	var (
		retry   *route.RetryError
		limited *entitlements.LimitError
		budget  *entitlements.BudgetError
		unavail *entitlements.UnavailableError
		mbe     *http.MaxBytesError
		scanErr *reqscan.Error
		load    *LoadError
		apiErr  *neuron.APIError
	)
	var rerr *routeError
	var refusal *route.Refusal
	var reload *reloadError
	switch {
	case errors.As(err, &reload):
		// An admin's own request: the whole error, lines and all.
		_, badConfig := errors.AsType[*ConfigError](reload.err)
		_, badCatalogue := errors.AsType[*catalogue.Error](reload.err)
		if badConfig || badCatalogue {
			return e(http.StatusBadRequest, CodeInvalidConfig)
		}
		return e(http.StatusInternalServerError, CodeReloadFailed)
	case errors.As(err, &refusal):
		h := httpError{status: refusal.Status, code: refusal.Code, msg: refusal.Message, retryAfter: refusal.RetryAfter}
		if h.status < 400 || h.status > 599 {
			h.status = http.StatusInternalServerError
		}
		if h.code == "" {
			h.code = CodeInternal
			if h.status < 500 {
				h.code = CodeInvalidBody
			}
		}
		return h
	case errors.As(err, &rerr):
		if rerr.method {
			return e(http.StatusMethodNotAllowed, CodeMethodNotAllowed)
		}
		return e(http.StatusNotFound, CodeNotFound)
	case errors.Is(err, ErrShuttingDown):
		h := e(http.StatusServiceUnavailable, CodeShuttingDown)
		h.retryAfter = retryHint
		return h
	case errors.Is(err, ErrUnauthorized), errors.Is(err, entitlements.ErrInvalidKey):
		h := e(http.StatusUnauthorized, CodeInvalidAPIKey)
		h.msg = "missing or unknown API key: send it as \"Authorization: Bearer <key>\" or \"x-api-key: <key>\""
		return h
	case errors.As(err, &limited):
		h := e(http.StatusTooManyRequests, CodeRateLimitExceeded)
		h.msg = strings.TrimPrefix(limited.Error(), "entitlements: ")
		h.retryAfter = max(limited.RetryAfter, time.Second)
		return h
	case errors.Is(err, ErrExceedsBudgetCap):
		h := e(http.StatusBadRequest, CodeExceedsBudgetCap)
		h.msg += "; lower max_tokens (or the prompt)"
		return h
	case errors.Is(err, ErrModelNotPriced):
		return e(http.StatusBadRequest, CodeModelNotPriced)
	case errors.As(err, &budget):
		if budget.Kind == entitlements.RateLimited {
			h := e(http.StatusTooManyRequests, CodeRateLimitExceeded)
			h.msg = fmt.Sprintf("the key's budget for the current window does not cover this request (up to %d needed, %d left); retry after the window resets",
				budget.Requested, budget.Available)
			h.retryAfter = max(budget.RetryAfter, time.Second)
			return h
		}
		h := e(http.StatusTooManyRequests, CodeInsufficientQuota)
		h.msg = fmt.Sprintf("the key's balance does not cover this request (up to %d needed, %d left)", budget.Requested, budget.Available)
		return h
	case errors.As(err, &unavail):
		h := e(http.StatusServiceUnavailable, CodeServiceUnavailable)
		h.msg = "the budget authority is unavailable"
		h.retryAfter = retryHint
		if unavail.RetryAfter > 0 {
			h.retryAfter = unavail.RetryAfter
		}
		return h
	case errors.Is(err, httpx.ErrBodyTimeout):
		h := e(http.StatusRequestTimeout, CodeRequestTimeout)
		h.msg = "the request body did not arrive within the gateway's body read timeout"
		return h
	case errors.As(err, &mbe):
		h := e(http.StatusRequestEntityTooLarge, CodeRequestTooLarge)
		h.msg = fmt.Sprintf("request body over %d bytes", mbe.Limit)
		return h
	case errors.Is(err, ErrUnsupportedMediaType):
		return e(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType)
	case errors.Is(err, ErrMissingModel):
		return e(http.StatusBadRequest, CodeMissingModel)
	case errors.As(err, &scanErr):
		h := e(http.StatusBadRequest, CodeInvalidBody)
		if scanErr.Ambiguous {
			h.code = CodeAmbiguousRequest
		}
		h.msg = scanErr.Error()
		return h
	case errors.Is(err, ErrContextLength):
		return e(http.StatusBadRequest, CodeContextLengthExceeded)
	case errors.Is(err, ErrModelNotAllowed):
		return e(http.StatusForbidden, CodeModelNotAllowed)
	case errors.Is(err, ErrCapabilityUnsupported):
		return e(http.StatusBadRequest, CodeCapabilityUnsupported)
	case errors.Is(err, route.ErrModelNotFound):
		return e(http.StatusNotFound, CodeModelNotFound)
	case errors.Is(err, route.ErrNoFeasibleNeuron):
		return e(http.StatusBadRequest, CodeModelNotDeployable)
	case errors.As(err, &retry):
		h := e(http.StatusServiceUnavailable, CodeServiceUnavailable)
		h.retryAfter = retry.RetryAfter
		return h
	case errors.As(err, &load):
		if load.RetryAfter > 0 {
			h := e(http.StatusServiceUnavailable, CodeServiceUnavailable)
			h.msg = fmt.Sprintf("model %s cannot be loaded now: %s", load.Model, loadCause(load.Err))
			h.retryAfter = load.RetryAfter
			return h
		}
		h := e(http.StatusBadGateway, CodeModelLoadFailed)
		h.msg = fmt.Sprintf("model %s failed to load: %s", load.Model, loadCause(load.Err))
		return h
	case errors.Is(err, errStreamIdle):
		h := e(http.StatusGatewayTimeout, CodeUpstreamTimeout)
		h.msg = "the neuron sent nothing within the stream idle timeout"
		return h
	case errors.Is(err, ErrUpstream):
		h := e(http.StatusBadGateway, CodeUpstreamConnection)
		h.msg = "the neuron serving the model could not be reached"
		return h
	case errors.As(err, &apiErr):
		// A management call answered with an error outside a load.
		h := e(http.StatusBadGateway, CodeUpstreamConnection)
		h.msg = "the neuron serving the model answered with an error"
		return h
	}
	h := e(http.StatusInternalServerError, CodeInternal)
	h.msg = "internal error"
	return h
}

// loadCause describes a load failure for the client and the status
// page's events: the neuron's code, and its message only when it tells
// nothing of the inside (redact.Clean: a failed load's message often
// carries the engine's log, with paths and ports); never a transport error.
// The whole error goes to the log.
func loadCause(err error) string {
	var ae *neuron.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Message != "" && redact.Clean(ae.Message) && ae.Code != "":
			return ae.Code + ": " + ae.Message
		case ae.Code != "":
			return ae.Code
		case redact.Clean(ae.Message):
			return ae.Message
		}
		return "the neuron refused it"
	}
	switch {
	case errors.Is(err, ErrShuttingDown):
		return "the gateway is shutting down"
	case errors.Is(err, errAtMaxReplicas):
		return "it has max_replicas replicas, none on a neuron this gateway reaches"
	}
	return "the neuron could not be reached"
}

// HeaderShouldRetry tells a client whether retrying the request can help:
// the gateway sends "false" with the answers that retrying cannot change
// (see httpError.retryable). The official OpenAI and Anthropic clients obey
// it; without it they retry every 408, 409, 429 and 5xx.
const HeaderShouldRetry = "X-Should-Retry"

// retryable reports whether a client may retry the answer as it is: the
// 5xx answers, 408 (a body that came too slowly), 409, and a 429 with
// Retry-After (a rate limit). Every other 4xx of the gateway, an
// insufficient_quota 429 among them, says something of the request or the
// key that the same request cannot change.
func (h httpError) retryable() bool {
	switch {
	case h.status >= 500, h.status == http.StatusRequestTimeout, h.status == http.StatusConflict:
		return true
	case h.status == http.StatusTooManyRequests:
		return h.retryAfter > 0
	}
	return h.status < 400
}

// writeError writes err as an OpenAI error envelope.
func writeError(w http.ResponseWriter, err error, retryHint time.Duration) httpError {
	h := httpErrorFor(err, retryHint)
	writeHTTPError(w, h)
	return h
}

func writeHTTPError(w http.ResponseWriter, h httpError) {
	if !h.retryable() {
		w.Header().Set(HeaderShouldRetry, "false")
	}
	body := oaierr.Body{Message: h.msg, Type: oaierr.TypeForStatus(h.status), Code: h.code}
	switch h.code {
	case CodeInsufficientQuota:
		body.Type = oaierr.TypeInsufficient
	case CodeInvalidAPIKey:
		w.Header().Set("WWW-Authenticate", `Bearer realm="helexa"`)
	}
	oaierr.WriteBody(w, h.status, body, h.retryAfter)
}
