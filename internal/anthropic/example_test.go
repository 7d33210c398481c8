package anthropic_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"time"

	"github.com/helexa-ai/helexa-go/internal/anthropic"
)

func ExampleToChat() {
	req, err := anthropic.ParseRequest([]byte(`{
		"model": "qwen3-8b", "max_tokens": 256,
		"system": "Answer in one word.",
		"messages": [{"role": "user", "content": "Capital of France?"}]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := anthropic.ToChat(req)
	fmt.Println(string(body))
	// Output:
	// {"model":"qwen3-8b","messages":[{"role":"system","content":"Answer in one word."},{"role":"user","content":"Capital of France?"}],"max_tokens":256}
}

func ExampleParseRequest_error() {
	_, err := anthropic.ParseRequest([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	fmt.Println(err)
	// Output:
	// max_tokens: field required
}

func ExampleFromChat() {
	req, _ := anthropic.ParseRequest([]byte(`{"model":"qwen3-8b","max_tokens":256,"messages":[{"role":"user","content":"Capital of France?"}]}`))
	msg, _ := anthropic.FromChat([]byte(`{"id":"chatcmpl-1","choices":[{"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":2}}`), req)
	fmt.Println(string(msg))
	// Output:
	// {"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"qwen3-8b","content":[{"type":"text","text":"Paris."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":14,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":2}}
}

func ExampleStreamTranslator() {
	req, _ := anthropic.ParseRequest([]byte(`{"model":"qwen3-8b","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"Capital of France?"}]}`))
	st, _ := anthropic.NewStreamTranslator(os.Stdout, req, anthropic.WithInputTokens(14))
	for _, data := range []string{
		`{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":"Paris."},"finish_reason":null}]}`,
		`{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
		`{"id":"c1","choices":[],"usage":{"prompt_tokens":14,"completion_tokens":2}}`,
		`[DONE]`,
	} {
		if err := st.Feed([]byte(data)); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Output:
	// event: message_start
	// data: {"type":"message_start","message":{"id":"msg_c1","type":"message","role":"assistant","model":"qwen3-8b","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":14,"output_tokens":0}}}
	//
	// event: content_block_start
	// data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
	//
	// event: content_block_delta
	// data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Paris."}}
	//
	// event: content_block_stop
	// data: {"type":"content_block_stop","index":0}
	//
	// event: message_delta
	// data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":14,"cache_read_input_tokens":0,"output_tokens":2}}
	//
	// event: message_stop
	// data: {"type":"message_stop"}
}

func ExampleWriteError() {
	rec := httptest.NewRecorder()
	anthropic.WriteError(rec, 429, "", "rate limit exceeded", 3*time.Second)
	fmt.Println(rec.Code, rec.Header().Get("Retry-After"))
	fmt.Print(rec.Body.String())
	// Output:
	// 429 3
	// {"type":"error","error":{"type":"rate_limit_error","message":"rate limit exceeded"}}
}

func ExampleFromOpenAIError() {
	typ, msg := anthropic.FromOpenAIError(503, []byte(`{"error":{"message":"no healthy neuron for model","type":"server_error","code":"service_unavailable"}}`))
	fmt.Println(typ, "-", msg)
	// Output:
	// overloaded_error - no healthy neuron for model
}
