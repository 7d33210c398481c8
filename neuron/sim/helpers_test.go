package sim_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newServer serves an engine built from cfg and opts.
func newServer(t testing.TB, cfg sim.Config, opts ...sim.EngineOption) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(sim.NewEngine(cfg, opts...))
	t.Cleanup(srv.Close)
	return srv
}

// send posts body to url with ctx and returns the response; the body is
// closed at the end of the test.
func send(ctx context.Context, t testing.TB, c *http.Client, url, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// decodeOK checks that resp is 200 and decodes its JSON body.
func decodeOK[T any](t testing.TB, resp *http.Response) T {
	t.Helper()
	var v T
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d, body %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("decoding body: %v", err)
	}
	return v
}

// postJSON posts body to srv's path and decodes a 200 answer.
func postJSON[T any](t testing.TB, srv *httptest.Server, path, body string) T {
	t.Helper()
	return decodeOK[T](t, send(t.Context(), t, srv.Client(), srv.URL+path, body))
}

// errorCode checks the status of resp and returns its envelope's code.
func errorCode(t testing.TB, resp *http.Response, status int) oaierr.Body {
	t.Helper()
	if resp.StatusCode != status {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, b)
	}
	b, ok := oaierr.Read(resp.Body)
	if !ok {
		t.Fatal("body is not an OpenAI error envelope")
	}
	return b
}

type usage struct {
	PromptTokens        int      `json:"prompt_tokens"`
	CompletionTokens    int      `json:"completion_tokens"`
	TotalTokens         int      `json:"total_tokens"`
	PromptTokensDetails *details `json:"prompt_tokens_details"`
}

// details is prompt_tokens_details or input_tokens_details.
type details struct {
	CachedTokens int `json:"cached_tokens"`
}

type chatResponse struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

// sseEvent is one server-sent event.
type sseEvent struct {
	Event string
	Data  string
}

// readSSE reads events from r until [DONE] or the end of the stream. err is
// nil when the stream ended cleanly (with or without [DONE]).
func readSSE(r io.Reader) (events []sseEvent, done bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Data != "" {
				events = append(events, ev)
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.Event = strings.TrimPrefix(line, "event: ")
		case line == "data: [DONE]":
			return events, true, nil
		case strings.HasPrefix(line, "data: "):
			ev.Data = strings.TrimPrefix(line, "data: ")
		}
	}
	return events, false, sc.Err()
}

// chunks decodes chat or completions stream events.
func chunks(t testing.TB, events []sseEvent) []chunk {
	t.Helper()
	out := make([]chunk, len(events))
	for i, ev := range events {
		if err := json.Unmarshal([]byte(ev.Data), &out[i]); err != nil {
			t.Fatalf("chunk %d %q: %v", i, ev.Data, err)
		}
	}
	return out
}

// promptTokens is the documented estimate for chat messages given as
// role, content pairs.
func promptTokens(contents ...string) int {
	n := 0
	for _, c := range contents {
		n += (len([]rune(c))+3)/4 + sim.MessageOverhead
	}
	return n
}

// fakeClock is a Clock whose Sleep returns at once, advancing the time and
// recording the durations.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// waitFor polls cond every few milliseconds until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// isAbort reports whether err is what a client sees when the server aborts
// a response mid-body.
func isAbort(err error) bool {
	return err != nil && (errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "connection reset") ||
		strings.Contains(err.Error(), "EOF"))
}
