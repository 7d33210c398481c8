package neuron

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/internal/httpx"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
)

// Error codes the Agent sends besides the Code* constants of the management
// API contract.
const (
	CodeNotFound             = "not_found"                 // 404: no such route
	CodeMethodNotAllowed     = "method_not_allowed"        // 405: route exists, wrong method
	CodeRequestTimeout       = "request_timeout"           // 408: the body came too slowly
	CodeRequestTooLarge      = "request_too_large"         // 413: body over the size limit
	CodeUnsupportedMediaType = "unsupported_media_type"    // 415: a body that is not JSON
	CodeUpstreamConnection   = "upstream_connection_error" // 502: the engine could not be reached
	CodeInternal             = "internal_error"            // 500: anything unexpected
)

// Sentinel errors of the Agent's admission and request parsing. Client maps
// the matching codes back to them.
var (
	// ErrQueueFull: the model's admission queue is full (503 queue_full).
	ErrQueueFull = errors.New("neuron: admission queue full")
	// ErrQueueTimeout: a request waited max_wait without getting a slot
	// (503 queue_timeout).
	ErrQueueTimeout = errors.New("neuron: timed out in the admission queue")
	// ErrRateLimited: the principal already has per_principal requests in
	// flight or queued for the model (429 rate_limit_exceeded).
	ErrRateLimited = errors.New("neuron: per-principal request limit reached")
	// ErrInvalidRequest: the request body is malformed or lacks a required
	// field (400 invalid_request_body or missing_model_field).
	ErrInvalidRequest = errors.New("neuron: invalid request")
	// ErrUpstream: the model's engine could not be reached (502
	// upstream_connection_error).
	ErrUpstream = errors.New("neuron: engine unreachable")
	// ErrUnsupportedMediaType: a request body whose Content-Type is not JSON
	// (415 unsupported_media_type).
	ErrUnsupportedMediaType = errors.New("neuron: the body must be JSON (Content-Type: application/json)")
)

// Retry-After hints the Agent sends with its 429 and 503 answers.
const (
	retryAfterBusy     = time.Second     // queue_full, queue_timeout, rate_limit_exceeded
	retryAfterNotReady = 5 * time.Second // model_not_ready (loading, recovering, unloading)
	retryAfterShutdown = 5 * time.Second // shutting_down: try another neuron
)

// APIError is a non-2xx answer of a neuron: the OpenAI error envelope
// decoded by Client, and the value the Agent writes for its own errors.
// errors.Is maps Code to the package's sentinel errors (model_not_found to
// ErrModelNotFound, insufficient_vram to ErrInsufficientVRAM, and so on), and
// errors.As of an insufficient_vram answer yields a *VRAMError.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the envelope's "code" (one of the Code* constants), or empty
	// when the answer was not an envelope.
	Code string
	// Message is the envelope's "message", or the start of the body.
	Message string
	// RetryAfter is the Retry-After header; zero when absent.
	RetryAfter time.Duration
	// FreeMB and RequiredMB are set for insufficient_vram.
	FreeMB, RequiredMB uint64
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = http.StatusText(e.Status)
	}
	if e.Message == "" {
		return fmt.Sprintf("neuron: %d %s", e.Status, code)
	}
	return fmt.Sprintf("neuron: %d %s: %s", e.Status, code, e.Message)
}

// Is reports whether target is the sentinel error for e.Code.
func (e *APIError) Is(target error) bool {
	s := sentinelForCode(e.Code)
	return s != nil && errors.Is(s, target)
}

// As sets a **VRAMError target from an insufficient_vram answer.
func (e *APIError) As(target any) bool {
	if v, ok := target.(**VRAMError); ok && e.Code == CodeInsufficientVRAM {
		*v = &VRAMError{FreeMB: e.FreeMB, RequiredMB: e.RequiredMB}
		return true
	}
	return false
}

// sentinelForCode is the sentinel error an envelope code stands for, or nil.
func sentinelForCode(code string) error {
	switch code {
	case CodeModelNotFound:
		return ErrModelNotFound
	case CodeModelNotReady:
		return ErrNotReady
	case CodeModelBusy:
		return ErrModelBusy
	case CodeInsufficientVRAM:
		return ErrInsufficientVRAM
	case CodeCUDAUnavailable:
		return ErrCUDAUnavailable
	case CodeUnknownEngine:
		return ErrUnknownEngine
	case CodeLoadFailed:
		return ErrLoadFailed
	case CodeCannotStart:
		return ErrCannotStart
	case CodeShuttingDown:
		return ErrShuttingDown
	case CodeInvalidToken:
		return ErrUnauthorized
	case CodeQueueFull:
		return ErrQueueFull
	case CodeQueueTimeout:
		return ErrQueueTimeout
	case CodeRateLimitExceeded:
		return ErrRateLimited
	case CodeInvalidBody, CodeMissingModel:
		return ErrInvalidRequest
	case CodeUpstreamConnection:
		return ErrUpstream
	case CodeUnsupportedMediaType:
		return ErrUnsupportedMediaType
	case CodeClaimTableFull:
		return ErrClaimTableFull
	}
	return nil
}

// apiErrorFor maps err to the HTTP answer the Agent gives for it. It is the
// one place where errors become statuses and codes.
func apiErrorFor(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	msg := strings.TrimPrefix(err.Error(), "neuron: ")
	e := func(status int, code string, retry time.Duration) *APIError {
		return &APIError{Status: status, Code: code, Message: msg, RetryAfter: retry}
	}
	var ve *VRAMError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ve):
		a := e(http.StatusConflict, CodeInsufficientVRAM, 0)
		a.FreeMB, a.RequiredMB = ve.FreeMB, ve.RequiredMB
		return a
	case errors.As(err, &mbe):
		return e(http.StatusRequestEntityTooLarge, CodeRequestTooLarge, 0)
	case errors.Is(err, httpx.ErrBodyTimeout):
		return e(http.StatusRequestTimeout, CodeRequestTimeout, 0)
	case errors.Is(err, ErrUnsupportedMediaType):
		return e(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, 0)
	case errors.Is(err, ErrUnauthorized):
		return e(http.StatusUnauthorized, CodeInvalidToken, 0)
	case errors.Is(err, ErrShuttingDown):
		return e(http.StatusServiceUnavailable, CodeShuttingDown, retryAfterShutdown)
	case errors.Is(err, ErrModelNotFound):
		return e(http.StatusNotFound, CodeModelNotFound, 0)
	case errors.Is(err, ErrNotReady):
		return e(http.StatusServiceUnavailable, CodeModelNotReady, retryAfterNotReady)
	case errors.Is(err, ErrModelBusy):
		return e(http.StatusConflict, CodeModelBusy, 0)
	case errors.Is(err, ErrInsufficientVRAM):
		return e(http.StatusConflict, CodeInsufficientVRAM, 0)
	case errors.Is(err, ErrCUDAUnavailable):
		return e(http.StatusServiceUnavailable, CodeCUDAUnavailable, 0)
	case errors.Is(err, ErrUnknownEngine):
		return e(http.StatusBadRequest, CodeUnknownEngine, 0)
	case errors.Is(err, ErrCannotStart):
		return e(http.StatusUnprocessableEntity, CodeCannotStart, 0)
	case errors.Is(err, ErrLoadFailed):
		return e(http.StatusBadGateway, CodeLoadFailed, 0)
	case errors.Is(err, ErrQueueFull):
		return e(http.StatusServiceUnavailable, CodeQueueFull, retryAfterBusy)
	case errors.Is(err, ErrQueueTimeout):
		return e(http.StatusServiceUnavailable, CodeQueueTimeout, retryAfterBusy)
	case errors.Is(err, ErrRateLimited):
		return e(http.StatusTooManyRequests, CodeRateLimitExceeded, retryAfterBusy)
	case errors.Is(err, ErrInvalidRequest):
		return e(http.StatusBadRequest, CodeInvalidBody, 0)
	case errors.Is(err, ErrUpstream):
		return e(http.StatusBadGateway, CodeUpstreamConnection, 0)
	case errors.Is(err, ErrClaimTableFull):
		return e(http.StatusServiceUnavailable, CodeClaimTableFull, 0)
	}
	return e(http.StatusInternalServerError, CodeInternal, 0)
}

// vramEnvelope is the insufficient_vram answer: the envelope plus the free
// and required MiB at the top level.
type vramEnvelope struct {
	Error      oaierr.Body `json:"error"`
	FreeMB     uint64      `json:"free_mb"`
	RequiredMB uint64      `json:"required_mb"`
}

// writeError writes err as an OpenAI error envelope.
func writeError(w http.ResponseWriter, err error) {
	ae := apiErrorFor(err)
	body := oaierr.Body{Message: ae.Message, Type: oaierr.TypeForStatus(ae.Status), Code: ae.Code}
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="neuron"`)
	}
	if ae.Code != CodeInsufficientVRAM {
		oaierr.WriteBody(w, ae.Status, body, ae.RetryAfter)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.Status)
	_ = json.NewEncoder(w).Encode(vramEnvelope{Error: body, FreeMB: ae.FreeMB, RequiredMB: ae.RequiredMB})
}
