package engine_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/engine"
)

func TestNewValidation(t *testing.T) {
	t.Parallel()
	ok := neuron.EngineConfig{Name: "a", Command: []string{"engine", "--port", "{port}"}}
	tests := []struct {
		name    string
		in      []neuron.EngineConfig
		opts    []engine.Option
		wantErr string // substring; empty means success
	}{
		{name: "minimal", in: []neuron.EngineConfig{ok}},
		{name: "all placeholders", in: []neuron.EngineConfig{{
			Name:    "a",
			Command: []string{"e", "{model}", "{id}", "--listen={host}:{port}", "{gpus}", "-c", "{context}", `{"json":{"x":1}}`, "{}", "{ id }"},
			Env:     map[string]string{"X": "{gpus}"},
		}}},
		{name: "no engines", wantErr: "no engine templates"},
		{name: "empty name", in: []neuron.EngineConfig{{Command: []string{"e"}}}, wantErr: "name is empty"},
		{name: "duplicate name", in: []neuron.EngineConfig{ok, ok}, wantErr: `duplicate engine name "a"`},
		{name: "empty command", in: []neuron.EngineConfig{{Name: "a"}}, wantErr: "command is empty"},
		{name: "empty argv0", in: []neuron.EngineConfig{{Name: "a", Command: []string{""}}}, wantErr: "command is empty"},
		{name: "unknown placeholder", in: []neuron.EngineConfig{{Name: "a", Command: []string{"e", "--gpu={gpu}"}}}, wantErr: "unknown placeholder {gpu}"},
		{name: "unknown placeholder in env", in: []neuron.EngineConfig{{Name: "a", Command: []string{"e"}, Env: map[string]string{"X": "{nope}"}}}, wantErr: "env X: unknown placeholder {nope}"},
		{name: "bad env name", in: []neuron.EngineConfig{{Name: "a", Command: []string{"e"}, Env: map[string]string{"A=B": "x"}}}, wantErr: "invalid env name"},
		{name: "relative ready path", in: []neuron.EngineConfig{{Name: "a", Command: []string{"e"}, ReadyPath: "health"}}, wantErr: "does not start with /"},
		{name: "negative start timeout", in: []neuron.EngineConfig{{Name: "a", Command: []string{"e"}, StartTimeout: neuron.Duration(-time.Second)}}, wantErr: "negative start_timeout"},
		{name: "negative stop timeout", in: []neuron.EngineConfig{{Name: "a", Command: []string{"e"}, StopTimeout: neuron.Duration(-time.Second)}}, wantErr: "negative stop_timeout"},
		{name: "default engine", in: []neuron.EngineConfig{ok, {Name: "b", Command: []string{"e"}}}, opts: []engine.Option{engine.WithDefaultEngine("b")}},
		{name: "unknown default engine", in: []neuron.EngineConfig{ok}, opts: []engine.Option{engine.WithDefaultEngine("b")}, wantErr: `default engine "b"`},
		{name: "zero log lines", in: []neuron.EngineConfig{ok}, opts: []engine.Option{engine.WithLogLines(0)}, wantErr: "log lines must be positive"},
		{name: "zero backoff", in: []neuron.EngineConfig{ok}, opts: []engine.Option{engine.WithBackoff(0, time.Second)}, wantErr: "invalid backoff"},
		{name: "inverted backoff", in: []neuron.EngineConfig{ok}, opts: []engine.Option{engine.WithBackoff(time.Second, time.Millisecond)}, wantErr: "invalid backoff"},
		{name: "empty host", in: []neuron.EngineConfig{ok}, opts: []engine.Option{engine.WithHost("")}, wantErr: "invalid host"},
		{name: "host with port", in: []neuron.EngineConfig{ok}, opts: []engine.Option{engine.WithHost("127.0.0.1:80")}, wantErr: "invalid host"},
		{name: "ipv6 host", in: []neuron.EngineConfig{ok}, opts: []engine.Option{engine.WithHost("::1")}},
		{name: "unspecified host", in: []neuron.EngineConfig{ok}, opts: []engine.Option{engine.WithHost("0.0.0.0")}},
		{name: "host name", in: []neuron.EngineConfig{ok}, opts: []engine.Option{engine.WithHost("localhost")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := engine.New(tt.in, tt.opts...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if h == nil {
					t.Fatal("New returned a nil harness")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	v := engine.NewVars("org/weights", "m1", "127.0.0.1", "0,2", 40123, 8192)
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "no placeholder", in: "--flag", want: "--flag"},
		{name: "whole", in: "{port}", want: "40123"},
		{name: "inside", in: "--listen={host}:{port}", want: "--listen=127.0.0.1:40123"},
		{name: "model and id", in: "{model}@{id}", want: "org/weights@m1"},
		{name: "gpus", in: "CUDA={gpus}", want: "CUDA=0,2"},
		{name: "context", in: "-c{context}", want: "-c8192"},
		{name: "json braces kept", in: `{"a":{"b":1}}`, want: `{"a":{"b":1}}`},
		{name: "empty braces kept", in: "{}{port}", want: "{}40123"},
		{name: "unknown kept", in: "{nope}-{id}", want: "{nope}-m1"},
		{name: "unclosed", in: "{port", want: "{port"},
		{name: "nested brace", in: "{{port}}", want: "{40123}"},
		{name: "repeated", in: "{id}{id}", want: "m1m1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := engine.Expand(tt.in, v); got != tt.want {
				t.Errorf("Expand(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestExpandEmptyValues(t *testing.T) {
	t.Parallel()
	v := engine.NewVars("m", "m", "::1", "", 1, 0)
	if got, want := engine.Expand("gpus=[{gpus}] ctx={context}", v), "gpus=[] ctx=0"; got != want {
		t.Errorf("Expand = %q, want %q", got, want)
	}
}

func TestLoadInvalidSpec(t *testing.T) {
	t.Parallel()
	h, err := engine.New([]neuron.EngineConfig{{Name: "a", Command: []string{"/nonexistent"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   neuron.LoadSpec
	}{
		{name: "empty id", in: neuron.LoadSpec{}},
		{name: "flag id", in: neuron.LoadSpec{ModelID: "--rm"}},
		{name: "flag source", in: neuron.LoadSpec{ModelID: "m", Source: "-x"}},
		{name: "negative context", in: neuron.LoadSpec{ModelID: "m", Context: -1}},
		{name: "negative device", in: neuron.LoadSpec{ModelID: "m", Devices: []int{-1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := h.Load(t.Context(), tt.in)
			if !errors.Is(err, engine.ErrInvalidSpec) {
				t.Fatalf("Load error = %v, want ErrInvalidSpec", err)
			}
		})
	}
	if got := h.Models(); len(got) != 0 {
		t.Errorf("Models() = %v, want none", got)
	}
}
