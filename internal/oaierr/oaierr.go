// Package oaierr writes and reads the OpenAI error envelope,
// {"error":{"message","type","code","param"}}, shared by the neuron agent,
// its client and the cortex gateway so that the shape is defined once.
package oaierr

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Body is the inner object of the envelope.
type Body struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Code    string  `json:"code,omitempty"`
	Param   *string `json:"param"`
}

// Envelope is the OpenAI error envelope.
type Envelope struct {
	Error Body `json:"error"`
}

// Error types used in the envelope's "type" field.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypeRateLimit      = "rate_limit_error"
	TypeInsufficient   = "insufficient_quota"
	TypeServer         = "server_error"
	TypeNotFound       = "not_found_error"
	TypeConflict       = "conflict_error"
)

// TypeForStatus returns the conventional envelope type for an HTTP status.
func TypeForStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return TypeAuthentication
	case status == http.StatusNotFound:
		return TypeNotFound
	case status == http.StatusConflict:
		return TypeConflict
	case status == http.StatusTooManyRequests:
		return TypeRateLimit
	case status >= 500:
		return TypeServer
	default:
		return TypeInvalidRequest
	}
}

// Write sends an envelope with the given status and code. The type is derived
// from the status. A positive retryAfter sets the Retry-After header, rounded
// up to whole seconds.
func Write(w http.ResponseWriter, status int, code, message string, retryAfter time.Duration) {
	WriteBody(w, status, Body{Message: message, Type: TypeForStatus(status), Code: code}, retryAfter)
}

// WriteBody sends an envelope with a fully specified body.
func WriteBody(w http.ResponseWriter, status int, b Body, retryAfter time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(RetryAfterSeconds(retryAfter), 10))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Envelope{Error: b})
}

// RetryAfterSeconds rounds d up to whole seconds, at least 1.
func RetryAfterSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// Read decodes an envelope from r (at most 64 KiB). ok is false when the body
// is not an envelope. A numeric code (vLLM sends "code": 400) is read as its
// decimal text.
func Read(r io.Reader) (b Body, ok bool) {
	var e struct {
		Error struct {
			Message string          `json:"message"`
			Type    string          `json:"type"`
			Code    json.RawMessage `json:"code"`
			Param   *string         `json:"param"`
		} `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 64<<10)).Decode(&e); err != nil {
		return Body{}, false
	}
	b = Body{Message: e.Error.Message, Type: e.Error.Type, Param: e.Error.Param}
	var code string
	if json.Unmarshal(e.Error.Code, &code) == nil {
		b.Code = code
	} else if len(e.Error.Code) > 0 && string(e.Error.Code) != "null" {
		b.Code = string(e.Error.Code)
	}
	if b.Message == "" && b.Code == "" && b.Type == "" {
		return Body{}, false
	}
	return b, true
}
