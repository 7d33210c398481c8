package anthropic_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/internal/anthropic"
)

func ptr[T any](v T) *T { return &v }

func TestParseRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want *anthropic.Request
	}{
		{
			name: "minimal",
			in:   `{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`,
			want: &anthropic.Request{Model: "m", MaxTokens: 16, Messages: []anthropic.Message{
				{Role: "user", Content: []anthropic.Block{{Type: "text", Text: "hi"}}},
			}},
		},
		{
			name: "everything",
			in: `{
				"model": "m", "max_tokens": 1024.0, "stream": true,
				"system": [{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"text","text":"b"}],
				"stop_sequences": ["END"], "temperature": 0.5, "top_p": 1, "top_k": 40,
				"metadata": {"user_id": "u1"},
				"thinking": {"type":"enabled","budget_tokens":1000},
				"tools": [{"name":"t","description":"d","input_schema":{ "type": "object" }}],
				"tool_choice": {"type":"tool","name":"t","disable_parallel_tool_use":true},
				"messages": [
					{"role":"user","content":[
						{"type":"text","text":"look"},
						{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},
						{"type":"image","source":{"type":"url","url":"https://example.invalid/a.png"}}
					]},
					{"role":"assistant","content":[{"type":"tool_use","id":"tu1","name":"t","input":{ "x" : 1 }}]},
					{"role":"user","content":[{"type":"tool_result","tool_use_id":"tu1","content":"ok","is_error":true}]}
				]
			}`,
			want: &anthropic.Request{
				Model: "m", MaxTokens: 1024, Stream: true,
				System:        []string{"a", "b"},
				StopSequences: []string{"END"},
				Temperature:   ptr(0.5), TopP: ptr(1.0), TopK: ptr(int64(40)),
				UserID:     "u1",
				Tools:      []anthropic.Tool{{Name: "t", Description: "d", InputSchema: json.RawMessage(`{"type":"object"}`)}},
				ToolChoice: &anthropic.ToolChoice{Type: "tool", Name: "t", DisableParallelToolUse: true},
				Messages: []anthropic.Message{
					{Role: "user", Content: []anthropic.Block{
						{Type: "text", Text: "look"},
						{Type: "image", Image: &anthropic.ImageSource{Type: "base64", MediaType: "image/png", Data: "AAAA"}},
						{Type: "image", Image: &anthropic.ImageSource{Type: "url", URL: "https://example.invalid/a.png"}},
					}},
					{Role: "assistant", Content: []anthropic.Block{{Type: "tool_use", ID: "tu1", Name: "t", Input: json.RawMessage(`{"x":1}`)}}},
					{Role: "user", Content: []anthropic.Block{{Type: "tool_result", ToolUseID: "tu1", IsError: true,
						Content: []anthropic.Block{{Type: "text", Text: "ok"}}}}},
				},
			},
		},
		{
			name: "nulls are absent",
			in:   `{"model":"m","max_tokens":1,"system":null,"temperature":null,"tools":null,"tool_choice":null,"metadata":{"user_id":null},"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"b","input":null}]}]}`,
			want: &anthropic.Request{Model: "m", MaxTokens: 1, Messages: []anthropic.Message{
				{Role: "assistant", Content: []anthropic.Block{{Type: "tool_use", ID: "a", Name: "b", Input: json.RawMessage(`{}`)}}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := anthropic.ParseRequest([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("request (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	t.Parallel()
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name    string
		in      string
		wantErr *anthropic.RequestError
	}{
		{"not an object", `[1]`, &anthropic.RequestError{Msg: "body must be one JSON object"}},
		{"truncated", `{"model":"m"`, &anthropic.RequestError{Msg: "body must be one JSON object"}},
		{"invalid utf8", "{\"model\":\"\xff\"}", &anthropic.RequestError{Msg: "body is not valid UTF-8"}},
		{"no model", `{"max_tokens":1,` + msgs + `}`, &anthropic.RequestError{Param: "model", Msg: "field required"}},
		{"model number", `{"model":1,"max_tokens":1,` + msgs + `}`, &anthropic.RequestError{Param: "model", Msg: "must be a string"}},
		{"empty model", `{"model":"","max_tokens":1,` + msgs + `}`, &anthropic.RequestError{Param: "model", Msg: "must not be empty"}},
		{"no max_tokens", `{"model":"m",` + msgs + `}`, &anthropic.RequestError{Param: "max_tokens", Msg: "field required"}},
		{"max_tokens string", `{"model":"m","max_tokens":"5",` + msgs + `}`, &anthropic.RequestError{Param: "max_tokens", Msg: "must be an integer"}},
		{"max_tokens fraction", `{"model":"m","max_tokens":1.5,` + msgs + `}`, &anthropic.RequestError{Param: "max_tokens", Msg: "must be an integer"}},
		{"max_tokens zero", `{"model":"m","max_tokens":0,` + msgs + `}`, &anthropic.RequestError{Param: "max_tokens", Msg: "must be at least 1"}},
		{"no messages", `{"model":"m","max_tokens":1}`, &anthropic.RequestError{Param: "messages", Msg: "field required"}},
		{"empty messages", `{"model":"m","max_tokens":1,"messages":[]}`, &anthropic.RequestError{Param: "messages", Msg: "at least one message is required"}},
		{"messages object", `{"model":"m","max_tokens":1,"messages":{}}`, &anthropic.RequestError{Param: "messages", Msg: "must be an array"}},
		{"message not object", `{"model":"m","max_tokens":1,"messages":["hi"]}`, &anthropic.RequestError{Param: "messages.0", Msg: "must be an object"}},
		{"system role", `{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}`,
			&anthropic.RequestError{Param: "messages.0.role", Msg: `unknown role "system": use the top-level system parameter`}},
		{"unknown role", `{"model":"m","max_tokens":1,"messages":[{"role":"tool","content":"x"}]}`,
			&anthropic.RequestError{Param: "messages.0.role", Msg: `unknown role "tool" (want user or assistant)`}},
		{"no content", `{"model":"m","max_tokens":1,"messages":[{"role":"user"}]}`,
			&anthropic.RequestError{Param: "messages.0.content", Msg: "field required"}},
		{"content number", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":5}]}`,
			&anthropic.RequestError{Param: "messages.0.content", Msg: "must be a string or an array of content blocks"}},
		{"thinking block", `{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"x","signature":"s"}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.type", Msg: `unsupported content block type "thinking" (supported: text, image, tool_use, tool_result)`}},
		{"document block", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.type", Msg: `unsupported content block type "document" (supported: text, image, tool_use, tool_result)`}},
		{"block without type", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"text":"x"}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.type", Msg: "field required"}},
		{"text not string", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":["x"]}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.text", Msg: "must be a string"}},
		{"tool_use in user", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.type", Msg: `user messages may not hold "tool_use" blocks`}},
		{"image in assistant", `{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"image","source":{"type":"url","url":"u"}}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.type", Msg: `assistant messages may not hold "image" blocks`}},
		{"tool_use input array", `{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"b","input":[]}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.input", Msg: "must be an object"}},
		{"tool_result no id", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.tool_use_id", Msg: "field required"}},
		{"tool_result document", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"document"}]}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.content.0.type", Msg: `unsupported content block type "document" (supported: text, image, tool_use, tool_result)`}},
		{"tool_result nested tool_result", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"tool_result","tool_use_id":"b"}]}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.content.0.type", Msg: `tool results may hold text and image blocks, not "tool_result"`}},
		{"is_error string", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","is_error":"yes"}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.is_error", Msg: "must be a boolean"}},
		{"image file source", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.source.type", Msg: `unsupported image source type "file" (supported: base64, url)`}},
		{"image no data", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":""}}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.source", Msg: "media_type and data must not be empty"}},
		{"image no source", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image"}]}]}`,
			&anthropic.RequestError{Param: "messages.0.content.0.source", Msg: "must be an object"}},
		{"system number", `{"model":"m","max_tokens":1,"system":1,` + msgs + `}`,
			&anthropic.RequestError{Param: "system", Msg: "must be a string or an array of text blocks"}},
		{"system image", `{"model":"m","max_tokens":1,"system":[{"type":"image","source":{"type":"url","url":"u"}}],` + msgs + `}`,
			&anthropic.RequestError{Param: "system.0.type", Msg: `system blocks must be text blocks, not "image"`}},
		{"stop_sequences string", `{"model":"m","max_tokens":1,"stop_sequences":"x",` + msgs + `}`,
			&anthropic.RequestError{Param: "stop_sequences", Msg: "must be an array"}},
		{"stop_sequences empty entry", `{"model":"m","max_tokens":1,"stop_sequences":["a",""],` + msgs + `}`,
			&anthropic.RequestError{Param: "stop_sequences.1", Msg: "must not be empty"}},
		{"temperature string", `{"model":"m","max_tokens":1,"temperature":"hot",` + msgs + `}`,
			&anthropic.RequestError{Param: "temperature", Msg: "must be a number"}},
		{"temperature range", `{"model":"m","max_tokens":1,"temperature":1.5,` + msgs + `}`,
			&anthropic.RequestError{Param: "temperature", Msg: "must be between 0 and 1"}},
		{"top_p range", `{"model":"m","max_tokens":1,"top_p":-0.1,` + msgs + `}`,
			&anthropic.RequestError{Param: "top_p", Msg: "must be between 0 and 1"}},
		{"top_k negative", `{"model":"m","max_tokens":1,"top_k":-1,` + msgs + `}`,
			&anthropic.RequestError{Param: "top_k", Msg: "must not be negative"}},
		{"stream string", `{"model":"m","max_tokens":1,"stream":"true",` + msgs + `}`,
			&anthropic.RequestError{Param: "stream", Msg: "must be a boolean"}},
		{"metadata string", `{"model":"m","max_tokens":1,"metadata":"x",` + msgs + `}`,
			&anthropic.RequestError{Param: "metadata", Msg: "must be an object"}},
		{"user_id number", `{"model":"m","max_tokens":1,"metadata":{"user_id":1},` + msgs + `}`,
			&anthropic.RequestError{Param: "metadata.user_id", Msg: "must be a string"}},
		{"tools object", `{"model":"m","max_tokens":1,"tools":{},` + msgs + `}`,
			&anthropic.RequestError{Param: "tools", Msg: "must be an array"}},
		{"tool no schema", `{"model":"m","max_tokens":1,"tools":[{"name":"t"}],` + msgs + `}`,
			&anthropic.RequestError{Param: "tools.0.input_schema", Msg: "must be a JSON schema object"}},
		{"server tool", `{"model":"m","max_tokens":1,"tools":[{"type":"web_search_20250305","name":"web_search"}],` + msgs + `}`,
			&anthropic.RequestError{Param: "tools.0.type", Msg: `server tool "web_search_20250305" is not supported; define a client tool with input_schema`}},
		{"duplicate tool", `{"model":"m","max_tokens":1,"tools":[{"name":"t","input_schema":{}},{"name":"t","input_schema":{}}],` + msgs + `}`,
			&anthropic.RequestError{Param: "tools.1.name", Msg: `duplicate tool name "t"`}},
		{"tool_choice string", `{"model":"m","max_tokens":1,"tool_choice":"auto",` + msgs + `}`,
			&anthropic.RequestError{Param: "tool_choice", Msg: "must be an object"}},
		{"tool_choice unknown", `{"model":"m","max_tokens":1,"tool_choice":{"type":"required"},` + msgs + `}`,
			&anthropic.RequestError{Param: "tool_choice.type", Msg: `unknown tool_choice type "required" (want auto, any, tool or none)`}},
		{"tool_choice tool without name", `{"model":"m","max_tokens":1,"tools":[{"name":"t","input_schema":{}}],"tool_choice":{"type":"tool"},` + msgs + `}`,
			&anthropic.RequestError{Param: "tool_choice.name", Msg: `field required for tool_choice type "tool"`}},
		{"tool_choice unknown tool", `{"model":"m","max_tokens":1,"tools":[{"name":"t","input_schema":{}}],"tool_choice":{"type":"tool","name":"u"},` + msgs + `}`,
			&anthropic.RequestError{Param: "tool_choice.name", Msg: `no tool named "u" in tools`}},
		{"disable_parallel string", `{"model":"m","max_tokens":1,"tool_choice":{"type":"auto","disable_parallel_tool_use":1},` + msgs + `}`,
			&anthropic.RequestError{Param: "tool_choice.disable_parallel_tool_use", Msg: "must be a boolean"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := anthropic.ParseRequest([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseRequest = %+v, want error", got)
			}
			var re *anthropic.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("error %T %v, want *RequestError", err, err)
			}
			if diff := cmp.Diff(re, tt.wantErr); diff != "" {
				t.Errorf("error (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseCountTokensRequest(t *testing.T) {
	t.Parallel()
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if _, err := anthropic.ParseRequest(body); err == nil {
		t.Error("ParseRequest without max_tokens: no error")
	}
	r, err := anthropic.ParseCountTokensRequest(body)
	if err != nil {
		t.Fatalf("ParseCountTokensRequest: %v", err)
	}
	if r.MaxTokens != 0 || r.Model != "m" {
		t.Errorf("got %+v", r)
	}
}

func TestRequestErrorString(t *testing.T) {
	t.Parallel()
	if got := (&anthropic.RequestError{Param: "a.b", Msg: "bad"}).Error(); got != "a.b: bad" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&anthropic.RequestError{Msg: "bad"}).Error(); got != "bad" {
		t.Errorf("Error() = %q", got)
	}
}
