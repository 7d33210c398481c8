package sim_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron/sim"
)

type responseUsage struct {
	InputTokens        int      `json:"input_tokens"`
	OutputTokens       int      `json:"output_tokens"`
	TotalTokens        int      `json:"total_tokens"`
	InputTokensDetails *details `json:"input_tokens_details"`
}

type responseObject struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	CreatedAt int64  `json:"created_at"`
	Status    string `json:"status"`
	Model     string `json:"model"`
	Output    []struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Role    string `json:"role"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	} `json:"output"`
	Usage *responseUsage `json:"usage"`
}

// text returns the output text of r, checking its shape.
func (r responseObject) text(t *testing.T) string {
	t.Helper()
	if len(r.Output) != 1 || r.Output[0].Type != "message" || r.Output[0].Role != "assistant" ||
		len(r.Output[0].Content) != 1 || r.Output[0].Content[0].Type != "output_text" {
		t.Fatalf("output %+v, want one message with one output_text part", r.Output)
	}
	return r.Output[0].Content[0].Text
}

func TestResponses(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	// The same conversation as chat messages gives the same answer.
	chat := postJSON[chatResponse](t, srv, "/v1/chat/completions",
		`{"model":"r","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi there"}],"max_tokens":5}`)
	tests := []struct {
		name string
		body string
	}{
		{name: "string input", body: `{"model":"r","instructions":"Be brief.","input":"Hi there","max_output_tokens":5}`},
		{name: "item input", body: `{"model":"r","instructions":"Be brief.","input":[{"role":"user","content":[{"type":"input_text","text":"Hi there"}]}],"max_output_tokens":5}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := postJSON[responseObject](t, srv, "/v1/responses", tt.body)
			if got.Object != "response" || got.Status != "completed" || got.Model != "r" || !strings.HasPrefix(got.ID, "resp_") || got.CreatedAt == 0 {
				t.Errorf("response fields %+v", got)
			}
			if text := got.text(t); text != chat.Choices[0].Message.Content {
				t.Errorf("text %q, want the chat answer %q", text, chat.Choices[0].Message.Content)
			}
			want := &responseUsage{InputTokens: chat.Usage.PromptTokens, OutputTokens: 5, TotalTokens: chat.Usage.PromptTokens + 5}
			if diff := cmp.Diff(got.Usage, want); diff != "" {
				t.Errorf("usage (-got +want):\n%s", diff)
			}
		})
	}
	t.Run("default length", func(t *testing.T) {
		t.Parallel()
		got := postJSON[responseObject](t, srv, "/v1/responses", `{"input":"x"}`)
		if n := len(strings.Fields(got.text(t))); n != sim.DefaultMaxTokens || got.Usage.OutputTokens != n {
			t.Errorf("%d words, %d output tokens; want %d", n, got.Usage.OutputTokens, sim.DefaultMaxTokens)
		}
	})
}

func TestResponsesStreaming(t *testing.T) {
	t.Parallel()
	srv := newServer(t, sim.Config{})
	plain := postJSON[responseObject](t, srv, "/v1/responses", `{"model":"r","input":"Hi","max_output_tokens":4}`)
	resp := send(t.Context(), t, srv.Client(), srv.URL+"/v1/responses", `{"model":"r","input":"Hi","max_output_tokens":4,"stream":true}`)
	events, done, err := readSSE(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if done {
		t.Error("a Responses stream has no [DONE]")
	}
	var types []string
	var deltas strings.Builder
	var completed struct {
		Response responseObject `json:"response"`
	}
	for i, ev := range events {
		var head struct {
			Type     string `json:"type"`
			Sequence int    `json:"sequence_number"`
			Delta    string `json:"delta"`
			Text     string `json:"text"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &head); err != nil {
			t.Fatalf("event %d %q: %v", i, ev.Data, err)
		}
		if head.Type != ev.Event || head.Sequence != i {
			t.Errorf("event %d: event line %q, type %q, sequence %d", i, ev.Event, head.Type, head.Sequence)
		}
		types = append(types, head.Type)
		switch head.Type {
		case "response.output_text.delta":
			deltas.WriteString(head.Delta)
		case "response.output_text.done":
			if head.Text != plain.text(t) {
				t.Errorf("output_text.done text %q, want %q", head.Text, plain.text(t))
			}
		case "response.completed":
			if err := json.Unmarshal([]byte(ev.Data), &completed); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := []string{
		"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
	}
	if diff := cmp.Diff(types, want); diff != "" {
		t.Errorf("event types (-got +want):\n%s", diff)
	}
	if deltas.String() != plain.text(t) {
		t.Errorf("deltas %q, want %q", deltas.String(), plain.text(t))
	}
	if completed.Response.Status != "completed" || completed.Response.text(t) != plain.text(t) {
		t.Errorf("completed response %+v", completed.Response)
	}
	if diff := cmp.Diff(completed.Response.Usage, plain.Usage); diff != "" {
		t.Errorf("completed usage (-got +want):\n%s", diff)
	}
}
