package sim_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// answer posts a chat body to srv and returns its only choice's word count
// and finish reason, checking that usage agrees with the text.
func answer(t *testing.T, post func(string) chatResponse, body string) (int, string) {
	t.Helper()
	got := post(body)
	if len(got.Choices) != 1 {
		t.Fatalf("%d choices, want 1", len(got.Choices))
	}
	c := got.Choices[0]
	text := c.Message.Content + c.Text
	n := len(strings.Fields(text))
	if got.Usage == nil || got.Usage.CompletionTokens != n {
		t.Fatalf("usage %+v for %d words", got.Usage, n)
	}
	return n, c.FinishReason
}

// TestNaturalEnd drives the natural end of answers over HTTP: each answer
// ends by itself with "stop" at a length that is a function of its prompt,
// the lengths follow the configured distribution, and a lower max_tokens
// ends it with "length".
func TestNaturalEnd(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	post := func(body string) chatResponse {
		return postJSON[chatResponse](t, srv, "/v1/chat/completions", body)
	}
	const prompts = 300
	lengths := make([]int, 0, prompts)
	for i := range prompts {
		body := chatBody(fmt.Sprintf("question %d", i), `"max_tokens":8000`)
		n, finish := answer(t, post, body)
		if finish != "stop" {
			t.Fatalf("prompt %d: finish %q after %d tokens, want stop", i, finish, n)
		}
		if again, _ := answer(t, post, body); again != n {
			t.Fatalf("prompt %d: %d tokens, then %d for the same prompt", i, n, again)
		}
		lengths = append(lengths, n)
	}
	slices.Sort(lengths)
	p10, median, p90 := lengths[prompts/10], lengths[prompts/2], lengths[prompts*9/10]
	t.Logf("answer lengths: p10 %d, median %d, p90 %d, max %d", p10, median, p90, lengths[prompts-1])
	if median < sim.DefaultAnswerTokens*3/4 || median > sim.DefaultAnswerTokens*4/3 {
		t.Errorf("median %d tokens, want about %d", median, sim.DefaultAnswerTokens)
	}
	if p10 > median/2 || p90 < median*2 {
		t.Errorf("p10 %d and p90 %d around median %d: want a spread of about 3 each way", p10, p90, median)
	}

	// A bound below the natural length ends the answer with "length".
	natural, _ := answer(t, post, chatBody("question 0", `"max_tokens":8000`))
	if natural > 1 {
		body := chatBody("question 0", fmt.Sprintf(`"max_tokens":%d`, natural-1))
		if n, finish := answer(t, post, body); n != natural-1 || finish != "length" {
			t.Errorf("max_tokens %d: %d tokens, finish %q; want %d, length", natural-1, n, finish, natural-1)
		}
	}
	body := chatBody("question 0", fmt.Sprintf(`"max_tokens":%d`, natural))
	if n, finish := answer(t, post, body); n != natural || finish != "stop" {
		t.Errorf("max_tokens %d (the natural length): %d tokens, finish %q; want %d, stop", natural, n, finish, natural)
	}
}

// TestIgnoreEOS checks both ways to turn the natural end off: the
// request's "ignore_eos": true, and Config.IgnoreEOS.
func TestIgnoreEOS(t *testing.T) {
	t.Parallel()
	const limit = 3000 // far over the natural length of these prompts
	for _, tt := range []struct {
		name  string
		cfg   sim.Config
		extra string
	}{
		{"request", sim.Config{}, fmt.Sprintf(`"max_tokens":%d,"ignore_eos":true`, limit)},
		{"config", sim.Config{IgnoreEOS: true}, fmt.Sprintf(`"max_tokens":%d`, limit)},
		{"GPU model, request", sim.Config{GPU: &sim.GPU{TimeScale: 1e-6}}, fmt.Sprintf(`"max_tokens":%d,"ignore_eos":true`, limit)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tt.cfg)
			post := func(body string) chatResponse {
				return postJSON[chatResponse](t, srv, "/v1/chat/completions", body)
			}
			for i := range 5 {
				n, finish := answer(t, post, chatBody(fmt.Sprintf("question %d", i), tt.extra))
				if n != limit || finish != "length" {
					t.Errorf("prompt %d: %d tokens, finish %q; want %d, length", i, n, finish, limit)
				}
			}
		})
	}
}

// TestAnswerTokensKnob sets the distribution: a tiny spread makes every
// answer the median's length, in chat, completions, streams and under the
// GPU model alike.
func TestAnswerTokensKnob(t *testing.T) {
	t.Parallel()
	const want = 12
	for _, tt := range []struct {
		name string
		cfg  sim.Config
	}{
		{"plain", sim.Config{AnswerTokens: want, AnswerSpread: 1e-9}},
		{"GPU model", sim.Config{AnswerTokens: want, AnswerSpread: 1e-9, GPU: &sim.GPU{TimeScale: 1e-6}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tt.cfg)
			post := func(path string) func(string) chatResponse {
				return func(body string) chatResponse { return postJSON[chatResponse](t, srv, path, body) }
			}
			for i := range 5 {
				n, finish := answer(t, post("/v1/chat/completions"), chatBody(fmt.Sprintf("q %d", i), `"max_tokens":100`))
				if n != want || finish != "stop" {
					t.Errorf("chat %d: %d tokens, finish %q; want %d, stop", i, n, finish, want)
				}
				n, finish = answer(t, post("/v1/completions"), fmt.Sprintf(`{"model":"m","prompt":"q %d","max_tokens":100}`, i))
				if n != want || finish != "stop" {
					t.Errorf("completions %d: %d tokens, finish %q; want %d, stop", i, n, finish, want)
				}
			}
			resp := send(t.Context(), t, srv.Client(), srv.URL+"/v1/chat/completions",
				chatBody("streamed", `"max_tokens":100,"stream":true,"stream_options":{"include_usage":true}`))
			events, done, err := readSSE(resp.Body)
			if err != nil || !done {
				t.Fatalf("stream: done %v, err %v", done, err)
			}
			var text strings.Builder
			var finish string
			var completion int
			for _, c := range chunks(t, events) {
				for _, ch := range c.Choices {
					if ch.Delta.Content != nil {
						text.WriteString(*ch.Delta.Content)
					}
					if ch.FinishReason != nil {
						finish = *ch.FinishReason
					}
				}
				if c.Usage != nil {
					completion = c.Usage.CompletionTokens
				}
			}
			if n := len(strings.Fields(text.String())); n != want || completion != want || finish != "stop" {
				t.Errorf("stream: %d words, usage %d, finish %q; want %d, stop", n, completion, finish, want)
			}
		})
	}
}

func TestAnswerConfigValidate(t *testing.T) {
	t.Parallel()
	for _, cfg := range []sim.Config{{AnswerTokens: -1}, {AnswerSpread: -0.5}} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v: valid, want an error", cfg)
		}
	}
}
