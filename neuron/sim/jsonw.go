package sim

import "strconv"

// The engine writes its JSON by appending to reusable buffers rather than
// through encoding/json, so that a streamed token costs no allocation;
// strings from the client are escaped by internal/jsonw.

const hexDigits = "0123456789abcdef"

// appendInt appends v in decimal.
func appendInt(b []byte, v int) []byte { return strconv.AppendInt(b, int64(v), 10) }

// appendUsage appends a chat/completions usage object, with
// prompt_tokens_details.cached_tokens under a GPU model.
func appendUsage(b []byte, u usage) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = appendInt(b, u.prompt)
	b = append(b, `,"completion_tokens":`...)
	b = appendInt(b, u.completion)
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, u.prompt+u.completion)
	if u.details {
		b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
		b = appendInt(b, u.cached)
		b = append(b, '}')
	}
	return append(b, '}')
}
