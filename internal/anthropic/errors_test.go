package anthropic_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/internal/anthropic"
)

func TestErrorTypeForStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   int
		want string
	}{
		{400, "invalid_request_error"},
		{401, "authentication_error"},
		{402, "billing_error"},
		{403, "permission_error"},
		{404, "not_found_error"},
		{405, "invalid_request_error"},
		{413, "request_too_large"},
		{422, "invalid_request_error"},
		{429, "rate_limit_error"},
		{500, "api_error"},
		{502, "api_error"},
		{503, "overloaded_error"},
		{504, "timeout_error"},
		{529, "overloaded_error"},
		{200, "api_error"},
	}
	for _, tt := range tests {
		if got := anthropic.ErrorTypeForStatus(tt.in); got != tt.want {
			t.Errorf("ErrorTypeForStatus(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		errType    string
		msg        string
		retryAfter time.Duration
		wantBody   string
		wantRetry  string
	}{
		{"unauthorized", 401, "", "invalid x-api-key", 0,
			`{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`, ""},
		{"not found", 404, "", "model: claude-nope", 0,
			`{"type":"error","error":{"type":"not_found_error","message":"model: claude-nope"}}`, ""},
		{"rate limited", 429, "", "slow down", 1500 * time.Millisecond,
			`{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`, "2"},
		{"overloaded", 529, "", "no capacity", 10 * time.Second,
			`{"type":"error","error":{"type":"overloaded_error","message":"no capacity"}}`, "10"},
		{"explicit type", 503, "overloaded_error", "<busy> & more", time.Second,
			`{"type":"error","error":{"type":"overloaded_error","message":"<busy> & more"}}`, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			anthropic.WriteError(rec, tt.status, tt.errType, tt.msg, tt.retryAfter)
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, tt.wantRetry)
			}
			if diff := cmp.Diff(decode(t, rec.Body.String()), decode(t, tt.wantBody)); diff != "" {
				t.Errorf("body (-got +want):\n%s", diff)
			}
		})
	}
}

func TestFromOpenAIError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		body     string
		wantType string
		wantMsg  string
	}{
		{"gateway invalid key", 401, `{"error":{"message":"invalid API key","type":"authentication_error","code":"invalid_api_key","param":null}}`,
			"authentication_error", "invalid API key"},
		{"model not found", 404, `{"error":{"message":"model \"x\" not found","type":"not_found_error","code":"model_not_found"}}`,
			"not_found_error", `model "x" not found`},
		{"rate limited", 429, `{"error":{"message":"rate limit exceeded","type":"rate_limit_error","code":"rate_limit_exceeded"}}`,
			"rate_limit_error", "rate limit exceeded"},
		{"quota spent keeps 429", 429, `{"error":{"message":"budget spent","type":"insufficient_quota","code":"insufficient_quota"}}`,
			"rate_limit_error", "budget spent"},
		{"no neuron", 503, `{"error":{"message":"no healthy neuron","type":"server_error","code":"service_unavailable"}}`,
			"overloaded_error", "no healthy neuron"},
		{"upstream down", 502, `{"error":{"message":"","type":"server_error","code":"upstream_connection_error"}}`,
			"api_error", "upstream_connection_error"},
		{"context length", 400, `{"error":{"message":"prompt too long","type":"invalid_request_error","code":"context_length_exceeded"}}`,
			"invalid_request_error", "prompt too long"},
		{"vllm numeric code", 400, `{"error":{"object":"error","message":"bad temperature","type":"BadRequestError","param":null,"code":400}}`,
			"invalid_request_error", "bad temperature"},
		{"vllm old top-level shape", 400, `{"object":"error","message":"max_tokens too large","type":"BadRequestError","param":null,"code":400}`,
			"invalid_request_error", "max_tokens too large"},
		{"fastapi detail", 404, `{"detail":"Not Found"}`, "not_found_error", "Not Found"},
		{"string error", 500, `{"error":"engine crashed"}`, "api_error", "engine crashed"},
		{"plain text", 502, "Bad Gateway: upstream reset\n", "api_error", "Bad Gateway: upstream reset"},
		{"empty body", 413, ``, "request_too_large", "Request Entity Too Large"},
		{"binary body", 500, "\x00\x01\x02", "api_error", "Internal Server Error"},
		{"anthropic envelope passes", 529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
			"overloaded_error", "Overloaded"},
		{"in-stream error with numeric code", 200, `{"error":{"message":"OOM","type":"InternalServerError","code":503}}`,
			"overloaded_error", "OOM"},
		{"in-stream error by type", 200, `{"error":{"message":"too long","type":"invalid_request_error"}}`,
			"invalid_request_error", "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gotType, gotMsg := anthropic.FromOpenAIError(tt.status, []byte(tt.body))
			if diff := cmp.Diff([2]string{gotType, gotMsg}, [2]string{tt.wantType, tt.wantMsg}); diff != "" {
				t.Errorf("FromOpenAIError (-got +want):\n%s", diff)
			}
		})
	}
}

func TestAPIErrorString(t *testing.T) {
	t.Parallel()
	if got := (&anthropic.APIError{Status: http.StatusTooManyRequests, Message: "x"}).Error(); got != "anthropic: rate_limit_error: x" {
		t.Errorf("Error() = %q", got)
	}
}
