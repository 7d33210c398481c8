package cortex_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/neuron"
)

func TestMetricsAfterTraffic(t *testing.T) {
	t.Parallel()
	// One 6000 MiB GPU: loading chat-b evicts chat-a.
	s := newStack(t, []cortextest.Spec{{Name: "n1", GPUs: []uint64{6000}, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
	resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("fast", `"stream":true`, `"max_tokens":4`))
	if _, err := newEventReader(resp.Body).all(); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if status, _, body := s.post("/v1/chat/completions", chatBody("chat-b", `"max_tokens":2`)); status != http.StatusOK {
		t.Fatalf("cold chat-b: status %d: %s", status, body)
	}
	if status, _, _ := s.post("/v1/chat/completions", chatBody("nope")); status != http.StatusNotFound {
		t.Fatalf("unknown model: status %d", status)
	}

	w := httptest.NewRecorder()
	s.gw.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	b, _ := io.ReadAll(w.Body)
	text := string(b)
	for _, want := range []string{
		`helexa_requests_total{class="2xx",model="chat-a",neuron="n1"} 1`,
		`helexa_requests_total{class="2xx",model="chat-b",neuron="n1"} 1`,
		`helexa_requests_total{class="4xx",model="",neuron=""} 1`,
		`helexa_request_errors_total{kind="rejected",model="",neuron=""} 1`,
		`helexa_request_duration_seconds_count{model="chat-a",neuron="n1"} 1`,
		`helexa_request_duration_seconds_bucket{model="chat-a",neuron="n1",le="0.005"}`,
		`helexa_request_duration_seconds_bucket{model="chat-a",neuron="n1",le="300"} 1`,
		`helexa_time_to_first_token_seconds_count{model="chat-a",neuron="n1"} 1`,
		`helexa_tokens_per_second_count{model="chat-b",neuron="n1"} 1`,
		`helexa_completion_tokens_total{model="chat-a",neuron="n1"} 4`,
		`helexa_completion_tokens_total{model="chat-b",neuron="n1"} 2`,
		`helexa_prompt_tokens_total{model="chat-a",neuron="n1"}`,
		`helexa_cold_starts_total{model="chat-b",neuron="n1"} 1`,
		`helexa_cold_starts_total{model="chat-a",neuron="n1"} 0`,
		`helexa_model_loads_total{model="chat-b",neuron="n1",result="ok"} 1`,
		`helexa_evictions_total{model="chat-a",neuron="n1"} 1`,
		`helexa_neuron_healthy{neuron="n1"} 1`,
		`helexa_model_in_flight{model="chat-b",neuron="n1"} 0`,
		`helexa_model_queue_depth{model="chat-b",neuron="n1"} 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
}
