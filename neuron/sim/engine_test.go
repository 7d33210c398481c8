package sim_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// chatBody is a chat request for model "m" with one user message and the
// extra fields given.
func chatBody(content string, extra string) string { return chatBodyFor("m", content, extra) }

func chatBodyFor(model, content string, extra string) string {
	m, _ := json.Marshal(model)
	c, _ := json.Marshal(content)
	if extra != "" {
		extra = "," + extra
	}
	return fmt.Sprintf(`{"model":%s,"messages":[{"role":"user","content":%s}]%s}`, m, c, extra)
}

func TestChatNonStreaming(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cfg        sim.Config
		body       string
		wantTokens int
		wantFinish string
		wantPrompt int
	}{
		{
			name:       "default max tokens",
			body:       chatBody("Hello there", ""),
			wantTokens: sim.DefaultMaxTokens, wantFinish: "length", wantPrompt: promptTokens("Hello there"),
		},
		{
			name:       "max_tokens",
			body:       chatBody("Hello there", `"max_tokens":5`),
			wantTokens: 5, wantFinish: "length", wantPrompt: promptTokens("Hello there"),
		},
		{
			name:       "max_completion_tokens wins over max_tokens",
			body:       chatBody("Hello there", `"max_tokens":9,"max_completion_tokens":3`),
			wantTokens: 3, wantFinish: "length", wantPrompt: promptTokens("Hello there"),
		},
		{
			name: "several messages, content parts",
			body: `{"model":"m","messages":[{"role":"system","content":"Be brief."},` +
				`{"role":"user","content":[{"type":"text","text":"Héllo "},{"type":"text","text":"wörld"}]}],"max_tokens":4}`,
			wantTokens: 4, wantFinish: "length", wantPrompt: promptTokens("Be brief.", "Héllo wörld"),
		},
		{
			name:       "the context length bounds the answer",
			cfg:        sim.Config{ContextLength: 10},
			body:       chatBody("abcd", `"max_tokens":100`),
			wantTokens: 10 - promptTokens("abcd"), wantFinish: "length", wantPrompt: promptTokens("abcd"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tt.cfg)
			got := postJSON[chatResponse](t, srv, "/v1/chat/completions", tt.body)
			if got.Object != "chat.completion" || got.Model != "m" || !strings.HasPrefix(got.ID, "chatcmpl-") || got.Created == 0 {
				t.Errorf("header fields: id %q object %q model %q created %d", got.ID, got.Object, got.Model, got.Created)
			}
			if len(got.Choices) != 1 {
				t.Fatalf("%d choices, want 1", len(got.Choices))
			}
			c := got.Choices[0]
			if c.Message.Role != "assistant" || c.FinishReason != tt.wantFinish {
				t.Errorf("role %q finish %q, want assistant %q", c.Message.Role, c.FinishReason, tt.wantFinish)
			}
			if n := len(strings.Fields(c.Message.Content)); n != tt.wantTokens {
				t.Errorf("%d words in %q, want %d", n, c.Message.Content, tt.wantTokens)
			}
			want := &usage{PromptTokens: tt.wantPrompt, CompletionTokens: tt.wantTokens, TotalTokens: tt.wantPrompt + tt.wantTokens}
			if diff := cmp.Diff(got.Usage, want); diff != "" {
				t.Errorf("usage (-got +want):\n%s", diff)
			}
		})
	}
}

func TestChatChoices(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	one := postJSON[chatResponse](t, srv, "/v1/chat/completions", chatBody("pick three", `"max_tokens":6`))
	three := postJSON[chatResponse](t, srv, "/v1/chat/completions", chatBody("pick three", `"max_tokens":6,"n":3`))
	if len(three.Choices) != 3 {
		t.Fatalf("%d choices, want 3", len(three.Choices))
	}
	seen := map[string]bool{}
	for i, c := range three.Choices {
		if c.Index != i {
			t.Errorf("choice %d has index %d", i, c.Index)
		}
		seen[c.Message.Content] = true
	}
	if len(seen) != 3 {
		t.Errorf("choices are not distinct: %v", seen)
	}
	if got, want := three.Choices[0].Message.Content, one.Choices[0].Message.Content; got != want {
		t.Errorf("choice 0 of n=3 is %q, want the n=1 answer %q", got, want)
	}
	if got, want := three.Usage.CompletionTokens, 18; got != want {
		t.Errorf("completion_tokens %d, want %d", got, want)
	}
}

func TestDeterminism(t *testing.T) {
	t.Parallel()
	a := newServer(t, sim.Config{})
	b := newServer(t, sim.Config{}, sim.WithModelID("other"))
	first := postJSON[chatResponse](t, a, "/v1/chat/completions", chatBody("What is a neuron?", ""))
	again := postJSON[chatResponse](t, b, "/v1/chat/completions", chatBody("What is a neuron?", ""))
	other := postJSON[chatResponse](t, a, "/v1/chat/completions", chatBody("What is a cortex?", ""))
	if first.Choices[0].Message.Content != again.Choices[0].Message.Content {
		t.Errorf("same prompt, different answers: %q and %q", first.Choices[0].Message.Content, again.Choices[0].Message.Content)
	}
	if first.Choices[0].Message.Content == other.Choices[0].Message.Content {
		t.Errorf("different prompts, same answer %q", first.Choices[0].Message.Content)
	}
	if first.ID == again.ID {
		t.Errorf("two answers share the id %q", first.ID)
	}
}

// streamChat posts a streaming request and returns its chunks and whether
// [DONE] ended it.
func streamChat(t *testing.T, url, body string) ([]chunk, bool) {
	t.Helper()
	resp := send(t.Context(), t, http.DefaultClient, url, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	events, done, err := readSSE(resp.Body)
	if err != nil {
		t.Fatalf("reading stream: %v", err)
	}
	return chunks(t, events), done
}

func TestChatStreaming(t *testing.T) {
	t.Parallel()
	for _, includeUsage := range []bool{false, true} {
		t.Run(fmt.Sprintf("include_usage=%v", includeUsage), func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, sim.Config{})
			plain := postJSON[chatResponse](t, srv, "/v1/chat/completions", chatBody("stream me", `"max_tokens":7`))
			extra := `"max_tokens":7,"stream":true`
			if includeUsage {
				extra += `,"stream_options":{"include_usage":true}`
			}
			got, done := streamChat(t, srv.URL+"/v1/chat/completions", chatBody("stream me", extra))
			if !done {
				t.Error("stream did not end with [DONE]")
			}
			if includeUsage {
				last := got[len(got)-1]
				if len(last.Choices) != 0 {
					t.Errorf("usage chunk has %d choices, want 0", len(last.Choices))
				}
				if diff := cmp.Diff(last.Usage, plain.Usage); diff != "" {
					t.Errorf("usage chunk (-got +want):\n%s", diff)
				}
				got = got[:len(got)-1]
			}
			// role chunk, 7 content chunks, finish chunk
			if len(got) != 9 {
				t.Fatalf("%d chunks, want 9", len(got))
			}
			var text strings.Builder
			for i, c := range got {
				if c.Object != "chat.completion.chunk" || c.ID != got[0].ID || c.Model != "m" || c.Created == 0 {
					t.Errorf("chunk %d: id %q object %q model %q", i, c.ID, c.Object, c.Model)
				}
				if c.Usage != nil {
					t.Errorf("chunk %d carries usage", i)
				}
				if len(c.Choices) != 1 {
					t.Fatalf("chunk %d has %d choices", i, len(c.Choices))
				}
				ch := c.Choices[0]
				switch {
				case i == 0:
					if ch.Delta.Role == nil || *ch.Delta.Role != "assistant" || ch.Delta.Content == nil || *ch.Delta.Content != "" {
						t.Errorf("first chunk delta %+v, want role assistant and empty content", ch.Delta)
					}
				case i == len(got)-1:
					if ch.FinishReason == nil || *ch.FinishReason != "length" || ch.Delta.Content != nil {
						t.Errorf("last chunk: finish %v content %v", ch.FinishReason, ch.Delta.Content)
					}
				default:
					if ch.FinishReason != nil || ch.Delta.Content == nil || len(strings.Fields(*ch.Delta.Content)) != 1 {
						t.Errorf("chunk %d is not one token: %+v", i, ch)
					} else {
						text.WriteString(*ch.Delta.Content)
					}
				}
			}
			if text.String() != plain.Choices[0].Message.Content {
				t.Errorf("streamed %q, non-streaming %q", text.String(), plain.Choices[0].Message.Content)
			}
		})
	}
}

func TestChatStreamingChoices(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	plain := postJSON[chatResponse](t, srv, "/v1/chat/completions", chatBody("two ways", `"max_tokens":4,"n":2`))
	got, done := streamChat(t, srv.URL+"/v1/chat/completions", chatBody("two ways", `"max_tokens":4,"n":2,"stream":true`))
	if !done {
		t.Error("no [DONE]")
	}
	texts := make([]string, 2)
	finishes := make([]string, 2)
	for _, c := range got {
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				texts[ch.Index] += *ch.Delta.Content
			}
			if ch.FinishReason != nil {
				finishes[ch.Index] = *ch.FinishReason
			}
		}
	}
	for i := range 2 {
		if texts[i] != plain.Choices[i].Message.Content || finishes[i] != "length" {
			t.Errorf("choice %d streamed %q (%s), non-streaming %q", i, texts[i], finishes[i], plain.Choices[i].Message.Content)
		}
	}
}

func TestCompletions(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	single := postJSON[chatResponse](t, srv, "/v1/completions", `{"model":"m","prompt":"Once upon","max_tokens":5}`)
	if single.Object != "text_completion" || !strings.HasPrefix(single.ID, "cmpl-") {
		t.Errorf("object %q id %q", single.Object, single.ID)
	}
	if len(single.Choices) != 1 || len(strings.Fields(single.Choices[0].Text)) != 5 || single.Choices[0].FinishReason != "length" {
		t.Fatalf("choices %+v", single.Choices)
	}
	if want := (&usage{PromptTokens: 3, CompletionTokens: 5, TotalTokens: 8}); !cmp.Equal(single.Usage, want) {
		t.Errorf("usage %+v, want %+v", single.Usage, want)
	}

	many := postJSON[chatResponse](t, srv, "/v1/completions", `{"model":"m","prompt":["a b c","Once upon"],"max_tokens":5,"n":2}`)
	if len(many.Choices) != 4 {
		t.Fatalf("%d choices, want 4", len(many.Choices))
	}
	if many.Choices[2].Text != single.Choices[0].Text {
		t.Errorf("choice 2 (prompt 1, n 0) is %q, want %q", many.Choices[2].Text, single.Choices[0].Text)
	}
	if many.Usage.PromptTokens != 2+3 || many.Usage.CompletionTokens != 20 {
		t.Errorf("usage %+v", many.Usage)
	}

	tokens := postJSON[chatResponse](t, srv, "/v1/completions", `{"model":"m","prompt":[1,2,3],"max_tokens":2}`)
	if tokens.Usage.PromptTokens != 3 {
		t.Errorf("token prompt counted %d, want 3", tokens.Usage.PromptTokens)
	}

	got, done := streamChat(t, srv.URL+"/v1/completions", `{"model":"m","prompt":"Once upon","max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`)
	if !done {
		t.Error("no [DONE]")
	}
	var text strings.Builder
	for _, c := range got[:len(got)-1] {
		if c.Object != "text_completion" {
			t.Errorf("chunk object %q", c.Object)
		}
		text.WriteString(c.Choices[0].Text)
	}
	if text.String() != single.Choices[0].Text {
		t.Errorf("streamed %q, want %q", text.String(), single.Choices[0].Text)
	}
	if last := got[len(got)-1]; !cmp.Equal(last.Usage, single.Usage) {
		t.Errorf("usage chunk %+v, want %+v", last.Usage, single.Usage)
	}
}

func TestStop(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	full := postJSON[chatResponse](t, srv, "/v1/chat/completions", chatBody("tell me a story", `"max_tokens":12`)).Choices[0].Message.Content
	words := strings.Fields(full)
	// tokensUntil is the number of tokens generated before stop appears.
	tokensUntil := func(stop string) int {
		for k := 1; k <= len(words); k++ {
			if strings.Contains(strings.Join(words[:k], " "), stop) {
				return k
			}
		}
		return len(words)
	}
	span := words[5] + " " + words[6]
	tests := []struct {
		name       string
		stop       string
		want       string
		wantFinish string
		wantTokens int
	}{
		{name: "one word", stop: `"` + words[4] + `"`, want: full[:strings.Index(full, words[4])], wantFinish: "stop", wantTokens: tokensUntil(words[4])},
		{name: "across tokens", stop: `["zzz","` + span + `"]`, want: full[:strings.Index(full, span)], wantFinish: "stop", wantTokens: tokensUntil(span)},
		{name: "first token", stop: `"` + words[0] + `"`, want: "", wantFinish: "stop", wantTokens: 1},
		{name: "never", stop: `["zzz"]`, want: full, wantFinish: "length", wantTokens: 12},
		{name: "empty strings ignored", stop: `[""]`, want: full, wantFinish: "length", wantTokens: 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			extra := `"max_tokens":12,"stop":` + tt.stop
			got := postJSON[chatResponse](t, srv, "/v1/chat/completions", chatBody("tell me a story", extra))
			c := got.Choices[0]
			if c.Message.Content != tt.want || c.FinishReason != tt.wantFinish || got.Usage.CompletionTokens != tt.wantTokens {
				t.Errorf("got %q %s %d tokens, want %q %s %d", c.Message.Content, c.FinishReason, got.Usage.CompletionTokens,
					tt.want, tt.wantFinish, tt.wantTokens)
			}
			chunks, _ := streamChat(t, srv.URL+"/v1/chat/completions", chatBody("tell me a story", extra+`,"stream":true`))
			var text strings.Builder
			finish := ""
			for _, ch := range chunks {
				if d := ch.Choices[0].Delta.Content; d != nil {
					text.WriteString(*d)
				}
				if f := ch.Choices[0].FinishReason; f != nil {
					finish = *f
				}
			}
			if text.String() != tt.want || finish != tt.wantFinish {
				t.Errorf("streamed %q %s, want %q %s", text.String(), finish, tt.want, tt.wantFinish)
			}
		})
	}
}

func TestEmbeddings(t *testing.T) {
	t.Parallel()
	type embedding struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	}
	type answer struct {
		Object string      `json:"object"`
		Data   []embedding `json:"data"`
		Model  string      `json:"model"`
		Usage  usage       `json:"usage"`
	}
	srv := newServer(t, sim.Config{})
	floats := func(e embedding) []float32 {
		var v []float32
		if err := json.Unmarshal(e.Embedding, &v); err != nil {
			t.Fatalf("embedding %s: %v", e.Embedding, err)
		}
		return v
	}
	got := postJSON[answer](t, srv, "/v1/embeddings", `{"model":"e","input":["hello world","hello world","other"]}`)
	if got.Object != "list" || got.Model != "e" || len(got.Data) != 3 {
		t.Fatalf("answer %+v", got)
	}
	if want := (usage{PromptTokens: 3 + 3 + 2, TotalTokens: 8}); got.Usage != want {
		t.Errorf("usage %+v, want %+v", got.Usage, want)
	}
	vs := make([][]float32, 3)
	for i, e := range got.Data {
		if e.Index != i || e.Object != "embedding" {
			t.Errorf("data[%d] index %d object %q", i, e.Index, e.Object)
		}
		vs[i] = floats(e)
		if len(vs[i]) != sim.DefaultEmbeddingDimensions {
			t.Fatalf("dimension %d, want %d", len(vs[i]), sim.DefaultEmbeddingDimensions)
		}
		var norm float64
		for _, x := range vs[i] {
			norm += float64(x) * float64(x)
		}
		if norm < 0.9999 || norm > 1.0001 {
			t.Errorf("data[%d] has squared norm %v", i, norm)
		}
	}
	if !cmp.Equal(vs[0], vs[1]) || cmp.Equal(vs[0], vs[2]) {
		t.Error("equal inputs must give equal vectors and different inputs different ones")
	}

	small := postJSON[answer](t, srv, "/v1/embeddings", `{"model":"e","input":"hello world","dimensions":8}`)
	if n := len(floats(small.Data[0])); n != 8 {
		t.Errorf("dimensions 8 gave %d", n)
	}
	configured := newServer(t, sim.Config{EmbeddingDimensions: 5})
	if n := len(floats(postJSON[answer](t, configured, "/v1/embeddings", `{"input":"x"}`).Data[0])); n != 5 {
		t.Errorf("EmbeddingDimensions 5 gave %d", n)
	}

	b64 := postJSON[answer](t, srv, "/v1/embeddings", `{"model":"e","input":"hello world","encoding_format":"base64"}`)
	var s string
	if err := json.Unmarshal(b64.Data[0].Embedding, &s); err != nil {
		t.Fatalf("base64 embedding %s: %v", b64.Data[0].Embedding, err)
	}
	if diff := cmp.Diff(decodeFloat32s(t, s), vs[0]); diff != "" {
		t.Errorf("base64 vector (-got +want):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{ContextLength: 10})
	long := strings.Repeat("x", 100)
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantCode   string
		wantParam  string
	}{
		{name: "bad JSON", path: "/v1/chat/completions", body: `{"messages":`, wantStatus: 400, wantCode: "invalid_request_body"},
		{name: "no messages", path: "/v1/chat/completions", body: `{"model":"m"}`, wantStatus: 400, wantCode: "invalid_request_body", wantParam: "messages"},
		{name: "max_tokens 0", path: "/v1/chat/completions", body: chatBody("hi", `"max_tokens":0`), wantStatus: 400, wantCode: "invalid_request_body", wantParam: "max_tokens"},
		{name: "n 0", path: "/v1/chat/completions", body: chatBody("hi", `"n":0`), wantStatus: 400, wantCode: "invalid_request_body", wantParam: "n"},
		{name: "stop of the wrong type", path: "/v1/chat/completions", body: chatBody("hi", `"stop":3`), wantStatus: 400, wantCode: "invalid_request_body", wantParam: "stop"},
		{name: "content of the wrong type", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":3}]}`, wantStatus: 400, wantCode: "invalid_request_body"},
		{name: "prompt over the context", path: "/v1/chat/completions", body: chatBody(long, ""), wantStatus: 400, wantCode: "context_length_exceeded", wantParam: "messages"},
		{name: "completion prompt over the context", path: "/v1/completions", body: `{"prompt":"` + long + `"}`, wantStatus: 400, wantCode: "context_length_exceeded", wantParam: "prompt"},
		{name: "no prompt", path: "/v1/completions", body: `{"model":"m"}`, wantStatus: 400, wantCode: "invalid_request_body", wantParam: "prompt"},
		{name: "no input", path: "/v1/embeddings", body: `{"model":"m"}`, wantStatus: 400, wantCode: "invalid_request_body", wantParam: "input"},
		{name: "bad encoding_format", path: "/v1/embeddings", body: `{"input":"x","encoding_format":"hex"}`, wantStatus: 400, wantCode: "invalid_request_body", wantParam: "encoding_format"},
		{name: "embedding input over the context", path: "/v1/embeddings", body: `{"input":"` + long + `"}`, wantStatus: 400, wantCode: "context_length_exceeded", wantParam: "input"},
		{name: "responses without input", path: "/v1/responses", body: `{"model":"m"}`, wantStatus: 400, wantCode: "invalid_request_body", wantParam: "input"},
		{name: "max_output_tokens 0", path: "/v1/responses", body: `{"input":"x","max_output_tokens":0}`, wantStatus: 400, wantCode: "invalid_request_body", wantParam: "max_output_tokens"},
		{name: "GET on a POST route", method: http.MethodGet, path: "/v1/chat/completions", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "unknown route", path: "/v1/nothing", body: `{}`, wantStatus: 404, wantCode: "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got := errorCode(t, resp, tt.wantStatus)
			param := ""
			if got.Param != nil {
				param = *got.Param
			}
			if got.Code != tt.wantCode || param != tt.wantParam || got.Message == "" || got.Type == "" {
				t.Errorf("envelope %+v (param %q), want code %q param %q", got, param, tt.wantCode, tt.wantParam)
			}
		})
	}
}

func TestHealthAndModels(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{}, sim.WithModelID("demo"))
	resp, err := srv.Client().Get(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	health := decodeOK[map[string]string](t, resp)
	resp.Body.Close()
	if health["status"] != "ok" {
		t.Errorf("health %v", health)
	}
	resp, err = srv.Client().Get(srv.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	type list struct {
		Object string `json:"object"`
		Data   []struct {
			ID     string `json:"id"`
			Object string `json:"object"`
		} `json:"data"`
	}
	got := decodeOK[list](t, resp)
	want := list{Object: "list", Data: []struct {
		ID     string `json:"id"`
		Object string `json:"object"`
	}{{ID: "demo", Object: "model"}}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("models (-got +want):\n%s", diff)
	}
	// A request without a model is answered as the engine's model.
	if got := postJSON[chatResponse](t, srv, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`); got.Model != "demo" {
		t.Errorf("model %q, want demo", got.Model)
	}
}

func TestPacing(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tests := []struct {
		name string
		cfg  sim.Config
		body string
		want []time.Duration
	}{
		{name: "ttft and tps", cfg: sim.Config{TTFT: 2 * time.Second, TokensPerSecond: 4}, body: chatBody("x", `"max_tokens":5`),
			want: []time.Duration{2 * time.Second, 250 * ms, 250 * ms, 250 * ms, 250 * ms}},
		{name: "ttft and tps, streaming", cfg: sim.Config{TTFT: 2 * time.Second, TokensPerSecond: 4}, body: chatBody("x", `"max_tokens":5,"stream":true`),
			want: []time.Duration{2 * time.Second, 250 * ms, 250 * ms, 250 * ms, 250 * ms}},
		{name: "tps only", cfg: sim.Config{TokensPerSecond: 10}, body: chatBody("x", `"max_tokens":3,"stream":true`),
			want: []time.Duration{100 * ms, 100 * ms}},
		{name: "ttft only", cfg: sim.Config{TTFT: time.Second}, body: chatBody("x", `"max_tokens":3`),
			want: []time.Duration{time.Second}},
		{name: "n=2 paces steps, not tokens", cfg: sim.Config{TokensPerSecond: 2}, body: chatBody("x", `"max_tokens":3,"n":2`),
			want: []time.Duration{500 * ms, 500 * ms}},
		{name: "as fast as possible", cfg: sim.Config{}, body: chatBody("x", `"max_tokens":5,"stream":true`)},
		{name: "responses", cfg: sim.Config{TTFT: time.Second, TokensPerSecond: 1}, body: `{"input":"x","max_output_tokens":2}`,
			want: []time.Duration{time.Second, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
			srv := newServer(t, tt.cfg, sim.WithClock(clock))
			path := "/v1/chat/completions"
			if strings.Contains(tt.body, "input") {
				path = "/v1/responses"
			}
			resp := send(t.Context(), t, srv.Client(), srv.URL+path, tt.body)
			if _, _, err := readSSE(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, err %v", resp.StatusCode, err)
			}
			if diff := cmp.Diff(clock.Sleeps(), tt.want); diff != "" {
				t.Errorf("sleeps (-got +want):\n%s", diff)
			}
		})
	}
	t.Run("created comes from the clock", func(t *testing.T) {
		t.Parallel()
		clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
		srv := newServer(t, sim.Config{}, sim.WithClock(clock))
		if got := postJSON[chatResponse](t, srv, "/v1/chat/completions", chatBody("x", "")); got.Created != 1_700_000_000 {
			t.Errorf("created %d", got.Created)
		}
	})
}

func TestCrashAfterTokens(t *testing.T) {
	t.Parallel()
	crashes := make(chan struct{}, 4)
	srv := newServer(t, sim.Config{CrashAfterTokens: 3}, sim.WithCrashFunc(func() { crashes <- struct{}{} }))

	resp := send(t.Context(), t, srv.Client(), srv.URL+"/v1/chat/completions", chatBody("crash", `"max_tokens":10,"stream":true`))
	events, done, err := readSSE(resp.Body)
	if !isAbort(err) || done {
		t.Fatalf("stream ended with err %v, done %v; want an aborted stream", err, done)
	}
	content := 0
	for _, c := range chunks(t, events) {
		if d := c.Choices[0].Delta.Content; d != nil && *d != "" {
			content++
		}
	}
	if content != 3 {
		t.Errorf("%d tokens before the crash, want 3", content)
	}
	<-crashes

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(chatBody("crash", `"max_tokens":10`)))
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("non-streaming request got status %d, want an aborted connection", resp.StatusCode)
	}
	<-crashes

	// A request shorter than CrashAfterTokens completes.
	if got := postJSON[chatResponse](t, srv, "/v1/chat/completions", chatBody("crash", `"max_tokens":2`)); got.Choices[0].FinishReason != "length" {
		t.Errorf("finish %q", got.Choices[0].FinishReason)
	}
}

// doneHandler closes done when a ServeHTTP call returns.
type doneHandler struct {
	h    http.Handler
	done chan struct{}
}

func (d doneHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer close(d.done)
	d.h.ServeHTTP(w, r)
}

// TestClientGoesAway checks that a request stops as soon as its client
// leaves: a hanging one, and a slow one.
func TestClientGoesAway(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  sim.Config
	}{
		{name: "hang", cfg: sim.Config{Hang: true}},
		{name: "slow stream", cfg: sim.Config{TokensPerSecond: 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := doneHandler{h: sim.NewEngine(tt.cfg), done: make(chan struct{})}
			srv := newServerFor(t, h)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			resp := send(ctx, t, srv.Client(), srv.URL+"/v1/chat/completions", chatBody("wait", `"max_tokens":1000,"stream":true`))
			// Read the role chunk and the first token.
			buf := make([]byte, 0, 4096)
			for strings.Count(string(buf), "data: ") < 2 {
				var b [512]byte
				n, err := resp.Body.Read(b[:])
				if err != nil {
					t.Fatalf("reading the first token: %v", err)
				}
				buf = append(buf, b[:n]...)
			}
			select {
			case <-h.done:
				t.Fatal("the handler returned before the client left")
			default:
			}
			cancel()
			select {
			case <-h.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the handler did not return after the client left")
			}
		})
	}
}

func newServerFor(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// decodeFloat32s decodes a base64 embedding: little-endian float32s.
func decodeFloat32s(t testing.TB, s string) []float32 {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw)%4 != 0 {
		t.Fatalf("base64 embedding %q: %v", s, err)
	}
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out
}

func TestNewEngineRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("NewEngine accepted a negative TTFT")
		}
	}()
	sim.NewEngine(sim.Config{TTFT: -1})
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      sim.Config
		wantErr bool
	}{
		{name: "zero", in: sim.Config{}},
		{name: "full", in: sim.Config{TTFT: time.Second, TokensPerSecond: 30, LoadTime: time.Second, ContextLength: 4096, EmbeddingDimensions: 8, CrashAfterTokens: 4, FailLoad: true, Hang: true}},
		{name: "negative ttft", in: sim.Config{TTFT: -1}, wantErr: true},
		{name: "negative tps", in: sim.Config{TokensPerSecond: -1}, wantErr: true},
		{name: "negative load time", in: sim.Config{LoadTime: -1}, wantErr: true},
		{name: "negative context", in: sim.Config{ContextLength: -1}, wantErr: true},
		{name: "negative crash", in: sim.Config{CrashAfterTokens: -1}, wantErr: true},
		{name: "huge dimensions", in: sim.Config{EmbeddingDimensions: 1 << 20}, wantErr: true},
		{name: "gpu", in: sim.Config{GPU: &sim.GPU{TimeScale: 0.01, PrefillChunk: -1}}},
		{name: "gpu and ttft", in: sim.Config{TTFT: time.Second, GPU: &sim.GPU{}}, wantErr: true},
		{name: "gpu and tps", in: sim.Config{TokensPerSecond: 3, GPU: &sim.GPU{}}, wantErr: true},
		{name: "gpu negative block", in: sim.Config{GPU: &sim.GPU{BlockTokens: -1}}, wantErr: true},
		{name: "gpu negative decode", in: sim.Config{GPU: &sim.GPU{DecodePerSeq: -1}}, wantErr: true},
		{name: "gpu chunk below -1", in: sim.Config{GPU: &sim.GPU{PrefillChunk: -2}}, wantErr: true},
		{name: "gpu NaN scale", in: sim.Config{GPU: &sim.GPU{TimeScale: math.NaN()}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.in.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestEstimateTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
	}{{"", 0}, {"a", 1}, {"abcd", 1}, {"abcde", 2}, {"héllo", 2}, {"日本語日本", 2}}
	for _, tt := range tests {
		if got := sim.EstimateTokens(tt.in); got != tt.want {
			t.Errorf("EstimateTokens(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestModelIDEscaping(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	const id = "we\"ird\\id\n\x01ü"
	body := chatBodyFor(id, "x", `"max_tokens":2`)
	if got := postJSON[chatResponse](t, srv, "/v1/chat/completions", body); got.Model != id {
		t.Errorf("model %q, want %q", got.Model, id)
	}
	chunks, done := streamChat(t, srv.URL+"/v1/chat/completions", chatBodyFor(id, "x", `"max_tokens":2,"stream":true`))
	if !done || chunks[0].Model != id {
		t.Errorf("streamed model %q, done %v", chunks[0].Model, done)
	}
}
