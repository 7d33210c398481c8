package cortex

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/internal/redact"
	"github.com/helexa-ai/helexa-go/neuron"
)

// TestLoadBackoff: the backoff doubles with each failure in a row up to its
// maximum, is per (model, neuron), and a success clears it.
func TestLoadBackoff(t *testing.T) {
	t.Parallel()
	b := loadBackoff{base: time.Second, max: 5 * time.Second}
	t0 := time.Unix(1000, 0)
	wants := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if on := b.active("m", t0, nil); on != nil {
		t.Errorf("blocked on %v before any failure", on)
	}
	for i, want := range wants {
		b.fail("m", "n1", t0)
		on := b.active("m", t0, nil)
		if len(on) != 1 || on[0].Neuron != "n1" || on[0].Until.Sub(t0) != want {
			t.Errorf("after %d failures: blocked on %v; want n1 until +%v", i+1, on, want)
		}
	}
	if on := b.active("m", t0.Add(5*time.Second), nil); on != nil {
		t.Errorf("blocked on %v once the backoff ended", on)
	}
	if on := b.active("other", t0, nil); on != nil {
		t.Errorf("another model blocked on %v", on)
	}
	b.succeed("m", "n1")
	if on := b.active("m", t0, nil); on != nil {
		t.Errorf("blocked on %v after a success", on)
	}
	b.fail("m", "n1", t0)
	if on := b.active("m", t0, nil); len(on) != 1 || on[0].Until.Sub(t0) != time.Second {
		t.Errorf("after a success and a failure: %v, want the base again", on)
	}
}

// TestClientBody: a neuron's error answer reaches the client unless it
// tells about the inside of the fleet, or is the engine's own server
// error, or no envelope.
func TestClientBody(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		status  int
		body    string
		changed bool
		want    string // in the body sent
	}{
		{"engine 400", 400, `{"error":{"message":"This model's maximum context length is 4096 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}`, false, "maximum context length"},
		{"neuron 503", 503, `{"error":{"message":"model chat-a is not ready","type":"server_error","code":"model_not_ready"}}`, false, "not ready"},
		{"neuron 502 with an address", 502, `{"error":{"message":"engine unreachable: read tcp 127.0.0.1:22768->127.0.0.1:22501: connection reset by peer","type":"server_error","code":"upstream_connection_error"}}`, true, `"code":"upstream_connection_error"`},
		{"engine 500", 500, `{"error":{"message":"[json.exception.type_error.302] type must be string","type":"server_error"}}`, true, "failed to answer"},
		{"plain text 500", 500, "Traceback (most recent call last):\n  File \"/usr/lib/python3/vllm/x.py\"", true, `"code":"upstream_error"`},
		{"engine 400 with a path", 400, `{"error":{"message":"cannot open /models/x.gguf","type":"invalid_request_error"}}`, true, "refused the request"},
		{"plain text 404", 404, "404 page not found", false, "404 page not found"},
	} {
		got, changed := clientBody(tt.status, []byte(tt.body))
		if changed != tt.changed || !strings.Contains(string(got), tt.want) {
			t.Errorf("%s: clientBody = %s, changed %v; want changed %v and %q", tt.name, got, changed, tt.changed, tt.want)
		}
		if !redact.Clean(string(got)) {
			t.Errorf("%s: %s tells about the inside: %v", tt.name, got, redact.Find(string(got)))
		}
	}
}

// TestLoadCause: a failed load is described by the neuron's code, and by
// its message only when that is clean.
func TestLoadCause(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&neuron.APIError{Code: neuron.CodeLoadFailed, Message: "engine exited: error loading model /models/llama.gguf\nlistening on 127.0.0.1:40123"}, neuron.CodeLoadFailed},
		{&neuron.APIError{Code: neuron.CodeInsufficientVRAM, Message: "needs 8000 MiB, 4000 free"}, "insufficient_vram: needs 8000 MiB, 4000 free"},
		{errors.New("dial tcp 10.0.0.1:31400: connection refused"), "the neuron could not be reached"},
		{fmt.Errorf("%w (2), and none of its replicas is on a neuron of this gateway: gpu-7, gpu-9", errAtMaxReplicas), "it has max_replicas replicas, none on a neuron this gateway reaches"},
	} {
		if got := loadCause(tt.err); got != tt.want {
			t.Errorf("loadCause(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestBacksOff: loads refused for good and loads that timed out back off;
// refusals that pass do not.
func TestBacksOff(t *testing.T) {
	t.Parallel()
	g := &Gateway{cfg: gatewayConfig{retryAfter: 2 * time.Second}}
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&neuron.APIError{Status: 502, Code: neuron.CodeLoadFailed}, true},
		{&neuron.APIError{Status: 422, Code: neuron.CodeCannotStart}, true},
		{&neuron.APIError{Status: 400, Code: neuron.CodeUnknownEngine}, true},
		{&neuron.APIError{Status: 409, Code: neuron.CodeInsufficientVRAM}, false},
		{&neuron.APIError{Status: 409, Code: neuron.CodeModelBusy}, false},
		{&neuron.APIError{Status: 503, Code: neuron.CodeShuttingDown}, false},
		{errors.New("dial tcp: connection refused"), false},
		{context.DeadlineExceeded, true},
	} {
		if got := backsOff(g.loadRetry(tt.err), tt.err); got != tt.want {
			t.Errorf("backsOff(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
