package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/engine"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestExampleConfigTemplatesAreValid(t *testing.T) {
	cfg, err := neuron.LoadConfig(filepath.Join("..", "..", "testdata", "neuron.toml"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := engine.New(cfg.Engines, engine.WithDefaultEngine(cfg.DefaultEngine))
	if err != nil {
		t.Fatalf("engine.New with the example's templates: %v", err)
	}
	if err := h.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestRun_FlagsAndConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{name: "version", args: []string{"--version"}, wantOut: "dev\n"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantErr: "--log-format"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "flag provided but not defined"},
		{name: "missing config", args: []string{"--config", filepath.Join(t.TempDir(), "none.toml")}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tt.args, &stdout, &stderr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if stdout.String() != tt.wantOut {
				t.Errorf("stdout = %q, want %q", stdout.String(), tt.wantOut)
			}
		})
	}
}

func TestRun_ServesUntilCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	config := fmt.Sprintf(`listen = %q
token = "tok"
drain_timeout = "1s"
[discovery]
kind = "static"
hostname = "test-node"
[[discovery.devices]]
index = 0
total_mb = 1000
[[engines]]
name = "sim"
command = ["helexa-sim", "--host", "{host}", "--port", "{port}", "--model", "{id}"]
`, addr)
	path := filepath.Join(t.TempDir(), "neuron.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--config", path, "--log-format", "json"}, &bytes.Buffer{}, &logs) }()

	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	get := func(p string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+addr+p, nil)
		req.Header.Set("Authorization", "Bearer tok")
		return client.Do(req)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := get("/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("neuron never answered /health: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := get("/discovery")
	if err != nil {
		t.Fatal(err)
	}
	var d neuron.Discovery
	err = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if err != nil || d.Hostname != "test-node" || len(d.Devices) != 1 {
		t.Errorf("discovery = %+v, %v", d, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	if !strings.Contains(logs.String(), `"msg":"neuron: serving"`) {
		t.Errorf("logs lack the serving line:\n%s", logs.String())
	}
}
