package anthropic_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/internal/anthropic"
)

func TestToChat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string // Anthropic request
		want string // chat completions body
	}{
		{
			name: "string content",
			in:   `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
		},
		{
			name: "system string",
			in:   `{"model":"m","max_tokens":5,"system":"be brief","messages":[{"role":"user","content":"hi"}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
		},
		{
			name: "system blocks merged",
			in:   `{"model":"m","max_tokens":5,"system":[{"type":"text","text":"one"},{"type":"text","text":"two","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hi"}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"one\n\ntwo"},{"role":"user","content":"hi"}]}`,
		},
		{
			name: "empty system dropped",
			in:   `{"model":"m","max_tokens":5,"system":"","messages":[{"role":"user","content":"hi"}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
		},
		{
			name: "single text block is a string",
			in:   `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
		},
		{
			name: "text and images as parts",
			in: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[
				{"type":"text","text":"what is this?"},
				{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
				{"type":"image","source":{"type":"url","url":"https://example.invalid/cat.jpg"}},
				{"type":"text","text":"and this?"}]}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[
				{"type":"text","text":"what is this?"},
				{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
				{"type":"image_url","image_url":{"url":"https://example.invalid/cat.jpg"}},
				{"type":"text","text":"and this?"}]}]}`,
		},
		{
			name: "empty content array",
			in:   `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[]}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":""}]}`,
		},
		{
			name: "tool round trip",
			in: `{"model":"m","max_tokens":50,
				"tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}],
				"messages":[
				{"role":"user","content":"weather in Paris and Rome?"},
				{"role":"assistant","content":[
					{"type":"text","text":"Checking."},
					{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city": "Paris"}},
					{"type":"tool_use","id":"toolu_2","name":"get_weather","input":{"city":"Rome"}}]},
				{"role":"user","content":[
					{"type":"text","text":"here you go"},
					{"type":"tool_result","tool_use_id":"toolu_1","content":"18C"},
					{"type":"tool_result","tool_use_id":"toolu_2","content":[{"type":"text","text":"21C"},{"type":"text","text":"sunny"}]}]},
				{"role":"assistant","content":"Paris 18C, Rome 21C."}]}`,
			want: `{"model":"m","max_tokens":50,
				"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],
				"messages":[
				{"role":"user","content":"weather in Paris and Rome?"},
				{"role":"assistant","content":"Checking.","tool_calls":[
					{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
					{"id":"toolu_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
				{"role":"tool","tool_call_id":"toolu_1","content":"18C"},
				{"role":"tool","tool_call_id":"toolu_2","content":"21C\nsunny"},
				{"role":"user","content":"here you go"},
				{"role":"assistant","content":"Paris 18C, Rome 21C."}]}`,
		},
		{
			name: "tool use without text has null content",
			in: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},
				{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"f","input":{}}]},
				{"role":"user","content":[{"type":"tool_result","tool_use_id":"a"}]}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},
				{"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},
				{"role":"tool","tool_call_id":"a","content":""}]}`,
		},
		{
			name: "tool result error and image",
			in: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[
				{"type":"tool_result","tool_use_id":"a","is_error":true,"content":"not found"},
				{"type":"tool_result","tool_use_id":"b","is_error":true},
				{"type":"tool_result","tool_use_id":"c","content":[{"type":"text","text":"screenshot:"},{"type":"image","source":{"type":"url","url":"https://example.invalid/s.png"}}]}]}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[
				{"role":"tool","tool_call_id":"a","content":"Error: not found"},
				{"role":"tool","tool_call_id":"b","content":"Error"},
				{"role":"tool","tool_call_id":"c","content":"screenshot:"},
				{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.invalid/s.png"}}]}]}`,
		},
		{
			name: "assistant texts concatenated",
			in:   `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"ab"}]}`,
		},
		{
			name: "sampling, stop, user, stream",
			in:   `{"model":"m","max_tokens":7,"stream":true,"stop_sequences":["END","\n\nHuman:"],"temperature":0,"top_p":0.9,"top_k":40,"metadata":{"user_id":"u-1"},"messages":[{"role":"user","content":"<hi & bye>"}]}`,
			want: `{"model":"m","max_tokens":7,"messages":[{"role":"user","content":"<hi & bye>"}],"stop":["END","\n\nHuman:"],"temperature":0,"top_p":0.9,"top_k":40,"user":"u-1","stream":true,"stream_options":{"include_usage":true}}`,
		},
		{
			name: "tool_choice auto",
			in:   `{"model":"m","max_tokens":5,"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"auto"},"messages":[{"role":"user","content":"x"}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":"auto"}`,
		},
		{
			name: "tool_choice any without parallel",
			in:   `{"model":"m","max_tokens":5,"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true},"messages":[{"role":"user","content":"x"}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":"required","parallel_tool_calls":false}`,
		},
		{
			name: "tool_choice tool",
			in:   `{"model":"m","max_tokens":5,"tools":[{"name":"f","input_schema":{}},{"name":"g","input_schema":{}}],"tool_choice":{"type":"tool","name":"g"},"messages":[{"role":"user","content":"x"}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}},{"type":"function","function":{"name":"g","parameters":{}}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`,
		},
		{
			name: "tool_choice none",
			in:   `{"model":"m","max_tokens":5,"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"none"},"messages":[{"role":"user","content":"x"}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":"none"}`,
		},
		{
			name: "tool_choice without tools left out",
			in:   `{"model":"m","max_tokens":5,"tool_choice":{"type":"any","disable_parallel_tool_use":true},"messages":[{"role":"user","content":"x"}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := anthropic.ToChat(mustParse(t, tt.in))
			if err != nil {
				t.Fatalf("ToChat: %v", err)
			}
			if diff := cmp.Diff(decode(t, string(got)), decode(t, tt.want)); diff != "" {
				t.Errorf("chat body (-got +want):\n%s", diff)
			}
		})
	}
}

// TestToChatNoHTMLEscape: text reaches the engine byte for byte.
func TestToChatNoHTMLEscape(t *testing.T) {
	t.Parallel()
	got, err := anthropic.ToChat(mustParse(t, `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a<b>&c"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"model":"m","messages":[{"role":"user","content":"a<b>&c"}],"max_tokens":5}`; string(got) != want {
		t.Errorf("ToChat = %s, want %s", got, want)
	}
}

func TestToChatRefusesInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      *anthropic.Request
		wantErr *anthropic.RequestError
	}{
		{"no model", &anthropic.Request{Messages: []anthropic.Message{{Role: "user"}}},
			&anthropic.RequestError{Param: "model", Msg: "must not be empty"}},
		{"no messages", &anthropic.Request{Model: "m"},
			&anthropic.RequestError{Param: "messages", Msg: "at least one message is required"}},
		{"bad role", &anthropic.Request{Model: "m", Messages: []anthropic.Message{{Role: "developer"}}},
			&anthropic.RequestError{Param: "messages.0.role", Msg: `unknown role "developer" (want user or assistant)`}},
		{"image without source", &anthropic.Request{Model: "m", Messages: []anthropic.Message{{Role: "user", Content: []anthropic.Block{{Type: "image"}}}}},
			&anthropic.RequestError{Param: "messages.0.content.0.source", Msg: "field required"}},
		{"bad tool input", &anthropic.Request{Model: "m", Messages: []anthropic.Message{{Role: "assistant", Content: []anthropic.Block{{Type: "tool_use", ID: "a", Name: "f", Input: json.RawMessage(`[1]`)}}}}},
			&anthropic.RequestError{Param: "messages.0.content.0.input", Msg: "must be an object"}},
		{"bad schema", &anthropic.Request{Model: "m", Messages: []anthropic.Message{{Role: "user"}}, Tools: []anthropic.Tool{{Name: "f", InputSchema: json.RawMessage(`{`)}}},
			&anthropic.RequestError{Param: "tools.0.input_schema", Msg: "must be a JSON schema object"}},
		{"bad tool_choice", &anthropic.Request{Model: "m", Messages: []anthropic.Message{{Role: "user"}}, ToolChoice: &anthropic.ToolChoice{Type: "some"}},
			&anthropic.RequestError{Param: "tool_choice.type", Msg: `unknown tool_choice type "some" (want auto, any, tool or none)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := anthropic.ToChat(tt.in)
			var re *anthropic.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("error %v, want *RequestError", err)
			}
			if diff := cmp.Diff(re, tt.wantErr); diff != "" {
				t.Errorf("error (-got +want):\n%s", diff)
			}
		})
	}
	if _, err := anthropic.ToChat(nil); err == nil {
		t.Error("ToChat(nil): no error")
	}
}
