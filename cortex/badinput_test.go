package cortex_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/httpx/httpxtest"
	"github.com/helexa-ai/helexa-go/neuron"
)

// badInputKey is the API key of the bad-input tests: a balance of 100,000
// tokens.
const badInputKey = "sk-badinput-0123456789"

// TestBadInput sends malformed and refused requests to a gateway over real
// HTTP. Each gets its exact status and envelope code, and none changes
// state: no reservation is held, nothing is spent, no load starts and no
// request reaches the neuron. "cold" is a model the neuron could load: a
// bad request for it must not cause the load.
func TestBadInput(t *testing.T) {
	t.Parallel()
	const limit = 4096
	local := newLocal(t, entitlements.KeyConfig{Key: badInputKey, AccountID: "acct", HardCap: new(int64(100_000))})
	cat := newCatalogue(t, []catalogue.Model{
		{ID: "chat-a", VRAMMB: 4000, Limit: catalogue.Limit{Context: 256, Output: 64}},
		{ID: "cold", VRAMMB: 4000},
	}, nil)
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, cat,
		cortex.WithProvider(local), cortex.WithRequireAuth(true), cortex.WithMaxBodyBytes(limit))

	const (
		chat = "/v1/chat/completions"
		js   = "application/json"
	)
	auth := []string{"Authorization", "Bearer " + badInputKey}
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		header      []string // default: the API key
		body        string
		chunked     bool // send the body without a Content-Length
		wantStatus  int
		wantCode    string
		wantHeader  string // a header the answer must have
	}{
		{name: "malformed JSON", body: `{"model":"cold",` + msgs,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "not an object", body: `[{"model":"cold"}]`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "empty body", body: ``,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "data after the object", body: `{"model":"cold",` + msgs + `} {}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "nesting too deep", body: `{"model":"cold",` + msgs + `,"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "model of the wrong type", body: `{"model":7,` + msgs + `}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "stream of the wrong type", body: `{"model":"cold","stream":"yes",` + msgs + `}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "messages of the wrong type", body: `{"model":"cold","messages":"hi"}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "stream_options of the wrong type", body: `{"model":"cold","stream":true,"stream_options":true,` + msgs + `}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "missing model", body: `{` + msgs + `}`,
			wantStatus: 400, wantCode: cortex.CodeMissingModel},
		{name: "empty model", body: `{"model":"",` + msgs + `}`,
			wantStatus: 400, wantCode: cortex.CodeMissingModel},
		{name: "unknown model", body: `{"model":"no-such-model",` + msgs + `}`,
			wantStatus: 404, wantCode: cortex.CodeModelNotFound},
		{name: "empty messages", body: `{"model":"cold","messages":[]}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "no messages", body: `{"model":"cold"}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "negative max_tokens", body: `{"model":"cold","max_tokens":-5,` + msgs + `}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "zero max_completion_tokens", body: `{"model":"cold","max_completion_tokens":0,` + msgs + `}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "max_tokens over 64 bits", body: `{"model":"cold","max_tokens":99999999999999999999999,` + msgs + `}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "fractional max_tokens", body: `{"model":"cold","max_tokens":1.5,` + msgs + `}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "huge max_tokens over the balance", body: `{"model":"cold","max_tokens":1000000000000,` + msgs + `}`,
			wantStatus: 429, wantCode: cortex.CodeInsufficientQuota},
		{name: "n out of range", body: `{"model":"cold","n":1000,` + msgs + `}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "prompt over the context", body: `{"model":"chat-a","messages":[{"role":"user","content":"` + strings.Repeat("word ", 400) + `"}]}`,
			wantStatus: 400, wantCode: cortex.CodeContextLengthExceeded},
		{name: "invalid UTF-8", body: "{\"model\":\"cold\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}",
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "invalid escape", body: `{"model":"cold","messages":[{"role":"user","content":"\x"}]}`,
			wantStatus: 400, wantCode: cortex.CodeInvalidBody},
		{name: "text content type", contentType: "text/plain", body: `{"model":"cold",` + msgs + `}`,
			wantStatus: 415, wantCode: cortex.CodeUnsupportedMediaType},
		{name: "form content type", contentType: "application/x-www-form-urlencoded", body: `{"model":"cold",` + msgs + `}`,
			wantStatus: 415, wantCode: cortex.CodeUnsupportedMediaType},
		{name: "multipart content type", path: "/v1/embeddings", contentType: "multipart/form-data; boundary=x", body: `{"model":"cold","input":"x"}`,
			wantStatus: 415, wantCode: cortex.CodeUnsupportedMediaType},
		{name: "body over the limit", body: `{"model":"cold","messages":[{"role":"user","content":"` + strings.Repeat("x", limit) + `"}]}`,
			wantStatus: 413, wantCode: cortex.CodeRequestTooLarge},
		{name: "body over the limit without a length", chunked: true,
			body:       `{"model":"cold","messages":[{"role":"user","content":"` + strings.Repeat("x", limit) + `"}]}`,
			wantStatus: 413, wantCode: cortex.CodeRequestTooLarge},
		{name: "missing API key", header: []string{}, body: `{"model":"cold",` + msgs + `}`,
			wantStatus: 401, wantCode: cortex.CodeInvalidAPIKey, wantHeader: "WWW-Authenticate"},
		{name: "unknown API key", header: []string{"X-Api-Key", "sk-nobody"}, body: `{"model":"cold",` + msgs + `}`,
			wantStatus: 401, wantCode: cortex.CodeInvalidAPIKey, wantHeader: "WWW-Authenticate"},
		{name: "unknown route", path: "/v1/nope", body: `{"model":"cold",` + msgs + `}`,
			wantStatus: 404, wantCode: cortex.CodeNotFound},
		{name: "unknown route outside /v1", method: "GET", path: "/admin",
			wantStatus: 404, wantCode: cortex.CodeNotFound},
		{name: "wrong method", method: "GET", path: chat,
			wantStatus: 405, wantCode: cortex.CodeMethodNotAllowed, wantHeader: "Allow"},
		{name: "wrong method on models", method: "DELETE", path: "/v1/models",
			wantStatus: 405, wantCode: cortex.CodeMethodNotAllowed, wantHeader: "Allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			method, path, ct, hdr := tt.method, tt.path, tt.contentType, tt.header
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = chat
			}
			if ct == "" && method == http.MethodPost {
				ct = js
			}
			if hdr == nil {
				hdr = auth
			}
			status, h, body := sendRaw(t, s.srv, method, path, ct, tt.body, tt.chunked, hdr...)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", status, tt.wantStatus, body)
			}
			if got := envelope(t, body); got.Code != tt.wantCode {
				t.Errorf("code = %q, want %q; body %s", got.Code, tt.wantCode, body)
			}
			if tt.wantHeader != "" && h.Get(tt.wantHeader) == "" {
				t.Errorf("no %s header", tt.wantHeader)
			}
			if strings.Contains(body, badInputKey) {
				t.Errorf("the answer contains the API key: %s", body)
			}
		})
	}
	t.Cleanup(func() {
		// After every parallel subtest: nothing was held, spent, loaded or
		// sent.
		snap, err := local.Snapshot(context.Background(), entitlements.Principal{AccountID: "acct", KeyID: "acct"})
		if err != nil {
			t.Fatal(err)
		}
		if snap.Reserved != 0 || snap.Spent != 0 {
			t.Errorf("budget after the bad requests: reserved %d, spent %d; want 0 and 0", snap.Reserved, snap.Spent)
		}
		n := s.fleet.Neuron("n1")
		if n.Loads() != 0 || n.Requests() != 0 {
			t.Errorf("the neuron saw %d loads and %d requests, want none", n.Loads(), n.Requests())
		}
		if got := s.gw.InFlight(); got != 0 {
			t.Errorf("%d requests still in flight", got)
		}
	})
}

// TestSlowBody: a client that sends its headers and part of its body, and
// then nothing, is answered 408 request_timeout once the body read timeout
// passes, and the connection is closed; nothing was reserved or sent.
func TestSlowBody(t *testing.T) {
	t.Parallel()
	local := newLocal(t, entitlements.KeyConfig{Key: badInputKey, AccountID: "acct", HardCap: new(int64(100_000))})
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t),
		cortex.WithProvider(local), cortex.WithRequireAuth(true), cortex.WithBodyReadTimeout(100*time.Millisecond))
	body := chatBody("chat-a")
	raw := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", badInputKey, len(body), body[:len(body)/2])
	resp, b := httpxtest.Exchange(t, s.srv.Listener.Addr().String(), raw)
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("status %d, close %v; want 408 and the connection closed: %q %v", resp.StatusCode, resp.Close, b, resp.Header)
	}
	if got := envelope(t, string(b)); got.Code != cortex.CodeRequestTimeout {
		t.Errorf("code %q, want %q; body %s", got.Code, cortex.CodeRequestTimeout, b)
	}
	snap, err := local.Snapshot(t.Context(), entitlements.Principal{AccountID: "acct", KeyID: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Reserved != 0 || snap.Spent != 0 || s.fleet.Neuron("n1").Requests() != 0 {
		t.Errorf("after a slow body: reserved %d, spent %d, neuron requests %d; want none",
			snap.Reserved, snap.Spent, s.fleet.Neuron("n1").Requests())
	}
}

// TestBadNeuronAnswers covers neurons that answer the gateway with
// something it must not use: garbage for the endpoint of a model, or an
// endpoint on a host other than the neuron's. Both are a 502
// upstream_connection_error that names no host, the reservation is
// released, and the gateway never connects to the foreign host.
func TestBadNeuronAnswers(t *testing.T) {
	t.Parallel()
	const foreign = "neuron-elsewhere.invalid:8080"
	tests := []struct {
		name     string
		endpoint func(w http.ResponseWriter)
	}{
		{name: "garbage endpoint answer", endpoint: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "<html>not json")
		}},
		{name: "endpoint answer of the wrong shape", endpoint: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"url":["http://127.0.0.1:1"]}`)
		}},
		{name: "endpoint on another host", endpoint: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"url":"http://`+foreign+`"}`)
		}},
		{name: "endpoint with user info", endpoint: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"url":"http://user:pw@`+foreign+`"}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fleet := cortextest.NewFleet(t, cortextest.Spec{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}})
			agent := fleet.Neuron("n1").Agent()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/endpoint") {
					tt.endpoint(w)
					return
				}
				agent.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			rt := &hostRecorder{rt: &http.Transport{}}
			local := newLocal(t, entitlements.KeyConfig{Key: badInputKey, AccountID: "acct", HardCap: new(int64(100_000))})
			gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "n1", Endpoint: srv.URL}}, testCatalogue(t),
				cortex.WithTransport(rt), cortex.WithProvider(local), cortex.WithRequireAuth(true))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = gw.Shutdown(ctx)
				rt.rt.CloseIdleConnections()
			})
			if _, err := gw.Poller().(route.Refresher).Refresh(t.Context(), "n1"); err != nil {
				t.Fatal(err)
			}
			api := httptest.NewServer(gw)
			t.Cleanup(api.Close)

			status, h, body := sendRaw(t, api, http.MethodPost, "/v1/chat/completions", "application/json",
				chatBody("chat-a", `"max_tokens":3`), false, "X-Api-Key", badInputKey)
			if status != http.StatusBadGateway {
				t.Fatalf("status = %d, want 502; body %s", status, body)
			}
			if code := envelope(t, body).Code; code != cortex.CodeUpstreamConnection {
				t.Errorf("code = %q, want %q", code, cortex.CodeUpstreamConnection)
			}
			for _, leak := range []string{"127.0.0.1", "elsewhere", strings.TrimPrefix(srv.URL, "http://")} {
				if strings.Contains(body, leak) || strings.Contains(h.Get("Retry-After")+h.Get("Location"), leak) {
					t.Errorf("the answer names %q: %s", leak, body)
				}
			}
			if hosts := rt.hostsSeen(); contains(hosts, foreign) {
				t.Errorf("the gateway connected to the foreign host: %v", hosts)
			}
			snap, err := local.Snapshot(t.Context(), entitlements.Principal{AccountID: "acct", KeyID: "acct"})
			if err != nil {
				t.Fatal(err)
			}
			if snap.Reserved != 0 || snap.Spent != 0 {
				t.Errorf("budget: reserved %d, spent %d; want 0 and 0", snap.Reserved, snap.Spent)
			}
			if n := fleet.Neuron("n1"); n.Requests() != 0 || n.Loads() != 0 {
				t.Errorf("the neuron saw %d requests and %d loads, want none", n.Requests(), n.Loads())
			}
		})
	}
}

// hostRecorder is a RoundTripper that records the host of every request.
type hostRecorder struct {
	rt    *http.Transport
	mu    sync.Mutex
	hosts []string
}

func (h *hostRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.hosts = append(h.hosts, r.URL.Host)
	h.mu.Unlock()
	return h.rt.RoundTrip(r)
}

func (h *hostRecorder) hostsSeen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.hosts...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// sendRaw sends a request with exactly the given Content-Type (none when
// empty) and headers (name/value pairs); chunked hides the body's length.
func sendRaw(t *testing.T, srv *httptest.Server, method, path, contentType, body string, chunked bool, header ...string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd)
		}
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}
