package main

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

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
