package anthropic_test

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/helexa-ai/helexa-go/internal/anthropic"
)

// FuzzFromChat translates arbitrary engine answers back into Anthropic
// Messages: a body it accepts becomes a well-formed message (known stop
// reason, content blocks of known types, non-negative usage); anything
// else is an ErrBadChat, never a panic.
func FuzzFromChat(f *testing.F) {
	for _, s := range []string{
		`{"id":"c1","choices":[{"message":{"content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`,
		`{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"text":"b"}],"tool_calls":[{"id":"t","function":{"name":"f","arguments":"{\"x\":1}"}},{"function":{"name":"g","arguments":{"y":[]}}}]},"finish_reason":"tool_calls"}]}`,
		`{"choices":[{"message":{"content":null},"finish_reason":"stop","stop_reason":"x"}],"usage":{"prompt_tokens":-5,"completion_tokens":-1,"prompt_tokens_details":{"cached_tokens":99}}}`,
		`{"choices":[{"message":{"content":"x","tool_calls":[{"function":{"arguments":"not json"}}]},"finish_reason":"length"}]}`,
		`{"choices":[]}`, `{"choices":[{"message":{"content":5}}]}`, `[]`, `null`, ``, `{"choices":[{"finish_reason":"content_filter"}]}`,
	} {
		f.Add([]byte(s))
	}
	stopReasons := map[string]bool{anthropic.StopEndTurn: true, anthropic.StopMaxTokens: true,
		anthropic.StopSequence: true, anthropic.StopToolUse: true, anthropic.StopRefusal: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := mustParse(t, `{"model":"m","max_tokens":10,"stop_sequences":["x"],"messages":[{"role":"user","content":"hi"}]}`)
		out, err := anthropic.FromChat(body, req)
		if err != nil {
			if !errors.Is(err, anthropic.ErrBadChat) {
				t.Fatalf("FromChat error %v does not wrap ErrBadChat", err)
			}
			return
		}
		var msg struct {
			ID         string `json:"id"`
			Type       string `json:"type"`
			Role       string `json:"role"`
			Model      string `json:"model"`
			StopReason string `json:"stop_reason"`
			Content    []struct {
				Type  string          `json:"type"`
				Text  *string         `json:"text"`
				ID    string          `json:"id"`
				Input json.RawMessage `json:"input"`
			} `json:"content"`
			Usage struct {
				InputTokens          int64 `json:"input_tokens"`
				CacheReadInputTokens int64 `json:"cache_read_input_tokens"`
				OutputTokens         int64 `json:"output_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(out, &msg); err != nil {
			t.Fatalf("FromChat output is not JSON: %v\n%s", err, out)
		}
		if msg.Type != "message" || msg.Role != "assistant" || msg.Model != "m" || len(msg.ID) <= len("msg_") {
			t.Fatalf("FromChat output lacks the message fields: %s", out)
		}
		if !stopReasons[msg.StopReason] {
			t.Fatalf("stop_reason %q is not one of Anthropic's: %s", msg.StopReason, out)
		}
		if msg.Usage.InputTokens < 0 || msg.Usage.CacheReadInputTokens < 0 || msg.Usage.OutputTokens < 0 {
			t.Fatalf("negative usage: %s", out)
		}
		for i, b := range msg.Content {
			switch b.Type {
			case "text":
				if b.Text == nil || *b.Text == "" {
					t.Fatalf("content[%d]: empty text block: %s", i, out)
				}
			case "tool_use":
				if b.ID == "" || len(b.Input) == 0 || b.Input[0] != '{' {
					t.Fatalf("content[%d]: tool_use without an id or an object input: %s", i, out)
				}
			default:
				t.Fatalf("content[%d]: unknown block type %q: %s", i, b.Type, out)
			}
		}
	})
}

// FuzzFromOpenAIError translates arbitrary error answers: the type is
// always one of Anthropic's and the message is never empty and always
// valid UTF-8, so the error the client sees can be encoded.
func FuzzFromOpenAIError(f *testing.F) {
	for _, s := range []struct {
		status int
		body   string
	}{
		{400, `{"error":{"message":"bad","type":"invalid_request_error","code":"invalid_request_body"}}`},
		{200, `{"error":{"message":"boom","code":503}}`},
		{500, `{"type":"error","error":{"type":"overloaded_error","message":"busy"}}`},
		{422, `{"detail":"field required"}`},
		{404, `{"error":"no such model"}`},
		{502, "plain text\n"}, {503, "\x00\xff"}, {0, ``}, {999, `{"error":{"code":[1]}}`},
	} {
		f.Add(s.status, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		typ, msg := anthropic.FromOpenAIError(status, body)
		if anthropic.ErrorTypeForStatus(400) == "" || typ == "" {
			t.Fatalf("empty type for %d %q", status, body)
		}
		known := false
		for s := 400; s < 600 && !known; s++ {
			known = anthropic.ErrorTypeForStatus(s) == typ
		}
		if !known && typ != anthropic.ErrorTypeForStatus(anthropic.StatusOverloaded) {
			t.Fatalf("type %q for %d %q is not an Anthropic error type", typ, status, body)
		}
		if msg == "" {
			t.Fatalf("empty message for %d %q", status, body)
		}
		if !utf8.ValidString(msg) {
			t.Fatalf("message %q for %d %q is not valid UTF-8", msg, status, body)
		}
	})
}
