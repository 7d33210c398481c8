//go:build linux

package faulttest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
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
	cat, err := catalogue.New([]catalogue.Model{{ID: realModel, Engine: realEngine, Source: model, VRAMMB: realVRAMMB,
		Limit: catalogue.Limit{Context: realContext}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return serveStack(t, neurons, cat, 1<<40)
}
