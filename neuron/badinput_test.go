package neuron_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/internal/httpx/httpxtest"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/neuron"
)

// TestAgent_BadInput sends malformed requests to every kind of route of a
// real Agent over HTTP. Each is refused with its exact status and envelope
// code, and none changes state: the engine sees no request, the harness no
// load or unload, and no admission slot stays taken.
func TestAgent_BadInput(t *testing.T) {
	t.Parallel()
	var engineHits atomic.Int64
	eng := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		engineHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"chat.completion"}`)
	}))
	t.Cleanup(eng.Close)
	const limit = 1024
	table, h := newModelTable(t, eng.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	agent, srv := startAgent(t, h, nil, neuron.WithMaxBodyBytes(limit), neuron.WithToken("tok"))

	const (
		chat   = "/v1/chat/completions"
		json   = "application/json"
		bearer = "Bearer tok"
	)
	big := `{"model":"m1","messages":[{"role":"user","content":"` + strings.Repeat("x", limit) + `"}]}`
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		chunked     bool // send the body without a Content-Length
		wantStatus  int
		wantCode    string
	}{
		{name: "malformed JSON", method: "POST", path: chat, contentType: json, body: `{"model":"m1",`,
			wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "not an object", method: "POST", path: chat, contentType: json, body: `["m1"]`,
			wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "empty body", method: "POST", path: chat, contentType: json, body: ``,
			wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "model of the wrong type", method: "POST", path: chat, contentType: json, body: `{"model":7}`,
			wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "missing model", method: "POST", path: chat, contentType: json, body: `{"messages":[]}`,
			wantStatus: 400, wantCode: neuron.CodeMissingModel},
		{name: "empty model", method: "POST", path: chat, contentType: json, body: `{"model":""}`,
			wantStatus: 400, wantCode: neuron.CodeMissingModel},
		{name: "null model", method: "POST", path: chat, contentType: json, body: `{"model":null}`,
			wantStatus: 400, wantCode: neuron.CodeMissingModel},
		{name: "unknown model", method: "POST", path: chat, contentType: json, body: `{"model":"nope"}`,
			wantStatus: 404, wantCode: neuron.CodeModelNotFound},
		{name: "invalid UTF-8", method: "POST", path: chat, contentType: json, body: "{\"model\":\"m1\",\"prompt\":\"\xff\xfe\"}",
			wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "body over the limit", method: "POST", path: chat, contentType: json, body: big,
			wantStatus: 413, wantCode: neuron.CodeRequestTooLarge},
		{name: "body over the limit without a length", method: "POST", path: chat, contentType: json, body: big, chunked: true,
			wantStatus: 413, wantCode: neuron.CodeRequestTooLarge},
		{name: "text content type", method: "POST", path: chat, contentType: "text/plain", body: chatBody,
			wantStatus: 415, wantCode: neuron.CodeUnsupportedMediaType},
		{name: "form content type", method: "POST", path: "/v1/embeddings", contentType: "application/x-www-form-urlencoded", body: chatBody,
			wantStatus: 415, wantCode: neuron.CodeUnsupportedMediaType},
		{name: "unparsable content type", method: "POST", path: chat, contentType: "application/json; charset", body: chatBody,
			wantStatus: 415, wantCode: neuron.CodeUnsupportedMediaType},
		{name: "unknown route", method: "POST", path: "/v1/nope", contentType: json, body: chatBody,
			wantStatus: 404, wantCode: neuron.CodeNotFound},
		{name: "wrong method", method: "GET", path: chat,
			wantStatus: 405, wantCode: neuron.CodeMethodNotAllowed},
		{name: "load: malformed JSON", method: "POST", path: "/models/load", contentType: json, body: `{"model_id":`,
			wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "load: field of the wrong type", method: "POST", path: "/models/load", contentType: json, body: `{"model_id":"m2","vram_mb":"lots"}`,
			wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "load: missing model_id", method: "POST", path: "/models/load", contentType: json, body: `{"engine":"sim"}`,
			wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "load: text content type", method: "POST", path: "/models/load", contentType: "text/plain", body: `{"model_id":"m2"}`,
			wantStatus: 415, wantCode: neuron.CodeUnsupportedMediaType},
		{name: "load: body over 1 MiB", method: "POST", path: "/models/load", contentType: json,
			body:       `{"model_id":"m2","source":"` + strings.Repeat("s", 1<<20) + `"}`,
			wantStatus: 413, wantCode: neuron.CodeRequestTooLarge},
		{name: "unload: missing model_id", method: "POST", path: "/models/unload", contentType: json, body: `{}`,
			wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "unload: unknown model", method: "POST", path: "/models/unload", contentType: json, body: `{"model_id":"nope"}`,
			wantStatus: 404, wantCode: neuron.CodeModelNotFound},
		{name: "endpoint of an unknown model", method: "GET", path: "/models/nope/endpoint",
			wantStatus: 404, wantCode: neuron.CodeModelNotFound},
		{name: "logs of an unknown model", method: "GET", path: "/models/nope/logs",
			wantStatus: 404, wantCode: neuron.CodeModelNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
				if tt.chunked {
					body = io.MultiReader(body) // hides the length from NewRequest
				}
			}
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", bearer)
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			got := answer{status: resp.StatusCode, header: resp.Header, body: raw}
			if got.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", got.status, tt.wantStatus, got.body)
			}
			if code := got.code(t); code != tt.wantCode {
				t.Errorf("code = %q, want %q; body %s", code, tt.wantCode, got.body)
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if tt.wantStatus == 405 && got.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	t.Cleanup(func() {
		// Runs after every parallel subtest: nothing reached the engine or
		// the harness, and no slot is held.
		if n := engineHits.Load(); n != 0 {
			t.Errorf("the engine received %d requests", n)
		}
		if loads := table.recordedLoads(); len(loads) != 0 {
			t.Errorf("loads = %+v, want none", loads)
		}
		if unloads := table.recordedUnloads(); len(unloads) != 0 {
			t.Errorf("unloads = %v, want none", unloads)
		}
		if ml := modelLoad(t, agent, "m1"); ml.InFlight != 0 || ml.QueueDepth != 0 {
			t.Errorf("m1 admission = %d in flight, %d queued, want 0 and 0", ml.InFlight, ml.QueueDepth)
		}
	})
}

// TestAgent_AcceptsJSONContentTypes checks the other side of the 415: JSON
// with parameters, a +json type and no Content-Type at all are served.
func TestAgent_AcceptsJSONContentTypes(t *testing.T) {
	t.Parallel()
	eng := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"chat.completion"}`)
	}))
	t.Cleanup(eng.Close)
	_, h := newModelTable(t, eng.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	_, srv := startAgent(t, h, nil)
	for i, ct := range []string{"", "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.api+json"} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			var hdr []string
			if ct != "" {
				hdr = []string{"Content-Type", ct}
			}
			if got := send(t, t.Context(), srv, "POST", "/v1/chat/completions", chatBody, hdr...); got.status != http.StatusOK {
				t.Errorf("Content-Type %q: status %d, body %s", ct, got.status, got.body)
			}
		})
	}
}

// TestAgent_SlowBody: a client that sends part of a body and then nothing
// is answered 408 request_timeout once the body read timeout passes, and
// the engine sees nothing.
func TestAgent_SlowBody(t *testing.T) {
	t.Parallel()
	var engineHits atomic.Int64
	eng := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { engineHits.Add(1) }))
	t.Cleanup(eng.Close)
	_, h := newModelTable(t, eng.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	_, srv := startAgent(t, h, nil, neuron.WithToken("tok"), neuron.WithBodyReadTimeout(100*time.Millisecond))
	resp, body := httpxtest.Exchange(t, srv.Listener.Addr().String(),
		"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n"+
			"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"model\":\"m1\",")
	b, ok := oaierr.Read(bytes.NewReader(body))
	if resp.StatusCode != http.StatusRequestTimeout || !ok || b.Code != neuron.CodeRequestTimeout {
		t.Errorf("answer %d %+v (an envelope: %v), want 408 %s", resp.StatusCode, b, ok, neuron.CodeRequestTimeout)
	}
	if n := engineHits.Load(); n != 0 {
		t.Errorf("the engine saw %d requests", n)
	}
}
