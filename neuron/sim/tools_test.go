package sim_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// weatherTools offers two tools; get_weather has a string, an integer, a
// boolean and an enum property.
const weatherTools = `"tools":[` +
	`{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{` +
	`"city":{"type":"string"},"days":{"type":"integer"},"metric":{"type":"boolean"},"unit":{"enum":["c","f"]}}}}},` +
	`{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{}}}}]`

// toolCallResponse is a non-streaming chat answer with tool calls.
type toolCallResponse struct {
	Choices []struct {
		Message struct {
			Content   *string `json:"content"`
			ToolCalls []struct {
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

func TestToolCallDecision(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want string // the tool called; "" for a text answer
	}{
		{name: "the prompt names a tool", body: chatBody("What is the weather? Use get_weather.", weatherTools), want: "get_weather"},
		{name: "the first tool the prompt names, in the order of tools", body: chatBody("get_time or get_weather", weatherTools), want: "get_weather"},
		{name: "auto without a name in the prompt answers text", body: chatBody("Hello there", weatherTools)},
		{name: "required calls the first tool", body: chatBody("Hello there", weatherTools+`,"tool_choice":"required"`), want: "get_weather"},
		{name: "a named tool_choice", body: chatBody("Use get_weather", weatherTools+`,"tool_choice":{"type":"function","function":{"name":"get_time"}}`), want: "get_time"},
		{name: "none answers text", body: chatBody("Use get_weather", weatherTools+`,"tool_choice":"none"`)},
		{name: "no tools answers text", body: chatBody("Use get_weather", "")},
		{
			name: "a conversation ending in a tool result answers text",
			body: `{"model":"m","messages":[{"role":"user","content":"Use get_weather"},` +
				`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},` +
				`{"role":"tool","tool_call_id":"call_1","content":"sunny"}],` + weatherTools + `}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, sim.Config{})
			got := postJSON[toolCallResponse](t, srv, "/v1/chat/completions", tt.body)
			if len(got.Choices) != 1 {
				t.Fatalf("%d choices", len(got.Choices))
			}
			ch := got.Choices[0]
			var name string
			if len(ch.Message.ToolCalls) > 0 {
				name = ch.Message.ToolCalls[0].Function.Name
			}
			if name != tt.want {
				t.Fatalf("called %q, want %q", name, tt.want)
			}
			wantFinish := "length"
			if tt.want != "" {
				wantFinish = "tool_calls"
				if ch.Message.Content != nil {
					t.Errorf("content = %q, want null beside a tool call", *ch.Message.Content)
				}
			}
			if ch.FinishReason != wantFinish {
				t.Errorf("finish_reason = %q, want %q", ch.FinishReason, wantFinish)
			}
		})
	}
}

func TestToolCallArguments(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	body := chatBody("Use get_weather", weatherTools)
	first := postJSON[toolCallResponse](t, srv, "/v1/chat/completions", body)
	again := postJSON[toolCallResponse](t, srv, "/v1/chat/completions", body)
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("the same prompt gave another call (-first +again):\n%s", diff)
	}
	call := first.Choices[0].Message.ToolCalls[0]
	if !strings.HasPrefix(call.ID, "call_") || call.Type != "function" {
		t.Errorf("id %q, type %q", call.ID, call.Type)
	}
	var args struct {
		City   *string `json:"city"`
		Days   *int    `json:"days"`
		Metric *bool   `json:"metric"`
		Unit   *string `json:"unit"`
	}
	dec := json.NewDecoder(strings.NewReader(call.Function.Arguments))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&args); err != nil {
		t.Fatalf("arguments %s: %v", call.Function.Arguments, err)
	}
	if args.City == nil || *args.City == "" || args.Days == nil || *args.Days < 0 || *args.Days > 99 ||
		args.Metric == nil || args.Unit == nil || (*args.Unit != "c" && *args.Unit != "f") {
		t.Errorf("arguments %s: want a word, 0..99, a boolean and c or f", call.Function.Arguments)
	}
	u := first.Usage
	if u == nil || u.PromptTokens != promptTokens("Use get_weather") || u.CompletionTokens < 1 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage %+v", u)
	}
}

func TestToolCallStream(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	body := chatBody("Use get_weather", weatherTools+`,"stream":true,"stream_options":{"include_usage":true}`)
	whole := postJSON[toolCallResponse](t, srv, "/v1/chat/completions", chatBody("Use get_weather", weatherTools))

	resp := send(t.Context(), t, srv.Client(), srv.URL+"/v1/chat/completions", body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events, done, err := readSSE(resp.Body)
	if err != nil || !done {
		t.Fatalf("stream ended with done %v, err %v", done, err)
	}
	type delta struct {
		Choices []struct {
			Delta struct {
				Role      string `json:"role"`
				ToolCalls []struct {
					Index    int    `json:"index"`
					ID       string `json:"id"`
					Function struct {
						Name      string `json:"name"`
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"delta"`
			FinishReason *string `json:"finish_reason"`
		} `json:"choices"`
		Usage *usage `json:"usage"`
	}
	var id, name, args, finish string
	var fragments int
	var u *usage
	for i, ev := range events {
		var d delta
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			t.Fatalf("event %d %s: %v", i, ev.Data, err)
		}
		if d.Usage != nil {
			u = d.Usage
		}
		for _, c := range d.Choices {
			for _, tc := range c.Delta.ToolCalls {
				if tc.Index != 0 {
					t.Errorf("tool call index %d", tc.Index)
				}
				if tc.ID != "" {
					id, name = tc.ID, tc.Function.Name
				}
				args += tc.Function.Arguments
				fragments++
			}
			if c.FinishReason != nil {
				finish = *c.FinishReason
			}
		}
	}
	want := whole.Choices[0].Message.ToolCalls[0]
	if id != want.ID || name != want.Function.Name || args != want.Function.Arguments {
		t.Errorf("streamed call %s %s(%s), want %s %s(%s)", id, name, args, want.ID, want.Function.Name, want.Function.Arguments)
	}
	if fragments < 2 {
		t.Errorf("the arguments came in %d fragments, want one per property", fragments)
	}
	if finish != "tool_calls" {
		t.Errorf("finish_reason %q", finish)
	}
	if u == nil || *u != *whole.Usage {
		t.Errorf("stream usage %+v, want %+v", u, whole.Usage)
	}
}

func TestToolCallErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		extra string
		param string
	}{
		{name: "tool_choice names an unknown tool", extra: weatherTools + `,"tool_choice":{"type":"function","function":{"name":"nope"}}`, param: "tool_choice"},
		{name: "bad tool_choice", extra: weatherTools + `,"tool_choice":"sometimes"`, param: "tool_choice"},
		{name: "a tool without a name", extra: `"tools":[{"type":"function","function":{}}]`, param: "tools"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, sim.Config{})
			resp := send(t.Context(), t, srv.Client(), srv.URL+"/v1/chat/completions", chatBody("Use get_weather", tt.extra))
			b := errorCode(t, resp, http.StatusBadRequest)
			if b.Param == nil || *b.Param != tt.param {
				t.Errorf("param %v, want %q", b.Param, tt.param)
			}
		})
	}
}
