package acceptance_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"go.uber.org/goleak"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The model of the stack, its alias, and the neuron it is loaded on.
const (
	modelID    = "sim-chat"
	modelAlias = "fast"
	neuronName = "gpu-01"
)

// stack is a whole deployment started in the test: a Gateway (auth
// required, budgets in a Local ledger, its poller running) behind an
// httptest server, over one neuron Agent with the model loaded, over the
// simulated engine.
type stack struct {
	url    string
	http   *http.Client
	ledger *entitlements.Local
	fleet  *cortextest.Fleet
	done   *finished
}

// finished is a Meter that counts the requests the gateway has finished
// (settled, then metered), per account, and wakes whoever waits for one.
type finished struct {
	mu      sync.Mutex
	n       map[string]int
	changed chan struct{} // closed and replaced at every record
}

func newFinished() *finished {
	return &finished{n: make(map[string]int), changed: make(chan struct{})}
}

func (f *finished) Record(r metering.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n[r.AccountID]++
	close(f.changed)
	f.changed = make(chan struct{})
}

// wait waits until the gateway has finished n requests of account.
func (f *finished) wait(t *testing.T, account string, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		got, changed := f.n[account], f.changed
		f.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("the gateway finished %d requests of %s, want %d", got, account, n)
		}
	}
}

// newStack starts a stack with the given API keys and waits for the
// gateway to see the model loaded.
func newStack(t *testing.T, keys ...entitlements.KeyConfig) *stack {
	t.Helper()
	fleet := cortextest.NewFleet(t, cortextest.Spec{Name: neuronName, Models: []neuron.LoadSpec{{ModelID: modelID, VRAMMB: 4000}}})
	cat, err := catalogue.New([]catalogue.Model{
		{ID: modelID, VRAMMB: 4000, Limit: catalogue.Limit{Context: 8192, Output: 256}},
	}, map[string]string{modelAlias: modelID})
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := entitlements.NewLocal(entitlements.Config{RequireAuth: true, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	done := newFinished()
	gw, err := cortex.NewGateway(fleet.Configs(), cat, cortex.WithProvider(ledger), cortex.WithRequireAuth(true), cortex.WithMeter(done),
		cortex.WithPollerOptions(route.WithInterval(50*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- gw.Run(ctx) }()
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := gw.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n := gw.Fleet().Neuron(neuronName); n != nil && n.Available() {
			if m := n.Model(modelID); m != nil && m.Status == neuron.StatusLoaded {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway never saw the model loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &stack{url: srv.URL, http: srv.Client(), ledger: ledger, fleet: fleet, done: done}
}

// key is an API key with its own account and a budget of a million
// tokens.
func key(name string) entitlements.KeyConfig {
	return entitlements.KeyConfig{Key: "sk-" + name, AccountID: name, HardCap: ptr(int64(1_000_000))}
}

func ptr[T any](v T) *T { return &v }

// spent returns what the account has spent once the gateway has finished
// its first requests requests, failing the test when anything is still
// reserved. (A client stops reading a stream at its [DONE] event, which
// the gateway sends before it settles.)
func (s *stack) spent(t *testing.T, account string, requests int) int64 {
	t.Helper()
	s.done.wait(t, account, requests)
	snap, err := s.ledger.Snapshot(t.Context(), entitlements.Principal{AccountID: account, KeyID: account})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Reserved != 0 {
		t.Errorf("%s has %d reserved after the request", account, snap.Reserved)
	}
	return int64(snap.Spent)
}

// openAI returns an OpenAI client of the stack with the given key; it
// never retries.
func (s *stack) openAI(apiKey string) openai.Client {
	return openai.NewClient(option.WithBaseURL(s.url+"/v1/"), option.WithAPIKey(apiKey),
		option.WithHTTPClient(s.http), option.WithMaxRetries(0))
}

// anthropicClient returns an Anthropic client of the stack with the given
// key; it never retries and reads nothing from the environment.
func (s *stack) anthropicClient(apiKey string) anthropic.Client {
	return anthropic.NewClient(aoption.WithoutEnvironmentDefaults(), aoption.WithBaseURL(s.url), aoption.WithAPIKey(apiKey),
		aoption.WithHTTPClient(s.http), aoption.WithMaxRetries(0))
}

func TestOpenAIChat(t *testing.T) {
	t.Parallel()
	s := newStack(t, key("chat"))
	client := s.openAI("sk-chat")
	params := openai.ChatCompletionNewParams{
		Model:     modelAlias,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Hello there")},
		MaxTokens: openai.Int(6),
	}
	whole, err := client.Chat.Completions.New(t.Context(), params)
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	if len(whole.Choices) != 1 || len(strings.Fields(whole.Choices[0].Message.Content)) != 6 || whole.Choices[0].FinishReason != "length" {
		t.Fatalf("chat answer %+v: want six words, finish_reason length", whole.Choices)
	}
	if whole.Model != modelAlias && whole.Model != modelID {
		t.Errorf("model %q", whole.Model)
	}
	u := whole.Usage
	if u.CompletionTokens != 6 || u.PromptTokens == 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage %+v", u)
	}
	if got := s.spent(t, "chat", 1); got != u.TotalTokens {
		t.Errorf("spent %d after the chat, want its usage %d", got, u.TotalTokens)
	}

	// The same prompt streamed, with usage, accumulated by the client.
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(t.Context(), params)
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		if !acc.AddChunk(stream.Current()) {
			t.Fatalf("the accumulator refused chunk %d", chunks)
		}
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	_ = stream.Close()
	if chunks < 7 {
		t.Errorf("%d chunks, want one per token and more", chunks)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != whole.Choices[0].Message.Content {
		t.Errorf("streamed %+v, want %q", acc.Choices, whole.Choices[0].Message.Content)
	}
	if acc.Usage.PromptTokens != u.PromptTokens || acc.Usage.CompletionTokens != u.CompletionTokens {
		t.Errorf("streamed usage %+v, want %+v", acc.Usage, u)
	}
	if got := s.spent(t, "chat", 2); got != 2*u.TotalTokens {
		t.Errorf("spent %d after the stream, want %d", got, 2*u.TotalTokens)
	}
}

func TestOpenAICompletionsAndEmbeddings(t *testing.T) {
	t.Parallel()
	s := newStack(t, key("misc"))
	client := s.openAI("sk-misc")

	c, err := client.Completions.New(t.Context(), openai.CompletionNewParams{
		Model:     modelAlias,
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(4),
	})
	if err != nil {
		t.Fatalf("completions: %v", err)
	}
	if len(c.Choices) != 1 || len(strings.Fields(c.Choices[0].Text)) != 4 || c.Usage.CompletionTokens != 4 {
		t.Errorf("completion %+v, usage %+v: want four words", c.Choices, c.Usage)
	}

	e, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
		Model: modelAlias,
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello", "world"}},
	})
	if err != nil {
		t.Fatalf("embeddings: %v", err)
	}
	if len(e.Data) != 2 || len(e.Data[0].Embedding) == 0 || len(e.Data[0].Embedding) != len(e.Data[1].Embedding) || e.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings: %d vectors, usage %+v", len(e.Data), e.Usage)
	}
	if cmp.Equal(e.Data[0].Embedding, e.Data[1].Embedding) {
		t.Error("two inputs gave the same vector")
	}
	want := c.Usage.TotalTokens + e.Usage.TotalTokens
	if got := s.spent(t, "misc", 2); got != want {
		t.Errorf("spent %d, want the usage of both, %d", got, want)
	}
}

func TestOpenAIResponses(t *testing.T) {
	t.Parallel()
	s := newStack(t, key("resp"), entitlements.KeyConfig{Key: "sk-small", AccountID: "small", HardCap: ptr(int64(100))})
	client := s.openAI("sk-resp")
	params := responses.ResponseNewParams{
		Model:           modelAlias,
		Instructions:    openai.String("Be brief."),
		Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String("Hello there")},
		MaxOutputTokens: openai.Int(5),
	}
	whole, err := client.Responses.New(t.Context(), params)
	if err != nil {
		t.Fatalf("responses: %v", err)
	}
	text := whole.OutputText()
	if len(strings.Fields(text)) != 5 || whole.Status != responses.ResponseStatusCompleted {
		t.Fatalf("response %q (%s): want five words, completed", text, whole.Status)
	}
	u := whole.Usage
	if u.OutputTokens != 5 || u.InputTokens == 0 {
		t.Errorf("usage %+v", u)
	}
	if got := s.spent(t, "resp", 1); got != u.InputTokens+u.OutputTokens {
		t.Errorf("spent %d, want the usage %d", got, u.InputTokens+u.OutputTokens)
	}

	stream := client.Responses.NewStreaming(t.Context(), params)
	var streamed strings.Builder
	var completed *responses.Response
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "response.output_text.delta":
			streamed.WriteString(ev.Delta)
		case "response.completed":
			r := ev.Response
			completed = &r
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	_ = stream.Close()
	if streamed.String() != text {
		t.Errorf("streamed %q, want %q", streamed.String(), text)
	}
	if completed == nil || completed.Usage.InputTokens != u.InputTokens || completed.Usage.OutputTokens != u.OutputTokens {
		t.Fatalf("response.completed %+v, want usage %+v", completed, u)
	}
	// Metered from response.completed; the gateway asked the engine for
	// nothing a Responses stream does not take.
	if got := s.spent(t, "resp", 2); got != 2*(u.InputTokens+u.OutputTokens) {
		t.Errorf("spent %d after the stream, want %d", got, 2*(u.InputTokens+u.OutputTokens))
	}
	_, sent := s.fleet.Neuron(neuronName).LastRequest()
	if strings.Contains(string(sent), "stream_options") {
		t.Errorf("the neuron got %s: stream_options is not a Responses parameter", sent)
	}

	// max_output_tokens is reserved before routing: 200 tokens do not fit
	// a balance of 100, and the neuron never sees the request.
	before := s.fleet.Neuron(neuronName).Requests()
	small := s.openAI("sk-small")
	params.MaxOutputTokens = openai.Int(200)
	_, err = small.Responses.New(t.Context(), params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Code != cortex.CodeInsufficientQuota {
		t.Errorf("over the balance: %v, want 429 %s", err, cortex.CodeInsufficientQuota)
	}
	if after := s.fleet.Neuron(neuronName).Requests(); after != before {
		t.Errorf("the neuron got %d more requests", after-before)
	}
}

func TestOpenAIErrors(t *testing.T) {
	t.Parallel()
	s := newStack(t, key("err"),
		entitlements.KeyConfig{Key: "sk-window", AccountID: "window", HardCap: ptr(int64(40)),
			Window: entitlements.WindowConfig{Kind: "rolling", Seconds: 3600}})
	chat := func(client openai.Client, model string, maxTokens int64) error {
		_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model:     model,
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello there")},
			MaxTokens: openai.Int(maxTokens),
		})
		return err
	}
	// The window's key spends about half its cap; the next request does not
	// fit before the window moves on.
	if err := chat(s.openAI("sk-window"), modelAlias, 10); err != nil {
		t.Fatalf("the first request of the window: %v", err)
	}
	tests := []struct {
		name      string
		key       string
		model     string
		status    int
		code      string
		wantRetry bool
	}{
		{name: "unknown key", key: "sk-nope", model: modelAlias, status: 401, code: cortex.CodeInvalidAPIKey},
		{name: "unknown model", key: "sk-err", model: "nope", status: 404, code: cortex.CodeModelNotFound},
		{name: "window spent", key: "sk-window", model: modelAlias, status: 429, code: cortex.CodeRateLimitExceeded, wantRetry: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := chat(s.openAI(tt.key), tt.model, 20)
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %v (%T), want an *openai.Error", err, err)
			}
			if apiErr.StatusCode != tt.status || apiErr.Code != tt.code || apiErr.Message == "" {
				t.Errorf("error %d %q %q, want %d %q", apiErr.StatusCode, apiErr.Code, apiErr.Message, tt.status, tt.code)
			}
			retry := apiErr.Response.Header.Get("Retry-After")
			if (retry != "") != tt.wantRetry {
				t.Errorf("Retry-After %q, want one: %v", retry, tt.wantRetry)
			}
		})
	}
}

// anthropicText joins the text blocks of a Message.
func anthropicText(m *anthropic.Message) string {
	var b strings.Builder
	for _, c := range m.Content {
		if c.Type == "text" {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

func TestAnthropicMessages(t *testing.T) {
	t.Parallel()
	s := newStack(t, key("claude"))
	client := s.anthropicClient("sk-claude")
	params := anthropic.MessageNewParams{
		Model:     modelAlias,
		MaxTokens: 7,
		System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello there"))},
	}
	whole, err := client.Messages.New(t.Context(), params)
	if err != nil {
		t.Fatalf("messages: %v", err)
	}
	text := anthropicText(whole)
	if len(strings.Fields(text)) != 7 || whole.StopReason != anthropic.StopReasonMaxTokens || whole.Role != "assistant" || whole.Model != modelAlias {
		t.Fatalf("message %q (%s, %s, %s): want seven words, max_tokens", text, whole.StopReason, whole.Role, whole.Model)
	}
	if whole.Usage.OutputTokens != 7 || whole.Usage.InputTokens == 0 {
		t.Errorf("usage %+v", whole.Usage)
	}
	perCall := whole.Usage.InputTokens + whole.Usage.OutputTokens
	if got := s.spent(t, "claude", 1); got != perCall {
		t.Errorf("spent %d, want the usage %d", got, perCall)
	}

	// The same prompt streamed: the client's accumulator yields the same
	// message.
	stream := client.Messages.NewStreaming(t.Context(), params)
	var acc anthropic.Message
	var events []string
	for stream.Next() {
		ev := stream.Current()
		events = append(events, ev.Type)
		if err := acc.Accumulate(ev); err != nil {
			t.Fatalf("accumulate %s: %v", ev.Type, err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	_ = stream.Close()
	if events[0] != "message_start" || events[len(events)-1] != "message_stop" {
		t.Errorf("events %v", events)
	}
	if got := anthropicText(&acc); got != text || acc.StopReason != whole.StopReason {
		t.Errorf("accumulated %q (%s), want %q (%s)", got, acc.StopReason, text, whole.StopReason)
	}
	if acc.Usage.InputTokens != whole.Usage.InputTokens || acc.Usage.OutputTokens != whole.Usage.OutputTokens {
		t.Errorf("accumulated usage %d/%d, want %d/%d", acc.Usage.InputTokens, acc.Usage.OutputTokens,
			whole.Usage.InputTokens, whole.Usage.OutputTokens)
	}
	if got := s.spent(t, "claude", 2); got != 2*perCall {
		t.Errorf("spent %d after the stream, want %d", got, 2*perCall)
	}

	// count_tokens gives the gateway's estimate.
	n, err := client.Messages.CountTokens(t.Context(), anthropic.MessageCountTokensParams{
		Model:    modelAlias,
		Messages: params.Messages,
	})
	if err != nil || n.InputTokens < 1 {
		t.Errorf("count_tokens: %+v, %v", n, err)
	}
}

func TestAnthropicToolUseRoundTrip(t *testing.T) {
	t.Parallel()
	s := newStack(t, key("tools"))
	client := s.anthropicClient("sk-tools")
	params := anthropic.MessageNewParams{
		Model:     modelAlias,
		MaxTokens: 64,
		Tools: []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
			Name:        "get_weather",
			Description: anthropic.String("The weather of a city"),
			InputSchema: anthropic.ToolInputSchemaParam{
				Properties: map[string]any{"city": map[string]any{"type": "string"}, "days": map[string]any{"type": "integer"}},
				Required:   []string{"city"},
			},
		}}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is the weather in Paris? Use get_weather."))},
	}
	first, err := client.Messages.New(t.Context(), params)
	if err != nil {
		t.Fatalf("messages: %v", err)
	}
	if first.StopReason != anthropic.StopReasonToolUse {
		t.Fatalf("stop_reason %s, want tool_use", first.StopReason)
	}
	var call anthropic.ToolUseBlock
	for _, b := range first.Content {
		if tu, ok := b.AsAny().(anthropic.ToolUseBlock); ok {
			call = tu
		}
	}
	var input struct {
		City string `json:"city"`
		Days *int   `json:"days"`
	}
	if err := json.Unmarshal(call.Input, &input); err != nil || call.Name != "get_weather" || call.ID == "" || input.City == "" || input.Days == nil {
		t.Fatalf("tool call %s %s(%s) (%v): want get_weather with a city and days", call.ID, call.Name, call.Input, err)
	}

	// Streamed, the accumulator rebuilds the same call from the input
	// fragments.
	stream := client.Messages.NewStreaming(t.Context(), params)
	var acc anthropic.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatalf("accumulate: %v", err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	_ = stream.Close()
	var streamed anthropic.ToolUseBlock
	for _, b := range acc.Content {
		if tu, ok := b.AsAny().(anthropic.ToolUseBlock); ok {
			streamed = tu
		}
	}
	if streamed.ID != call.ID || streamed.Name != call.Name || !jsonEqual(streamed.Input, call.Input) || acc.StopReason != anthropic.StopReasonToolUse {
		t.Errorf("streamed call %s %s(%s) %s, want %s %s(%s)", streamed.ID, streamed.Name, streamed.Input, acc.StopReason, call.ID, call.Name, call.Input)
	}

	// The client runs the tool and sends the result back; the model
	// answers with text.
	params.Messages = append(params.Messages, first.ToParam(),
		anthropic.NewUserMessage(anthropic.NewToolResultBlock(call.ID, "Sunny, 21 C", false)))
	params.MaxTokens = 8
	final, err := client.Messages.New(t.Context(), params)
	if err != nil {
		t.Fatalf("the turn with the tool result: %v", err)
	}
	if final.StopReason != anthropic.StopReasonMaxTokens || len(strings.Fields(anthropicText(final))) != 8 {
		t.Errorf("final answer %q (%s): want eight words of text", anthropicText(final), final.StopReason)
	}
	_, sent := s.fleet.Neuron(neuronName).LastRequest()
	if !strings.Contains(string(sent), `"tool_call_id":"`+call.ID+`"`) || !strings.Contains(string(sent), "Sunny, 21 C") {
		t.Errorf("the neuron got %s: want the tool result as a tool message", sent)
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && cmp.Equal(x, y)
}

func TestAnthropicAuthError(t *testing.T) {
	t.Parallel()
	s := newStack(t, key("auth"))
	client := s.anthropicClient("sk-wrong")
	_, err := client.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model:     modelAlias,
		MaxTokens: 5,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello there"))},
	})
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v (%T), want an *anthropic.Error", err, err)
	}
	if apiErr.StatusCode != http.StatusUnauthorized || apiErr.Type() != "authentication_error" || apiErr.Message == "" {
		t.Errorf("error %d %s %q, want 401 authentication_error", apiErr.StatusCode, apiErr.Type(), apiErr.Message)
	}
	if n := s.fleet.Neuron(neuronName).Requests(); n != 0 {
		t.Errorf("the neuron got %d requests", n)
	}
}
