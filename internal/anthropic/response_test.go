package anthropic_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/internal/anthropic"
)

func TestFromChat(t *testing.T) {
	t.Parallel()
	const usage = `"usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25}`
	const wantUsage = `"usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":5}`
	choice := func(msg, finish string, extra string) string {
		return `{"id":"chatcmpl-1","object":"chat.completion","model":"engine-model","choices":[{"index":0,"message":` + msg +
			`,"finish_reason":` + finish + extra + `}],` + usage + `}`
	}
	tests := []struct {
		name string
		in   string
		stop []string
		want string
	}{
		{
			name: "text stop",
			in:   choice(`{"role":"assistant","content":"Hello!"}`, `"stop"`, ``),
			want: `{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello!"}],"stop_reason":"end_turn","stop_sequence":null,` + wantUsage + `}`,
		},
		{
			name: "length",
			in:   choice(`{"role":"assistant","content":"Hel"}`, `"length"`, ``),
			want: `{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hel"}],"stop_reason":"max_tokens","stop_sequence":null,` + wantUsage + `}`,
		},
		{
			name: "content_filter",
			in:   choice(`{"role":"assistant","content":""}`, `"content_filter"`, ``),
			want: `{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":"refusal","stop_sequence":null,` + wantUsage + `}`,
		},
		{
			name: "unknown finish_reason",
			in:   choice(`{"role":"assistant","content":"x"}`, `"abort"`, ``),
			want: `{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"x"}],"stop_reason":"end_turn","stop_sequence":null,` + wantUsage + `}`,
		},
		{
			name: "stop sequence reported by vLLM",
			in:   choice(`{"role":"assistant","content":"a b"}`, `"stop"`, `,"stop_reason":"END"`),
			stop: []string{"STOP", "END"},
			want: `{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"a b"}],"stop_reason":"stop_sequence","stop_sequence":"END",` + wantUsage + `}`,
		},
		{
			name: "engine stop string not requested",
			in:   choice(`{"role":"assistant","content":"a b"}`, `"stop"`, `,"stop_reason":"<|im_end|>"`),
			stop: []string{"END"},
			want: `{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"a b"}],"stop_reason":"end_turn","stop_sequence":null,` + wantUsage + `}`,
		},
		{
			name: "stop token id is not a sequence",
			in:   choice(`{"role":"assistant","content":"a b"}`, `"stop"`, `,"stop_reason":128001`),
			stop: []string{"END"},
			want: `{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"a b"}],"stop_reason":"end_turn","stop_sequence":null,` + wantUsage + `}`,
		},
		{
			name: "tool calls",
			in: choice(`{"role":"assistant","content":"Let me check.","tool_calls":[
				{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}},
				{"id":"call_2","type":"function","function":{"name":"get_time","arguments":{"tz":"CET"}}}]}`, `"tool_calls"`, ``),
			want: `{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"claude-x","content":[
				{"type":"text","text":"Let me check."},
				{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},
				{"type":"tool_use","id":"call_2","name":"get_time","input":{"tz":"CET"}}],
				"stop_reason":"tool_use","stop_sequence":null,` + wantUsage + `}`,
		},
		{
			name: "tool calls with finish stop",
			in:   choice(`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}`, `"stop"`, ``),
			want: `{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"claude-x","content":[
				{"type":"tool_use","id":"call_1","name":"f","input":{}}],"stop_reason":"tool_use","stop_sequence":null,` + wantUsage + `}`,
		},
		{
			name: "invalid and non-object arguments become {}",
			in: choice(`{"role":"assistant","content":null,"tool_calls":[
				{"id":"a","type":"function","function":{"name":"f","arguments":"{\"city\": \"Par"}},
				{"id":"b","type":"function","function":{"name":"g","arguments":"[1,2]"}},
				{"id":"c","type":"function","function":{"name":"h","arguments":""}}]}`, `"tool_calls"`, ``),
			want: `{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"claude-x","content":[
				{"type":"tool_use","id":"a","name":"f","input":{}},
				{"type":"tool_use","id":"b","name":"g","input":{}},
				{"type":"tool_use","id":"c","name":"h","input":{}}],"stop_reason":"tool_use","stop_sequence":null,` + wantUsage + `}`,
		},
		{
			name: "array content and cached tokens",
			in: `{"id":"x","choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},"finish_reason":"stop"}],
				"usage":{"prompt_tokens":100,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":64}}}`,
			want: `{"id":"msg_x","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"ab"}],"stop_reason":"end_turn","stop_sequence":null,
				"usage":{"input_tokens":36,"cache_creation_input_tokens":0,"cache_read_input_tokens":64,"output_tokens":2}}`,
		},
		{
			name: "no usage: estimates",
			in:   `{"id":"x","choices":[{"message":{"content":"abcdefgh"},"finish_reason":"stop"}]}`,
			want: `{"id":"msg_x","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"abcdefgh"}],"stop_reason":"end_turn","stop_sequence":null,
				"usage":{"input_tokens":6,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":2}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := mustParse(t, `{"model":"claude-x","max_tokens":9,"messages":[{"role":"user","content":"hello"}]}`)
			req.StopSequences = tt.stop
			got, err := anthropic.FromChat([]byte(tt.in), req)
			if err != nil {
				t.Fatalf("FromChat: %v", err)
			}
			if diff := cmp.Diff(decode(t, string(got)), decode(t, tt.want)); diff != "" {
				t.Errorf("message (-got +want):\n%s", diff)
			}
		})
	}
}

func TestFromChatGeneratedIDs(t *testing.T) {
	t.Parallel()
	req := mustParse(t, `{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"hello"}]}`)
	body := `{"choices":[{"message":{"content":null,"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`
	got, err := anthropic.FromChat([]byte(body), req)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		ID      string `json:"id"`
		Content []struct {
			ID string `json:"id"`
		} `json:"content"`
	}
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.ID, "msg_") || len(m.ID) != len("msg_")+24 {
		t.Errorf("id %q, want msg_ and 24 hex digits", m.ID)
	}
	if len(m.Content) != 1 || !strings.HasPrefix(m.Content[0].ID, "toolu_") || len(m.Content[0].ID) != len("toolu_")+24 {
		t.Errorf("content %+v, want one toolu_ id", m.Content)
	}
}

func TestFromChatErrors(t *testing.T) {
	t.Parallel()
	req := mustParse(t, `{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"hello"}]}`)
	tests := []struct {
		name string
		in   string
	}{
		{"not json", `nope`},
		{"no choices", `{"id":"x","choices":[]}`},
		{"error envelope", `{"error":{"message":"boom"}}`},
		{"content number", `{"choices":[{"message":{"content":5}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := anthropic.FromChat([]byte(tt.in), req); !errors.Is(err, anthropic.ErrBadChat) {
				t.Errorf("FromChat error %v, want ErrBadChat", err)
			}
		})
	}
	if _, err := anthropic.FromChat([]byte(`{}`), nil); err == nil {
		t.Error("FromChat(nil request): no error")
	}
}
