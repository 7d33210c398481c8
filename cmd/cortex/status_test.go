package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/neuron"
)

// startTestDev starts the dev stack on free loopback ports; the test's
// cleanup stops it.
func startTestDev(t *testing.T) *devStack {
	t.Helper()
	d, err := startDev(devConfig{
		listen: "127.0.0.1:0", metricsListen: "127.0.0.1:0",
		models: filepath.Join("..", "..", "testdata", "models.toml"),
		logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("startDev: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := d.shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return d
}

// loadDevModel sends the dev stack's curl request, which loads its model.
func loadDevModel(t *testing.T, d *devStack) {
	t.Helper()
	resp, err := http.DefaultClient.Do(curlRequest(t, t.Context(), d.curl()))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the dev request: %d: %s", resp.StatusCode, body)
	}
}

func TestStatusCommandAgainstTheDevStack(t *testing.T) {
	d := startTestDev(t)
	loadDevModel(t, d)
	endpoint := "http://" + d.host()

	status := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), append([]string{"status", "--endpoint", endpoint}, args...), &stdout, &stderr); err != nil {
			t.Fatalf("cortex status %q: %v (stderr %s)", args, err, stderr.String())
		}
		return stdout.String()
	}

	out := status()
	for _, want := range []string{"NEURON", "gpu-01", "MODEL", d.model, "loaded", "gpu-01:loaded", "load "} {
		if !strings.Contains(out, want) {
			t.Errorf("the tables lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ACCOUNT") {
		t.Errorf("budgets without an admin key:\n%s", out)
	}

	var st cortex.Status
	if err := json.Unmarshal([]byte(status("-o", "json")), &st); err != nil {
		t.Fatalf("-o json: %v", err)
	}
	if len(st.Neurons) != 1 || st.Neurons[0].Name != devNeuron || st.Neurons[0].Models[0].ID != d.model {
		t.Errorf("-o json: %+v", st.Neurons)
	}

	t.Setenv("HELEXA_API_KEY", devKey)
	out = status()
	if !strings.Contains(out, "ACCOUNT") || !strings.Contains(out, devAccount) {
		t.Errorf("the admin key shows no budgets:\n%s", out)
	}
}

func TestStatusCommandErrors(t *testing.T) {
	t.Parallel()
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer right" {
			oaierr.Write(w, http.StatusUnauthorized, cortex.CodeInvalidAPIKey, "missing or unknown API key", 0)
			return
		}
		_, _ = io.WriteString(w, "not json")
	}))
	t.Cleanup(refusing.Close)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"bad output", []string{"-o", "yaml"}, `-o "yaml"`},
		{"bad endpoint", []string{"--endpoint", "ftp://x"}, "not an http(s) URL"},
		{"extra argument", []string{"neurons"}, "unexpected argument"},
		{"unauthorized", []string{"--endpoint", refusing.URL, "--api-key", "wrong"}, "invalid_api_key"},
		{"not json", []string{"--endpoint", refusing.URL, "--api-key", "right", "-o", "json"}, "JSON"},
		{"unreachable", []string{"--endpoint", "http://127.0.0.1:1", "--timeout", "2s"}, "status:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := run(t.Context(), append([]string{"status"}, tt.args...), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one with %q", err, tt.wantErr)
			}
		})
	}
}

func TestPrintStatus(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st := cortex.Status{
		GeneratedAt: now,
		Admin:       true,
		Neurons: []cortex.StatusNeuron{
			{Name: "gpu-01", State: cortex.NeuronOK, LastSuccess: now.Add(-time.Second), FreeVRAMMB: 20480,
				GPUs: []cortex.StatusGPU{{TotalMB: 24576, PlacedMB: 4096}, {TotalMB: 24576, UsedMB: 999}},
				Models: []cortex.StatusReplica{{ID: "llama", Status: neuron.StatusLoaded, InFlight: 2, Queued: 1},
					{ID: "qwen", Status: neuron.StatusLoading},
					{ID: "tiny", Status: neuron.StatusLoaded, Ejected: true, EjectedUntil: now.Add(20 * time.Second), Ejections: 2}}},
			{Name: "gpu-02", State: cortex.NeuronDown, LastSuccess: now.Add(-3 * time.Hour), Stale: true,
				GPUs:   []cortex.StatusGPU{{TotalMB: 24576, PlacedMB: 4096}},
				Models: []cortex.StatusReplica{{ID: "llama", Status: neuron.StatusLoaded, Stale: true}}},
		},
		Models: []cortex.StatusModel{
			{ID: "llama", State: cortex.ModelLoaded, Aliases: []string{"fast"}, FeasibleOn: []string{"gpu-01"},
				PromptCache: &cortex.PromptCache{PromptTokens: 1200, CachedTokens: 750, HitRatio: 0.625},
				Locations: []cortex.ModelLocation{{Neuron: "gpu-01", Status: neuron.StatusLoaded, Healthy: true},
					{Neuron: "gpu-02", Status: neuron.StatusLoaded}}},
			{ID: "qwen", State: cortex.ModelLoading, FeasibleOn: []string{"gpu-01"},
				Replicas: &cortex.ModelReplicas{Loading: 1, Min: 1, Max: 2,
					LastScale: &cortex.Event{Kind: cortex.EventScaleOut, Model: "qwen", Reason: "min_replicas 1"}},
				Locations: []cortex.ModelLocation{{Neuron: "gpu-01", Status: neuron.StatusLoading, LoadingSeconds: 42, Healthy: true}}},
			{ID: "tiny", State: cortex.ModelLoaded, FeasibleOn: []string{"gpu-01"},
				Locations: []cortex.ModelLocation{{Neuron: "gpu-01", Status: neuron.StatusLoaded, Healthy: true}}},
			{ID: "huge", State: cortex.ModelNotDeployable},
		},
		Budgets: []cortex.StatusBudget{
			{AccountID: "acme", KeyID: "ci", Unit: "tokens", Window: "balance", HardCap: ptr(int64(1000)), Spent: 10, Remaining: ptr(int64(990))},
			{AccountID: "shop", KeyID: "web", Unit: "usd", Window: "balance", HardCap: ptr(int64(2_500_000)), Spent: 1_234_567,
				Reserved: 3_000, Remaining: ptr(int64(1_262_433))},
			{AccountID: "gone", KeyID: "old", Unit: "tokens", Error: "invalid API key"},
		},
		Events: []cortex.Event{
			{Time: now.Add(-10 * time.Second), Kind: cortex.EventEject, Model: "tiny", Neuron: "gpu-01",
				Reason: "5 failures in a row; out of rotation for 20s (ejection 2)"},
			{Time: now.Add(-time.Minute), Kind: cortex.EventNeuronDown, Neuron: "gpu-02", Error: "the neuron could not be polled",
				Reason: "3 failed polls", Detail: "models: dial tcp 10.0.0.12:31400: connection refused"},
			{Time: now.Add(-70 * time.Second), Kind: cortex.EventLoadFailed, Model: "qwen", Neuron: "gpu-01",
				Error: "model_load_failed: engine exited\nline two of its log\nline three"},
			{Time: now.Add(-90 * time.Second), Kind: cortex.EventLoad, Model: "llama", Neuron: "gpu-01", Took: 1500 * time.Millisecond},
			{Time: now.Add(-2 * time.Minute), Kind: cortex.EventEvict, Model: "old", Neuron: "gpu-01", For: "llama"},
		},
	}
	var out bytes.Buffer
	if err := printStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	want := `NEURON   STATUS   GPUS   VRAM MODELS/TOTAL   FREE     MODELS                                  LAST POLL
gpu-01   ok       2      4.0Gi/48.0Gi        20.0Gi   llama,qwen(loading),tiny(ejected 20s)   1s
gpu-02   down     1      4.0Gi/24.0Gi        -        llama(stale)                            3h

MODEL   STATUS           LOCATIONS                                  REPLICAS                              FEASIBLE ON   IN FLIGHT   PROMPT CACHE    ALIASES
llama   loaded           gpu-01:loaded,gpu-02:loaded(neuron down)   -                                     gpu-01        3           62.5% of 1200   fast
qwen    loading          gpu-01:loading(42s)                        0+1/1-2 (scale_out: min_replicas 1)   gpu-01        0           -               -
tiny    loaded           gpu-01:loaded(ejected)                     -                                     gpu-01        0           -               -
huge    not_deployable   -                                          -                                     -             0           -               -

ACCOUNT   KEY   UNIT     WINDOW    HARD CAP   SPENT   RESERVED   REMAINING
acme      ci    tokens   balance   1000       10      0          990
shop      web   usd      balance   $2.50      $1.23   <$0.01     $1.26
gone      old   tokens   error: invalid API key

AGE   EVENT         MODEL   NEURON   DETAIL
10s   eject         tiny    gpu-01   5 failures in a row; out of rotation for 20s (ejection 2)
1m    neuron_down   -       gpu-02   the neuron could not be polled; 3 failed polls
1m    load_failed   qwen    gpu-01   model_load_failed: engine exited …
1m    load          llama   gpu-01   took 1.5s
2m    evict         old     gpu-01   for llama
`
	if diff := cmp.Diff(out.String(), want); diff != "" {
		t.Errorf("tables (-got +want):\n%s", diff)
	}
}

func ptr[T any](v T) *T { return &v }
