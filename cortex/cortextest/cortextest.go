// Package cortextest provides a fake neuron fleet for the tests of code
// built on package cortex: real neuron Agents over the simulated engine
// (package neuron/sim), each behind an httptest server, with counters of
// the calls cortex makes and switches to hold loads or stop a neuron.
//
//	fleet := cortextest.NewFleet(t, cortextest.Named("gpu-01", "gpu-02")...)
//	gw, err := cortex.NewGateway(fleet.Configs(), cat)
//	...
//	if n := fleet.Neuron("gpu-01").Loads(); n != 1 { ... }
package cortextest

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

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// DefaultGPUMB is the VRAM of each of the two simulated GPUs a neuron has
// when its Spec lists none: 24 GiB.
const DefaultGPUMB = 24576

// Spec describes one neuron of a Fleet. Only Name is required.
type Spec struct {
	// Name is the neuron's name in cortex.
	Name string
	// GPUs lists the VRAM of each simulated GPU in MiB. Default: two GPUs
	// of DefaultGPUMB.
	GPUs []uint64
	// Models are loaded, in order, before NewFleet returns; those loads
	// are not counted by Loads.
	Models []neuron.LoadSpec
	// Sim is the behaviour of the simulated engine (speed, load time,
	// faults). The zero value answers at once.
	Sim sim.Config
	// SimModels gives some models a behaviour of their own.
	SimModels map[string]sim.Config
	// Admission is the neuron's admission control. The zero value admits
	// 1024 requests per model at once and queues 4096 more, so that tests
	// are not limited by it.
	Admission neuron.AdmissionConfig
	// Token is the bearer token the neuron requires; empty: none.
	Token string
	// Engine, when set, serves the inference requests of every loaded
	// model instead of the simulated engine (loads, unloads and model
	// states stay simulated). Tests use it for engines that answer in a
	// controlled way. It must return when its request's context ends.
	Engine http.Handler
	// AgentOptions are more options of the neuron's Agent, after the
	// Fleet's own (such as neuron.WithAccessLog).
	AgentOptions []neuron.Option
}

// Named returns a Spec with default settings for each name.
func Named(names ...string) []Spec {
	specs := make([]Spec, len(names))
	for i, n := range names {
		specs[i] = Spec{Name: n}
	}
	return specs
}

// Fleet is a set of running fake neurons. Build one with NewFleet; the
// test's cleanup stops it.
type Fleet struct {
	neurons []*Neuron
	byName  map[string]*Neuron
}

// NewFleet starts one neuron per spec: a neuron.Agent over a simulated
// harness (wrapped to count and hold loads), with a static discoverer of
// the spec's GPUs, served by an httptest server. It loads each spec's
// Models, then returns. It fails the test on any error, and registers the
// cleanup that stops every neuron.
func NewFleet(t testing.TB, specs ...Spec) *Fleet {
	t.Helper()
	f := &Fleet{byName: make(map[string]*Neuron, len(specs))}
	for _, s := range specs {
		if s.Name == "" {
			t.Fatal("cortextest: a Spec without a Name")
		}
		if _, dup := f.byName[s.Name]; dup {
			t.Fatalf("cortextest: duplicate neuron %q", s.Name)
		}
		n := startNeuron(t, s)
		f.neurons = append(f.neurons, n)
		f.byName[s.Name] = n
	}
	return f
}

// Configs returns the cortex configuration of every neuron, in the order
// of the specs.
func (f *Fleet) Configs() []cortex.NeuronConfig {
	out := make([]cortex.NeuronConfig, len(f.neurons))
	for i, n := range f.neurons {
		out[i] = n.Config()
	}
	return out
}

// Neuron returns the neuron with the given name, or nil.
func (f *Fleet) Neuron(name string) *Neuron { return f.byName[name] }

// Neurons returns every neuron, in the order of the specs.
func (f *Fleet) Neurons() []*Neuron { return slices.Clone(f.neurons) }

// Neuron is one running fake neuron. Its methods are safe for concurrent
// use.
type Neuron struct {
	name    string
	token   string
	srv     *httptest.Server
	agent   *neuron.Agent
	harness *harness
	disc    *neuron.StaticDiscoverer

	stopOnce sync.Once

	mu         sync.Mutex
	loads      []string // model ids of POST /models/load
	unloads    []string // model ids of POST /models/unload
	requests   int      // inference requests
	lastHeader http.Header
	lastBody   []byte
}

func startNeuron(t testing.TB, s Spec) *Neuron {
	t.Helper()
	gpus := s.GPUs
	if len(gpus) == 0 {
		gpus = []uint64{DefaultGPUMB, DefaultGPUMB}
	}
	devices := make([]neuron.Device, len(gpus))
	for i, mb := range gpus {
		devices[i] = neuron.Device{Index: i, Name: fmt.Sprintf("Simulated GPU %d", i), UUID: fmt.Sprintf("GPU-%s-%d", s.Name, i), TotalMB: mb}
	}
	var hopts []sim.HarnessOption
	for id, c := range s.SimModels {
		hopts = append(hopts, sim.WithModelConfig(id, c))
	}
	sh, err := sim.NewHarness(s.Sim, hopts...)
	if err != nil {
		t.Fatalf("cortextest: neuron %s: %v", s.Name, err)
	}
	h := &harness{Harness: sh}
	if s.Engine != nil {
		esrv := httptest.NewServer(s.Engine)
		t.Cleanup(esrv.Close)
		h.engine, _ = url.Parse(esrv.URL)
	}
	adm := s.Admission
	if adm == (neuron.AdmissionConfig{}) {
		adm = neuron.AdmissionConfig{MaxInFlight: 1024, MaxQueue: 4096}
	}
	disc := neuron.NewStaticDiscoverer(neuron.Discovery{Hostname: s.Name, Devices: devices})
	agent, err := neuron.NewAgent(h, disc, append([]neuron.Option{neuron.WithToken(s.Token), neuron.WithAdmission(adm),
		neuron.WithDrainTimeout(5 * time.Second), neuron.WithHostname(s.Name)}, s.AgentOptions...)...)
	if err != nil {
		_ = sh.Close(context.Background())
		t.Fatalf("cortextest: neuron %s: %v", s.Name, err)
	}
	if err := agent.Start(context.Background()); err != nil {
		t.Fatalf("cortextest: neuron %s: %v", s.Name, err)
	}
	n := &Neuron{name: s.Name, token: s.Token, agent: agent, harness: h, disc: disc}
	n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	t.Cleanup(func() {
		n.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := agent.Shutdown(ctx); err != nil {
			t.Errorf("cortextest: neuron %s: shutdown: %v", s.Name, err)
		}
	})
	if len(s.Models) > 0 {
		c := n.Client()
		for _, spec := range s.Models {
			if _, err := c.Load(t.Context(), spec); err != nil {
				t.Fatalf("cortextest: neuron %s: loading %s: %v", s.Name, spec.ModelID, err)
			}
		}
		n.mu.Lock()
		n.loads = nil
		n.mu.Unlock()
	}
	return n
}

// serve counts the calls cortex makes, then hands them to the Agent.
func (n *Neuron) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		switch path := r.URL.Path; {
		case path == "/models/load", path == "/models/unload":
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			r.Body = io.NopCloser(bytes.NewReader(body))
			var v struct {
				ModelID string `json:"model_id"`
			}
			_ = json.Unmarshal(body, &v)
			n.mu.Lock()
			if path == "/models/load" {
				n.loads = append(n.loads, v.ModelID)
			} else {
				n.unloads = append(n.unloads, v.ModelID)
			}
			n.mu.Unlock()
		case strings.HasPrefix(path, "/v1/"):
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			n.mu.Lock()
			n.requests++
			n.lastHeader = r.Header.Clone()
			n.lastBody = body
			n.mu.Unlock()
		}
	}
	n.agent.ServeHTTP(w, r)
}

// Name returns the neuron's name.
func (n *Neuron) Name() string { return n.name }

// URL returns the base URL of the neuron's API.
func (n *Neuron) URL() string { return n.srv.URL }

// Config returns the neuron's cortex configuration: name, URL and token.
func (n *Neuron) Config() cortex.NeuronConfig {
	return cortex.NeuronConfig{Name: n.name, Endpoint: n.srv.URL, Token: n.token}
}

// Client returns a client of the neuron's management API.
func (n *Neuron) Client() *neuron.Client {
	c, err := neuron.NewClient(n.srv.URL, neuron.WithToken(n.token), neuron.WithDoer(n.srv.Client()))
	if err != nil {
		panic("cortextest: " + err.Error()) // the URL comes from httptest
	}
	return c
}

// Agent returns the neuron's Agent.
func (n *Neuron) Agent() *neuron.Agent { return n.agent }

// Harness returns the simulated harness, for example to Crash a model.
func (n *Neuron) Harness() *sim.Harness { return n.harness.Harness }

// Discoverer returns the neuron's static discoverer, for example to
// SetUsed the memory of a GPU.
func (n *Neuron) Discoverer() *neuron.StaticDiscoverer { return n.disc }

// Loads returns the number of POST /models/load calls the neuron received
// (after the loads of its Spec's Models).
func (n *Neuron) Loads() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.loads)
}

// LoadCalls returns the model ids of the POST /models/load calls, in the
// order received.
func (n *Neuron) LoadCalls() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.loads)
}

// Unloads returns the model ids of the POST /models/unload calls the
// neuron received, in order.
func (n *Neuron) Unloads() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.unloads)
}

// Requests returns the number of inference requests (POST /v1/...) the
// neuron received.
func (n *Neuron) Requests() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.requests
}

// LastRequest returns the header and body of the last inference request
// the neuron received; nil before the first.
func (n *Neuron) LastRequest() (http.Header, []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lastHeader.Clone(), slices.Clone(n.lastBody)
}

// HoldLoads makes loads wait, from now until release is called: a load
// reaches the harness only then. A load whose caller leaves stops waiting.
// release may be called more than once.
func (n *Neuron) HoldLoads() (release func()) {
	gate := make(chan struct{})
	n.harness.mu.Lock()
	n.harness.hold = gate
	n.harness.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			n.harness.mu.Lock()
			if n.harness.hold == gate {
				n.harness.hold = nil
			}
			n.harness.mu.Unlock()
			close(gate)
		})
	}
}

// Stop closes the neuron's server, so that it can no longer be reached
// (connections are refused), as when a host goes down. It waits for the
// requests in progress to finish. It is safe to call more than once.
func (n *Neuron) Stop() {
	n.stopOnce.Do(n.srv.Close)
}

// harness is the simulated harness with loads that can be held, and
// inference optionally served by a test's engine.
type harness struct {
	*sim.Harness
	engine *url.URL // nil: the simulated engine

	mu   sync.Mutex
	hold chan struct{} // non-nil: loads wait until it is closed
}

var (
	_ neuron.Harness       = (*harness)(nil)
	_ neuron.HarnessCloser = (*harness)(nil)
)

// Load waits while loads are held, then loads through the simulated
// harness.
func (h *harness) Load(ctx context.Context, spec neuron.LoadSpec) (neuron.ModelInfo, error) {
	h.mu.Lock()
	gate := h.hold
	h.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return neuron.ModelInfo{}, ctx.Err()
		}
	}
	return h.Harness.Load(ctx, spec)
}

// Endpoint returns the test's engine for a loaded model, when there is one.
func (h *harness) Endpoint(id string) (*url.URL, error) {
	u, err := h.Harness.Endpoint(id)
	if err != nil || h.engine == nil {
		return u, err
	}
	e := *h.engine
	return &e, nil
}
