package cortex_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// stack is a gateway over a cortextest fleet, served by an httptest
// server. The gateway's default poller is driven by the test (refresh).
type stack struct {
	t     *testing.T
	fleet *cortextest.Fleet
	gw    *cortex.Gateway
	srv   *httptest.Server
}

// newStack starts the fleet and a gateway over it (failure threshold 1),
// and polls every neuron once. Routing ties go to the first neuron name
// unless opts say otherwise (WithRouteSeeds). The per-call timeout is generous: tests
// drive polls themselves, and a loaded machine must not turn a slow first
// poll into an unhealthy neuron (a stopped neuron fails at once).
func newStack(t *testing.T, specs []cortextest.Spec, cat *catalogue.Catalogue, opts ...cortex.GatewayOption) *stack {
	t.Helper()
	return newStackOn(t, cortextest.NewFleet(t, specs...), cat, opts...)
}

// newStackOn is newStack over a fleet already running: several gateways
// over one fleet, as several cortex replicas.
func newStackOn(t *testing.T, fleet *cortextest.Fleet, cat *catalogue.Catalogue, opts ...cortex.GatewayOption) *stack {
	t.Helper()
	// Ties go to the first neuron name, as the tests that expect one
	// replica want; a test of the spread sets its own seeds.
	opts = append([]cortex.GatewayOption{cortex.WithPollerOptions(
		route.WithFailureThreshold(1), route.WithCallTimeout(30*time.Second)),
		cortex.WithRouteSeeds(func() uint64 { return 0 })}, opts...)
	gw, err := cortex.NewGateway(fleet.Configs(), cat, opts...)
	if err != nil {
		t.Fatalf("NewGateway: %v", err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	s := &stack{t: t, fleet: fleet, gw: gw, srv: srv}
	s.refresh()
	return s
}

// refresh polls every neuron now.
func (s *stack) refresh() {
	s.t.Helper()
	p, ok := s.gw.Poller().(*route.FleetPoller)
	if !ok {
		s.t.Fatalf("Poller() is a %T", s.gw.Poller())
	}
	for _, n := range s.fleet.Neurons() {
		_, _ = p.Refresh(s.t.Context(), n.Name())
	}
}

// do sends a request to the gateway; header holds name/value pairs.
func (s *stack) do(method, path, body string, header ...string) *http.Response {
	s.t.Helper()
	return s.doCtx(s.t.Context(), method, path, body, header...)
}

func (s *stack) doCtx(ctx context.Context, method, path, body string, header ...string) *http.Response {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.srv.URL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// post sends a JSON body and returns the status and body of the answer.
func (s *stack) post(path, body string, header ...string) (int, http.Header, string) {
	s.t.Helper()
	resp := s.do(http.MethodPost, path, body, header...)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("reading the answer of %s: %v", path, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// chatBody is a chat request for model; extra is more JSON members.
func chatBody(model string, extra ...string) string {
	b := `{"model":"` + model + `","messages":[{"role":"user","content":"Hello there"}]`
	for _, e := range extra {
		b += "," + e
	}
	return b + "}"
}

// envelope decodes an OpenAI error envelope, failing the test when body is
// not one.
func envelope(t *testing.T, body string) oaierr.Body {
	t.Helper()
	b, ok := oaierr.Read(strings.NewReader(body))
	if !ok {
		t.Fatalf("not an error envelope: %s", body)
	}
	return b
}

// answerModel returns the "model" of a JSON answer.
func answerModel(t *testing.T, body string) string {
	t.Helper()
	var v struct {
		Model string `json:"model"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, body)
	}
	return v.Model
}

// testCatalogue is the catalogue of the gateway tests. Neurons have two
// 24 GiB GPUs unless a test says otherwise.
func testCatalogue(t testing.TB) *catalogue.Catalogue {
	return newCatalogue(t, []catalogue.Model{
		{ID: "chat-a", VRAMMB: 4000, Limit: catalogue.Limit{Context: 4096, Output: 64}, Capabilities: []string{"chat", "completions"},
			Cost: &catalogue.Cost{Input: 1, Output: 2}},
		{ID: "chat-b", VRAMMB: 4000},
		{ID: "tiny-context", VRAMMB: 1000, Limit: catalogue.Limit{Context: 16}},
		{ID: "giant", VRAMMB: 1 << 20},
	}, map[string]string{"fast": "chat-a"})
}

// loadedSpec is a LoadSpec of a catalogue model, as cortex would send it.
func loadedSpec(id string, vramMB uint64) neuron.LoadSpec {
	return neuron.LoadSpec{ModelID: id, VRAMMB: vramMB}
}

func TestServeLoadedModel(t *testing.T) {
	t.Parallel()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
	status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := answerModel(t, body); got != "chat-a" {
		t.Errorf("model = %q", got)
	}
	n := s.fleet.Neuron("n1")
	if n.Requests() != 1 || n.Loads() != 0 {
		t.Errorf("neuron saw %d requests and %d loads, want 1 and 0", n.Requests(), n.Loads())
	}
}

func TestAliasIsRewrittenToTheModelID(t *testing.T) {
	t.Parallel()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
	status, _, body := s.post("/v1/chat/completions", chatBody("fast", `"max_tokens":2`))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	_, sent := s.fleet.Neuron("n1").LastRequest()
	var got struct {
		Model     string `json:"model"`
		MaxTokens int    `json:"max_tokens"`
	}
	if err := json.Unmarshal(sent, &got); err != nil {
		t.Fatalf("the neuron got %s: %v", sent, err)
	}
	if got.Model != "chat-a" || got.MaxTokens != 2 {
		t.Errorf("the neuron got model %q, max_tokens %d; want chat-a, 2 (body %s)", got.Model, got.MaxTokens, sent)
	}
	if m := answerModel(t, body); m != "chat-a" {
		t.Errorf("answer model = %q", m)
	}
}

func TestRoutesToTheLeastBusyReplica(t *testing.T) {
	t.Parallel()
	specs := []cortextest.Spec{
		// n1 is slow, so that a long answer stays in flight.
		{Name: "n1", Sim: sim.Config{TokensPerSecond: 1}, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
		{Name: "n2", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
	}
	s := newStack(t, specs, testCatalogue(t))
	// Ties go to the first name: n1 serves while both are idle.
	if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":1`)); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if got := s.fleet.Neuron("n1").Requests(); got != 1 {
		t.Fatalf("idle fleet: n1 got %d requests, want 1", got)
	}

	// Make n1 busy behind cortex's back: a stream held open directly on
	// the neuron, which its /health then reports in flight.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.fleet.Neuron("n1").URL()+"/v1/chat/completions",
		strings.NewReader(chatBody("chat-a", `"stream":true`, `"max_tokens":1000`)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("reading the held stream: %v", err)
	}
	waitFor(t, "n1 to report a request in flight", func() bool {
		s.refresh()
		m := s.gw.Fleet().Neuron("n1").Model("chat-a")
		return m != nil && m.InFlight == 1
	})
	for range 3 {
		if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":1`)); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
	}
	if n1, n2 := s.fleet.Neuron("n1").Requests(), s.fleet.Neuron("n2").Requests(); n1 != 2 || n2 != 3 {
		t.Errorf("with n1 busy: n1 got %d requests (want 2: the first and the held one), n2 got %d (want 3)", n1, n2)
	}
	cancel()
}

func TestRouteErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		specs     []cortextest.Spec
		stop      string // neuron to stop before the request
		model     string
		status    int
		code      string
		wantRetry bool
	}{
		{
			name:   "unknown model",
			specs:  cortextest.Named("n1"),
			model:  "nope",
			status: http.StatusNotFound,
			code:   cortex.CodeModelNotFound,
		},
		{
			name:   "no neuron can ever hold the model",
			specs:  cortextest.Named("n1", "n2"),
			model:  "giant",
			status: http.StatusBadRequest,
			code:   cortex.CodeModelNotDeployable,
		},
		{
			name: "only an unhealthy neuron could hold it",
			specs: []cortextest.Spec{
				{Name: "small", GPUs: []uint64{2000}},
				{Name: "big"},
			},
			stop:      "big",
			model:     "chat-b",
			status:    http.StatusServiceUnavailable,
			code:      cortex.CodeServiceUnavailable,
			wantRetry: true,
		},
		{
			name:      "no healthy neuron",
			specs:     cortextest.Named("n1"),
			stop:      "n1",
			model:     "chat-a",
			status:    http.StatusServiceUnavailable,
			code:      cortex.CodeServiceUnavailable,
			wantRetry: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, tt.specs, testCatalogue(t))
			if tt.stop != "" {
				s.fleet.Neuron(tt.stop).Stop()
				s.refresh()
			}
			status, hdr, body := s.post("/v1/chat/completions", chatBody(tt.model))
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if e := envelope(t, body); e.Code != tt.code {
				t.Errorf("code %q, want %q (%s)", e.Code, tt.code, e.Message)
			}
			if got := hdr.Get("Retry-After") != ""; got != tt.wantRetry {
				t.Errorf("Retry-After %q, want one: %v", hdr.Get("Retry-After"), tt.wantRetry)
			}
			for _, n := range s.fleet.Neurons() {
				if n.Loads() != 0 || n.Requests() != 0 {
					t.Errorf("%s got %d loads and %d requests, want none", n.Name(), n.Loads(), n.Requests())
				}
			}
		})
	}
}

// staticPoller is a Poller that always returns one snapshot.
type staticPoller struct{ s *route.Snapshot }

func (p staticPoller) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (p staticPoller) Snapshot() *route.Snapshot     { return p.s }

// snapshot returns a snapshot of the given neurons taken at t0.
func snapshot(neurons ...route.NeuronState) *route.Snapshot {
	return &route.Snapshot{At: t0, Neurons: neurons}
}

// switchPoller is a Poller and Refresher whose snapshot the test sets; every
// Refresh is counted.
type switchPoller struct {
	s         atomic.Pointer[route.Snapshot]
	refreshes atomic.Int64
}

func (p *switchPoller) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (p *switchPoller) Snapshot() *route.Snapshot     { return p.s.Load() }
func (p *switchPoller) Refresh(context.Context, string) (*route.Snapshot, error) {
	p.refreshes.Add(1)
	return p.s.Load(), nil
}

// A model that is only recovering (its engine restarting) is waited for as
// a cold load is: a non-streaming request up to the cold-start wait, then
// 503 with Retry-After.
func TestRecoveringModelIsWaitedFor(t *testing.T) {
	t.Parallel()
	cat := testCatalogue(t)
	p := &switchPoller{}
	p.s.Store(snapshot(host("n1", gpus(24576), model("chat-a", neuron.StatusRecovering, 4000))))
	clock := newFakeClock()
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "n1", Endpoint: "http://n1.invalid:31400"}}, cat,
		cortex.WithPoller(p), cortex.WithRetryAfter(7*time.Second), cortex.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		gw.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(chatBody("fast"))))
	}()
	waitFor(t, "the recovery wait to refresh the neuron", func() bool { return p.refreshes.Load() > 0 })
	waitArmed(t, clock, 2) // the recovery poll's ticker and the cold-start wait
	clock.Advance(cortex.DefaultColdStartWait)
	<-done
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if ra := w.Header().Get("Retry-After"); ra != "7" {
		t.Errorf("Retry-After = %q, want 7", ra)
	}
	if e := envelope(t, w.Body.String()); e.Code != cortex.CodeServiceUnavailable || !strings.Contains(e.Message, "still loading") {
		t.Errorf("envelope %+v", e)
	}
}

// A request for a recovering model is served once the model is loaded
// again.
func TestRecoveredModelIsServed(t *testing.T) {
	t.Parallel()
	cat := testCatalogue(t)
	fl := cortextest.NewFleet(t, cortextest.Spec{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}})
	n1 := fl.Neuron("n1")
	state := func(s neuron.ModelStatus) route.NeuronState {
		h := host("n1", gpus(24576), model("chat-a", s, 4000))
		h.Endpoint = n1.URL()
		return h
	}
	p := &switchPoller{}
	p.s.Store(snapshot(state(neuron.StatusRecovering)))
	gw, err := cortex.NewGateway(fl.Configs(), cat, cortex.WithPoller(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	srv := httptest.NewServer(gw)
	defer srv.Close()
	answer := make(chan *http.Response, 1)
	go func() {
		resp, err := srv.Client().Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("fast", `"max_tokens":2`)))
		if err != nil {
			t.Error(err)
			close(answer)
			return
		}
		answer <- resp
	}()
	waitFor(t, "the recovery wait to refresh the neuron", func() bool { return p.refreshes.Load() > 0 })
	p.s.Store(snapshot(state(neuron.StatusLoaded)))
	resp := <-answer
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d: %s", resp.StatusCode, body)
	}
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("tiny-context", 1000)}}}, testCatalogue(t),
		cortex.WithMaxBodyBytes(4096))
	long := strings.Repeat("word ", 200)
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		code   string
	}{
		{"not JSON", http.MethodPost, "/v1/chat/completions", `{"model":`, http.StatusBadRequest, cortex.CodeInvalidBody},
		{"model not a string", http.MethodPost, "/v1/chat/completions", `{"model":3}`, http.StatusBadRequest, cortex.CodeInvalidBody},
		{"no model", http.MethodPost, "/v1/completions", `{"prompt":"hi"}`, http.StatusBadRequest, cortex.CodeMissingModel},
		{"body too large", http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"pad":"`+strings.Repeat("x", 5000)+`"`), http.StatusRequestEntityTooLarge, cortex.CodeRequestTooLarge},
		{"prompt over the context", http.MethodPost, "/v1/chat/completions", `{"model":"tiny-context","messages":[{"role":"user","content":"` + long + `"}]}`, http.StatusBadRequest, cortex.CodeContextLengthExceeded},
		{"unknown route", http.MethodPost, "/v1/nope", `{}`, http.StatusNotFound, cortex.CodeNotFound},
		{"wrong method", http.MethodGet, "/v1/chat/completions", "", http.StatusMethodNotAllowed, cortex.CodeMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.do(tt.method, tt.path, tt.body)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if e := envelope(t, string(b)); e.Code != tt.code {
				t.Errorf("code %q, want %q (%s)", e.Code, tt.code, e.Message)
			}
		})
	}
	if n := s.fleet.Neuron("n1").Requests(); n != 0 {
		t.Errorf("the neuron got %d requests, want none", n)
	}
}

func TestUpstreamErrorPassesThroughUnchanged(t *testing.T) {
	t.Parallel()
	const errBody = `{"error":{"message":"the engine is a teapot","type":"invalid_request_error","code":"teapot","param":null}}` + "\n"
	engine := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "42")
		w.Header().Set("X-Engine", "yes")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, errBody)
	})
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: engine, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
	status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-a"))
	if status != http.StatusTeapot {
		t.Fatalf("status %d: %s", status, body)
	}
	if body != errBody {
		t.Errorf("body %q, want %q", body, errBody)
	}
	// Only the relayed headers pass: the engine's own stay in the fleet.
	for k, want := range map[string]string{"Content-Type": "application/problem+json", "Retry-After": "42", "X-Engine": ""} {
		if got := hdr.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestRetriesOnceOnAnotherReplica(t *testing.T) {
	t.Parallel()
	specs := []cortextest.Spec{
		{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
		{Name: "n2", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
	}
	s := newStack(t, specs, testCatalogue(t))
	// n1 serves first (ties go to the first name), which caches its
	// endpoint; then it goes down without the poller noticing.
	if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":1`)); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	s.fleet.Neuron("n1").Stop()
	for i := range 2 {
		status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":1`))
		if status != http.StatusOK {
			t.Fatalf("request %d after n1 stopped: status %d: %s", i, status, body)
		}
	}
	if got := s.fleet.Neuron("n2").Requests(); got != 2 {
		t.Errorf("n2 got %d requests, want 2", got)
	}

	// With n2 down too there is no replica left: 502.
	s.fleet.Neuron("n2").Stop()
	status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":1`))
	if status != http.StatusBadGateway {
		t.Fatalf("status %d, want 502: %s", status, body)
	}
	if e := envelope(t, body); e.Code != cortex.CodeUpstreamConnection || strings.Contains(e.Message, "127.0.0.1") {
		t.Errorf("envelope %+v: want %s without addresses", e, cortex.CodeUpstreamConnection)
	}
}

func TestAuthAndBudget(t *testing.T) {
	t.Parallel()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-rich", AccountID: "rich", HardCap: ptr(int64(1_000_000))},
		{Key: "sk-poor", AccountID: "poor", HardCap: ptr(int64(10))},
		{Key: "sk-usd", AccountID: "usd", Unit: "usd", HardCapUSD: ptr(1.0)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	spec := cortextest.Spec{Name: "n1", Token: "neuron-secret", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}
	s := newStack(t, []cortextest.Spec{spec}, testCatalogue(t), cortex.WithProvider(local), cortex.WithRequireAuth(true))
	n := s.fleet.Neuron("n1")

	t.Run("missing key", func(t *testing.T) {
		status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-a"))
		if status != http.StatusUnauthorized || envelope(t, body).Code != cortex.CodeInvalidAPIKey {
			t.Fatalf("status %d: %s", status, body)
		}
		if hdr.Get("WWW-Authenticate") == "" {
			t.Error("no WWW-Authenticate")
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		status, _, body := s.post("/v1/chat/completions", chatBody("chat-a"), "Authorization", "Bearer sk-nope")
		if status != http.StatusUnauthorized || envelope(t, body).Code != cortex.CodeInvalidAPIKey {
			t.Fatalf("status %d: %s", status, body)
		}
	})
	t.Run("over budget is never dispatched", func(t *testing.T) {
		status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":5`), "x-api-key", "sk-poor")
		if status != http.StatusTooManyRequests || envelope(t, body).Code != cortex.CodeInsufficientQuota {
			t.Fatalf("status %d: %s", status, body)
		}
		if n.Requests() != 0 {
			t.Errorf("the neuron got %d requests", n.Requests())
		}
		snap, err := local.Snapshot(t.Context(), entitlements.Principal{AccountID: "poor", KeyID: "poor"})
		if err != nil || snap.Spent != 0 || snap.Reserved != 0 {
			t.Errorf("poor's budget: %+v, %v; want nothing spent or reserved", snap, err)
		}
	})
	t.Run("served and settled", func(t *testing.T) {
		status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`),
			"Authorization", "Bearer sk-rich", neuron.HeaderAccountID, "forged", "Cookie", "a=b")
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var answer struct {
			Usage struct {
				PromptTokens     int64 `json:"prompt_tokens"`
				CompletionTokens int64 `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(body), &answer); err != nil {
			t.Fatal(err)
		}
		snap, err := local.Snapshot(t.Context(), entitlements.Principal{AccountID: "rich", KeyID: "rich"})
		if err != nil {
			t.Fatal(err)
		}
		want := entitlements.Amount(answer.Usage.PromptTokens + answer.Usage.CompletionTokens)
		if snap.Spent != want || snap.Reserved != 0 || want == 0 {
			t.Errorf("rich's budget: spent %d reserved %d; want spent %d (the usage), nothing reserved", snap.Spent, snap.Reserved, want)
		}
		hdr, _ := n.LastRequest()
		for k, want := range map[string]string{
			"Authorization":        "Bearer neuron-secret",
			neuron.HeaderAccountID: "rich",
			neuron.HeaderKeyID:     "rich",
			"Cookie":               "",
			"X-Api-Key":            "",
			"Content-Type":         "application/json",
		} {
			if got := hdr.Get(k); got != want {
				t.Errorf("the neuron got %s = %q, want %q", k, got, want)
			}
		}
	})
	t.Run("priced in micro-dollars", func(t *testing.T) {
		status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`), "x-api-key", "sk-usd")
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var answer struct {
			Usage struct {
				PromptTokens     int64 `json:"prompt_tokens"`
				CompletionTokens int64 `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(body), &answer); err != nil {
			t.Fatal(err)
		}
		snap, err := local.Snapshot(t.Context(), entitlements.Principal{AccountID: "usd", KeyID: "usd"})
		if err != nil {
			t.Fatal(err)
		}
		// chat-a costs $1 and $2 per 1M tokens: 1 and 2 micro-dollars a token.
		want := entitlements.Amount(answer.Usage.PromptTokens + 2*answer.Usage.CompletionTokens)
		if snap.Spent != want || snap.Reserved != 0 {
			t.Errorf("usd's budget: spent %d reserved %d; want spent %d", snap.Spent, snap.Reserved, want)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func TestUnavailableProviderIsRetryable(t *testing.T) {
	t.Parallel()
	p := &fakeProvider{resolve: func(context.Context, string) (entitlements.Principal, error) {
		return entitlements.Principal{}, &entitlements.UnavailableError{RetryAfter: 3 * time.Second, Err: errors.New("redis down")}
	}}
	s := newStack(t, cortextest.Named("n1"), testCatalogue(t), cortex.WithProvider(p), cortex.WithRequireAuth(true))
	status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-a"), "Authorization", "Bearer k")
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "3" {
		t.Fatalf("status %d, Retry-After %q: %s", status, hdr.Get("Retry-After"), body)
	}
	if strings.Contains(body, "redis") {
		t.Errorf("the answer leaks the cause: %s", body)
	}
}

// fakeProvider is an entitlements.Provider with func fields; only resolve
// is used.
type fakeProvider struct {
	resolve func(context.Context, string) (entitlements.Principal, error)
}

func (p *fakeProvider) Resolve(ctx context.Context, key string) (entitlements.Principal, error) {
	return p.resolve(ctx, key)
}

func (p *fakeProvider) Reserve(context.Context, entitlements.Principal, entitlements.Amount) (entitlements.Reservation, error) {
	return nil, errors.New("not used")
}

func (p *fakeProvider) Snapshot(context.Context, entitlements.Principal) (entitlements.BudgetSnapshot, error) {
	return entitlements.BudgetSnapshot{}, errors.New("not used")
}

func TestShutdownRefusesNewRequestsAndWaitsForInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	engine := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		started <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"model":"chat-a","usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	})
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: engine, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))

	type result struct {
		status int
		body   string
	}
	first := make(chan result, 1)
	go func() {
		resp, err := http.Post(s.srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("chat-a")))
		if err != nil {
			first <- result{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		first <- result{resp.StatusCode, string(b)}
	}()
	<-started
	if got := s.gw.InFlight(); got != 1 {
		t.Fatalf("InFlight() = %d, want 1", got)
	}
	shut := make(chan error, 1)
	go func() { shut <- s.gw.Shutdown(t.Context()) }()
	waitFor(t, "health to report shutting down", func() bool { return s.gw.Health().Status == cortex.HealthShuttingDown })

	status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-a"))
	if status != http.StatusServiceUnavailable || envelope(t, body).Code != cortex.CodeShuttingDown || hdr.Get("Retry-After") == "" {
		t.Errorf("during shutdown: status %d, Retry-After %q: %s", status, hdr.Get("Retry-After"), body)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	if r := <-first; r.status != http.StatusOK {
		t.Errorf("the request in flight: status %d: %s", r.status, r.body)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	s := newStack(t, cortextest.Named("n1", "n2"), testCatalogue(t))
	check := func(wantStatus int, want cortex.HealthReport) {
		t.Helper()
		resp := s.do(http.MethodGet, "/health", "")
		defer resp.Body.Close()
		var got cortex.HealthReport
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != wantStatus {
			t.Errorf("status %d, want %d", resp.StatusCode, wantStatus)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("health (-got +want):\n%s", diff)
		}
	}
	check(http.StatusOK, cortex.HealthReport{Status: cortex.HealthOK, Neurons: cortex.NeuronCounts{Total: 2, Healthy: 2}})
	s.fleet.Neuron("n2").Stop()
	s.refresh()
	check(http.StatusOK, cortex.HealthReport{Status: cortex.HealthDegraded, Neurons: cortex.NeuronCounts{Total: 2, Healthy: 1}})
	s.fleet.Neuron("n1").Stop()
	s.refresh()
	check(http.StatusServiceUnavailable, cortex.HealthReport{Status: cortex.HealthUnavailable, Neurons: cortex.NeuronCounts{Total: 2, Healthy: 0}})
}

func TestNewGatewayErrors(t *testing.T) {
	t.Parallel()
	ok := []cortex.NeuronConfig{{Name: "n1", Endpoint: "http://127.0.0.1:1"}}
	tests := []struct {
		name    string
		neurons []cortex.NeuronConfig
		opts    []cortex.GatewayOption
		wantErr string
	}{
		{"bad neuron", []cortex.NeuronConfig{{Name: "n1", Endpoint: "ftp://x"}}, nil, "scheme"},
		{"duplicate neuron", append(ok, ok...), nil, "duplicate"},
		{"require auth without provider", ok, []cortex.GatewayOption{cortex.WithRequireAuth(true)}, "Provider"},
		{"idle timeout", ok, []cortex.GatewayOption{cortex.WithStreamIdleTimeout(0)}, "idle timeout"},
		{"body limit", ok, []cortex.GatewayOption{cortex.WithMaxBodyBytes(-1)}, "max body"},
		{"load timeout", ok, []cortex.GatewayOption{cortex.WithLoadTimeout(-time.Second)}, "load timeout"},
		{"poller option", ok, []cortex.GatewayOption{cortex.WithPollerOptions(route.WithInterval(0))}, "interval"},
		{"router option", ok, []cortex.GatewayOption{cortex.WithRouterOptions(route.WithEvictor(nil))}, "Evictor"},
		{"router options with a router", ok, []cortex.GatewayOption{cortex.WithRouter(panicRouter{}),
			cortex.WithRouterOptions(route.WithRetryAfter(time.Second))}, "WithRouterOptions"},
		{"poller options with a poller", ok, []cortex.GatewayOption{cortex.WithPoller(staticPoller{}),
			cortex.WithPollerOptions(route.WithInterval(time.Second))}, "WithPollerOptions"},
		{"admin factory", ok, []cortex.GatewayOption{cortex.WithAdminFactory(func(cortex.NeuronConfig) (cortex.NeuronAdmin, error) {
			return nil, errors.New("no admin today")
		})}, "no admin today"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := cortex.NewGateway(tt.neurons, nil, tt.opts...)
			if err == nil {
				_ = g.Shutdown(context.Background())
				t.Fatal("NewGateway succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

// NewGateway reports every problem of its options at once, not the first.
func TestNewGatewayReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "n1", Endpoint: "http://127.0.0.1:1"}}, nil,
		cortex.WithStreamIdleTimeout(0), cortex.WithColdStartWait(-time.Second), cortex.WithRetryAfter(0))
	if err == nil {
		t.Fatal("NewGateway succeeded")
	}
	for _, want := range []string{"idle timeout", "cold start wait", "Retry-After"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// Two gateways in one process share nothing: each has its own registry.
func TestTwoGatewaysInOneProcess(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			g, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "n1", Endpoint: "http://127.0.0.1:1"}}, nil)
			if err != nil {
				t.Error(err)
				return
			}
			_ = g.Shutdown(context.Background())
		})
	}
	wg.Wait()
}

// The client's API key is never forwarded: a neuron without a token gets
// no Authorization at all.
func TestClientKeyNeverReachesTheNeuron(t *testing.T) {
	t.Parallel()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{{Key: "sk-client", AccountID: "acct"}}})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t),
		cortex.WithProvider(local))
	for _, h := range [][]string{{"Authorization", "Bearer sk-client"}, {"X-Api-Key", "sk-client"}} {
		status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":1`), h...)
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		hdr, _ := s.fleet.Neuron("n1").LastRequest()
		if got := hdr.Get("Authorization") + hdr.Get("X-Api-Key"); got != "" {
			t.Errorf("client key in %s: the neuron got %q", h[0], got)
		}
		if got := hdr.Get(neuron.HeaderAccountID); got != "acct" {
			t.Errorf("account header %q, want acct", got)
		}
	}
}

// panicRouter is a Router with a bug.
type panicRouter struct{}

func (panicRouter) Route(*route.Fleet, *route.Request) (route.Decision, error) {
	panic("router bug")
}

// A panic on the request path aborts the client's connection, and the
// request is still finished: counted, and out of the in-flight count.
func TestPanicFinishesTheRequest(t *testing.T) {
	t.Parallel()
	s := newStack(t, cortextest.Named("n1"), testCatalogue(t), cortex.WithRouter(panicRouter{}))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.srv.URL+"/v1/chat/completions", strings.NewReader(chatBody("chat-a")))
	resp, err := s.srv.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("status %d: want the connection aborted", resp.StatusCode)
	}
	if got := s.gw.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d after the panic", got)
	}
	w := httptest.NewRecorder()
	s.gw.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := `helexa_request_errors_total{kind="internal",model="chat-a",neuron=""} 1`; !strings.Contains(w.Body.String(), want) {
		t.Errorf("metrics lack %s", want)
	}
}

// refusingRouter refuses every request with its own answer.
type refusingRouter struct{ r *route.Refusal }

func (rr refusingRouter) Route(*route.Fleet, *route.Request) (route.Decision, error) {
	return route.Decision{}, rr.r
}

// A Router's own refusal is answered with its status, code and message,
// not as a 500.
func TestRouterRefusal(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		r          route.Refusal
		wantStatus int
		wantCode   string
	}{
		{route.Refusal{Status: http.StatusForbidden, Code: "tenant_not_routed", Message: "this key may not use this fleet"}, http.StatusForbidden, "tenant_not_routed"},
		{route.Refusal{Status: http.StatusServiceUnavailable, Code: "zone_full", Message: "zone eu is full", RetryAfter: 9 * time.Second}, http.StatusServiceUnavailable, "zone_full"},
		{route.Refusal{Status: 200, Message: "not a refusal status"}, http.StatusInternalServerError, cortex.CodeInternal},
	} {
		s := newStack(t, cortextest.Named("n1"), testCatalogue(t), cortex.WithRouter(refusingRouter{&tt.r}))
		status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-a"))
		if status != tt.wantStatus {
			t.Errorf("%+v: status %d: %s", tt.r, status, body)
		}
		if e := envelope(t, body); e.Code != tt.wantCode || e.Message != tt.r.Message {
			t.Errorf("%+v: envelope %+v", tt.r, e)
		}
		if tt.r.RetryAfter > 0 && hdr.Get("Retry-After") != "9" {
			t.Errorf("%+v: Retry-After %q", tt.r, hdr.Get("Retry-After"))
		}
	}
}

// TestCustomPollerGetsLiveCounts: a Poller publishes neuron states only;
// the gateway joins each snapshot with its catalogue and Usage, so the
// Fleet it routes over links every replica to the live counters and
// ejections whatever the Poller did, and is built once per snapshot.
func TestCustomPollerGetsLiveCounts(t *testing.T) {
	t.Parallel()
	cat := testCatalogue(t)
	m := model("chat-a", neuron.StatusLoaded, 4000)
	m.Live = new(route.Counter) // a Poller's own counter is ignored
	p := &switchPoller{}
	p.s.Store(snapshot(host("n1", gpus(24576), m)))
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "n1", Endpoint: "http://n1.invalid:31400"}}, cat, cortex.WithPoller(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	f := gw.Fleet()
	got := f.Neuron("n1").Model("chat-a")
	if got.Live != gw.Usage().Counter("n1", "chat-a") || got.Ejection != gw.Ejection("n1", "chat-a") {
		t.Fatalf("the fleet's replica is not linked to the gateway's Usage: Live %p, Ejection %p", got.Live, got.Ejection)
	}
	if got.Profile.VRAMMB == 0 || f.Catalogue() != cat {
		t.Errorf("the fleet lacks the gateway's catalogue: profile %+v", got.Profile)
	}
	if gw.Fleet() != f {
		t.Error("the fleet was built again for the same snapshot")
	}
	p.s.Store(snapshot(host("n1", gpus(24576), model("chat-a", neuron.StatusLoading, 4000))))
	if next := gw.Fleet(); next == f || next.Neuron("n1").Model("chat-a").Status != neuron.StatusLoading {
		t.Error("a new snapshot did not make a new fleet")
	}
}

// BenchmarkGatewayFleet is what each request pays to get the Fleet of the
// Poller's latest snapshot: one atomic load and a comparison.
func BenchmarkGatewayFleet(b *testing.B) {
	p := staticPoller{snapshot(host("n1", gpus(24576), model("chat-a", neuron.StatusLoaded, 4000)))}
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "n1", Endpoint: "http://n1.invalid:31400"}}, nil, cortex.WithPoller(p))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	b.ReportAllocs()
	for b.Loop() {
		if gw.Fleet() == nil {
			b.Fatal("nil fleet")
		}
	}
}

// pathTransport records the paths and Authorization headers of the
// requests it sends.
type pathTransport struct {
	mu    sync.Mutex
	paths []string
	auth  []string
}

func (p *pathTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	p.mu.Lock()
	p.paths = append(p.paths, r.URL.Path)
	p.auth = append(p.auth, r.Header.Get("Authorization"))
	p.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// TestDefaultPollerUsesTheTransport: the management calls of the Poller
// the gateway builds go over the gateway's Transport, with the neuron's
// token.
func TestDefaultPollerUsesTheTransport(t *testing.T) {
	t.Parallel()
	fl := cortextest.NewFleet(t, cortextest.Named("n1")...)
	cfgs := fl.Configs()
	cfgs[0].Token = "neuron-secret"
	rt := &pathTransport{}
	gw, err := cortex.NewGateway(cfgs, nil, cortex.WithTransport(rt))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	if _, err := gw.Poller().(route.Refresher).Refresh(t.Context(), "n1"); err != nil {
		t.Fatal(err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, want := range []string{"/discovery", "/models", "/health"} {
		if !slices.Contains(rt.paths, want) {
			t.Errorf("the transport sent %v, not %s", rt.paths, want)
		}
	}
	for i, a := range rt.auth {
		if a != "Bearer neuron-secret" {
			t.Errorf("%s sent Authorization %q", rt.paths[i], a)
		}
	}
	if !gw.Fleet().Neuron("n1").Healthy {
		t.Error("the refreshed neuron is not healthy in the gateway's fleet")
	}
}
