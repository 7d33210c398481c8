package faulttest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoadOverClosingConnections: 1,000 chat completions, every other one
// streamed, at a concurrency of 16, through a gateway over three neurons
// whose engines (helexa-sim children, one replica each) handle connections
// as llama-server does: they announce keep-alive, yet close the
// connection after every streamed answer, and close idle connections
// after 20 ms. A neuron that sends a request on a pooled connection the
// engine has closed, or is closing, must send it again on a new one; no
// request may fail. Every fourth prompt is long enough (6 KB) that its
// body takes more than one write.
func TestLoadOverClosingConnections(t *testing.T) {
	suite(t)
	neurons := []*neuronProc{
		startNeuron(t, "gpu-l1", modelLlama),
		startNeuron(t, "gpu-l2", modelLlama),
		startNeuron(t, "gpu-l3", modelLlama),
	}
	s := newStack(t, neurons)
	long := strings.Repeat("a long prompt for a request body of several writes. ", 120)
	failed := driveLoad(t, s, loadSpec{model: modelLlama, requests: 1000, concurrency: 16, maxTokens: 8,
		prompt: func(i int) string {
			if i%4 == 3 {
				return long
			}
			return fmt.Sprintf("tell me story %d", i)
		}})
	if len(failed) > 0 {
		t.Errorf("%d of 1000 requests failed; the first: %s", len(failed), strings.Join(failed[:min(len(failed), 5)], "\n"))
	}
	s.settled(time.Second)
}

// loadSpec is a load of chat completions: requests of them for model, at
// most concurrency at a time, every odd one streamed (with usage), each
// asking for maxTokens and sending prompt(i).
type loadSpec struct {
	model                            string
	requests, concurrency, maxTokens int
	prompt                           func(i int) string
}

// driveLoad sends the load through s and returns a line for each request
// that failed: a transport error, a status other than 200, an answer
// without choices, or a stream that carries an error event or does not
// end with [DONE].
func driveLoad(t *testing.T, s *stack, l loadSpec) []string {
	t.Helper()
	var (
		next   atomic.Int64
		mu     sync.Mutex
		failed []string
		wg     sync.WaitGroup
	)
	for range l.concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= l.requests {
					return
				}
				if err := loadRequest(t.Context(), s, l, i); err != nil {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("request %d: %v", i, err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return failed
}

// loadRequest sends request i of l and checks its answer.
func loadRequest(ctx context.Context, s *stack, l loadSpec, i int) error {
	stream := i%2 == 1
	m := map[string]any{"model": l.model, "max_tokens": l.maxTokens,
		"messages": []map[string]string{{"role": "user", "content": l.prompt(i)}}}
	if stream {
		m["stream"], m["stream_options"] = true, map[string]bool{"include_usage": true}
	}
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.srv.URL+"/v1/chat/completions", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return fmt.Errorf("stream=%t: reading the answer: %w", stream, err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("stream=%t: status %d: %.300s", stream, resp.StatusCode, b)
	case stream && (!strings.Contains(string(b), "data: [DONE]") || strings.Contains(string(b), `"error"`)):
		return fmt.Errorf("stream cut or failed: %.300s", b[max(0, len(b)-300):])
	case !stream && !strings.Contains(string(b), `"choices"`):
		return fmt.Errorf("an answer without choices: %.300s", b)
	}
	return nil
}
