package sim

import (
	"strconv"
	"unicode/utf8"
)

// The engine writes its JSON by appending to reusable buffers rather than
// through encoding/json, so that a streamed token costs no allocation.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, quotes included. Invalid UTF-8
// becomes U+FFFD. Generated text needs no escaping (the word list is plain
// ASCII) and is appended as is; this is for strings from the client.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

// appendEscaped appends the JSON escaping of s without quotes.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// appendInt appends v in decimal.
func appendInt(b []byte, v int) []byte { return strconv.AppendInt(b, int64(v), 10) }

// appendUsage appends a chat/completions usage object.
func appendUsage(b []byte, promptTokens, completionTokens int) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = appendInt(b, promptTokens)
	b = append(b, `,"completion_tokens":`...)
	b = appendInt(b, completionTokens)
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, promptTokens+completionTokens)
	return append(b, '}')
}
