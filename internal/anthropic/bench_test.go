package anthropic_test

import (
	"io"
	"testing"

	"github.com/helexa-ai/helexa-go/internal/anthropic"
)

// BenchmarkStreamText measures one text chunk through the translator
// (decode the chat chunk, write one content_block_delta event).
func BenchmarkStreamText(b *testing.B) {
	req := mustParse(b, streamReq)
	st, err := anthropic.NewStreamTranslator(io.Discard, req)
	if err != nil {
		b.Fatal(err)
	}
	data := []byte(textDelta(" token"))
	b.ReportAllocs()
	for b.Loop() {
		if err := st.Feed(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamToolArgs measures one tool call arguments fragment.
func BenchmarkStreamToolArgs(b *testing.B) {
	req := mustParse(b, streamReq)
	st, err := anthropic.NewStreamTranslator(io.Discard, req)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Feed([]byte(toolDelta(0, "call_1", "f", `{"q":"`))); err != nil {
		b.Fatal(err)
	}
	data := []byte(toolDelta(0, "", "", `abc `))
	b.ReportAllocs()
	for b.Loop() {
		if err := st.Feed(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequest measures ParseRequest + ToChat of a small tool-using
// conversation.
func BenchmarkRequest(b *testing.B) {
	body := []byte(`{"model":"m","max_tokens":512,"system":"You are terse.","tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
		"messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"get_weather","input":{"city":"Paris"}}]},
		{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"18C"}]}]}`)
	b.ReportAllocs()
	for b.Loop() {
		r, err := anthropic.ParseRequest(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := anthropic.ToChat(r); err != nil {
			b.Fatal(err)
		}
	}
}
