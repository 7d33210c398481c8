package cortex_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/anthropic"
	"github.com/helexa-ai/helexa-go/neuron"
)

// messagesBody is a Messages request for model with max_tokens 5 and one
// user message; extra is more JSON members.
func messagesBody(model string, extra ...string) string {
	b := `{"model":"` + model + `","max_tokens":5,"messages":[{"role":"user","content":"Hello there"}]`
	for _, e := range extra {
		b += "," + e
	}
	return b + "}"
}

// anthMessage is the part of an Anthropic Message the tests read.
type anthMessage struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Role    string `json:"role"`
	Model   string `json:"model"`
	Content []struct {
		Type  string          `json:"type"`
		Text  string          `json:"text"`
		ID    string          `json:"id"`
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	} `json:"content"`
	StopReason   string  `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
	} `json:"usage"`
}

// decodeAnthMessage decodes a 200 answer of /v1/messages.
func decodeAnthMessage(t *testing.T, status int, hdr http.Header, body string) anthMessage {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var m anthMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not a Message: %v: %s", err, body)
	}
	return m
}

// text joins the text blocks of m.
func (m anthMessage) text() string {
	var b strings.Builder
	for _, c := range m.Content {
		if c.Type == "text" {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

// anthropicError decodes Anthropic's error shape, failing the test when
// body is not one.
func anthropicError(t *testing.T, body string) (typ, msg string) {
	t.Helper()
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Type != "error" || e.Error.Type == "" || e.Error.Message == "" {
		t.Fatalf("not an Anthropic error (%v): %s", err, body)
	}
	return e.Error.Type, e.Error.Message
}

// anthEvent is one named server-sent event.
type anthEvent struct {
	name string
	data string
}

// anthReader reads named events.
type anthReader struct{ br *bufio.Reader }

// next returns the next event; io.EOF at a clean end.
func (r *anthReader) next() (anthEvent, error) {
	var ev anthEvent
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			if err == io.EOF && (ev.name != "" || ev.data != "") {
				return ev, nil
			}
			return ev, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev.name != "" || ev.data != "" {
				return ev, nil
			}
		case strings.HasPrefix(line, "event:"):
			ev.name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			ev.data = strings.TrimSpace(strings.TrimPrefix(line, "data:"))
		}
	}
}

// all returns the remaining events and the error that ended the stream
// (nil at a clean end).
func (r *anthReader) all() ([]anthEvent, error) {
	var out []anthEvent
	for {
		ev, err := r.next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// streamMessages sends a streaming Messages request and returns its
// events, checking that every event's name is its data's type.
func streamMessages(t *testing.T, s *stack, body string, header ...string) (*http.Response, []anthEvent) {
	t.Helper()
	resp := s.do(http.MethodPost, "/v1/messages", body, header...)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	events, err := (&anthReader{bufio.NewReader(resp.Body)}).all()
	if err != nil {
		t.Fatalf("reading the stream: %v (events %v)", err, events)
	}
	for _, ev := range events {
		var v struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(ev.data), &v); err != nil || v.Type != ev.name {
			t.Errorf("event %q has data %s", ev.name, ev.data)
		}
	}
	return resp, events
}

// eventNames returns the names of events, without pings.
func eventNames(events []anthEvent) []string {
	var out []string
	for _, ev := range events {
		if ev.name != "ping" {
			out = append(out, ev.name)
		}
	}
	return out
}

// anthStream is what a Messages stream said, accumulated.
type anthStream struct {
	text       string
	tools      map[int]string // block index -> name(input)
	stopReason string
	usage      struct{ input, output int64 }
}

func anthAccumulate(t *testing.T, events []anthEvent) anthStream {
	t.Helper()
	out := anthStream{tools: map[int]string{}}
	inputs := map[int]string{}
	toolNames := map[int]string{}
	for _, ev := range events {
		var v struct {
			Index        int `json:"index"`
			ContentBlock struct {
				Type string `json:"type"`
				Name string `json:"name"`
			} `json:"content_block"`
			Delta struct {
				Type        string `json:"type"`
				Text        string `json:"text"`
				PartialJSON string `json:"partial_json"`
				StopReason  string `json:"stop_reason"`
			} `json:"delta"`
			Message struct {
				Usage struct {
					InputTokens int64 `json:"input_tokens"`
				} `json:"usage"`
			} `json:"message"`
			Usage struct {
				InputTokens  int64 `json:"input_tokens"`
				OutputTokens int64 `json:"output_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(ev.data), &v); err != nil {
			t.Fatalf("event %s: %v", ev.data, err)
		}
		switch ev.name {
		case "message_start":
			out.usage.input = v.Message.Usage.InputTokens
		case "content_block_start":
			if v.ContentBlock.Type == "tool_use" {
				toolNames[v.Index] = v.ContentBlock.Name
			}
		case "content_block_delta":
			switch v.Delta.Type {
			case "text_delta":
				out.text += v.Delta.Text
			case "input_json_delta":
				inputs[v.Index] += v.Delta.PartialJSON
			}
		case "message_delta":
			out.stopReason = v.Delta.StopReason
			out.usage.output = v.Usage.OutputTokens
			if v.Usage.InputTokens > 0 {
				out.usage.input = v.Usage.InputTokens
			}
		}
	}
	for i, n := range toolNames {
		out.tools[i] = n + "(" + inputs[i] + ")"
	}
	return out
}

// msgChatUsage is the usage of a chat completion.
type msgChatUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// msgChatAnswer posts a chat request and returns its text and usage.
func msgChatAnswer(t *testing.T, s *stack, body string, header ...string) (string, msgChatUsage) {
	t.Helper()
	status, _, out := s.post("/v1/chat/completions", body, header...)
	if status != http.StatusOK {
		t.Fatalf("chat: status %d: %s", status, out)
	}
	var cc struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage msgChatUsage `json:"usage"`
	}
	if err := json.Unmarshal([]byte(out), &cc); err != nil || len(cc.Choices) != 1 {
		t.Fatalf("chat answer %s: %v", out, err)
	}
	return cc.Choices[0].Message.Content, cc.Usage
}

func TestMessages(t *testing.T) {
	t.Parallel()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
	const system = `"system":[{"type":"text","text":"Be brief."},{"type":"text","text":"Be kind."}]`
	status, hdr, body := s.post("/v1/messages", messagesBody("fast", system, `"stop_sequences":["zzz"]`), "anthropic-version", "2023-06-01")
	m := decodeAnthMessage(t, status, hdr, body)

	// The neuron got the chat completion the translation makes, under the
	// model id.
	_, sent := s.fleet.Neuron("n1").LastRequest()
	var chat struct {
		Model    string `json:"model"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
		MaxTokens int      `json:"max_tokens"`
		Stop      []string `json:"stop"`
	}
	if err := json.Unmarshal(sent, &chat); err != nil {
		t.Fatalf("the neuron got %s: %v", sent, err)
	}
	wantChat := `{"model":"chat-a","messages":[{"role":"system","content":"Be brief.\n\nBe kind."},{"role":"user","content":"Hello there"}],"max_tokens":5,"stop":["zzz"]}`
	var want struct {
		Model    string `json:"model"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
		MaxTokens int      `json:"max_tokens"`
		Stop      []string `json:"stop"`
	}
	if err := json.Unmarshal([]byte(wantChat), &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(chat, want); diff != "" {
		t.Errorf("the neuron got (-got +want):\n%s", diff)
	}

	// The answer is the chat completion's, translated.
	text, u := msgChatAnswer(t, s, `{"model":"chat-a","max_tokens":5,"messages":[{"role":"system","content":"Be brief.\n\nBe kind."},{"role":"user","content":"Hello there"}]}`)
	if m.Type != "message" || m.Role != "assistant" || m.Model != "fast" || !strings.HasPrefix(m.ID, "msg_") {
		t.Errorf("message header: %+v", m)
	}
	if len(m.Content) != 1 || m.Content[0].Type != "text" || m.text() != text {
		t.Errorf("content %+v, want one text block %q", m.Content, text)
	}
	if m.StopReason != anthropic.StopMaxTokens || m.StopSequence != nil {
		t.Errorf("stop_reason %q, stop_sequence %v; want max_tokens, null", m.StopReason, m.StopSequence)
	}
	if m.Usage.InputTokens != u.PromptTokens || m.Usage.OutputTokens != u.CompletionTokens || u.CompletionTokens != 5 {
		t.Errorf("usage %+v, want the chat usage %+v", m.Usage, u)
	}
}

func TestMessagesStream(t *testing.T) {
	t.Parallel()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
	status, hdr, body := s.post("/v1/messages", messagesBody("fast"))
	whole := decodeAnthMessage(t, status, hdr, body)

	_, events := streamMessages(t, s, messagesBody("fast", `"stream":true`))
	got := eventNames(events)
	want := []string{"message_start", "content_block_start"}
	for range len(got) - 5 {
		want = append(want, "content_block_delta")
	}
	want = append(want, "content_block_stop", "message_delta", "message_stop")
	if diff := cmp.Diff(got, want); diff != "" || len(got) < 6 {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	acc := anthAccumulate(t, events)
	if acc.text != whole.text() || acc.stopReason != whole.StopReason {
		t.Errorf("streamed %q (%s), want %q (%s)", acc.text, acc.stopReason, whole.text(), whole.StopReason)
	}
	if acc.usage.input != whole.Usage.InputTokens || acc.usage.output != whole.Usage.OutputTokens {
		t.Errorf("streamed usage %+v, want %+v", acc.usage, whole.Usage)
	}
	_, sent := s.fleet.Neuron("n1").LastRequest()
	if !strings.Contains(string(sent), `"stream_options":{"include_usage":true}`) {
		t.Errorf("the neuron got %s: want the usage chunk asked for", sent)
	}
}

func TestMessagesToolUse(t *testing.T) {
	t.Parallel()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
	const tools = `"tools":[{"name":"get_weather","description":"Weather of a city","input_schema":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}]`
	ask := `{"model":"chat-a","max_tokens":50,` + tools + `,"messages":[{"role":"user","content":"What is the weather in Paris? Use get_weather."}]`

	status, hdr, body := s.post("/v1/messages", ask+"}")
	m := decodeAnthMessage(t, status, hdr, body)
	if m.StopReason != anthropic.StopToolUse || len(m.Content) != 1 || m.Content[0].Type != "tool_use" || m.Content[0].Name != "get_weather" {
		t.Fatalf("answer %s: want one get_weather tool_use block, stop_reason tool_use", body)
	}
	call := m.Content[0]
	var input struct {
		City string `json:"city"`
		Days *int   `json:"days"`
	}
	if err := json.Unmarshal(call.Input, &input); err != nil || input.City == "" || input.Days == nil {
		t.Errorf("input %s (%v): want a city and days", call.Input, err)
	}

	// The stream says the same with input_json_delta events.
	_, events := streamMessages(t, s, ask+`,"stream":true}`)
	acc := anthAccumulate(t, events)
	if want := map[int]string{0: "get_weather(" + string(call.Input) + ")"}; !cmp.Equal(acc.tools, want) || acc.stopReason != anthropic.StopToolUse {
		t.Errorf("streamed tools %v (%s), want %v (tool_use)", acc.tools, acc.stopReason, want)
	}

	// The tool result goes back; the model answers with text.
	round := `{"model":"chat-a","max_tokens":4,` + tools + `,"messages":[` +
		`{"role":"user","content":"What is the weather in Paris? Use get_weather."},` +
		`{"role":"assistant","content":[{"type":"tool_use","id":"` + call.ID + `","name":"get_weather","input":` + string(call.Input) + `}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"` + call.ID + `","content":"Sunny, 21 C"}]}]}`
	status, hdr, body = s.post("/v1/messages", round)
	final := decodeAnthMessage(t, status, hdr, body)
	if final.StopReason != anthropic.StopMaxTokens || final.text() == "" || final.Usage.OutputTokens != 4 {
		t.Errorf("final answer %s: want 4 tokens of text", body)
	}
	_, sent := s.fleet.Neuron("n1").LastRequest()
	if !strings.Contains(string(sent), `"role":"tool","content":"Sunny, 21 C","tool_call_id":"`+call.ID+`"`) &&
		!strings.Contains(string(sent), `"tool_call_id":"`+call.ID+`"`) {
		t.Errorf("the neuron got %s: want the tool result as a tool message", sent)
	}
}

func TestMessagesErrors(t *testing.T) {
	t.Parallel()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-rich", AccountID: "rich"},
		{Key: "sk-poor", AccountID: "poor", HardCap: ptr(int64(10))},
		{Key: "sk-window", AccountID: "window", HardCap: ptr(int64(20)), Window: entitlements.WindowConfig{Kind: "rolling", Seconds: 60}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t),
		cortex.WithProvider(local), cortex.WithRequireAuth(true))
	// The window's key spends 12 of its 20 tokens; the next request does
	// not fit until the window moves on.
	status, hdr, body := s.post("/v1/messages", messagesBody("chat-a"), "x-api-key", "sk-window")
	decodeAnthMessage(t, status, hdr, body)
	tests := []struct {
		name      string
		body      string
		key       string
		status    int
		typ       string
		msg       string // a part of the message
		wantRetry bool
	}{
		{name: "no key", body: messagesBody("chat-a"), status: 401, typ: "authentication_error"},
		{name: "unknown key", body: messagesBody("chat-a"), key: "sk-nope", status: 401, typ: "authentication_error"},
		{name: "unknown model", body: messagesBody("nope"), key: "sk-rich", status: 404, typ: "not_found_error", msg: "nope"},
		{name: "no max_tokens", body: `{"model":"chat-a","messages":[{"role":"user","content":"hi"}]}`, key: "sk-rich", status: 400, typ: "invalid_request_error", msg: "max_tokens"},
		{name: "not JSON", body: `{"model":`, key: "sk-rich", status: 400, typ: "invalid_request_error"},
		{
			name: "a block no engine can honour",
			body: `{"model":"chat-a","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`,
			key:  "sk-rich", status: 400, typ: "invalid_request_error", msg: "messages.0.content.0",
		},
		{name: "prompt over the context", body: `{"model":"tiny-context","max_tokens":5,"messages":[{"role":"user","content":"` + strings.Repeat("long ", 40) + `"}]}`, key: "sk-rich", status: 400, typ: "invalid_request_error"},
		{name: "model no neuron can hold", body: messagesBody("giant"), key: "sk-rich", status: 400, typ: "invalid_request_error"},
		{name: "balance spent", body: messagesBody("chat-a"), key: "sk-poor", status: 429, typ: "rate_limit_error"},
		{name: "window spent", body: messagesBody("chat-a"), key: "sk-window", status: 429, typ: "rate_limit_error", wantRetry: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.key != "" {
				hdr = []string{"x-api-key", tt.key, "anthropic-version", "2023-06-01"}
			}
			status, h, body := s.post("/v1/messages", tt.body, hdr...)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			typ, msg := anthropicError(t, body)
			if typ != tt.typ || !strings.Contains(msg, tt.msg) {
				t.Errorf("error %s: %q, want %s containing %q", typ, msg, tt.typ, tt.msg)
			}
			if got := h.Get("Retry-After") != ""; got != tt.wantRetry {
				t.Errorf("Retry-After %q, want one: %v", h.Get("Retry-After"), tt.wantRetry)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	if n := s.fleet.Neuron("n1").Requests(); n != 1 {
		t.Errorf("the neuron got %d requests, want only the window's first", n)
	}
}

func TestMessagesOverloaded(t *testing.T) {
	t.Parallel()
	s := newStack(t, cortextest.Named("n1"), testCatalogue(t))
	s.fleet.Neuron("n1").Stop()
	s.refresh()
	status, hdr, body := s.post("/v1/messages", messagesBody("chat-a"))
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q: %s", status, hdr.Get("Retry-After"), body)
	}
	if typ, _ := anthropicError(t, body); typ != "overloaded_error" {
		t.Errorf("type %q, want overloaded_error", typ)
	}
}

func TestMessagesNeuronErrorTranslated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		ctype  string
		body   string
		typ    string
		msg    string
	}{
		{
			name: "OpenAI envelope", status: http.StatusTooManyRequests, ctype: "application/json",
			body: `{"error":{"message":"engine queue full","type":"rate_limit_error","code":"queue_full"}}`,
			typ:  "rate_limit_error", msg: "engine queue full",
		},
		// The engine's own output stays in the fleet.
		{name: "plain text", status: http.StatusInternalServerError, ctype: "text/plain", body: "boom at /srv/engine.py:12", typ: "api_error",
			msg: "the model's engine failed to answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			engine := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", tt.ctype)
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: engine, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
			for _, stream := range []string{`"stream":false`, `"stream":true`} {
				status, hdr, body := s.post("/v1/messages", messagesBody("chat-a", stream))
				if status != tt.status || hdr.Get("Retry-After") != "7" {
					t.Fatalf("%s: status %d, Retry-After %q: %s", stream, status, hdr.Get("Retry-After"), body)
				}
				if typ, msg := anthropicError(t, body); typ != tt.typ || msg != tt.msg {
					t.Errorf("%s: error %s %q, want %s %q", stream, typ, msg, tt.typ, tt.msg)
				}
			}
		})
	}
}

func TestMessagesBudgetSettled(t *testing.T) {
	t.Parallel()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-a", AccountID: "a", HardCap: ptr(int64(1_000_000))},
		{Key: "sk-small", AccountID: "small", HardCap: ptr(int64(50))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t),
		cortex.WithProvider(local), cortex.WithRequireAuth(true))
	spent := func(account string) entitlements.BudgetSnapshot {
		snap, err := local.Snapshot(t.Context(), entitlements.Principal{AccountID: account, KeyID: account})
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}

	status, hdr, body := s.post("/v1/messages", messagesBody("chat-a"), "x-api-key", "sk-a")
	m := decodeAnthMessage(t, status, hdr, body)
	want := entitlements.Amount(m.Usage.InputTokens + m.Usage.OutputTokens)
	if snap := spent("a"); snap.Spent != want || snap.Reserved != 0 {
		t.Errorf("after a message: spent %d reserved %d, want spent %d", snap.Spent, snap.Reserved, want)
	}
	_, events := streamMessages(t, s, messagesBody("chat-a", `"stream":true`), "Authorization", "Bearer sk-a")
	acc := anthAccumulate(t, events)
	want += entitlements.Amount(acc.usage.input + acc.usage.output)
	if snap := spent("a"); snap.Spent != want || snap.Reserved != 0 {
		t.Errorf("after a stream: spent %d reserved %d, want spent %d", snap.Spent, snap.Reserved, want)
	}

	// max_tokens is reserved: 60 does not fit a cap of 50, and the
	// neuron never sees the request.
	before := s.fleet.Neuron("n1").Requests()
	status, _, body = s.post("/v1/messages", `{"model":"chat-a","max_tokens":60,"messages":[{"role":"user","content":"hi"}]}`, "x-api-key", "sk-small")
	if status != http.StatusTooManyRequests {
		t.Fatalf("status %d: %s", status, body)
	}
	if after := s.fleet.Neuron("n1").Requests(); after != before {
		t.Errorf("the neuron got %d more requests", after-before)
	}
}

// pingGateEngine streams a chat completion that starts only when release is
// closed, so that the gateway has to keep the client's stream alive.
type pingGateEngine struct {
	release chan struct{}
}

func (e *pingGateEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	select {
	case <-e.release:
	case <-r.Context().Done():
		return
	}
	for _, data := range []string{
		`{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":"late"}}]}`,
		`{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
		`{"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1}}`,
		`[DONE]`,
	} {
		fmt.Fprintf(w, "data: %s\n\n", data)
	}
}

func TestMessagesStreamPingsWhileTheEngineIsSilent(t *testing.T) {
	t.Parallel()
	engine := &pingGateEngine{release: make(chan struct{})}
	clock := newFakeClock()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: engine, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t),
		cortex.WithClock(clock))
	// The headers and message_start reach the client with the first ping.
	answer := postAsync(s, "/v1/messages", messagesBody("chat-a", `"stream":true`))
	waitArmed(t, clock, 2) // the stream idle timer and the ping timer
	clock.Advance(cortex.DefaultPingInterval)
	resp := <-answer
	defer resp.Body.Close()
	rd := &anthReader{bufio.NewReader(resp.Body)}
	next := func(what string) anthEvent {
		t.Helper()
		ch := make(chan anthEvent, 1)
		go func() {
			ev, err := rd.next()
			if err != nil {
				ev.name = "error: " + err.Error()
			}
			ch <- ev
		}()
		select {
		case ev := <-ch:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing within 10s", what)
		}
		return anthEvent{}
	}
	if ev := next("message_start"); ev.name != "message_start" {
		t.Fatalf("first event %+v, want message_start", ev)
	}
	if ev := next("ping"); ev.name != "ping" || ev.data != `{"type":"ping"}` {
		t.Fatalf("second event %+v, want a ping", ev)
	}
	close(engine.release)
	rest, err := rd.all()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
	if diff := cmp.Diff(eventNames(rest), want); diff != "" {
		t.Errorf("events after the ping (-got +want):\n%s", diff)
	}
	if acc := anthAccumulate(t, rest); acc.text != "late" || acc.usage.output != 1 {
		t.Errorf("streamed %+v", acc)
	}
}

func TestMessagesStreamBrokenOffEndsWithAnError(t *testing.T) {
	t.Parallel()
	engine := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `data: {"id":"c1","choices":[{"index":0,"delta":{"content":"partial"}}]}`+"\n\n")
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: engine, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))

	_, events := streamMessages(t, s, messagesBody("chat-a", `"stream":true`))
	got := eventNames(events)
	want := []string{"message_start", "content_block_start", "content_block_delta", "error"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	if len(events) > 0 && !strings.Contains(events[len(events)-1].data, `"api_error"`) {
		t.Errorf("last event %s, want an api_error", events[len(events)-1].data)
	}

	// Not anthStream, the client gets a 502 api_error rather than a cut
	// connection.
	status, _, body := s.post("/v1/messages", messagesBody("chat-a"))
	if status != http.StatusBadGateway {
		t.Fatalf("status %d: %s", status, body)
	}
	if typ, _ := anthropicError(t, body); typ != "api_error" {
		t.Errorf("type %q", typ)
	}
}

func TestCountTokens(t *testing.T) {
	t.Parallel()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{{Key: "sk-a", AccountID: "a", HardCap: ptr(int64(1))}}})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t),
		cortex.WithProvider(local), cortex.WithRequireAuth(true))
	const body = `{"model":"fast","system":"Be brief.","messages":[{"role":"user","content":"What is the capital of France?"}],` +
		`"tools":[{"name":"lookup","input_schema":{"type":"object"}}]}`
	req, err := anthropic.ParseCountTokensRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		body   string
		key    string
		status int
		want   string
	}{
		{name: "estimate", body: body, key: "sk-a", status: 200, want: fmt.Sprintf(`{"input_tokens":%d}`, anthropic.CountTokens(req))},
		{name: "no key", body: body, status: 401, want: "authentication_error"},
		{name: "unknown model", body: `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, key: "sk-a", status: 404, want: "not_found_error"},
		{name: "bad body", body: `{"model":"fast"}`, key: "sk-a", status: 400, want: "invalid_request_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.key != "" {
				hdr = []string{"x-api-key", tt.key}
			}
			status, _, out := s.post("/v1/messages/count_tokens", tt.body, hdr...)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, out)
			}
			if status != http.StatusOK {
				if typ, _ := anthropicError(t, out); typ != tt.want {
					t.Errorf("type %q, want %q", typ, tt.want)
				}
				return
			}
			if strings.TrimSpace(out) != tt.want {
				t.Errorf("answer %s, want %s", out, tt.want)
			}
		})
	}
	// Counting reserves nothing (the cap is 1 token) and reaches no neuron.
	if n := s.fleet.Neuron("n1").Requests(); n != 0 {
		t.Errorf("the neuron got %d requests", n)
	}
}

func TestPingIntervalMustBePositive(t *testing.T) {
	t.Parallel()
	g, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "n1", Endpoint: "http://127.0.0.1:1"}}, nil, cortex.WithPingInterval(0))
	if err == nil {
		_ = g.Shutdown(t.Context())
		t.Fatal("NewGateway accepted a ping interval of 0")
	}
	if !strings.Contains(err.Error(), "ping interval") {
		t.Errorf("error %q does not mention the ping interval", err)
	}
}
