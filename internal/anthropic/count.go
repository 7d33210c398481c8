package anthropic

import (
	"net/http"
	"strconv"
)

// PerMessageOverhead is the token overhead counted per message in
// CountTokens, the same as the gateway's OpenAI-side estimate.
const PerMessageOverhead = 4

// CountTokens is the gateway's prompt estimate for r, the same rule as on
// the OpenAI side: the bytes of all text / 4 rounded up, plus
// PerMessageOverhead per message, the system prompt counting as one message
// when present; plus the tool definitions' JSON bytes / 4 rounded up. Text
// is the text blocks, tool_result text and tool_use input JSON; images
// count nothing. The result is at least 1. A nil r counts 1.
func CountTokens(r *Request) int64 {
	if r == nil {
		return 1
	}
	var text, msgs int
	if len(r.System) > 0 {
		msgs++
		for _, s := range r.System {
			text += len(s)
		}
	}
	for _, m := range r.Messages {
		msgs++
		for _, b := range m.Content {
			text += textBytes(&b)
		}
	}
	var tools int
	for _, t := range r.Tools {
		// {"name":"","description":"","input_schema":}, as the client sent it.
		tools += len(`{"name":"","input_schema":}`) + len(t.Name) + len(t.InputSchema)
		if t.Description != "" {
			tools += len(`,"description":""`) + len(t.Description)
		}
	}
	est := int64((text+3)/4) + int64(msgs*PerMessageOverhead) + int64((tools+3)/4)
	return max(est, 1)
}

func textBytes(b *Block) int {
	switch b.Type {
	case BlockText:
		return len(b.Text)
	case BlockToolUse:
		return len(b.Input)
	case BlockToolResult:
		n := 0
		for _, c := range b.Content {
			n += len(c.Text)
		}
		return n
	}
	return 0
}

// WriteCountTokens writes the /v1/messages/count_tokens answer,
// {"input_tokens":n}, with status 200.
func WriteCountTokens(w http.ResponseWriter, n int64) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	b := strconv.AppendInt([]byte(`{"input_tokens":`), n, 10)
	_, _ = w.Write(append(b, "}\n"...))
}

// SetStreamHeaders sets the response headers of a streaming answer:
// Content-Type text/event-stream and Cache-Control no-cache.
func SetStreamHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
}
