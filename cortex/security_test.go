package cortex_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// Canaries: secrets that must appear nowhere the gateway writes.
const (
	canaryKey         = "sk-canary-7f3a9c2e5b1d4f60"
	canaryNeuronToken = "neuron-canary-0d9e8f7a6b5c"
)

// TestSecretsNeverLeak sends traffic of every kind with a distinctive API
// key (successes, streams, a stream whose engine crashes, refusals, a
// neuron that is down), then greps everything the gateway produced for
// the key and for the neuron's token: the logs at debug level, /metrics,
// every answer (bodies and headers, the status and model pages included)
// and the meter file. The neuron must never see the client's key either.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	meterPath := filepath.Join(t.TempDir(), "meter.jsonl")
	sink, err := metering.NewFileSink(meterPath)
	if err != nil {
		t.Fatal(err)
	}
	local := newLocal(t, entitlements.KeyConfig{Key: canaryKey, AccountID: "acct", KeyID: "key-1", HardCap: new(int64(1_000_000))})
	fleet := cortextest.NewFleet(t,
		cortextest.Spec{Name: "n1", Token: canaryNeuronToken, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
		cortextest.Spec{Name: "n2", Token: canaryNeuronToken, Models: []neuron.LoadSpec{loadedSpec("chat-b", 4000)},
			Sim: sim.Config{CrashAfterTokens: 2}},
	)
	gw, err := cortex.NewGateway(fleet.Configs(), testCatalogue(t), cortex.WithProvider(local), cortex.WithRequireAuth(true),
		cortex.WithLogger(logger), cortex.WithMeter(sink), cortex.WithPollerOptions(route.WithFailureThreshold(1)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	refresh := func() {
		for _, n := range []string{"n1", "n2"} {
			_, _ = gw.Poller().(route.Refresher).Refresh(t.Context(), n)
		}
	}
	refresh()

	var seen strings.Builder
	record := func(resp *http.Response, err error) {
		if err != nil {
			seen.WriteString(err.Error() + "\n")
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body) // a broken stream ends with an error: keep what came
		seen.Write(b)
		for k, vv := range resp.Header {
			seen.WriteString(k + ": " + strings.Join(vv, ",") + "\n")
		}
	}
	do := func(method, path, body string, header ...string) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		record(srv.Client().Do(req))
	}
	for _, h := range [][]string{{"Authorization", "Bearer " + canaryKey}, {"X-Api-Key", canaryKey}} {
		do("POST", "/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`), h...)
		do("POST", "/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`, `"stream":true`), h...)
		do("POST", "/v1/chat/completions", chatBody("chat-b", `"max_tokens":10`, `"stream":true`), h...) // the engine crashes
		do("POST", "/v1/completions", `{"model":"chat-a","prompt":"hi","max_tokens":2}`, h...)
		do("POST", "/v1/embeddings", `{"model":"chat-a","input":"hi"}`, h...)
		do("POST", "/v1/chat/completions", chatBody("no-such-model"), h...)
		do("POST", "/v1/chat/completions", `{"model":`, h...)
		do("POST", "/v1/chat/completions", chatBody("chat-a", `"max_tokens":99999999999`), h...)
		do("POST", "/v1/chat/completions", chatBody("chat-a"), append([]string{"Content-Type", "text/plain"}, h...)...)
		do("GET", "/v1/chat/completions", "", h...)
		do("GET", "/v1/models", "", h...)
		do("GET", "/health", "", h...)
		do("GET", "/status", "", h...)
		do("GET", "/status.json", "", h...)
		do("GET", "/nope", "", h...)
	}
	// A wrong key that shares the canary's prefix, and a neuron that is
	// down.
	do("POST", "/v1/chat/completions", chatBody("chat-a"), "Authorization", "Bearer "+canaryKey+"-wrong")
	fleet.Neuron("n1").Stop()
	refresh()
	do("POST", "/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`), "X-Api-Key", canaryKey)

	metrics := httptest.NewRecorder()
	gw.MetricsHandler().ServeHTTP(metrics, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	meter, err := os.ReadFile(meterPath)
	if err != nil {
		t.Fatal(err)
	}
	var neuronSaw strings.Builder
	for _, n := range fleet.Neurons() {
		hdr, body := n.LastRequest()
		for k, vv := range hdr {
			neuronSaw.WriteString(k + ": " + strings.Join(vv, ",") + "\n")
		}
		neuronSaw.Write(body)
	}
	places := []struct{ where, text string }{
		{"logs", logs.String()},
		{"metrics", metrics.Body.String()},
		{"answers", seen.String()},
		{"meter file", string(meter)},
	}
	for _, p := range places {
		for _, secret := range []string{canaryKey, canaryKey[:16], canaryNeuronToken} {
			if strings.Contains(p.text, secret) {
				t.Errorf("%q found in the %s:\n%s", secret, p.where, p.text)
			}
		}
	}
	if strings.Contains(neuronSaw.String(), canaryKey[:16]) {
		t.Errorf("a neuron saw the client's key:\n%s", neuronSaw.String())
	}
	// The test greps real output: the traffic was logged, metered and
	// answered, under the key's id.
	if !strings.Contains(logs.String(), `"key-1"`) || !strings.Contains(string(meter), `"key-1"`) ||
		!strings.Contains(seen.String(), "chat.completion") || !strings.Contains(seen.String(), cortex.CodeUpstreamConnection) {
		t.Errorf("the traffic left no trace to check: logs %d bytes, meter %d bytes, answers %d bytes",
			logs.Len(), len(meter), seen.Len())
	}
}

// TestOnlyAllowlistedHeadersReachTheNeuron sends a request with headers of
// every kind: credentials, cookies, forged principal headers, proxy and
// hop-by-hop headers, compression and headers the gateway has never heard
// of. The neuron gets the allowlist (less what Connection names as
// hop-by-hop), the request id, the neuron's token and the gateway's
// principal headers, and nothing else.
func TestOnlyAllowlistedHeadersReachTheNeuron(t *testing.T) {
	t.Parallel()
	local := newLocal(t, entitlements.KeyConfig{Key: canaryKey, AccountID: "acct", KeyID: "key-1"})
	s := newStack(t, []cortextest.Spec{{Name: "n1", Token: "tok", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}},
		testCatalogue(t), cortex.WithProvider(local), cortex.WithRequireAuth(true))
	status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`),
		"Authorization", "Bearer "+canaryKey,
		"X-Api-Key", canaryKey,
		"Cookie", "session=secret",
		neuron.HeaderAccountID, "someone-else",
		neuron.HeaderKeyID, "forged",
		"Proxy-Authorization", "Basic secret",
		"X-Forwarded-For", "10.9.8.7",
		"Forwarded", "for=10.9.8.7",
		"X-Real-Ip", "10.9.8.7",
		"Accept-Encoding", "gzip, br",
		"Te", "trailers",
		"Connection", "Tracestate",
		"Tracestate", "hop-by-hop-by-request",
		"X-Request-Id", "req-7",
		"Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"Openai-Beta", "assistants=v2",
		"Accept", "application/json",
		"User-Agent", "security-test/1.0",
		"Origin", "https://evil.example",
		"X-Custom-Thing", "anything",
		"Anthropic-Version", "2023-06-01",
	)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	hdr, _ := s.fleet.Neuron("n1").LastRequest()
	got := map[string]string{}
	for k := range hdr {
		got[k] = hdr.Get(k)
	}
	delete(got, "Content-Length") // the transport's, from the body
	want := map[string]string{
		"Authorization":        "Bearer tok",
		neuron.HeaderAccountID: "acct",
		neuron.HeaderKeyID:     "key-1",
		"Content-Type":         "application/json",
		"Accept":               "application/json",
		"User-Agent":           "security-test/1.0",
		"Traceparent":          "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"Openai-Beta":          "assistants=v2",
		"X-Request-Id":         "req-7",
		// The output allowance: one sequence of the 2 tokens reserved.
		neuron.HeaderMaxOutputTokens: "2",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("headers at the neuron (-got +want):\n%s", diff)
	}

	// Without the Connection header, the trace state passes.
	status, _, body = s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`),
		"X-Api-Key", canaryKey, "Tracestate", "vendor=42")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	hdr, _ = s.fleet.Neuron("n1").LastRequest()
	if got := hdr.Get("Tracestate"); got != "vendor=42" {
		t.Errorf("Tracestate at the neuron = %q, want vendor=42", got)
	}
}

// TestNeuronTokenOnEveryCall runs a gateway over a neuron that requires
// its token, through polls, a cold load, the endpoint lookup and
// inference, and checks that every call the gateway made carried the
// token. A gateway with the wrong token never gets the neuron healthy and
// serves nothing from it.
func TestNeuronTokenOnEveryCall(t *testing.T) {
	t.Parallel()
	const token = "per-neuron-token-42"
	fleet := cortextest.NewFleet(t, cortextest.Spec{Name: "n1", Token: token})
	for _, tt := range []struct {
		name       string
		token      string
		wantStatus int
	}{
		{name: "right token", token: token, wantStatus: http.StatusOK},
		{name: "wrong token", token: "not-" + token, wantStatus: http.StatusServiceUnavailable},
		{name: "no token", token: "", wantStatus: http.StatusServiceUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rt := &authRecorder{rt: &http.Transport{}}
			gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "n1", Endpoint: fleet.Neuron("n1").URL(), Token: tt.token}},
				testCatalogue(t), cortex.WithTransport(rt), cortex.WithPollerOptions(route.WithFailureThreshold(1)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = gw.Shutdown(ctx)
				rt.rt.CloseIdleConnections()
			})
			_, _ = gw.Poller().(route.Refresher).Refresh(t.Context(), "n1")
			srv := httptest.NewServer(gw)
			t.Cleanup(srv.Close)
			// chat-a is not loaded: the right token loads it, then serves.
			status, _, body := sendRaw(t, srv, "POST", "/v1/chat/completions", "application/json",
				chatBody("chat-a", `"max_tokens":2`), false)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", status, tt.wantStatus, body)
			}
			calls := rt.calls()
			if len(calls) == 0 {
				t.Fatal("the gateway made no call to the neuron")
			}
			var paths []string
			for _, c := range calls {
				if c.auth != "Bearer "+tt.token && tt.token != "" {
					t.Errorf("%s went without the token (Authorization %q)", c.path, c.auth)
				}
				paths = append(paths, c.path)
			}
			if tt.wantStatus == http.StatusOK {
				for _, p := range []string{"/discovery", "/health", "/models", "/models/load", "/models/chat-a/endpoint", "/v1/chat/completions"} {
					if !slices.Contains(paths, p) {
						t.Errorf("no call to %s in %v", p, paths)
					}
				}
			}
		})
	}
}

// authRecorder is a RoundTripper that records the path and Authorization
// of every request.
type authRecorder struct {
	rt *http.Transport
	mu sync.Mutex
	cs []authCall
}

type authCall struct{ path, auth string }

func (a *authRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	a.mu.Lock()
	a.cs = append(a.cs, authCall{path: r.URL.Path, auth: r.Header.Get("Authorization")})
	a.mu.Unlock()
	return a.rt.RoundTrip(r)
}

func (a *authRecorder) calls() []authCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.cs)
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}
