package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// The models of the bench catalogue. Every one is served by the same
// simulated engine (one loopback server of the sim Harness).
const (
	// modelFast answers at once: no time to first token, no pacing.
	modelFast = "bench-fast"
	// modelStream paces its tokens streamInterval apart.
	modelStream = "bench-stream"
	// modelSlow streams slowly, to hold many streams open at once.
	modelSlow = "bench-slow"
	// modelCold is not loaded at start; loading it takes coldLoadTime.
	modelCold = "bench-cold"
)

// Engine settings.
const (
	streamInterval = 2 * time.Millisecond
	slowInterval   = 200 * time.Millisecond
	coldLoadTime   = 500 * time.Millisecond
	benchKey       = "sk-bench"
	modelVRAMMB    = 1024
	deviceMB       = 81920
)

// modelsTOML is the catalogue cortex loads.
var modelsTOML = fmt.Sprintf(`# The bench catalogue (written by go run ./bench).
[[models]]
id = %[1]q
engine = "sim"
vram_mb = %[5]d
limit = { context = 8192, output = 1024 }

[[models]]
id = %[2]q
engine = "sim"
vram_mb = %[5]d
limit = { context = 8192, output = 1024 }

[[models]]
id = %[3]q
engine = "sim"
vram_mb = %[5]d
limit = { context = 8192, output = 1024 }

[[models]]
id = %[4]q
engine = "sim"
vram_mb = %[5]d
limit = { context = 8192, output = 1024 }
`, modelFast, modelStream, modelSlow, modelCold, modelVRAMMB)

// stack is everything a run measures, on loopback:
//
//   - the simulated engine (a sim Harness, in this process);
//   - a neuron Agent over it (in this process), with admission limits high
//     enough never to queue the bench's load;
//   - the bare chain: hop 1 (a gateway process) -> hop 2 (in this
//     process) -> engine, both plain httputil.ReverseProxy;
//   - cortex (a gateway process) -> the neuron -> engine.
//
// The two gateways that face the client run in processes of their own so
// that their resident memory and goroutines are theirs alone; the second
// hops sit in this process with the engine, alike for both chains.
type stack struct {
	dir       string
	harness   *sim.Harness
	agent     *neuron.Agent
	neuronSrv *http.Server
	hop2Srv   *http.Server
	chainProc *child
	cortex    *child
	loadCalls atomic.Int64 // POST /models/load received by the neuron

	direct, chain, neuronOnly, gateway *target
}

// targets returns the four targets in table order.
func (s *stack) targets() []*target {
	return []*target{s.direct, s.chain, s.neuronOnly, s.gateway}
}

// startStack starts the stack and loads the warm models.
func startStack(ctx context.Context) (s *stack, err error) {
	s = &stack{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.dir, err = os.MkdirTemp("", "helexa-bench-"); err != nil {
		return s, err
	}
	modelsPath := filepath.Join(s.dir, "models.toml")
	if err := os.WriteFile(modelsPath, []byte(modelsTOML), 0o600); err != nil {
		return s, err
	}

	// Every answer runs to its max_tokens (IgnoreEOS): the figures count
	// chunks and compare them across targets.
	s.harness, err = sim.NewHarness(sim.Config{IgnoreEOS: true},
		sim.WithModelConfig(modelStream, sim.Config{TokensPerSecond: float64(time.Second / streamInterval), IgnoreEOS: true}),
		sim.WithModelConfig(modelSlow, sim.Config{TokensPerSecond: float64(time.Second / slowInterval), IgnoreEOS: true}),
		sim.WithModelConfig(modelCold, sim.Config{LoadTime: coldLoadTime, IgnoreEOS: true}))
	if err != nil {
		return s, err
	}
	disc := neuron.NewStaticDiscoverer(neuron.Discovery{Hostname: benchNeuron, Devices: []neuron.Device{
		{Index: 0, Name: "Simulated GPU", UUID: "GPU-bench-0", TotalMB: deviceMB},
	}})
	errLog := log.New(io.Discard, "", 0)
	nln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return s, err
	}
	neuronURL := "http://" + nln.Addr().String()
	s.agent, err = neuron.NewAgent(s.harness, disc,
		neuron.WithAdmission(neuron.AdmissionConfig{MaxInFlight: 4096, MaxQueue: 4096}),
		neuron.WithAdvertiseURL(neuronURL),
		neuron.WithDrainTimeout(5*time.Second))
	if err != nil {
		return s, errors.Join(err, nln.Close())
	}
	if err := s.agent.Start(ctx); err != nil {
		return s, errors.Join(err, nln.Close())
	}
	s.neuronSrv = serverFor(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/models/load" {
			s.loadCalls.Add(1)
		}
		s.agent.ServeHTTP(w, r)
	}), errLog)
	go func() { _ = s.neuronSrv.Serve(nln) }()

	nc, err := neuron.NewClient(neuronURL)
	if err != nil {
		return s, err
	}
	for _, id := range []string{modelFast, modelStream, modelSlow} {
		if _, err := nc.Load(ctx, neuron.LoadSpec{ModelID: id, Engine: "sim", VRAMMB: modelVRAMMB}); err != nil {
			return s, fmt.Errorf("loading %s: %w", id, err)
		}
	}
	engine, err := s.harness.Endpoint(modelFast)
	if err != nil {
		return s, err
	}

	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return s, err
	}
	s.hop2Srv = serverFor(newBareProxy(engine, errLog), errLog)
	go func() { _ = s.hop2Srv.Serve(hln) }()
	hop2URL := "http://" + hln.Addr().String()

	if s.chainProc, err = startChild("proxy", "-upstream="+hop2URL); err != nil {
		return s, err
	}
	if s.cortex, err = startChild("cortex", "-upstream="+neuronURL, "-models="+modelsPath, "-key="+benchKey); err != nil {
		return s, err
	}
	s.direct = &target{name: "direct", label: "direct to engine", url: strings.TrimSuffix(engine.String(), "/")}
	s.chain = &target{name: "chain", label: "bare two-hop chain", url: s.chainProc.url(), proc: s.chainProc}
	s.neuronOnly = &target{name: "neuron", label: "neuron only", url: neuronURL}
	s.gateway = &target{name: "cortex", label: "cortex + neuron", url: s.cortex.url(), key: benchKey, proc: s.cortex}
	return s, nil
}

// serverFor is an http.Server for a loopback listener of the stack.
func serverFor(h http.Handler, errLog *log.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: errLog}
}

// ready waits until every target answers a request for the fast model
// with 200, up to ctx.
func (s *stack) ready(ctx context.Context, g *loadGen) error {
	spec := bodySpec{model: modelFast, maxTokens: 4}
	for _, t := range s.targets() {
		var err error
		for {
			if err = g.do(ctx, t, spec.appendBody(nil, g.seq.Add(1))); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s is not ready: %w", t.label, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// engineLoads counts the loads of model id the engine harness started.
func (s *stack) engineLoads(id string) int {
	lines, err := s.harness.Logs(id)
	if err != nil {
		return 0
	}
	n := 0
	for _, l := range lines {
		if strings.Contains(l, ": loading") {
			n++
		}
	}
	return n
}

// close stops everything that was started, gateways first.
func (s *stack) close() {
	for _, c := range []*child{s.cortex, s.chainProc} {
		if c != nil {
			c.stop()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.hop2Srv != nil {
		_ = s.hop2Srv.Shutdown(ctx)
	}
	if s.agent != nil {
		_ = s.agent.Shutdown(ctx) // closes the harness too
	} else if s.harness != nil {
		_ = s.harness.Close(ctx)
	}
	if s.neuronSrv != nil {
		_ = s.neuronSrv.Shutdown(ctx)
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
