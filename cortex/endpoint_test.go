package cortex_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

func TestRewriteEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		configured string
		reported   string
		want       string
		wantErr    bool
	}{
		{"loopback v4 keeps port and path", "http://10.0.0.5:31400", "http://127.0.0.1:40123/prefix/", "http://10.0.0.5:40123/prefix", false},
		{"loopback range", "http://10.0.0.5:31400", "http://127.1.2.3:40123", "http://10.0.0.5:40123", false},
		{"localhost", "http://gpu-01.lan:31400", "http://LocalHost:8080", "http://gpu-01.lan:8080", false},
		{"loopback v6", "http://gpu-01.lan:31400", "http://[::1]:8080", "http://gpu-01.lan:8080", false},
		{"unspecified v4", "http://gpu-01.lan:31400", "http://0.0.0.0:8080/v", "http://gpu-01.lan:8080/v", false},
		{"unspecified v6 to a v6 neuron", "http://[fd00::5]:31400", "http://[::]:8080", "http://[fd00::5]:8080", false},
		{"no port keeps the default", "http://10.0.0.5:31400", "https://localhost", "https://10.0.0.5", false},
		{"the neuron's own host", "http://gpu-01.lan:31400", "http://GPU-01.lan:31401", "http://GPU-01.lan:31401", false},
		{"another host is refused", "http://10.0.0.5:31400", "http://10.0.0.6:31400", "", true},
		{"a public host is refused", "http://10.0.0.5:31400", "https://example.com/v1", "", true},
		{"not http", "http://10.0.0.5:31400", "ftp://127.0.0.1:21", "", true},
		{"user info", "http://10.0.0.5:31400", "http://u:p@127.0.0.1:1", "", true},
		{"query", "http://10.0.0.5:31400", "http://127.0.0.1:1/?x=1", "", true},
		{"no host", "http://10.0.0.5:31400", "http:///v1", "", true},
		{"garbage", "http://10.0.0.5:31400", "::not a url", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base, err := url.Parse(tt.configured)
			if err != nil {
				t.Fatal(err)
			}
			got, err := cortex.RewriteEndpoint(base, tt.reported)
			if (err != nil) != tt.wantErr {
				t.Fatalf("RewriteEndpoint(%q, %q) error %v, want error: %v", tt.configured, tt.reported, err, tt.wantErr)
			}
			if err == nil && got.String() != tt.want {
				t.Errorf("RewriteEndpoint(%q, %q) = %q, want %q", tt.configured, tt.reported, got, tt.want)
			}
		})
	}
}

// recordingTransport records the hosts of the inference requests it
// sends.
type recordingTransport struct {
	rt    http.RoundTripper
	mu    sync.Mutex
	hosts []string
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path == "/v1/chat/completions" {
		r.mu.Lock()
		r.hosts = append(r.hosts, req.URL.Host)
		r.mu.Unlock()
	}
	return r.rt.RoundTrip(req)
}

// countingAdmin counts the endpoint calls of a NeuronAdmin.
type countingAdmin struct {
	cortex.NeuronAdmin
	mu        sync.Mutex
	endpoints int
	answer    string // when set, reported instead of the neuron's answer
}

func (c *countingAdmin) Endpoint(ctx context.Context, id string) (string, error) {
	c.mu.Lock()
	c.endpoints++
	answer := c.answer
	c.mu.Unlock()
	if answer != "" {
		return answer, nil
	}
	return c.NeuronAdmin.Endpoint(ctx, id)
}

func (c *countingAdmin) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endpoints
}

// The endpoint a neuron reports is asked once per (neuron, model) until
// the model's state changes, and its loopback host is swapped for the
// neuron's configured host.
func TestEndpointIsCachedAndRewritten(t *testing.T) {
	t.Parallel()
	fleet := cortextest.NewFleet(t, cortextest.Spec{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}})
	n := fleet.Neuron("n1")
	// The neuron is configured as "localhost:port"; it reports
	// "127.0.0.1:port" (the Host it was reached at), which the gateway
	// swaps back to localhost.
	u, _ := url.Parse(n.URL())
	cfg := n.Config()
	cfg.Endpoint = "http://localhost:" + u.Port()
	admin := &countingAdmin{}
	rec := &recordingTransport{rt: http.DefaultTransport}
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{cfg}, testCatalogue(t),
		cortex.WithTransport(rec),
		cortex.WithAdminFactory(func(nc cortex.NeuronConfig) (cortex.NeuronAdmin, error) {
			c, err := neuron.NewClient(u.String()) // the real address, for the management calls
			admin.NeuronAdmin = c
			return admin, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	p := gw.Poller().(*route.FleetPoller)
	if _, err := p.Refresh(t.Context(), "n1"); err != nil {
		t.Fatal(err)
	}
	serve := func() int {
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(chatBody("chat-a", `"max_tokens":1`))))
		return w.Code
	}
	for range 3 {
		if code := serve(); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	if got := admin.calls(); got != 1 {
		t.Errorf("3 requests asked the endpoint %d times, want 1", got)
	}
	rec.mu.Lock()
	hosts := slices.Clone(rec.hosts)
	rec.mu.Unlock()
	if diff := cmp.Diff(hosts, []string{cfg.Endpoint[7:], cfg.Endpoint[7:], cfg.Endpoint[7:]}); diff != "" {
		t.Errorf("inference hosts (-got +want):\n%s", diff)
	}

	// The model is reloaded: a new LoadedAt invalidates the cached endpoint.
	c := n.Client()
	if err := c.Unload(t.Context(), "chat-a", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(t.Context(), loadedSpec("chat-a", 4000)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Refresh(t.Context(), "n1"); err != nil {
		t.Fatal(err)
	}
	if code := serve(); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if got := admin.calls(); got != 2 {
		t.Errorf("after a reload: %d endpoint calls, want 2", got)
	}

	// A neuron that reports a foreign host is refused: 502, nothing sent.
	admin.mu.Lock()
	admin.answer = "http://203.0.113.9:" + u.Port()
	admin.mu.Unlock()
	if err := c.Unload(t.Context(), "chat-a", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(t.Context(), loadedSpec("chat-a", 4000)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Refresh(t.Context(), "n1"); err != nil {
		t.Fatal(err)
	}
	if code := serve(); code != http.StatusBadGateway {
		t.Errorf("foreign endpoint: status %d, want 502", code)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.hosts) != 4 {
		t.Errorf("inference requests sent: %q, want 4 (none to the foreign host)", rec.hosts)
	}
}
