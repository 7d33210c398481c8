package engine_test

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/engine"
)

// llamaTemplate is a llama-server template with an optional context.
var llamaTemplate = neuron.EngineConfig{Name: "llama-server", Command: []string{
	"llama-server", "--model", "{model}", "--alias", "{id}", "--host", "{host}", "--port", "{port}",
	"--ctx-size", "{context?}", "--n-gpu-layers", "999", "--parallel", "4", "--kv-unified"}}

func TestCommandContextAndArgs(t *testing.T) {
	t.Parallel()
	base := []string{"llama-server", "--model", "/m.gguf", "--alias", "m", "--host", "127.0.0.1", "--port", "8080"}
	tests := []struct {
		name    string
		context int
		args    neuron.EngineArgs
		want    []string // after base
	}{
		{name: "context", context: 8192,
			want: []string{"--ctx-size", "8192", "--n-gpu-layers", "999", "--parallel", "4", "--kv-unified"}},
		{name: "no context drops the flag", context: 0,
			want: []string{"--n-gpu-layers", "999", "--parallel", "4", "--kv-unified"}},
		{name: "set overrides a template value", context: 8192,
			args: neuron.EngineArgs{Set: map[string]string{"--n-gpu-layers": "40", "--parallel": "2"}},
			want: []string{"--ctx-size", "8192", "--n-gpu-layers", "40", "--parallel", "2", "--kv-unified"}},
		{name: "set overrides the context", context: 8192,
			args: neuron.EngineArgs{Set: map[string]string{"--ctx-size": "4096"}},
			want: []string{"--ctx-size", "4096", "--n-gpu-layers", "999", "--parallel", "4", "--kv-unified"}},
		{name: "set appends a flag the template lacks, in key order", context: 0,
			args: neuron.EngineArgs{Set: map[string]string{"--ctx-size": "4096", "--cache-type-k": "q8_0"}},
			want: []string{"--n-gpu-layers", "999", "--parallel", "4", "--kv-unified", "--cache-type-k", "q8_0", "--ctx-size", "4096"}},
		{name: "extra is appended last, as written", context: 512,
			args: neuron.EngineArgs{Extra: []string{"--override-kv", "llama.context_length=int:4096", "{not a placeholder}", "a b; rm -rf /"},
				Set: map[string]string{"--threads": "1"}},
			want: []string{"--ctx-size", "512", "--n-gpu-layers", "999", "--parallel", "4", "--kv-unified",
				"--threads", "1", "--override-kv", "llama.context_length=int:4096", "{not a placeholder}", "a b; rm -rf /"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := engine.NewVars("/m.gguf", "m", "127.0.0.1", "", 8080, tt.context)
			got, err := engine.CommandOf(llamaTemplate, v, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if want := append(slices.Clone(base), tt.want...); !slices.Equal(got, want) {
				t.Errorf("argv\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func TestCommandEqualsForm(t *testing.T) {
	t.Parallel()
	c := neuron.EngineConfig{Name: "vllm", Command: []string{"vllm", "serve", "{model}", "--port={port}",
		"--max-model-len", "{context?}", "--gpu-memory-utilization=0.9", "--tensor-split", "{gpus?}"}}
	got, err := engine.CommandOf(c, engine.NewVars("org/m", "m", "h", "", 1, 0),
		neuron.EngineArgs{Set: map[string]string{"--gpu-memory-utilization": "0.5"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"vllm", "serve", "org/m", "--port=1", "--gpu-memory-utilization=0.5"}
	if !slices.Equal(got, want) {
		t.Errorf("argv %q, want %q", got, want)
	}
}

func TestArgsOwnedByTheTemplate(t *testing.T) {
	t.Parallel()
	for _, args := range []neuron.EngineArgs{
		{Set: map[string]string{"--alias": "other"}},       // its value is {id}
		{Set: map[string]string{"--model": "/other.gguf"}}, // {model}
		{Extra: []string{"--alias", "x"}},                  // repeated later, it would win
		{Extra: []string{"--model=/other.gguf"}},           // the = form
		{Set: map[string]string{"--port": "1"}},            // owned everywhere
	} {
		v := engine.NewVars("/m.gguf", "m", "127.0.0.1", "", 8080, 0)
		_, err := engine.CommandOf(llamaTemplate, v, args)
		if !errors.Is(err, engine.ErrInvalidSpec) || !errors.Is(err, neuron.ErrInvalidRequest) || !strings.Contains(err.Error(), "set by the neuron") {
			t.Errorf("%+v: err = %v, want ErrInvalidSpec naming the flag", args, err)
		}
	}
}

func TestOptionalPlaceholderValidation(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cmd     []string
		env     map[string]string
		wantErr string
	}{
		{cmd: []string{"e", "--port", "{port?}"}, wantErr: "cannot be optional"},
		{cmd: []string{"{context?}"}, wantErr: "cannot be optional"},
		{cmd: []string{"e", "--ctx={context?}"}, wantErr: "must be a whole argument"},
		{cmd: []string{"e"}, env: map[string]string{"CTX": "{context?}"}, wantErr: "command arguments only"},
		{cmd: []string{"e", "--ctx", "{context?}", "--ts", "{gpus?}"}},
	} {
		_, err := engine.New([]neuron.EngineConfig{{Name: "a", Command: tt.cmd, Env: tt.env}})
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tt.cmd, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%q %v: err = %v, want %q", tt.cmd, tt.env, err, tt.wantErr)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	argv := engine.RedactArgv([]string{"llama-server", "--api-key", "s3cret", "--hf-token=hf_x", "--max-num-batched-tokens", "8192", "--port", "1"})
	want := []string{"llama-server", "--api-key", "[redacted]", "--hf-token=[redacted]", "--max-num-batched-tokens", "8192", "--port", "1"}
	if !slices.Equal(argv, want) {
		t.Errorf("argv %q, want %q", argv, want)
	}
	env := engine.RedactEnv([]string{"HF_TOKEN=hf_x", "LLAMA_API_KEY=k", "CUDA_VISIBLE_DEVICES=0"})
	if want := []string{"HF_TOKEN=[redacted]", "LLAMA_API_KEY=[redacted]", "CUDA_VISIBLE_DEVICES=0"}; !slices.Equal(env, want) {
		t.Errorf("env %q, want %q", env, want)
	}
}

// TestEngineArgsReachTheEngine starts an engine that prints its arguments:
// the load's context fills {context?}, the model's own arguments follow,
// the start is logged with its argv ("engine command", secrets redacted), and a load without
// a context starts the engine without the flag, with a warning.
func TestEngineArgsReachTheEngine(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	e := shellEngine("echo", `echo "args=$*"; `+simCmd(""))
	e.Command = append(e.Command, "sh", "--ctx-size", "{context?}", "--parallel", "4")
	h := newHarness(t, []neuron.EngineConfig{e}, engine.WithLogger(slog.New(rec)))
	spec := neuron.LoadSpec{ModelID: "a", Context: 512, EngineArgs: neuron.EngineArgs{
		Set:   map[string]string{"--parallel": "2"},
		Extra: []string{"--api-key", "s3cret", "--override-kv", "x=int:1"},
	}}
	if _, err := h.Load(t.Context(), spec); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "b"}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	for id, want := range map[string]string{
		"a": "args=--ctx-size 512 --parallel 2 --api-key s3cret --override-kv x=int:1",
		"b": "args=--parallel 4",
	} {
		logs, err := h.Logs(id)
		if err != nil || len(logs) == 0 || logs[0] != want {
			t.Errorf("engine %s saw %q (%v), want %q", id, logs, err, want)
		}
	}
	started := rec.find("engine command model=a")
	if !strings.Contains(started, "--ctx-size 512 --parallel 2 --api-key [redacted] --override-kv x=int:1]") || strings.Contains(started, "s3cret") {
		t.Errorf("start log %q: want the argv with the key redacted", started)
	}
	if w := rec.find("engine context unset"); !strings.Contains(w, "model=b") {
		t.Errorf("no context warning for b: %q", rec.messages())
	}
	if w := rec.find("engine context unset model=a"); w != "" {
		t.Errorf("context warning for a, which has one: %q", w)
	}
}

func TestLoadRefusesBadEngineArgs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, []neuron.EngineConfig{simEngine("sim")})
	for _, args := range []neuron.EngineArgs{
		{Extra: []string{"a\x00b"}},
		{Extra: []string{"--port", "1"}},
		{Extra: []string{"{model}"}},
		{Set: map[string]string{"ctx": "1"}},
		{Set: map[string]string{"--model": "x"}}, // the sim template's {id}
	} {
		spec := neuron.LoadSpec{ModelID: "x", EngineArgs: args}
		if _, err := h.Load(t.Context(), spec); !errors.Is(err, neuron.ErrInvalidRequest) {
			t.Errorf("Load with %+v: %v, want ErrInvalidRequest", args, err)
		}
		if err := h.Check(t.Context(), spec); !errors.Is(err, neuron.ErrInvalidRequest) {
			t.Errorf("Check with %+v: %v, want ErrInvalidRequest", args, err)
		}
	}
	if len(h.Models()) != 0 {
		t.Errorf("models %+v after refused loads", h.Models())
	}
}
