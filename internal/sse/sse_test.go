package sse_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/internal/sse"
)

func readAll(t *testing.T, r io.Reader) []string {
	t.Helper()
	sr := sse.NewReader(r)
	var got []string
	for {
		ev, err := sr.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		got = append(got, string(ev))
	}
}

func TestReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "two events", in: "data: a\n\ndata: b\n\n", want: []string{"data: a\n\n", "data: b\n\n"}},
		{name: "crlf", in: "data: a\r\n\r\nevent: x\r\ndata: b\r\n\r\n", want: []string{"data: a\r\n\r\n", "event: x\r\ndata: b\r\n\r\n"}},
		{name: "comment and stray blank", in: ": ping\n\n\n\ndata: [DONE]\n\n", want: []string{": ping\n\n", "data: [DONE]\n\n"}},
		{name: "unterminated last", in: "data: a\n\ndata: b", want: []string{"data: a\n\n", "data: b"}},
		{name: "long line", in: "data: " + strings.Repeat("x", 100<<10) + "\n\n", want: []string{"data: " + strings.Repeat("x", 100<<10) + "\n\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(readAll(t, strings.NewReader(tt.in)), tt.want); diff != "" {
				t.Errorf("events (-got +want):\n%s", diff)
			}
			// Byte-at-a-time delivery gives the same events.
			if diff := cmp.Diff(readAll(t, iotest.OneByteReader(strings.NewReader(tt.in))), tt.want); diff != "" {
				t.Errorf("events one byte at a time (-got +want):\n%s", diff)
			}
		})
	}
}

func TestReaderTooLong(t *testing.T) {
	t.Parallel()
	r := sse.NewReader(strings.NewReader("data: " + strings.Repeat("x", sse.MaxEventBytes) + "\n\n"))
	if _, err := r.Next(); !errors.Is(err, sse.ErrTooLong) {
		t.Fatalf("Next = %v, want ErrTooLong", err)
	}
}

func TestDataAndEventName(t *testing.T) {
	t.Parallel()
	ev := []byte("event: response.completed\r\ndata: {\"a\":1}\r\n\r\n")
	if got := string(sse.Data(ev)); got != `{"a":1}` {
		t.Errorf("Data = %q", got)
	}
	if got := string(sse.EventName(ev)); got != "response.completed" {
		t.Errorf("EventName = %q", got)
	}
	if sse.Data([]byte(": ping\n\n")) != nil {
		t.Error("Data of a comment is not nil")
	}
	if !sse.IsDone([]byte("[DONE]")) || sse.IsDone([]byte(`{"a":1}`)) {
		t.Error("IsDone wrong")
	}
}

func TestInspect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want sse.Chunk
	}{
		{name: "content chunk", in: `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi \"usage\": 5"}}]}`,
			want: sse.Chunk{Content: true, Outputs: 1, Choices: 1}},
		{name: "usage chunk", in: `{"id":"c","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":3}}}`,
			want: sse.Chunk{HasUsage: true, UsageOnly: true, Usage: sse.Usage{Prompt: 12, Completion: 34, Cached: 3}}},
		{name: "usage null", in: `{"choices":[{"delta":{}}],"usage":null}`, want: sse.Chunk{Content: true, Choices: 1}},
		{name: "final chunk with usage and choices", in: `{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}`,
			want: sse.Chunk{Content: true, HasUsage: true, Usage: sse.Usage{Prompt: 1, Completion: 2}, Choices: 1}},
		{name: "non-streaming body", in: "{\n  \"choices\": [ {\"message\":{\"content\":\"x\"}} ],\n  \"usage\": { \"prompt_tokens\" : 7, \"completion_tokens\": 8 }\n}",
			want: sse.Chunk{Content: true, HasUsage: true, Usage: sse.Usage{Prompt: 7, Completion: 8}, Outputs: 1, Choices: 1}},
		{name: "responses delta", in: `{"type":"response.output_text.delta","delta":"x"}`, want: sse.Chunk{Content: true, Outputs: 1}},
		{name: "responses completed", in: `{"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":6,"input_tokens_details":{"cached_tokens":1}}}}`,
			want: sse.Chunk{HasUsage: true, Usage: sse.Usage{Prompt: 5, Completion: 6, Cached: 1}}},
		{name: "content word usage", in: `{"choices":[{"delta":{"content":"usage"}}]}`, want: sse.Chunk{Content: true, Outputs: 1, Choices: 1}},
		{name: "garbage", in: `not json "usage": {`, want: sse.Chunk{}},
		{name: "nested usage is not the usage", in: `{"tools":[{"parameters":{"usage":{"prompt_tokens":0,"completion_tokens":1}}}],"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":9,"completion_tokens":900}}`,
			want: sse.Chunk{Content: true, HasUsage: true, Usage: sse.Usage{Prompt: 9, Completion: 900}, Outputs: 1, Choices: 1}},
		{name: "nested usage alone", in: `{"metadata":{"usage":{"completion_tokens":1}},"choices":[{"message":{"content":"x"}}]}`,
			want: sse.Chunk{Content: true, Outputs: 1, Choices: 1}},
		{name: "responses created has null usage and echoed tools", in: `{"type":"response.created","response":{"tools":[{"parameters":{"usage":{"output_tokens":1}}}],"usage":null}}`,
			want: sse.Chunk{}},
		{name: "last usage of duplicates", in: `{"choices":[],"usage":{"completion_tokens":1},"usage":{"completion_tokens":50}}`,
			want: sse.Chunk{HasUsage: true, UsageOnly: true, Usage: sse.Usage{Completion: 50}}},
		{name: "llama-server answer with a cache hit", in: `{"choices":[{"finish_reason":"length","index":0,"message":{"role":"assistant","content":"x"}}],"object":"chat.completion","usage":{"completion_tokens":4,"prompt_tokens":63,"total_tokens":67,"prompt_tokens_details":{"cached_tokens":62}},"timings":{"cache_n":62,"prompt_n":1}}`,
			want: sse.Chunk{Content: true, HasUsage: true, Usage: sse.Usage{Prompt: 63, Completion: 4, Cached: 62}, Outputs: 1, Choices: 1, LengthChoices: 1}},
		{name: "cached tokens clamped to the prompt", in: `{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1000000}}}`,
			want: sse.Chunk{HasUsage: true, UsageOnly: true, Usage: sse.Usage{Prompt: 10, Completion: 2, Cached: 10}}},
		{name: "cached tokens without prompt tokens", in: `{"choices":[],"usage":{"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":5}}}`,
			want: sse.Chunk{HasUsage: true, UsageOnly: true, Usage: sse.Usage{Completion: 2}}},
		{name: "negative and non-numeric cached tokens", in: `{"choices":[],"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":-5}},"x":{"usage":{"prompt_tokens_details":{"cached_tokens":"7"}}}}`,
			want: sse.Chunk{HasUsage: true, UsageOnly: true, Usage: sse.Usage{Prompt: 10}}},
		{name: "null details", in: `{"choices":[],"usage":{"prompt_tokens":10,"prompt_tokens_details":null}}`,
			want: sse.Chunk{HasUsage: true, UsageOnly: true, Usage: sse.Usage{Prompt: 10}}},
		{name: "cached tokens nested deeper are not read", in: `{"choices":[],"usage":{"prompt_tokens":10,"extra":{"cached_tokens":9,"prompt_tokens":1},"prompt_tokens_details":{"audio":{"cached_tokens":8}}}}`,
			want: sse.Chunk{HasUsage: true, UsageOnly: true, Usage: sse.Usage{Prompt: 10}}},
		{name: "last of duplicate counts", in: `{"choices":[],"usage":{"prompt_tokens":1,"prompt_tokens":10,"completion_tokens":9,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":6},"prompt_tokens_details":{"cached_tokens":4,"cached_tokens":8}}}`,
			want: sse.Chunk{HasUsage: true, UsageOnly: true, Usage: sse.Usage{Prompt: 10, Completion: 3, Cached: 8}}},
		{name: "responses cached tokens clamped", in: `{"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":6,"input_tokens_details":{"cached_tokens":50}}}}`,
			want: sse.Chunk{HasUsage: true, Usage: sse.Usage{Prompt: 5, Completion: 6, Cached: 5}}},
		{name: "choices of many", in: `{"choices":[{"index":0,"text":"a","finish_reason":"length"},{"index":1,"text":"","finish_reason":"stop"},{"index":2,"delta":{"tool_calls":[{"id":"t"}]}},{"index":3,"delta":{"role":"assistant","content":""}}]}`,
			want: sse.Chunk{Content: true, Outputs: 2, Choices: 4, LengthChoices: 1}},
		{name: "empty", in: ``, want: sse.Chunk{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(sse.Inspect([]byte(tt.in)), tt.want); diff != "" {
				t.Errorf("Inspect (-got +want):\n%s", diff)
			}
		})
	}
}

func FuzzInspect(f *testing.F) {
	f.Add([]byte(`{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34}}`))
	f.Add([]byte(`{"type":"response.completed","response":{"usage":{"input_tokens":5}}}`))
	f.Add([]byte(`{"choices":[],"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":9}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := sse.Inspect(data)
		if c.Usage.Prompt < 0 || c.Usage.Completion < 0 || c.Usage.Cached < 0 {
			t.Fatalf("negative usage %+v", c.Usage)
		}
		if c.Usage.Cached > c.Usage.Prompt {
			t.Fatalf("usage %+v: more cached than prompt tokens", c.Usage)
		}
		sr := sse.NewReader(strings.NewReader(string(data)))
		for {
			if _, err := sr.Next(); err != nil {
				break
			}
		}
	})
}

// BenchmarkInspectChunk is the per-chunk cost of the usage scan on a
// content chunk (target: 0 allocations).
func BenchmarkInspectChunk(b *testing.B) {
	data := []byte(`{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1700000000,"model":"llama-3.1-8b-instruct","choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}`)
	b.ReportAllocs()
	for b.Loop() {
		_ = sse.Inspect(data)
	}
}

// BenchmarkReaderNext is the per-event cost of splitting a stream.
func BenchmarkReaderNext(b *testing.B) {
	ev := "data: " + `{"id":"chatcmpl-123","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" token"}}]}` + "\n\n"
	stream := strings.Repeat(ev, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(ev)))
	rd := strings.NewReader(stream)
	sr := sse.NewReader(rd)
	for b.Loop() {
		if _, err := sr.Next(); err != nil {
			rd.Reset(stream)
			sr = sse.NewReader(rd)
		}
	}
}
