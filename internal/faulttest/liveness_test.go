package faulttest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/helexa-ai/helexa-go/internal/proctest"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/neuron"
)

// Liveness probing of the engines of startLiveNeuron: a hung engine is
// found within about liveFailures*max(liveInterval, liveTimeout) +
// liveTimeout (2 s).
const (
	liveInterval = 200 * time.Millisecond
	liveTimeout  = 500 * time.Millisecond
	liveFailures = 3
)

// startLiveNeuron starts a neuron process whose engine "sim-fast" (the
// engine of modelFast in the gateway's catalogue) is probed for liveness
// every liveInterval, and whose engine "sim-slowload" takes 500ms to load
// and passes the load's source as --model. It loads models at start and
// is stopped when the test ends.
func startLiveNeuron(t *testing.T, name string, models ...string) *neuronProc {
	t.Helper()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "drain_timeout = \"10s\"\n")
	fmt.Fprintf(&cfg, "[discovery]\nkind = \"static\"\nhostname = %q\n[[discovery.devices]]\nindex = 0\ntotal_mb = 81920\n", name)
	fast := []string{bins.Sim, "--host", "{host}", "--port", "{port}", "--model", "{id}"}
	fmt.Fprintf(&cfg, "[[engines]]\nname = \"sim-fast\"\ncommand = [%s]\nstart_timeout = \"30s\"\nstop_timeout = \"2s\"\n"+
		"liveness_interval = %q\nliveness_timeout = %q\nliveness_failures = %d\n",
		proctest.QuoteAll(fast), liveInterval, liveTimeout, liveFailures)
	slow := []string{bins.Sim, "--host", "{host}", "--port", "{port}", "--model", "{model}", "--load-time", "500ms"}
	fmt.Fprintf(&cfg, "[[engines]]\nname = \"sim-slowload\"\ncommand = [%s]\nstart_timeout = \"30s\"\nstop_timeout = \"2s\"\n", proctest.QuoteAll(slow))
	for _, id := range models {
		fmt.Fprintf(&cfg, "[[default_models]]\nmodel_id = %q\nengine = \"sim-fast\"\nvram_mb = 1000\n", id)
	}
	n := spawnNeuron(t, name, cfg.String(), 30*time.Second)
	t.Cleanup(func() { n.stop(t) })
	if err := n.awaitServing(t, len(models)); err != nil {
		t.Fatal(err)
	}
	return n
}

// info returns model's ModelInfo at the neuron.
func (n *neuronProc) info(t *testing.T, model string) neuron.ModelInfo {
	t.Helper()
	ms, err := n.client.Models(t.Context())
	if err != nil {
		t.Fatalf("neuron %s models: %v", n.name, err)
	}
	for _, m := range ms {
		if m.ID == model {
			return m
		}
	}
	return neuron.ModelInfo{}
}

// leak matches what no client may read in an error: an IP address, a
// host:port, a file path, a transport error.
var leak = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+|:\d{2,5}\b|/[a-z]+/|\b(read|write|dial) tcp\b|connection reset|EOF`)

// TestHungEngine: the engine process is stopped (SIGSTOP) and answers
// nothing, though the kernel still accepts connections for it. The
// neuron's liveness probes find it within 2 s here
// (liveness_interval 200ms, liveness_timeout 500ms, liveness_failures 3;
// 18 s with the defaults), mark the model failed, kill the engine and
// restart it. A request that was waiting on the stopped engine gets 503
// model_not_ready, saying nothing of the inside, when the engine is
// killed, instead of hanging until the stream idle timeout; the model's
// failure is counted in GET /models; a request through the gateway ends
// within the detection time plus the restart, and the next one succeeds.
func TestHungEngine(t *testing.T) {
	suite(t)
	n := startLiveNeuron(t, "gpu-hung", modelFast)
	s := newStack(t, []*neuronProc{n})
	before := n.engines()
	if len(before) != 1 {
		t.Fatalf("engines of the neuron: %v, want one", before)
	}
	proctest.Stop(t, before[0])
	stopped := time.Now()

	// One request straight to the neuron, one through the gateway, both
	// sent to the stopped engine.
	type outcome struct {
		status int
		body   string
		after  time.Duration
	}
	direct, viaGateway := make(chan outcome, 1), make(chan outcome, 1)
	go func() {
		body := fmt.Sprintf(`{"model":%q,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`, modelFast)
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, n.url+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+neuronToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := n.hc.Do(req)
		if err != nil {
			direct <- outcome{body: err.Error(), after: time.Since(stopped)}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		direct <- outcome{status: resp.StatusCode, body: string(b), after: time.Since(stopped)}
	}()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp := s.chat(ctx, modelFast, 4, false)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		viaGateway <- outcome{status: resp.StatusCode, body: string(b), after: time.Since(stopped)}
	}()

	var d outcome
	select {
	case d = <-direct:
	case <-time.After(20 * time.Second):
		t.Fatal("the request to the stopped engine still waits 20 s later")
	}
	var env struct {
		Error struct{ Message, Code string }
	}
	_ = json.Unmarshal([]byte(d.body), &env)
	if d.status != http.StatusServiceUnavailable || env.Error.Code != neuron.CodeModelNotReady {
		t.Errorf("the neuron answered the request held by the stopped engine with %d %s, want 503 %s", d.status, d.body, neuron.CodeModelNotReady)
	}
	if leak.MatchString(env.Error.Message) {
		t.Errorf("the neuron's message %q tells the client about the inside", env.Error.Message)
	}
	var g outcome
	select {
	case g = <-viaGateway:
	case <-time.After(20 * time.Second):
		t.Fatal("the request through the gateway still waits 20 s later")
	}
	if g.status != http.StatusOK && leak.MatchString(g.body) {
		t.Errorf("the gateway's answer %d %s tells the client about the inside", g.status, g.body)
	}
	s.settled(time.Second)

	proctest.Eventually(t, 30*time.Second, "the model loaded again after a restart", func() bool {
		mi := n.info(t, modelFast)
		return mi.Status == neuron.StatusLoaded && mi.Restarts >= 1
	})
	restarted := time.Since(stopped)
	waitGone(t, before)
	mi := n.info(t, modelFast)
	if mi.Failures < 1 || mi.LastFailure != neuron.FailureUnresponsive || !strings.Contains(mi.LastFailureReason, "liveness probes failed") {
		t.Errorf("the failure in GET /models: failures %d, last %q (%q); want 1 or more, %q", mi.Failures, mi.LastFailure, mi.LastFailureReason, neuron.FailureUnresponsive)
	}
	if !strings.Contains(n.logs.String(), "engine unresponsive, killed") {
		t.Errorf("the neuron did not log the kill:\n%s", n.logs)
	}
	t.Logf("from SIGSTOP: the neuron's answer %d after %v, the gateway's %d after %v (%s), loaded again after %v",
		d.status, d.after.Round(time.Millisecond), g.status, g.after.Round(time.Millisecond), strings.TrimSpace(g.body), restarted.Round(time.Millisecond))

	proctest.Eventually(t, 10*time.Second, "the restarted model loaded in the gateway's snapshot", func() bool {
		m := s.gw.Fleet().Neuron(n.name).Model(modelFast)
		return m != nil && m.Status == neuron.StatusLoaded && m.Restarts > 0
	})
	if status, _, body := s.chatOnce(modelFast, 3); status != http.StatusOK {
		t.Fatalf("the request after the restart: status %d: %s", status, body)
	}
	s.settled(time.Second)
}

// TestLoadHerdFromReplicas: many cortex replicas send the same cold load
// to one neuron at once (here, three clients sending four loads each).
// The neuron starts one engine: every load joins the first and answers
// its result. A check of a load whose model file is missing is refused
// with 422 model_cannot_start, as the load itself, and starts nothing.
func TestLoadHerdFromReplicas(t *testing.T) {
	suite(t)
	n := startLiveNeuron(t, "gpu-herd")
	spec := neuron.LoadSpec{ModelID: "cold", Engine: "sim-slowload", VRAMMB: 1000}
	if err := n.client.Check(t.Context(), spec); err != nil {
		t.Fatalf("Check: %v", err)
	}
	var replicas []*neuron.Client
	for range 3 {
		hc := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
		t.Cleanup(hc.CloseIdleConnections)
		c, err := neuron.NewClient(n.url, neuron.WithToken(neuronToken), neuron.WithDoer(hc))
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, c)
	}
	var wg sync.WaitGroup
	infos := make([]neuron.ModelInfo, 12)
	errs := make([]error, len(infos))
	for i := range infos {
		wg.Go(func() { infos[i], errs[i] = replicas[i%len(replicas)].Load(t.Context(), spec) })
	}
	wg.Wait()
	for i := range infos {
		if errs[i] != nil {
			t.Fatalf("load %d: %v", i, errs[i])
		}
		if infos[i].Status != neuron.StatusLoaded || !infos[i].LoadedAt.Equal(infos[0].LoadedAt) {
			t.Errorf("load %d answered %s loaded at %v; the first %s at %v", i, infos[i].Status, infos[i].LoadedAt, infos[0].Status, infos[0].LoadedAt)
		}
	}
	if engines := n.engines(); len(engines) != 1 {
		t.Errorf("%d engines for %d concurrent loads of one model, want 1", len(engines), len(infos))
	}
	if got := strings.Count(n.logs.String(), "engine started"); got != 1 {
		t.Errorf("%d engine starts logged, want 1", got)
	}

	missing := neuron.LoadSpec{ModelID: "gone", Engine: "sim-slowload", Source: "/nonexistent/gone.gguf"}
	for _, call := range []func() error{
		func() error { return n.client.Check(t.Context(), missing) },
		func() error { _, err := n.client.Load(t.Context(), missing); return err },
	} {
		err := call()
		var ae *neuron.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || !errors.Is(err, neuron.ErrCannotStart) {
			t.Errorf("check or load of a missing model file: %v, want 422 %s", err, neuron.CodeCannotStart)
		}
	}
	if engines := n.engines(); len(engines) != 1 {
		t.Errorf("%d engines after the refused load, want 1", len(engines))
	}
}
