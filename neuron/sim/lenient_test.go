package sim_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// TestLenientJSON: the engine reads a body the way the lenient decoders of
// real engines do (Python's json and nlohmann keep the last duplicate, and
// Go's encoding/json also matches keys without regard to case, with
// Unicode folding), so that a gateway that reads a body another way can be
// caught serving more than it charged.
func TestLenientJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		path       string
		body       string
		wantTokens int // completion tokens of the answer
		wantStream bool
	}{
		{name: "case variant key", path: "/v1/chat/completions", body: chatBody("hi", `"Max_Tokens":3`), wantTokens: 3},
		{name: "upper case key", path: "/v1/chat/completions", body: chatBody("hi", `"MAX_TOKENS":3`), wantTokens: 3},
		{name: "escaped key", path: "/v1/chat/completions", body: chatBody("hi", `"\u006dax_tokens":3`), wantTokens: 3},
		{name: "last duplicate wins", path: "/v1/chat/completions", body: chatBody("hi", `"max_tokens":2,"max_tokens":4`), wantTokens: 4},
		{name: "case variant duplicate wins when last", path: "/v1/chat/completions", body: chatBody("hi", `"max_tokens":2,"MAX_TOKENS":5`), wantTokens: 5},
		{name: "Kelvin sign folds to k", path: "/v1/chat/completions", body: chatBody("hi", `"max_to\u212Aens":3`), wantTokens: 3},
		{name: "Kelvin sign unescaped", path: "/v1/chat/completions", body: chatBody("hi", "\"max_to\u212Aens\":3"), wantTokens: 3},
		{name: "long s folds to s", path: "/v1/chat/completions", body: chatBody("hi", `"max_tokens":2,"\u017ftream":true`), wantTokens: 2, wantStream: true},
		{name: "case variant n", path: "/v1/chat/completions", body: chatBody("hi", `"max_tokens":2,"N":3`), wantTokens: 6},
		{name: "n_cmpl over n", path: "/v1/completions", body: `{"prompt":"a","n":1,"n_cmpl":3,"max_tokens":2}`, wantTokens: 6},
		{name: "n_cmpl on chat", path: "/v1/chat/completions", body: chatBody("hi", `"max_tokens":2,"n_cmpl":2`), wantTokens: 4},
		{name: "dotless i does not fold", path: "/v1/completions", body: `{"prompt":"a","max_tokens":2,"n_predıct":9}`, wantTokens: 2},
		{name: "case variant prompt", path: "/v1/completions", body: `{"prompt":"a","PROMPT":["a","b"],"max_tokens":2}`, wantTokens: 4},
		{name: "nested case variant", path: "/v1/chat/completions", body: chatBody("hi", `"max_tokens":2,"stream":true,"stream_options":{"include_usage":true,"INCLUDE_USAGE":false}`), wantTokens: -1, wantStream: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, sim.Config{})
			resp := send(t.Context(), t, srv.Client(), srv.URL+tt.path, tt.body)
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if stream := resp.Header.Get("Content-Type") == "text/event-stream"; stream != tt.wantStream {
				t.Fatalf("streamed %v, want %v", stream, tt.wantStream)
			}
			if tt.wantStream {
				events, done, err := readSSE(resp.Body)
				if err != nil || !done {
					t.Fatalf("stream: done %v, err %v", done, err)
				}
				for _, c := range chunks(t, events) {
					if c.Usage != nil && tt.wantTokens < 0 {
						t.Errorf("a usage chunk, though the last include_usage is false: %+v", c.Usage)
					}
				}
			} else {
				got := decodeOK[chatResponse](t, resp)
				if got.Usage == nil || got.Usage.CompletionTokens != tt.wantTokens {
					t.Errorf("usage %+v, want %d completion tokens", got.Usage, tt.wantTokens)
				}
			}
			if want := tt.wantTokens; want >= 0 {
				if got := srv.Config.Handler.(*sim.Engine).Stats().GeneratedTokens; got != uint64(want) {
					t.Errorf("generated %d tokens, want %d", got, want)
				}
			}
		})
	}
}

// TestOutputLimits: llama-server's n_predict takes precedence over every
// other limit (-1 is unbounded, capped by the context; 0 generates
// nothing), and max_new_tokens applies when no other limit is set.
func TestOutputLimits(t *testing.T) {
	t.Parallel()
	const context = 40
	tests := []struct {
		name string
		path string
		body string
		want int
	}{
		{name: "n_predict over max_tokens", path: "/v1/chat/completions", body: chatBody("hi", `"max_tokens":2,"n_predict":5`), want: 5},
		{name: "n_predict over max_completion_tokens", path: "/v1/chat/completions", body: chatBody("hi", `"max_completion_tokens":2,"n_predict":5`), want: 5},
		{name: "n_predict on completions", path: "/v1/completions", body: `{"prompt":"hi","max_tokens":2,"n_predict":7}`, want: 7},
		{name: "n_predict on responses", path: "/v1/responses", body: `{"input":"hi","max_output_tokens":2,"n_predict":6}`, want: 6},
		{name: "n_predict -1 runs to the context", path: "/v1/completions", body: `{"prompt":"abcd","max_tokens":2,"n_predict":-1}`, want: context - 1},
		{name: "n_predict -2 is unbounded too", path: "/v1/completions", body: `{"prompt":"abcd","n_predict":-2}`, want: context - 1},
		{name: "n_predict 0 generates nothing", path: "/v1/completions", body: `{"prompt":"abcd","max_tokens":9,"n_predict":0}`, want: 0},
		{name: "n_predict null is unset", path: "/v1/completions", body: `{"prompt":"abcd","max_tokens":3,"n_predict":null}`, want: 3},
		{name: "max_new_tokens alone", path: "/v1/chat/completions", body: chatBody("hi", `"max_new_tokens":6`), want: 6},
		{name: "max_tokens over max_new_tokens", path: "/v1/completions", body: `{"prompt":"hi","max_tokens":2,"max_new_tokens":6}`, want: 2},
		{name: "max_new_tokens capped by the context", path: "/v1/completions", body: `{"prompt":"abcd","max_new_tokens":1000}`, want: context - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, sim.Config{ContextLength: context})
			got := postJSON[chatResponse](t, srv, tt.path, tt.body)
			if tt.path != "/v1/responses" && (got.Usage == nil || got.Usage.CompletionTokens != tt.want) {
				t.Errorf("usage %+v, want %d completion tokens", got.Usage, tt.want)
			}
			stats := srv.Config.Handler.(*sim.Engine).Stats()
			if stats.GeneratedTokens != uint64(tt.want) {
				t.Errorf("generated %d tokens, want %d", stats.GeneratedTokens, tt.want)
			}
		})
	}
}

// TestBestOf: a completion with best_of generates best_of candidates per
// prompt and returns the first n of each; usage counts the returned ones
// (as vLLM does), Stats all of them.
func TestBestOf(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	engine := srv.Config.Handler.(*sim.Engine)
	single := postJSON[chatResponse](t, srv, "/v1/completions", `{"prompt":"b","max_tokens":4}`)
	before := engine.Stats().GeneratedTokens

	got := postJSON[chatResponse](t, srv, "/v1/completions", `{"prompt":["a","b"],"n":2,"best_of":3,"max_tokens":4}`)
	var idx []int
	for _, c := range got.Choices {
		idx = append(idx, c.Index)
		if n := len(strings.Fields(c.Text)); n != 4 {
			t.Errorf("choice %d has %d tokens, want 4", c.Index, n)
		}
	}
	if diff := cmp.Diff(idx, []int{0, 1, 2, 3}); diff != "" {
		t.Errorf("choice indexes (-got +want):\n%s", diff)
	}
	if len(got.Choices) == 4 && got.Choices[2].Text != single.Choices[0].Text {
		t.Errorf("choice 2 (prompt 1, first candidate) %q, want the n = 1 answer %q", got.Choices[2].Text, single.Choices[0].Text)
	}
	if got.Usage == nil || got.Usage.CompletionTokens != 2*2*4 {
		t.Errorf("usage %+v, want the 16 completion tokens returned", got.Usage)
	}
	if gen := engine.Stats().GeneratedTokens - before; gen != 2*3*4 {
		t.Errorf("generated %d tokens, want 24 (2 prompts x best_of 3 x 4)", gen)
	}

	// best_of on chat is not an OpenAI parameter: ignored.
	chat := postJSON[chatResponse](t, srv, "/v1/chat/completions", chatBody("hi", `"max_tokens":2,"best_of":5`))
	if len(chat.Choices) != 1 || chat.Usage.CompletionTokens != 2 {
		t.Errorf("chat with best_of: %d choices, usage %+v", len(chat.Choices), chat.Usage)
	}

	for _, body := range []string{
		`{"prompt":"a","n":3,"best_of":2}`,
		`{"prompt":"a","best_of":200}`,
		`{"prompt":"a","best_of":2,"stream":true}`,
		`{"prompt":["a","b","c"],"best_of":50}`,
		`{"prompt":"a","n":2,"n_cmpl":200}`,
		`{"prompt":"a","n_cmpl":2,"best_of":1}`,
	} {
		resp := send(t.Context(), t, srv.Client(), srv.URL+"/v1/completions", body)
		if e := errorCode(t, resp, http.StatusBadRequest); e.Param == nil || (*e.Param != "best_of" && *e.Param != "n" && *e.Param != "n_cmpl") {
			t.Errorf("%s: envelope %+v, want param best_of, n or n_cmpl", body, e)
		}
	}
	// best_of equal to n streams.
	chunks, done := streamChat(t, srv.URL+"/v1/completions", `{"prompt":"a","n":2,"best_of":2,"max_tokens":2,"stream":true}`)
	if !done || len(chunks) == 0 {
		t.Errorf("stream with best_of = n: done %v, %d chunks", done, len(chunks))
	}
}

// TestPromptArrays: a completion prompt given as an array of strings or of
// token arrays is one answer per prompt, times n.
func TestPromptArrays(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		prompt      string
		wantChoices int
	}{
		{name: "strings", prompt: `["a","b","c"]`, wantChoices: 6},
		{name: "token arrays", prompt: `[[1,2],[3],[4,5,6]]`, wantChoices: 6},
		{name: "one token array", prompt: `[1,2,3]`, wantChoices: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, sim.Config{})
			got := postJSON[chatResponse](t, srv, "/v1/completions", `{"prompt":`+tt.prompt+`,"n":2,"max_tokens":3}`)
			if len(got.Choices) != tt.wantChoices || got.Usage.CompletionTokens != 3*tt.wantChoices {
				t.Errorf("%d choices, usage %+v; want %d choices of 3 tokens", len(got.Choices), got.Usage, tt.wantChoices)
			}
			if gen := srv.Config.Handler.(*sim.Engine).Stats().GeneratedTokens; gen != uint64(3*tt.wantChoices) {
				t.Errorf("generated %d tokens, want %d", gen, 3*tt.wantChoices)
			}
		})
	}
}

// TestStats: the engine counts what it generates, whether or not the
// client reads it, and records the last request URI with its query.
func TestStats(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	engine := srv.Config.Handler.(*sim.Engine)
	if diff := cmp.Diff(engine.Stats(), sim.Stats{}); diff != "" {
		t.Errorf("stats of a new engine (-got +want):\n%s", diff)
	}
	resp := send(t.Context(), t, srv.Client(), srv.URL+"/v1/chat/completions?api_key=x&a=%20b", chatBody("hi", `"max_tokens":5,"stream":true`))
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	postJSON[chatResponse](t, srv, "/v1/completions", `{"prompt":"hi","max_tokens":3,"n":2}`)
	waitFor(t, "no request in flight", func() bool { return engine.Stats().InFlight == 0 })
	want := sim.Stats{GeneratedTokens: 5 + 6, PromptTokens: 5 + 1, Requests: 2, LastRequestURI: "/v1/completions"}
	if diff := cmp.Diff(engine.Stats(), want); diff != "" {
		t.Errorf("stats (-got +want):\n%s", diff)
	}
	resp = send(t.Context(), t, srv.Client(), srv.URL+"/v1/embeddings?api_key=x&a=%20b", `{"input":"x"}`)
	resp.Body.Close()
	if got := engine.Stats().LastRequestURI; got != "/v1/embeddings?api_key=x&a=%20b" {
		t.Errorf("last request URI %q", got)
	}
}
