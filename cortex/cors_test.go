package cortex_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// corsHeaders returns the Access-Control-* headers of h.
func corsHeaders(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out[k] = v
		}
	}
	return out
}

// preflight sends a CORS preflight for a POST from origin asking for the
// headers.
func (s *stack) preflight(path, origin, headers string) *http.Response {
	s.t.Helper()
	resp := s.do(http.MethodOptions, path, "", "Origin", origin,
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", headers)
	resp.Body.Close()
	return resp
}

// Without allowed origins the gateway sends no CORS header at all: a
// preflight gets 405 like any OPTIONS, and an answer to a page of another
// origin tells its browser nothing.
func TestCORSOffByDefault(t *testing.T) {
	t.Parallel()
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t))
	resp := s.preflight("/v1/chat/completions", "https://app.example", "authorization, content-type")
	if resp.StatusCode != http.StatusMethodNotAllowed || len(corsHeaders(resp.Header)) > 0 {
		t.Errorf("preflight: %d %v; want 405 and no CORS header", resp.StatusCode, corsHeaders(resp.Header))
	}
	status, h, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`), "Origin", "https://app.example")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if len(corsHeaders(h)) > 0 || h.Get("Vary") != "" {
		t.Errorf("answer has CORS headers %v, Vary %q; want none", corsHeaders(h), h.Get("Vary"))
	}
}

// With listed origins, a page of one of them gets its preflight answered
// (without a key, for the headers the official clients send) and may read
// the answers, which name its origin alone; a page of any other origin
// gets no CORS header, and no answer ever allows credentials.
func TestCORSAllowedOrigins(t *testing.T) {
	t.Parallel()
	const key = "sk-cors"
	local := newLocal(t, entitlements.KeyConfig{Key: key, AccountID: "acct"})
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local), cortex.WithRequireAuth(true),
		cortex.WithCORSOrigins("https://app.example", "HTTP://LOCALHOST:5173"))
	const sdkHeaders = "authorization, content-type, x-stainless-os, x-stainless-retry-count, anthropic-version, x-request-id"

	for _, origin := range []string{"https://app.example", "http://localhost:5173"} {
		resp := s.preflight("/v1/chat/completions", origin, sdkHeaders)
		got := corsHeaders(resp.Header)
		if resp.StatusCode != http.StatusNoContent || got.Get("Access-Control-Allow-Origin") != origin ||
			got.Get("Access-Control-Allow-Methods") != "GET, POST" || got.Get("Access-Control-Allow-Headers") != sdkHeaders ||
			got.Get("Access-Control-Max-Age") == "" {
			t.Errorf("preflight from %s: %d %v", origin, resp.StatusCode, got)
		}
		if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
			t.Errorf("preflight from %s: Vary %q, want Origin", origin, resp.Header.Values("Vary"))
		}
	}
	status, h, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`),
		"Origin", "https://app.example", "Authorization", "Bearer "+key)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if h.Get("Access-Control-Allow-Origin") != "https://app.example" || h.Get("Vary") != "Origin" ||
		!strings.Contains(h.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Errorf("answer to an allowed origin: %v, Vary %q", corsHeaders(h), h.Get("Vary"))
	}
	// A refusal is readable too: the page learns why.
	status, h, _ = s.post("/v1/chat/completions", chatBody("chat-a"), "Origin", "https://app.example")
	if status != http.StatusUnauthorized || h.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("401 to an allowed origin: %d %v", status, corsHeaders(h))
	}

	for _, tt := range []struct{ name, origin, headers string }{
		{"another origin", "https://evil.example", "authorization"},
		{"a subdomain", "https://evil.app.example", "authorization"},
		{"a suffix", "https://app.example.evil", "authorization"},
		{"another scheme", "http://app.example", "authorization"},
		{"opaque origin", "null", "authorization"},
		{"a header no client sends", "https://app.example", "authorization, x-custom"},
	} {
		resp := s.preflight("/v1/chat/completions", tt.origin, tt.headers)
		if got := corsHeaders(resp.Header); len(got) > 0 {
			t.Errorf("preflight, %s: %d %v; want no CORS header", tt.name, resp.StatusCode, got)
		}
		if tt.origin == "https://app.example" {
			continue
		}
		_, h, _ := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`), "Origin", tt.origin, "Authorization", "Bearer "+key)
		if got := corsHeaders(h); len(got) > 0 || h.Get("Vary") != "Origin" {
			t.Errorf("answer, %s: %v, Vary %q; want no CORS header, Vary: Origin", tt.name, got, h.Get("Vary"))
		}
	}
}

// "*" lets any page read the answers, with "*" rather than its origin,
// and still no credentials.
func TestCORSAnyOrigin(t *testing.T) {
	t.Parallel()
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithCORSOrigins("*"))
	resp := s.preflight("/v1/messages", "https://anywhere.example", "x-api-key, anthropic-version, content-type")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight: %d %v", resp.StatusCode, corsHeaders(resp.Header))
	}
	resp = s.do(http.MethodGet, "/v1/models", "", "Origin", "https://anywhere.example")
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("GET /v1/models: %v", corsHeaders(resp.Header))
	}
}

// An origin that is not a scheme, a host and a port is refused, by
// NewGateway and in cortex.toml, with the entry that holds it.
func TestCORSOriginsChecked(t *testing.T) {
	t.Parallel()
	fleet := cortextest.NewFleet(t, loadedA("n1"))
	for _, origins := range [][]string{
		{"https://app.example/"},
		{"https://app.example/path"},
		{"app.example"},
		{"null"},
		{"ftp://app.example"},
		{"https://user@app.example"},
		{"*", "https://app.example"},
	} {
		_, err := cortex.NewGateway(fleet.Configs(), nil, cortex.WithCORSOrigins(origins...))
		if err == nil || !strings.Contains(err.Error(), "CORS origin") {
			t.Errorf("NewGateway with origins %q: %v, want a CORS origin error", origins, err)
		}
	}
	_, err := cortex.ParseConfig([]byte("[gateway]\ncors_allowed_origins = [\"https://app.example/\"]\n\n[[neurons]]\nname = \"n1\"\nendpoint = \"http://127.0.0.1:1\"\n"))
	var ce *cortex.ConfigError
	if !errors.As(err, &ce) || ce.Line != 1 || !strings.Contains(ce.Msg, "cors_allowed_origins") {
		t.Errorf("cortex.toml with a path in an origin: %v, want a ConfigError at line 1", err)
	}
	cfg, err := cortex.ParseConfig([]byte("[gateway]\ncors_allowed_origins = [\"https://app.example\"]\n\n[[neurons]]\nname = \"n1\"\nendpoint = \"http://127.0.0.1:1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := cortex.NewGateway(fleet.Configs(), nil, cfg.GatewayOptions()...)
	if err != nil {
		t.Fatalf("NewGateway with the options of cortex.toml: %v", err)
	}
	if err := gw.Shutdown(t.Context()); err != nil {
		t.Error(err)
	}
}
