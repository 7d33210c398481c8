package sim_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// messagesBody is a chat request of system and user messages.
func messagesBody(system, user, extra string) string {
	s, _ := json.Marshal(system)
	u, _ := json.Marshal(user)
	if extra != "" {
		extra = "," + extra
	}
	return fmt.Sprintf(`{"model":"m","messages":[{"role":"system","content":%s},{"role":"user","content":%s}]%s}`, s, u, extra)
}

// TestGPUCachedTokens: under a GPU model a repeated prompt reports its
// whole-block prefix in prompt_tokens_details.cached_tokens and prefills
// only the rest, and the engine's steps take the model's times, scaled.
func TestGPUCachedTokens(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	g := &sim.GPU{TimeScale: 0.5}
	srv := newServer(t, sim.Config{GPU: g}, sim.WithClock(clock))
	content := strings.Repeat("a", 1000)
	body := chatBody(content, `"max_tokens":3`)
	// The text cached is "user", 0, the content, 0: 1006 bytes, 15 blocks
	// of 64 bytes (16 tokens of 4 bytes), all within the 254-1 tokens.
	const prompt, cached = 254, 240

	first := postJSON[chatResponse](t, srv, "/v1/chat/completions", body)
	second := postJSON[chatResponse](t, srv, "/v1/chat/completions", body)
	if diff := cmp.Diff(first.Usage, &usage{PromptTokens: prompt, CompletionTokens: 3, TotalTokens: prompt + 3,
		PromptTokensDetails: &details{}}); diff != "" {
		t.Errorf("first usage (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(second.Usage, &usage{PromptTokens: prompt, CompletionTokens: 3, TotalTokens: prompt + 3,
		PromptTokensDetails: &details{CachedTokens: cached}}); diff != "" {
		t.Errorf("second usage (-got +want):\n%s", diff)
	}
	if first.Choices[0].Message.Content != second.Choices[0].Message.Content {
		t.Error("the model changed the answer to a cached prompt")
	}
	half := func(d time.Duration) time.Duration { return d / 2 }
	step := half(g.DecodeStepTime(1))
	want := []time.Duration{
		half(g.PrefillTime(prompt, 0)), step, step,
		half(g.PrefillTime(prompt-cached, cached)), step, step,
	}
	if diff := cmp.Diff(clock.Sleeps(), want); diff != "" {
		t.Errorf("sleeps (-got +want):\n%s", diff)
	}
	if want[0] != 254*125*time.Microsecond/2 || want[3] != 14*125*time.Microsecond/2 || step != 10150*time.Microsecond/2 {
		t.Errorf("default times: prefill %v then %v, decode step %v", want[0], want[3], step)
	}
	stats := srv.Config.Handler.(*sim.Engine).Stats()
	if stats.PromptTokens != 2*prompt || stats.CachedTokens != cached {
		t.Errorf("stats: %d prompt tokens, %d cached", stats.PromptTokens, stats.CachedTokens)
	}
}

// TestGPUSharedSystemPrompt: different user turns after one system prompt
// share its blocks; the cached tokens are in the stream's usage chunk, in
// the completions usage and in the Responses API's input_tokens_details.
func TestGPUSharedSystemPrompt(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{GPU: &sim.GPU{TimeScale: 1e-6}})
	system := strings.Repeat("s", 2000)
	postJSON[chatResponse](t, srv, "/v1/chat/completions", messagesBody(system, "question one", ""))

	// "system", 0, the 2000 bytes, 0, "user", 0 are shared: 2013 bytes,
	// 31 blocks of 64.
	resp := send(t.Context(), t, srv.Client(), srv.URL+"/v1/chat/completions",
		messagesBody(system, "another question", `"stream":true,"stream_options":{"include_usage":true}`))
	events, done, err := readSSE(resp.Body)
	if err != nil || !done {
		t.Fatalf("stream: done %v, err %v", done, err)
	}
	cs := chunks(t, events)
	if u := cs[len(cs)-1].Usage; u == nil || u.PromptTokensDetails == nil || u.PromptTokensDetails.CachedTokens != 31*16 {
		t.Errorf("stream usage %+v, want 496 cached tokens", u)
	}

	// The Responses API's instructions are a system message.
	in, _ := json.Marshal("a third user turn")
	r := postJSON[responseObject](t, srv, "/v1/responses", fmt.Sprintf(`{"instructions":%q,"input":%s}`, system, in))
	if d := r.Usage.InputTokensDetails; d == nil || d.CachedTokens != 31*16 {
		t.Errorf("responses usage %+v, want 496 cached tokens", r.Usage)
	}

	// A completion prompt is its text alone.
	p, _ := json.Marshal(strings.Repeat("p", 800)) // 200 tokens: 12 blocks in the first 199
	postJSON[chatResponse](t, srv, "/v1/completions", fmt.Sprintf(`{"prompt":%s}`, p))
	c := postJSON[chatResponse](t, srv, "/v1/completions", fmt.Sprintf(`{"prompt":%s}`, p))
	if d := c.Usage.PromptTokensDetails; d == nil || d.CachedTokens != 12*16 {
		t.Errorf("completions usage %+v, want 192 cached tokens", c.Usage)
	}
}

// TestNoDetailsWithoutGPU: without a GPU model the usage is as before, with
// no prompt_tokens_details.
func TestNoDetailsWithoutGPU(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	resp := send(t.Context(), t, srv.Client(), srv.URL+"/v1/chat/completions", chatBody("x", ""))
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, err %v", resp.StatusCode, err)
	}
	if strings.Contains(string(b), "tokens_details") {
		t.Errorf("body %s has token details", b)
	}
}

// TestGPUManyStreams: a replica serves many concurrent streams, queued
// past its batch, each getting all its tokens.
func TestGPUManyStreams(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{GPU: &sim.GPU{TimeScale: 1e-4, MaxBatch: 16}})
	const streams = 100
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Go(func() {
			body := messagesBody(strings.Repeat("t", 400), fmt.Sprint("turn ", i), `"max_tokens":20,"stream":true,"stream_options":{"include_usage":true}`)
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			events, done, err := readSSE(resp.Body)
			if err != nil || !done {
				errs <- fmt.Errorf("stream %d: done %v, err %v", i, done, err)
				return
			}
			var last chunk
			if err := json.Unmarshal([]byte(events[len(events)-1].Data), &last); err != nil {
				errs <- err
				return
			}
			if last.Usage == nil || last.Usage.CompletionTokens != 20 || last.Usage.PromptTokensDetails == nil {
				errs <- fmt.Errorf("stream %d: usage %+v", i, last.Usage)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := srv.Config.Handler.(*sim.Engine).Stats(); s.GeneratedTokens != streams*20 || s.CachedTokens == 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestHarnessGPU: each model a Harness loads is a replica with its own
// cache.
func TestHarnessGPU(t *testing.T) {
	t.Parallel()
	h, client := newHarness(t, sim.Config{GPU: &sim.GPU{TimeScale: 1e-6}})
	for _, id := range []string{"a", "b"} {
		if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: id}); err != nil {
			t.Fatal(err)
		}
	}
	content := strings.Repeat("h", 400) // 104 tokens, 6 blocks
	cachedOf := func(id string) int {
		resp := send(t.Context(), t, client, endpoint(t, h, id)+"/v1/chat/completions", chatBodyFor(id, content, ""))
		u := decodeOK[chatResponse](t, resp).Usage
		if u == nil || u.PromptTokensDetails == nil {
			t.Fatalf("usage %+v", u)
		}
		return u.PromptTokensDetails.CachedTokens
	}
	got := []int{cachedOf("a"), cachedOf("a"), cachedOf("b")}
	if diff := cmp.Diff(got, []int{0, 96, 0}); diff != "" {
		t.Errorf("cached tokens of a, a again, b (-got +want):\n%s", diff)
	}
}
