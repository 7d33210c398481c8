package redact_test

import (
	"testing"

	"github.com/helexa-ai/helexa-go/internal/redact"
)

func TestFind(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in    string
		dirty bool
	}{
		{"engine unreachable: read tcp 127.0.0.1:22768->127.0.0.1:22501: connection reset by peer", true},
		{"dial tcp gpu-01.internal:31400: connect: connection refused", true},
		{"failed to load /models/llama/model.gguf", true},
		{"open ./weights/x.bin: no such file", true},
		{"see http://10.0.0.5/x", true},
		{"listen on [::1]:8080", true},
		{"unexpected EOF", true},
		{"neuron: EOF", true},
		{`C:\models\x.gguf`, true},
		{"the neuron serving the model could not be reached", false},
		{"model llama-3.1-8b-instruct failed to load: model_load_failed", false},
		{"This model's maximum context length is 4096 tokens. However, your messages resulted in 5000 tokens.", false},
		{"max_tokens: 100 output tokens asked for, over the 64 that model chat-a generates at most", false},
		{"the key \"model\" appears twice in one object (at byte 33), which decoders read differently", false},
		{"the key's balance does not cover this request (up to 71 needed, 5 left)", false},
		{"model still loading: chat-a did not become ready within 1m0s; the load goes on (retry after 7s)", false},
		{"request body over 4096 bytes", false},
		{"models/llama is not a path here", false},
		{"Qwen/Qwen2.5-7B-Instruct", false},
		{"ratio 3:2 at 12:30", false},
	} {
		if got := redact.Find(tt.in); (got != nil) != tt.dirty || redact.Clean(tt.in) == tt.dirty {
			t.Errorf("Find(%q) = %q, want dirty %v", tt.in, got, tt.dirty)
		}
	}
}
