package sse

import "bytes"

// Usage is the token usage reported by an engine.
type Usage struct {
	// Prompt, Completion and Cached tokens. The Responses API's
	// input_tokens / output_tokens are read into Prompt / Completion.
	Prompt, Completion, Cached int64
}

// Chunk is what Inspect learnt from one JSON payload.
type Chunk struct {
	// Usage holds the usage object's counts when HasUsage.
	Usage    Usage
	HasUsage bool
	// UsageOnly is true for a chunk whose "choices" array is empty and
	// that carries usage: the extra chunk stream_options.include_usage
	// adds, to hide from a client that did not ask for it.
	UsageOnly bool
	// Content is true when the payload carries generated output: a
	// non-empty "choices" array, or a Responses API delta event.
	Content bool
}

// Inspect reads one event payload (a chat/completions chunk, a Responses
// API event, or a whole non-streaming response body). It does not allocate.
func Inspect(data []byte) Chunk {
	var c Chunk
	if obj, ok := valueOf(data, "usage"); ok && len(obj) > 0 && obj[0] == '{' {
		c.HasUsage = true
		c.Usage.Prompt = intField(obj, "prompt_tokens")
		if c.Usage.Prompt == 0 {
			c.Usage.Prompt = intField(obj, "input_tokens")
		}
		c.Usage.Completion = intField(obj, "completion_tokens")
		if c.Usage.Completion == 0 {
			c.Usage.Completion = intField(obj, "output_tokens")
		}
		c.Usage.Cached = intField(obj, "cached_tokens")
	}
	if ch, ok := valueOf(data, "choices"); ok {
		empty := isEmptyArray(ch)
		c.Content = !empty
		c.UsageOnly = empty && c.HasUsage
	} else if t, ok := valueOf(data, "type"); ok && bytes.HasSuffix(bytes.Trim(t, `"`), []byte(".delta")) {
		c.Content = true
	}
	return c
}

// valueOf finds the value of the first "key": member in data and returns it
// (for an object or array, up to its closing bracket; for a scalar, up to
// the next delimiter). A key inside a string never matches: inside JSON
// strings quotes are escaped.
func valueOf(data []byte, key string) ([]byte, bool) {
	for off := 0; off < len(data); {
		i := indexKey(data[off:], key)
		if i < 0 {
			return nil, false
		}
		j := off + i + len(key) + 2
		j = skipWS(data, j)
		if j < len(data) && data[j] == ':' {
			j = skipWS(data, j+1)
			end := valueEnd(data, j)
			return data[j:end], true
		}
		off = j
	}
	return nil, false
}

// indexKey finds `"key"` in data.
func indexKey(data []byte, key string) int {
	for off := 0; ; {
		i := bytes.Index(data[off:], []byte(key))
		if i < 0 {
			return -1
		}
		i += off
		if i > 0 && data[i-1] == '"' && i+len(key) < len(data) && data[i+len(key)] == '"' {
			return i - 1
		}
		off = i + 1
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the end of the JSON value starting at i.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	case '"':
		return stringEnd(b, i)
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
			j++
		}
		return j
	}
}

// stringEnd returns the index just past the string starting at b[i] == '"'.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

func isEmptyArray(v []byte) bool {
	if len(v) < 2 || v[0] != '[' {
		return false
	}
	return skipWS(v, 1) == len(v)-1
}

// intField reads a non-negative integer member anywhere inside obj.
func intField(obj []byte, key string) int64 {
	v, ok := valueOf(obj, key)
	if !ok {
		return 0
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			break
		}
		if n > (1<<62)/10 {
			return n
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
