package anthropic_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/internal/anthropic"
)

const streamReq = `{"model":"claude-x","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}`

// chunk builds a chat.completion.chunk with one choice.
func chunk(delta, finish, extra string) string {
	return `{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"engine","choices":[{"index":0,"delta":` +
		delta + `,"logprobs":null,"finish_reason":` + finish + extra + `}]}`
}

func toolDelta(index int, id, name, args string) string {
	fn := fmt.Sprintf(`{"arguments":%q}`, args)
	if name != "" {
		fn = fmt.Sprintf(`{"name":%q,"arguments":%q}`, name, args)
	}
	idf := ""
	if id != "" {
		idf = fmt.Sprintf(`"id":%q,"type":"function",`, id)
	}
	return chunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,%s"function":%s}]}`, index, idf, fn), `null`, ``)
}

const usageChunk = `{"id":"chatcmpl-7","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}`

func textDelta(s string) string { return chunk(fmt.Sprintf(`{"content":%q}`, s), `null`, ``) }

func TestStream(t *testing.T) {
	t.Parallel()
	msgStart := `{"type":"message_start","message":{"id":"msg_chatcmpl-7","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":0}}}`
	tests := []struct {
		name    string
		req     string
		in      []string // payloads; "<finish>" calls Finish, "<ping>" calls Ping
		want    [][2]string
		wantErr error
	}{
		{
			name: "text only",
			in: []string{
				chunk(`{"role":"assistant","content":""}`, `null`, ``),
				textDelta("Hello"), textDelta(" wor\"ld\n"),
				chunk(`{}`, `"stop"`, `,"stop_reason":null`),
				usageChunk, "[DONE]",
			},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" wor\"ld\n"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":0}`},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":12,"cache_read_input_tokens":0,"output_tokens":3}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
		{
			name: "text then tool call",
			in: []string{
				textDelta("Let me check."),
				toolDelta(0, "call_1", "get_weather", ""),
				toolDelta(0, "", "", `{"city"`),
				toolDelta(0, "", "", `: "Paris"}`),
				chunk(`{}`, `"tool_calls"`, ``),
				usageChunk, "[DONE]",
			},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":0}`},
				{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_1","name":"get_weather","input":{}}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\""}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":": \"Paris\"}"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":1}`},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":12,"cache_read_input_tokens":0,"output_tokens":3}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
		{
			name: "two tool calls one after the other stream live",
			in: []string{
				toolDelta(0, "call_a", "f", `{"x":1}`),
				toolDelta(1, "call_b", "g", `{"y"`),
				"<ping>",
				toolDelta(1, "", "", `:2}`),
				chunk(`{}`, `"tool_calls"`, ``),
				"<finish>",
			},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"call_a","name":"f","input":{}}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"x\":1}"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":0}`},
				{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_b","name":"g","input":{}}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"y\""}}`},
				{"ping", `{"type":"ping"}`},
				{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":":2}"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":1}`},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":3}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
		{
			name: "two tool calls interleaved",
			in: []string{
				toolDelta(0, "call_a", "get_weather", ""),
				toolDelta(1, "call_b", "get_time", ""),
				toolDelta(0, "", "", `{"city":`),
				toolDelta(1, "", "", `{"tz":`),
				toolDelta(0, "", "", `"Paris"}`),
				toolDelta(1, "", "", `"CET"}`),
				chunk(`{}`, `"tool_calls"`, ``),
				usageChunk, "[DONE]",
			},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"call_a","name":"get_weather","input":{}}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":0}`},
				{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_b","name":"get_time","input":{}}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"tz\":"}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"CET\"}"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":1}`},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":12,"cache_read_input_tokens":0,"output_tokens":3}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
		{
			name: "interleaved incomplete calls held to the end",
			in: []string{
				toolDelta(0, "call_a", "f", `{"a":`),
				toolDelta(1, "call_b", "g", `{"b":2}`),
				toolDelta(0, "", "", `1`),
				chunk(`{}`, `"tool_calls"`, ``),
				"[DONE]",
			},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"call_a","name":"f","input":{}}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"1"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":0}`},
				{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_b","name":"g","input":{}}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"b\":2}"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":1}`},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":3}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
		{
			name: "tool call without index or id",
			in: []string{
				chunk(`{"tool_calls":[{"id":"c1","function":{"name":"f","arguments":"{\"k\":"}}]}`, `null`, ``),
				chunk(`{"tool_calls":[{"function":{"arguments":"true}"}}]}`, `null`, ``),
				chunk(`{"tool_calls":[{"id":"c2","function":{"name":"g","arguments":{"o":1}}}]}`, `"tool_calls"`, ``),
				"[DONE]",
			},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"c1","name":"f","input":{}}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"k\":"}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"true}"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":0}`},
				{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"c2","name":"g","input":{}}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"o\":1}"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":1}`},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":3}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
		{
			name: "usage on the finish chunk, cached tokens",
			in: []string{
				textDelta("ok"),
				`{"id":"chatcmpl-7","choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":{"prompt_tokens":50,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":32}}}`,
				"<finish>",
			},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ok"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":0}`},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"input_tokens":18,"cache_read_input_tokens":32,"output_tokens":1}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
		{
			name: "usage without prompt tokens keeps the estimate",
			in:   []string{textDelta("a"), chunk(`{}`, `"stop"`, ``), `{"id":"chatcmpl-7","choices":[],"usage":{"completion_tokens":9}}`, "[DONE]"},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":0}`},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
		{
			name: "stop sequence",
			req:  `{"model":"claude-x","max_tokens":100,"stream":true,"stop_sequences":["###"],"messages":[{"role":"user","content":"hi"}]}`,
			in:   []string{textDelta("a"), chunk(`{}`, `"stop"`, `,"stop_reason":"###"`), "[DONE]"},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":0}`},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"###"},"usage":{"output_tokens":1}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
		{
			name: "empty answer",
			in:   []string{chunk(`{"role":"assistant","content":""}`, `null`, ``), chunk(`{}`, `"stop"`, ``), usageChunk, "[DONE]"},
			want: [][2]string{
				{"message_start", msgStart},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":12,"cache_read_input_tokens":0,"output_tokens":3}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
		{
			name: "no finish_reason",
			in:   []string{textDelta("Hel"), "<finish>"},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}`},
				{"error", `{"type":"error","error":{"type":"api_error","message":"the model's output stream ended before it finished"}}`},
			},
			wantErr: anthropic.ErrIncomplete,
		},
		{
			name: "DONE without finish_reason",
			in:   []string{textDelta("Hel"), "[DONE]"},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}`},
				{"error", `{"type":"error","error":{"type":"api_error","message":"the model's output stream ended before it finished"}}`},
			},
			wantErr: anthropic.ErrIncomplete,
		},
		{
			name: "ping first",
			in:   []string{"<ping>", textDelta("a"), chunk(`{}`, `"stop"`, ``), "<finish>"},
			want: [][2]string{
				{"message_start", strings.Replace(msgStart, "msg_chatcmpl-7", "msg_fixed", 1)},
				{"ping", `{"type":"ping"}`},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":0}`},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":1}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
		{
			name: "text after a tool call starts a new block",
			in: []string{
				toolDelta(0, "c", "f", `{}`),
				textDelta("done"),
				chunk(`{}`, `"stop"`, ``),
				"<finish>",
			},
			want: [][2]string{
				{"message_start", msgStart},
				{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"c","name":"f","input":{}}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":0}`},
				{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}`},
				{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"done"}}`},
				{"content_block_stop", `{"type":"content_block_stop","index":1}`},
				{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":2}}`},
				{"message_stop", `{"type":"message_stop"}`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := streamReq
			if tt.req != "" {
				req = tt.req
			}
			var out bytes.Buffer
			var opts []anthropic.StreamOption
			if tt.name == "ping first" {
				opts = append(opts, anthropic.WithMessageID("msg_fixed"))
			}
			st, err := anthropic.NewStreamTranslator(&out, mustParse(t, req), opts...)
			if err != nil {
				t.Fatal(err)
			}
			var lastErr error
			for _, in := range tt.in {
				switch in {
				case "<finish>":
					lastErr = st.Finish()
				case "<ping>":
					lastErr = st.Ping()
				default:
					lastErr = st.Feed([]byte(in))
				}
				if lastErr != nil {
					break
				}
			}
			if !errors.Is(lastErr, tt.wantErr) || (lastErr != nil && tt.wantErr == nil) {
				t.Errorf("last error %v, want %v", lastErr, tt.wantErr)
			}
			got, err := parseEvents(out.String())
			if err != nil {
				t.Fatalf("output: %v\n%s", err, out.String())
			}
			if err := checkProtocol(got, true); err != nil {
				t.Errorf("protocol: %v\n%s", err, out.String())
			}
			want := make([]event, len(tt.want))
			for i, w := range tt.want {
				want[i] = ev(t, w[0], w[1])
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("events (-got +want):\n%s", diff)
			}
		})
	}
}

func TestStreamEngineError(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	st, err := anthropic.NewStreamTranslator(&out, mustParse(t, streamReq), anthropic.WithInputTokens(42))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Feed([]byte(textDelta("a"))); err != nil {
		t.Fatal(err)
	}
	err = st.Feed([]byte(`{"error":{"object":"error","message":"CUDA out of memory","type":"InternalServerError","param":null,"code":500}}`))
	var ae *anthropic.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("Feed error %v, want *APIError", err)
	}
	if diff := cmp.Diff(ae, &anthropic.APIError{Status: 500, Type: "api_error", Message: "CUDA out of memory"}); diff != "" {
		t.Errorf("APIError (-got +want):\n%s", diff)
	}
	if err := st.Feed([]byte(textDelta("b"))); !errors.Is(err, anthropic.ErrClosed) {
		t.Errorf("Feed after error: %v, want ErrClosed", err)
	}
	if err := st.Finish(); err != nil {
		t.Errorf("Finish after error: %v", err)
	}
	got, err := parseEvents(out.String())
	if err != nil {
		t.Fatal(err)
	}
	want := []event{
		ev(t, "message_start", `{"type":"message_start","message":{"id":"msg_chatcmpl-7","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":42,"output_tokens":0}}}`),
		ev(t, "content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`),
		ev(t, "content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}`),
		ev(t, "error", `{"type":"error","error":{"type":"api_error","message":"CUDA out of memory"}}`),
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}

func TestStreamAbort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"api error", fmt.Errorf("wrapped: %w", &anthropic.APIError{Status: 529, Message: "busy"}),
			`{"type":"error","error":{"type":"overloaded_error","message":"busy"}}`},
		{"typed api error", &anthropic.APIError{Status: 500, Type: "rate_limit_error", Message: "slow down"},
			`{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`},
		{"deadline", fmt.Errorf("read: %w", context.DeadlineExceeded),
			`{"type":"error","error":{"type":"timeout_error","message":"the model's output stream timed out"}}`},
		{"other", errors.New("read tcp 10.0.0.7:8080: connection reset by peer"),
			`{"type":"error","error":{"type":"api_error","message":"the model's output stream failed"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			st, err := anthropic.NewStreamTranslator(&out, mustParse(t, streamReq))
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Abort(tt.err); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			if err := st.Abort(tt.err); err != nil {
				t.Fatalf("second Abort: %v", err)
			}
			if err := st.Ping(); err != nil {
				t.Fatalf("Ping after Abort: %v", err)
			}
			got, err := parseEvents(out.String())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, []event{ev(t, "error", tt.want)}); diff != "" {
				t.Errorf("events (-got +want):\n%s", diff)
			}
		})
	}
}

func TestStreamAfterEnd(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	st, err := anthropic.NewStreamTranslator(&out, mustParse(t, streamReq))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{textDelta("a"), chunk(`{}`, `"stop"`, ``), "[DONE]"} {
		if err := st.Feed([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	n := out.Len()
	if err := st.Feed([]byte(textDelta("b"))); !errors.Is(err, anthropic.ErrClosed) {
		t.Errorf("Feed after end: %v, want ErrClosed", err)
	}
	if err := st.Finish(); err != nil {
		t.Errorf("Finish after end: %v", err)
	}
	if err := st.Abort(errors.New("x")); err != nil {
		t.Errorf("Abort after end: %v", err)
	}
	if err := st.Ping(); err != nil {
		t.Errorf("Ping after end: %v", err)
	}
	if out.Len() != n {
		t.Errorf("wrote after the end: %q", out.String()[n:])
	}
}

func TestStreamBadChunk(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	st, err := anthropic.NewStreamTranslator(&out, mustParse(t, streamReq))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"choices":`, `{"choices":[{"delta":{"content":5}}]}`, `[1]`} {
		if err := st.Feed([]byte(bad)); !errors.Is(err, anthropic.ErrBadChat) {
			t.Errorf("Feed(%s) = %v, want ErrBadChat", bad, err)
		}
	}
	if err := st.Feed([]byte("  \n")); err != nil {
		t.Errorf("Feed(blank) = %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("wrote %q for bad chunks", out.String())
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("client gone")
}

func TestStreamWriteErrorSticky(t *testing.T) {
	t.Parallel()
	w := &failWriter{}
	st, err := anthropic.NewStreamTranslator(w, mustParse(t, streamReq))
	if err != nil {
		t.Fatal(err)
	}
	err1 := st.Feed([]byte(textDelta("a")))
	if err1 == nil || err1.Error() != "client gone" {
		t.Fatalf("Feed = %v, want the write error", err1)
	}
	for name, f := range map[string]func() error{
		"Feed":   func() error { return st.Feed([]byte(textDelta("b"))) },
		"Ping":   st.Ping,
		"Finish": st.Finish,
		"Abort":  func() error { return st.Abort(errors.New("x")) },
	} {
		if err := f(); err != err1 {
			t.Errorf("%s = %v, want the sticky write error", name, err)
		}
	}
	if w.n != 1 {
		t.Errorf("%d writes, want 1", w.n)
	}
}

func TestStreamFlushes(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	st, err := anthropic.NewStreamTranslator(rec, mustParse(t, streamReq))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Flushed {
		t.Fatal("flushed before any call")
	}
	if err := st.Ping(); err != nil {
		t.Fatal(err)
	}
	if !rec.Flushed {
		t.Error("Ping did not flush")
	}
}

func TestNewStreamTranslatorErrors(t *testing.T) {
	t.Parallel()
	if _, err := anthropic.NewStreamTranslator(nil, &anthropic.Request{}); err == nil {
		t.Error("nil writer: no error")
	}
	if _, err := anthropic.NewStreamTranslator(&bytes.Buffer{}, nil); err == nil {
		t.Error("nil request: no error")
	}
}

// TestStreamOutputTokensCounted: without usage, output_tokens counts the
// chunks that carried output.
func TestStreamOutputTokensCounted(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	st, err := anthropic.NewStreamTranslator(&out, mustParse(t, streamReq))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{textDelta("a"), textDelta(""), textDelta("b"), toolDelta(0, "c", "f", "{"), toolDelta(0, "", "", "}"), chunk(`{}`, `"tool_calls"`, ``)} {
		if err := st.Feed([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Finish(); err != nil {
		t.Fatal(err)
	}
	evs, err := parseEvents(out.String())
	if err != nil {
		t.Fatal(err)
	}
	md := evs[len(evs)-2]
	if diff := cmp.Diff(md, ev(t, "message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":4}}`)); diff != "" {
		t.Errorf("message_delta (-got +want):\n%s", diff)
	}
}

// TestStreamEscaping: control characters, invalid UTF-8 and line
// separators never break an event.
func TestStreamEscaping(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	st, err := anthropic.NewStreamTranslator(&out, mustParse(t, streamReq))
	if err != nil {
		t.Fatal(err)
	}
	text := "a\x00b\x1f\r\n\t\"\\ \u2028\u2029 é 😀 </script>"
	if err := st.Feed([]byte(chunk(`{"content":`+jsonString(t, text)+`}`, `"stop"`, ``))); err != nil {
		t.Fatal(err)
	}
	if err := st.Finish(); err != nil {
		t.Fatal(err)
	}
	evs, err := parseEvents(out.String())
	if err != nil {
		t.Fatalf("%v\n%q", err, out.String())
	}
	got := evs[2].Data.(map[string]any)["delta"].(map[string]any)["text"]
	if got != text {
		t.Errorf("text %q, want %q", got, text)
	}
}
