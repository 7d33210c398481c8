//go:build linux

package faulttest_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/proctest"
	"github.com/helexa-ai/helexa-go/neuron"
)

// TestRealEngineLoad: 1,000 chat completions, every other one streamed,
// at a concurrency of 8, through a gateway over three neurons that each
// run one llama-server replica of the model. llama-server closes the
// connection after every streamed answer although it announces
// keep-alive, and closes idle connections after 5 s; no request may fail
// because of it.
func TestRealEngineLoad(t *testing.T) {
	server, gguf := llamaPaths(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "model.gguf")
	if err := os.Symlink(gguf, model); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { noLlamaLeft(t, dir) })
	var neurons []*neuronProc
	for i := range 3 {
		var n *neuronProc
		var err error
		for range 3 { // a port taken between the pick and the neuron's bind
			if n, err = tryRealNeuron(t, server, model, realOptions{defaults: []string{realModel}}); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("neuron %d did not start: %v", i, err)
		}
		n.name = fmt.Sprintf("real-%d", i+1)
		neurons = append(neurons, n)
	}
	s := realLoadStack(t, neurons, model)
	failed := driveLoad(t, s, loadSpec{model: realModel, requests: 1000, concurrency: 8, maxTokens: 4,
		prompt: func(i int) string { return fmt.Sprintf("tell me story %d", i) }})
	if len(failed) > 0 {
		t.Errorf("%d of 1000 requests failed; the first: %s", len(failed), strings.Join(failed[:min(len(failed), 5)], "\n"))
	}
	s.settled(time.Second)
}

// realLoadStack is a gateway over the neurons for realModel, with a key
// whose cap no load of the suite reaches.
func realLoadStack(t *testing.T, neurons []*neuronProc, model string) *stack {
	t.Helper()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: apiKey, AccountID: account, HardCap: new(int64(1 << 40))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalogue.New([]catalogue.Model{{ID: realModel, Engine: realEngine, Source: model, VRAMMB: realVRAMMB,
		Limit: catalogue.Limit{Context: realContext}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var configs []cortex.NeuronConfig
	for _, n := range neurons {
		configs = append(configs, cortex.NeuronConfig{Name: n.name, Endpoint: n.url, Token: neuronToken})
	}
	logs := &proctest.LockedBuffer{}
	gw, err := cortex.NewGateway(configs, cat,
		cortex.WithProvider(local), cortex.WithRequireAuth(true),
		cortex.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		cortex.WithPollerOptions(route.WithInterval(pollEvery)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- gw.Run(ctx) }()
	s := &stack{t: t, gw: gw, srv: httptest.NewServer(gw), local: local, logs: logs,
		client: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(func() {
		s.srv.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := gw.Shutdown(sctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("poller: %v", err)
		}
		s.client.CloseIdleConnections()
		s.settled(time.Second)
		if t.Failed() {
			t.Logf("gateway logs:\n%s", logs)
		}
	})
	proctest.Eventually(t, 30*time.Second, "every neuron healthy with the model loaded", func() bool {
		f := gw.Fleet()
		for _, n := range neurons {
			ns := f.Neuron(n.name)
			if ns == nil || !ns.Healthy {
				return false
			}
			for _, m := range ns.Models {
				if m.Status != neuron.StatusLoaded {
					return false
				}
			}
		}
		return true
	})
	return s
}
