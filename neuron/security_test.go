package neuron_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron"
)

// TestAgent_TokenRequiredOnEveryRoute checks every route of the Agent,
// and routes it does not have, without a token, with a wrong one and with
// the right one. Without the right token nothing is served and nothing
// changes: the one exception is GET /health, which answers its status and
// nothing more.
func TestAgent_TokenRequiredOnEveryRoute(t *testing.T) {
	t.Parallel()
	var engineHits atomic.Int64
	eng := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		engineHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"chat.completion"}`)
	}))
	t.Cleanup(eng.Close)
	const token = "neuron-s3cret-token"
	table, h := newModelTable(t, eng.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	_, srv := startAgent(t, h, nil, neuron.WithToken(token))

	routes := []struct {
		method, path, body string
		authorized         int // the status with the right token
	}{
		{"GET", "/discovery", "", 200},
		{"GET", "/health", "", 200},
		{"GET", "/version", "", 200},
		{"GET", "/models", "", 200},
		{"GET", "/models/m1/endpoint", "", 200},
		{"GET", "/models/m1/logs", "", 200},
		{"GET", "/v1/models", "", 200},
		{"POST", "/models/load", `{"model_id":"m2"}`, 200},
		{"POST", "/models/unload", `{"model_id":"m2"}`, 200},
		{"POST", "/v1/chat/completions", chatBody, 200},
		{"POST", "/v1/completions", `{"model":"m1","prompt":"hi"}`, 200},
		{"POST", "/v1/embeddings", `{"model":"m1","input":"hi"}`, 200},
		{"POST", "/v1/responses", `{"model":"m1","input":"hi"}`, 200},
		{"GET", "/nope", "", 404},
		{"DELETE", "/models", "", 405},
	}
	credentials := []struct {
		name, header string
	}{
		{"no token", ""},
		{"wrong token", "Bearer wrong"},
		{"token prefix", "Bearer " + token[:len(token)-1]},
		{"token with a suffix", "Bearer " + token + "x"},
		{"token without the scheme", token},
		{"basic scheme", "Basic " + token},
	}
	// Refused first, one after the other, so that the loads and unloads
	// below are the only state changes.
	for _, c := range credentials {
		for _, r := range routes {
			var hdr []string
			if c.header != "" {
				hdr = []string{"Authorization", c.header}
			}
			got := send(t, t.Context(), srv, r.method, r.path, r.body, hdr...)
			if r.path == "/health" && r.method == "GET" {
				// The liveness answer: the status alone.
				var v map[string]any
				got.decode(t, &v)
				if diff := cmp.Diff(v, map[string]any{"status": "ok"}); got.status != 200 || diff != "" {
					t.Errorf("%s: GET /health = %d, body (-got +want):\n%s", c.name, got.status, diff)
				}
				continue
			}
			if got.status != http.StatusUnauthorized {
				t.Errorf("%s: %s %s = %d, want 401; body %s", c.name, r.method, r.path, got.status, got.body)
				continue
			}
			if code := got.code(t); code != neuron.CodeInvalidToken {
				t.Errorf("%s: %s %s: code %q, want %q", c.name, r.method, r.path, code, neuron.CodeInvalidToken)
			}
			if strings.Contains(string(got.body), token) {
				t.Errorf("%s: %s %s: the answer contains the token: %s", c.name, r.method, r.path, got.body)
			}
		}
	}
	if n := engineHits.Load(); n != 0 {
		t.Errorf("the engine received %d requests without the token", n)
	}
	if loads := table.recordedLoads(); len(loads) != 0 {
		t.Errorf("loads without the token: %+v", loads)
	}

	for _, r := range routes {
		got := send(t, t.Context(), srv, r.method, r.path, r.body, "Authorization", "Bearer "+token)
		if got.status != r.authorized {
			t.Errorf("with the token: %s %s = %d, want %d; body %s", r.method, r.path, got.status, r.authorized, got.body)
		}
		if r.path == "/health" {
			var hl neuron.Health
			got.decode(t, &hl)
			if len(hl.Models) != 1 || len(hl.Devices) == 0 {
				t.Errorf("GET /health with the token lacks the details: %s", got.body)
			}
		}
	}
}

// TestAgent_EngineNeverSeesTheNeuronToken checks that the neuron's token,
// which authorizes cortex, is not passed on to the engine.
func TestAgent_EngineNeverSeesTheNeuronToken(t *testing.T) {
	t.Parallel()
	seen := make(chan http.Header, 1)
	eng := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(eng.Close)
	_, h := newModelTable(t, eng.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	_, srv := startAgent(t, h, nil, neuron.WithToken("tok-123"))
	if got := send(t, t.Context(), srv, "POST", "/v1/chat/completions", chatBody, "Authorization", "Bearer tok-123"); got.status != 200 {
		t.Fatalf("status %d: %s", got.status, got.body)
	}
	hdr := <-seen
	b, _ := json.Marshal(hdr)
	if strings.Contains(string(b), "tok-123") {
		t.Errorf("the engine saw the neuron's token: %v", hdr)
	}
}
