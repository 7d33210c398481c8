package neuron_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/neuron"
)

// fakeHarness is a neuron.Harness (and LogSource) made of func fields.
type fakeHarness struct {
	LoadFunc     func(ctx context.Context, spec neuron.LoadSpec) (neuron.ModelInfo, error)
	UnloadFunc   func(ctx context.Context, id string) error
	ModelsFunc   func() []neuron.ModelInfo
	EndpointFunc func(id string) (*url.URL, error)
	LogsFunc     func(id string) ([]string, error)
}

func (f *fakeHarness) Load(ctx context.Context, spec neuron.LoadSpec) (neuron.ModelInfo, error) {
	return f.LoadFunc(ctx, spec)
}
func (f *fakeHarness) Unload(ctx context.Context, id string) error { return f.UnloadFunc(ctx, id) }
func (f *fakeHarness) Models() []neuron.ModelInfo                  { return f.ModelsFunc() }
func (f *fakeHarness) Endpoint(id string) (*url.URL, error)        { return f.EndpointFunc(id) }
func (f *fakeHarness) Logs(id string) ([]string, error)            { return f.LogsFunc(id) }

// closingHarness adds neuron.HarnessCloser to a fakeHarness.
type closingHarness struct {
	*fakeHarness
	CloseFunc func(ctx context.Context) error
}

func (c *closingHarness) Close(ctx context.Context) error { return c.CloseFunc(ctx) }

var (
	_ neuron.Harness       = (*fakeHarness)(nil)
	_ neuron.LogSource     = (*fakeHarness)(nil)
	_ neuron.HarnessCloser = (*closingHarness)(nil)
)

// modelTable is the state behind a fakeHarness: models by id, served by one
// engine URL, with every load and unload recorded.
type modelTable struct {
	mu       sync.Mutex
	models   map[string]neuron.ModelInfo
	engine   *url.URL
	loads    []neuron.LoadSpec
	unloads  []string
	loadCtxs []context.Context
}

// newModelTable returns a table whose models are served at engineURL
// (empty: an unreachable address) and the fakeHarness over it. Load with
// engine "bogus" fails with ErrUnknownEngine, with engine "broken" with
// ErrLoadFailed; any other load is loaded at once.
func newModelTable(t *testing.T, engineURL string, models ...neuron.ModelInfo) (*modelTable, *fakeHarness) {
	t.Helper()
	if engineURL == "" {
		engineURL = "http://127.0.0.1:1"
	}
	u, err := url.Parse(engineURL)
	if err != nil {
		t.Fatal(err)
	}
	m := &modelTable{models: make(map[string]neuron.ModelInfo), engine: u}
	for _, mi := range models {
		m.models[mi.ID] = mi
	}
	h := &fakeHarness{
		LoadFunc: func(ctx context.Context, spec neuron.LoadSpec) (neuron.ModelInfo, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.loads = append(m.loads, spec)
			m.loadCtxs = append(m.loadCtxs, ctx)
			switch spec.Engine {
			case "bogus":
				return neuron.ModelInfo{}, fmt.Errorf("%w: %q", neuron.ErrUnknownEngine, spec.Engine)
			case "broken":
				return neuron.ModelInfo{}, fmt.Errorf("%w: exit status 1", neuron.ErrLoadFailed)
			}
			if mi, ok := m.models[spec.ModelID]; ok {
				return mi, nil
			}
			mi := neuron.ModelInfo{ID: spec.ModelID, Engine: spec.Engine, Status: neuron.StatusLoaded,
				Devices: spec.Devices, VRAMUsedMB: spec.VRAMMB, Limit: spec.Limit,
				LoadedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
			m.models[spec.ModelID] = mi
			return mi, nil
		},
		UnloadFunc: func(ctx context.Context, id string) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			if _, ok := m.models[id]; !ok {
				return fmt.Errorf("%w: %s", neuron.ErrModelNotFound, id)
			}
			delete(m.models, id)
			m.unloads = append(m.unloads, id)
			return nil
		},
		ModelsFunc: m.snapshot,
		EndpointFunc: func(id string) (*url.URL, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			mi, ok := m.models[id]
			switch {
			case !ok:
				return nil, fmt.Errorf("%w: %s", neuron.ErrModelNotFound, id)
			case mi.Status != neuron.StatusLoaded:
				return nil, fmt.Errorf("%w: %s is %s", neuron.ErrNotReady, id, mi.Status)
			}
			u := *m.engine
			return &u, nil
		},
		LogsFunc: func(id string) ([]string, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if _, ok := m.models[id]; !ok {
				return nil, fmt.Errorf("%w: %s", neuron.ErrModelNotFound, id)
			}
			return []string{"starting " + id, "ready"}, nil
		},
	}
	return m, h
}

func (m *modelTable) snapshot() []neuron.ModelInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]neuron.ModelInfo, 0, len(m.models))
	for _, mi := range m.models {
		out = append(out, mi)
	}
	slices.SortFunc(out, func(a, b neuron.ModelInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (m *modelTable) recordedLoads() []neuron.LoadSpec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.loads)
}

func (m *modelTable) recordedUnloads() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.unloads)
}

// fakeDiscoverer is a neuron.Discoverer made of func fields.
type fakeDiscoverer struct {
	DiscoverFunc func(ctx context.Context) (neuron.Discovery, error)
	SampleFunc   func(ctx context.Context) ([]neuron.DeviceSample, error)
}

func (f *fakeDiscoverer) Discover(ctx context.Context) (neuron.Discovery, error) {
	return f.DiscoverFunc(ctx)
}

func (f *fakeDiscoverer) Sample(ctx context.Context) ([]neuron.DeviceSample, error) {
	return f.SampleFunc(ctx)
}

// gpus returns a Discovery of n devices of totalMB each.
func gpus(n int, totalMB uint64) neuron.Discovery {
	d := neuron.Discovery{Hostname: "node-1", OS: "linux", Arch: "amd64", DriverVersion: "550.1", CUDAVersion: "12.4"}
	for i := range n {
		d.Devices = append(d.Devices, neuron.Device{Index: i, Name: "GPU", UUID: fmt.Sprintf("GPU-%d", i), TotalMB: totalMB})
	}
	return d
}

// startAgent builds and starts an Agent behind an httptest server, and
// shuts both down when the test ends.
func startAgent(t *testing.T, h neuron.Harness, d neuron.Discoverer, opts ...neuron.Option) (*neuron.Agent, *httptest.Server) {
	t.Helper()
	if d == nil {
		d = neuron.NewStaticDiscoverer(gpus(2, 24000))
	}
	a, err := neuron.NewAgent(h, d, opts...)
	if err != nil {
		t.Fatalf("NewAgent: %v", err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		srv.Close()
	})
	return a, srv
}

// answer is an HTTP answer read in full.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// envelope is the error envelope with the VRAM extras.
type envelope struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	} `json:"error"`
	FreeMB     uint64 `json:"free_mb"`
	RequiredMB uint64 `json:"required_mb"`
}

func (a answer) code(t *testing.T) string {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", a.status, err, a.body)
	}
	return e.Error.Code
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decoding %s: %v", a.body, err)
	}
}

// send sends a request to srv and reads the answer; header holds
// name/value pairs. Any transport error fails the test.
func send(t *testing.T, ctx context.Context, srv *httptest.Server, method, path, body string, header ...string) answer {
	t.Helper()
	a, err := do(ctx, srv, method, path, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// do is send for goroutines other than the test's.
func do(ctx context.Context, srv *httptest.Server, method, path, body string, header ...string) (answer, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, rd)
	if err != nil {
		return answer{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: reading: %w", method, path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: bytes.TrimSpace(b)}, nil
}

// goSend sends a request from a new goroutine; the answer (status 0 on a
// transport error) arrives on the returned channel.
func goSend(ctx context.Context, srv *httptest.Server, method, path, body string, header ...string) <-chan answer {
	c := make(chan answer, 1)
	go func() {
		a, err := do(ctx, srv, method, path, body, header...)
		if err != nil {
			a = answer{body: []byte(err.Error())}
		}
		c <- a
	}()
	return c
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// modelLoad returns id's admission state from a's health.
func modelLoad(t *testing.T, a *neuron.Agent, id string) neuron.ModelLoad {
	t.Helper()
	for _, m := range a.Health(t.Context()).Models {
		if m.ID == id {
			return m
		}
	}
	return neuron.ModelLoad{}
}

// engineRequest is a request as a fake engine saw it.
type engineRequest struct {
	method, path, query string
	header              http.Header
	body                string
}

// gateEngine is a fake engine whose requests block until released. Each
// request is announced on arrived.
type gateEngine struct {
	srv     *httptest.Server
	arrived chan engineRequest
	release chan struct{}
	once    sync.Once
}

func newGateEngine(t *testing.T) *gateEngine {
	t.Helper()
	g := &gateEngine{arrived: make(chan engineRequest, 64), release: make(chan struct{})}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		g.arrived <- engineRequest{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, header: r.Header.Clone(), body: string(b)}
		select {
		case <-g.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"chat.completion"}`)
	}))
	t.Cleanup(func() {
		g.open()
		g.srv.Close()
	})
	return g
}

// open lets every blocked and future request finish.
func (g *gateEngine) open() { g.once.Do(func() { close(g.release) }) }

// waitArrival waits for the next request at the engine.
func (g *gateEngine) waitArrival(t *testing.T) engineRequest {
	t.Helper()
	select {
	case r := <-g.arrived:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a request at the engine")
		return engineRequest{}
	}
}

const chatBody = `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`
