//go:build linux

package faulttest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/internal/proctest"
	"github.com/helexa-ai/helexa-go/neuron"
)

// The context and the per-model engine arguments of the catalogue, from
// models.toml through cortex's load and the neuron's API to the engine's
// command line: with the simulated engine behind a script that prints its
// arguments (make test), and with llama-server, whose /props tells the
// context it runs with (the opt-in real-engine suite).

// ctxNeuron starts a neuron process with the given [[engines]] TOML and
// no default model, and waits until it answers.
func ctxNeuron(t *testing.T, engines string) *neuronProc {
	t.Helper()
	n := spawnNeuron(t, "ctx", "drain_timeout = \"5s\"\n"+
		"[discovery]\nkind = \"static\"\nhostname = \"ctx\"\n[[discovery.devices]]\nindex = 0\ntotal_mb = 81920\n"+engines, 30*time.Second)
	t.Cleanup(func() { n.stop(t) })
	if err := n.awaitServing(t, 0); err != nil {
		t.Fatal(err)
	}
	return n
}

// ctxGateway runs a gateway over n with the catalogue parsed from
// modelsTOML, as cortex reads models.toml.
func ctxGateway(t *testing.T, n *neuronProc, modelsTOML string) *stack {
	t.Helper()
	cat, err := catalogue.Parse([]byte(modelsTOML))
	if err != nil {
		t.Fatal(err)
	}
	return serveStack(t, []*neuronProc{n}, cat, 1<<40)
}

// TestCatalogueEngineArgsReachTheEngine: a model's limit.context and
// engine_args in models.toml reach the engine's command line through a
// cold load by cortex; a model without a context starts the engine
// without the flag and the neuron warns; the neuron's API refuses bad
// arguments with a 400.
func TestCatalogueEngineArgsReachTheEngine(t *testing.T) {
	suite(t)
	script := `echo "args=$*"; exec ` + bins.Sim + ` --host {host} --port {port} --model {id}`
	argv := []string{"/bin/sh", "-c", script, "sh", "--ctx-size", "{context?}", "--parallel", "4"}
	n := ctxNeuron(t, fmt.Sprintf("[[engines]]\nname = \"echo\"\ncommand = [%s]\nstart_timeout = \"30s\"\nstop_timeout = \"2s\"\n",
		proctest.QuoteAll(argv)))
	s := ctxGateway(t, n, `
[[models]]
id = "with-args"
engine = "echo"
vram_mb = 1000
limit = { context = 8192 }

[models.engine_args]
set = { "--parallel" = "2" }
extra = ["--api-key", "s3cret", "--override-kv", "llama.context_length=int:16384"]

[[models]]
id = "no-context"
engine = "echo"
vram_mb = 1000
`)
	for id, want := range map[string]string{
		"with-args":  "args=--ctx-size 8192 --parallel 2 --api-key s3cret --override-kv llama.context_length=int:16384",
		"no-context": "args=--parallel 4",
	} {
		if status, _, body := s.chatOnce(id, 2); status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", id, status, body)
		}
		lines, err := n.client.Logs(t.Context(), id)
		if err != nil || len(lines) == 0 || lines[0] != want {
			t.Errorf("engine of %s printed %q (%v), want %q", id, lines, err, want)
		}
	}
	logs := n.logs.String()
	if !strings.Contains(logs, "engine context unset") || !strings.Contains(logs, "model=no-context") {
		t.Errorf("no warning for the model without a context; neuron logs:\n%s", logs)
	}
	if strings.Contains(logs, "s3cret") || !strings.Contains(logs, "--api-key [redacted]") {
		t.Errorf("the engine start is not logged with its key redacted; neuron logs:\n%s", logs)
	}

	for _, args := range []neuron.EngineArgs{
		{Extra: []string{"--port", "1"}},
		{Set: map[string]string{"--alias": "{id}"}},
		{Extra: []string{"ok", "nul\x00"}},
	} {
		_, err := n.client.Load(t.Context(), neuron.LoadSpec{ModelID: "bad", Engine: "echo", EngineArgs: args})
		var ae *neuron.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("load with %+v: %v, want a 400", args, err)
		}
	}
}

// TestRealEngineContextFromCatalogue: llama-server started for a catalogue
// model runs with the catalogue's context per request. With --kv-unified
// every slot may use the whole --ctx-size, so {context} is what each of
// the 2 slots reports in /props (default_generation_settings.n_ctx) and
// /slots; a per-model --override-kv lifts the tiny model's trained 256.
// Without a unified KV cache (--no-kv-unified, per model) llama-server
// divides --ctx-size among its slots: 512 each. A model without a context
// gets llama-server's default, the trained context.
func TestRealEngineContextFromCatalogue(t *testing.T) {
	server, gguf := llamaPaths(t)
	argv := []string{server, "--model", "{model}", "--alias", "{id}", "--host", "{host}", "--port", "{port}",
		"--threads", "1", "--ctx-size", "{context?}", "--parallel", "2", "--kv-unified"}
	n := ctxNeuron(t, fmt.Sprintf("[[engines]]\nname = %q\ncommand = [%s]\nstart_timeout = \"30s\"\nstop_timeout = \"2s\"\n",
		realEngine, proctest.QuoteAll(argv)))
	s := ctxGateway(t, n, fmt.Sprintf(`
[[models]]
id = "ctx-1024"
engine = %[1]q
source = %[2]q
vram_mb = 1000
limit = { context = 1024 }
engine_args = { extra = ["--override-kv", "llama.context_length=int:4096"] }

[[models]]
id = "ctx-split"
engine = %[1]q
source = %[2]q
vram_mb = 1000
limit = { context = 1024 }
engine_args = { extra = ["--override-kv", "llama.context_length=int:4096", "--no-kv-unified"] }

[[models]]
id = "ctx-default"
engine = %[1]q
source = %[2]q
vram_mb = 1000
`, realEngine, gguf))
	for id, want := range map[string]int{"ctx-1024": 1024, "ctx-split": 512, "ctx-default": 256} {
		if status, _, body := s.chatOnce(id, 2); status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", id, status, body)
		}
		// The engine's own port, from the neuron's log of its start: the
		// neuron's endpoint proxies the inference API only.
		m := regexp.MustCompile(`msg="engine started" model=` + id + ` .* port=(\d+)\n`).FindStringSubmatch(n.logs.String())
		if m == nil {
			t.Fatalf("%s: no engine start in the neuron's log", id)
		}
		base := "http://127.0.0.1:" + m[1]
		var props struct {
			TotalSlots int `json:"total_slots"`
			Settings   struct {
				NCtx int `json:"n_ctx"`
			} `json:"default_generation_settings"`
		}
		getJSON(t, base+"/props", &props)
		var slots []struct {
			NCtx int `json:"n_ctx"`
		}
		getJSON(t, base+"/slots", &slots)
		if props.Settings.NCtx != want || props.TotalSlots != 2 || len(slots) != 2 || slots[0].NCtx != want || slots[1].NCtx != want {
			t.Errorf("%s: /props n_ctx %d with %d slots, /slots %+v; want %d in each of 2 slots", id, props.Settings.NCtx, props.TotalSlots, slots, want)
		}
	}
}

// getJSON decodes the JSON answer of a GET.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
