package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/helexa-ai/helexa-go/internal/oaierr"
)

// Anthropic error types, the "type" of the inner error object.
const (
	ErrorTypeInvalidRequest  = "invalid_request_error" // 400
	ErrorTypeAuthentication  = "authentication_error"  // 401
	ErrorTypeBilling         = "billing_error"         // 402
	ErrorTypePermission      = "permission_error"      // 403
	ErrorTypeNotFound        = "not_found_error"       // 404
	ErrorTypeRequestTooLarge = "request_too_large"     // 413
	ErrorTypeRateLimit       = "rate_limit_error"      // 429
	ErrorTypeAPI             = "api_error"             // 500 and other 5xx
	ErrorTypeTimeout         = "timeout_error"         // 504
	ErrorTypeOverloaded      = "overloaded_error"      // 503, 529
)

// StatusOverloaded is Anthropic's non-standard status for an overloaded
// service. The gateway may answer 503 instead; Anthropic's SDKs retry both.
const StatusOverloaded = 529

// Sentinel errors of the stream translator.
var (
	// ErrClosed is returned by Feed after the stream has ended (message_stop
	// or an error event was written).
	ErrClosed = errors.New("anthropic: stream already ended")
	// ErrIncomplete is returned (wrapped) by Finish, and by Feed on [DONE],
	// when the engine ended the stream without a finish_reason. An error
	// event has been written.
	ErrIncomplete = errors.New("anthropic: upstream stream ended without a finish_reason")
	// ErrBadChat is returned (wrapped) for a chat completion, or a chunk of
	// one, that is not the JSON this package expects. Nothing is written.
	ErrBadChat = errors.New("anthropic: malformed chat completion")
)

// APIError is an error to report in Anthropic's shape. The gateway may
// pass one to StreamTranslator.Abort to choose the type and message of the
// error event; Feed returns one when the engine sent an error object
// in-stream.
type APIError struct {
	// Status is the HTTP status the error corresponds to.
	Status int
	// Type is one of the ErrorType constants; empty means
	// ErrorTypeForStatus(Status).
	Type string
	// Message is shown to the client.
	Message string
}

func (e *APIError) Error() string {
	return "anthropic: " + e.errType() + ": " + e.Message
}

func (e *APIError) errType() string {
	if e.Type != "" {
		return e.Type
	}
	return ErrorTypeForStatus(e.Status)
}

// ErrorTypeForStatus returns Anthropic's error type for an HTTP status:
// 400 invalid_request_error, 401 authentication_error, 402 billing_error,
// 403 permission_error, 404 not_found_error, 413 request_too_large, 429
// rate_limit_error, 503 and 529 overloaded_error, 504 timeout_error, other
// 4xx invalid_request_error, and api_error for anything else.
func ErrorTypeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return ErrorTypeInvalidRequest
	case http.StatusUnauthorized:
		return ErrorTypeAuthentication
	case http.StatusPaymentRequired:
		return ErrorTypeBilling
	case http.StatusForbidden:
		return ErrorTypePermission
	case http.StatusNotFound:
		return ErrorTypeNotFound
	case http.StatusRequestEntityTooLarge:
		return ErrorTypeRequestTooLarge
	case http.StatusTooManyRequests:
		return ErrorTypeRateLimit
	case http.StatusServiceUnavailable, StatusOverloaded:
		return ErrorTypeOverloaded
	case http.StatusGatewayTimeout:
		return ErrorTypeTimeout
	}
	if status >= 400 && status < 500 {
		return ErrorTypeInvalidRequest
	}
	return ErrorTypeAPI
}

type errorBody struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

type errorEnvelope struct {
	Type  string    `json:"type"`
	Error errorBody `json:"error"`
}

// WriteError writes {"type":"error","error":{"type":errType,"message":...}}
// with the given status. An empty errType is ErrorTypeForStatus(status). A
// positive retryAfter sets Retry-After in whole seconds, rounded up (the
// gateway passes it for 429 and 503/529).
func WriteError(w http.ResponseWriter, status int, errType, message string, retryAfter time.Duration) {
	if errType == "" {
		errType = ErrorTypeForStatus(status)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(oaierr.RetryAfterSeconds(retryAfter), 10))
	}
	w.WriteHeader(status)
	b, _ := marshal(errorEnvelope{Type: "error", Error: errorBody{Type: errType, Message: message}})
	_, _ = w.Write(append(b, '\n'))
}

// maxPlainMessage bounds the message taken from an error body that is not
// JSON.
const maxPlainMessage = 512

// FromOpenAIError translates an error response of the neuron, an engine or
// the gateway (status and body) into Anthropic's type and message. The body
// may be an OpenAI envelope {"error":{"message","type","code"}} (code a
// string or, as vLLM sends, the status number), {"error":"message"}, an
// Anthropic envelope (returned as it is), or plain text (used as the
// message when short and printable). The type follows the status; when the
// status is not an error status (an error object inside a 200 stream) it
// follows a numeric code, then the OpenAI type. An empty message becomes the
// code, else the status text, else "upstream error" (never empty).
func FromOpenAIError(status int, body []byte) (errType, message string) {
	_, errType, message = translateError(status, body)
	return errType, message
}

// translateError is FromOpenAIError that also returns the status it used.
func translateError(status int, body []byte) (int, string, string) {
	type inner struct {
		Type    string          `json:"type"`
		Message string          `json:"message"`
		Code    json.RawMessage `json:"code"`
	}
	var env struct {
		inner
		Error  json.RawMessage `json:"error"`
		Detail json.RawMessage `json:"detail"`
	}
	var in inner
	switch {
	case kindOf(body) == '{' && json.Unmarshal(body, &env) == nil:
		switch kindOf(env.Error) {
		case '"':
			_ = json.Unmarshal(env.Error, &in.Message)
		case '{':
			_ = json.Unmarshal(env.Error, &in)
			if env.Type == "error" && isAnthropicType(in.Type) {
				if status < 400 {
					status = statusForType(in.Type)
				}
				return status, in.Type, nonEmpty(in.Message, statusText(status))
			}
		default:
			// vLLM's older shape: the fields at the top level, or
			// FastAPI's {"detail": "..."}.
			in = env.inner
			if in.Message == "" && kindOf(env.Detail) == '"' {
				_ = json.Unmarshal(env.Detail, &in.Message)
			}
		}
	default:
		if t := bytes.TrimSpace(body); len(t) > 0 && len(t) <= maxPlainMessage && utf8.Valid(t) && printable(t) {
			in.Message = string(t)
		}
	}
	var code string
	var codeNum int
	switch kindOf(in.Code) {
	case '"':
		_ = json.Unmarshal(in.Code, &code)
	case 0, 'n', '{', '[', 't', 'f':
	default:
		_ = json.Unmarshal(in.Code, &codeNum)
	}
	if status < 400 {
		if codeNum >= 400 && codeNum < 600 {
			status = codeNum
		} else {
			status = statusForOpenAIType(in.Type)
		}
	}
	return status, ErrorTypeForStatus(status), nonEmpty(in.Message, nonEmpty(code, statusText(status)))
}

// statusText is the text of status, or "upstream error" for a status
// without one (529 among them).
func statusText(status int) string { return nonEmpty(http.StatusText(status), "upstream error") }

func nonEmpty(s, fallback string) string {
	if s != "" {
		return s
	}
	return fallback
}

func printable(b []byte) bool {
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}

func isAnthropicType(t string) bool {
	return statusForType(t) != 0
}

// statusForType is the status of an Anthropic error type, 0 if unknown.
func statusForType(t string) int {
	switch t {
	case ErrorTypeInvalidRequest:
		return http.StatusBadRequest
	case ErrorTypeAuthentication:
		return http.StatusUnauthorized
	case ErrorTypeBilling:
		return http.StatusPaymentRequired
	case ErrorTypePermission:
		return http.StatusForbidden
	case ErrorTypeNotFound:
		return http.StatusNotFound
	case ErrorTypeRequestTooLarge:
		return http.StatusRequestEntityTooLarge
	case ErrorTypeRateLimit:
		return http.StatusTooManyRequests
	case ErrorTypeAPI:
		return http.StatusInternalServerError
	case ErrorTypeTimeout:
		return http.StatusGatewayTimeout
	case ErrorTypeOverloaded:
		return StatusOverloaded
	}
	return 0
}

// statusForOpenAIType guesses a status from an OpenAI error type, for
// errors that arrive without an error status.
func statusForOpenAIType(t string) int {
	switch t {
	case oaierr.TypeInvalidRequest, "BadRequestError":
		return http.StatusBadRequest
	case oaierr.TypeAuthentication:
		return http.StatusUnauthorized
	case oaierr.TypeNotFound, "NotFoundError":
		return http.StatusNotFound
	case oaierr.TypeRateLimit, oaierr.TypeInsufficient:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}
