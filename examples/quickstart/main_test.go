package main

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/internal/testout"
)

// The printed curl command works: its URL and body, sent as it says.
func TestRunPrintsACurlThatWorks(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out testout.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", &out) }()
	re := regexp.MustCompile(`curl -sS (\S+) -H 'Content-Type: application/json' -d '([^']+)'`)
	m := out.Wait(t, re, done, 20*time.Second)
	resp, err := http.Post(m[1], "application/json", strings.NewReader(m[2]))
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || answer.Model != "demo-1b" || len(answer.Choices) != 1 {
		t.Errorf("status %d, answer %+v, %v", resp.StatusCode, answer, err)
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

// --listen sets the gateway's address; without it the gateway listens on
// cortex.DefaultListen.
func TestListenFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr bool
	}{
		{"default", nil, cortex.DefaultListen, false},
		{"set", []string{"--listen", "0.0.0.0:8080"}, "0.0.0.0:8080", false},
		{"set with =", []string{"-listen=127.0.0.1:0"}, "127.0.0.1:0", false},
		{"unknown flag", []string{"--port", "1"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags(%q) error %v, want error %v", tt.args, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("parseFlags(%q) = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}
