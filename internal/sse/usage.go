package sse

import "bytes"

// Usage is the token usage reported by an engine.
type Usage struct {
	// Prompt, Completion and Cached tokens. The Responses API's
	// input_tokens / output_tokens are read into Prompt / Completion.
	// Cached are the prompt tokens the engine read from its prompt (KV)
	// cache: prompt_tokens_details.cached_tokens (chat and text
	// completions: OpenAI, vLLM, llama-server) or
	// input_tokens_details.cached_tokens (the Responses API). They are part
	// of Prompt, never more: Inspect clamps them to it.
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
	// Content is true when the payload carries choices (a non-empty
	// "choices" array) or is a Responses API delta event.
	Content bool
	// Outputs counts the choices that carry generated output (text, a
	// content, reasoning or tool call delta, a message), plus one for a
	// Responses API delta event: an engine streams at least one token for
	// each, so their sum over a stream is a lower bound of its tokens.
	Outputs int64
	// Choices counts the "choices", and LengthChoices those whose
	// finish_reason is "length" (they generated the whole bound).
	Choices, LengthChoices int64
}

// Inspect reads one event payload (a chat/completions chunk, a Responses
// API event, or a whole non-streaming response body). It reads only
// members of the top-level object (the usage of a Responses API event is
// in its top-level "response"), so that nothing nested, such as tools or
// metadata a client had echoed back, is taken for the usage; of
// duplicates the last wins. It does not allocate.
func Inspect(data []byte) Chunk {
	var c Chunk
	var usage, resp, choices, typ, delta []byte
	hasChoices := false
	walk(data, func(k, v []byte) {
		switch string(k) {
		case "usage":
			usage = v
		case "response":
			resp = v
		case "choices":
			choices, hasChoices = v, true
		case "type":
			typ = v
		case "delta":
			delta = v
		}
	})
	if (len(usage) == 0 || usage[0] != '{') && len(resp) > 0 {
		usage, _ = member(resp, "usage")
	}
	if len(usage) > 0 && usage[0] == '{' {
		c.HasUsage = true
		c.Usage = readUsage(usage)
	}
	if hasChoices {
		empty := isEmptyArray(choices)
		c.Content = !empty
		c.UsageOnly = empty && c.HasUsage
		if !empty {
			c.choices(choices)
		}
	} else if bytes.HasSuffix(bytes.Trim(typ, `"`), []byte(".delta")) {
		c.Content = true
		if !isEmptyString(delta) {
			c.Outputs = 1
		}
	}
	return c
}

// choices counts the choices of the array arr, those that carry output
// and those that ran to their length.
func (c *Chunk) choices(arr []byte) {
	elements(arr, func(ch []byte) {
		c.Choices++
		output := false
		walk(ch, func(k, v []byte) {
			switch string(k) {
			case "finish_reason":
				if string(v) == `"length"` {
					c.LengthChoices++
				}
			case "text":
				output = output || isString(v) && !isEmptyString(v)
			case "message":
				output = true
			case "delta":
				output = output || deltaOutput(v)
			}
		})
		if output {
			c.Outputs++
		}
	})
}

// deltaOutput reports whether a choice's delta carries generated output.
func deltaOutput(d []byte) bool {
	out := false
	walk(d, func(k, v []byte) {
		switch string(k) {
		case "content", "reasoning_content", "reasoning", "text":
			out = out || isString(v) && !isEmptyString(v)
		case "tool_calls":
			out = out || len(v) > 0 && v[0] == '[' && !isEmptyArray(v)
		}
	})
	return out
}

func isString(v []byte) bool      { return len(v) >= 2 && v[0] == '"' }
func isEmptyString(v []byte) bool { return string(v) == `""` }

// member returns the value of the member key of the JSON object obj, the
// last when there are several (see walk).
func member(obj []byte, key string) ([]byte, bool) {
	var found []byte
	ok := false
	walk(obj, func(k, v []byte) {
		if string(k) == key {
			found, ok = v, true
		}
	})
	return found, ok
}

// walk calls fn with the raw key and the value of each member of the JSON
// object obj, in order; it looks at the object's own members only, never
// inside their values. Malformed input ends the walk.
func walk(obj []byte, fn func(k, v []byte)) {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	for i++; ; i++ {
		i = skipWS(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return
		}
		ke := stringEnd(obj, i)
		k := obj[i+1 : max(ke-1, i+1)]
		i = skipWS(obj, ke)
		if i >= len(obj) || obj[i] != ':' {
			return
		}
		i = skipWS(obj, i+1)
		ve := valueEnd(obj, i)
		if ve == i {
			return
		}
		fn(k, obj[i:ve])
		i = skipWS(obj, ve)
		if i >= len(obj) || obj[i] != ',' {
			return
		}
	}
}

// elements calls fn with each element of the JSON array arr.
func elements(arr []byte, fn func([]byte)) {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return
	}
	for i++; ; i++ {
		i = skipWS(arr, i)
		if i >= len(arr) || arr[i] == ']' {
			return
		}
		ve := valueEnd(arr, i)
		if ve == i {
			return
		}
		fn(arr[i:ve])
		i = skipWS(arr, ve)
		if i >= len(arr) || arr[i] != ',' {
			return
		}
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

// readUsage reads the counts of a usage object. Like the rest of
// Inspect it reads the object's own members (and the own members of its
// *_tokens_details objects), never anything nested deeper, and of
// duplicates the last wins, as the JSON decoders of clients do. A count
// that is not a non-negative integer reads as 0; the cached tokens are
// clamped to the prompt tokens, so that an engine cannot report more of
// the prompt cached than the prompt it counted.
func readUsage(obj []byte) Usage {
	var u Usage
	var input, output, inputCached int64
	walk(obj, func(k, v []byte) {
		switch string(k) {
		case "prompt_tokens":
			u.Prompt = count(v)
		case "input_tokens":
			input = count(v)
		case "completion_tokens":
			u.Completion = count(v)
		case "output_tokens":
			output = count(v)
		case "prompt_tokens_details":
			u.Cached = cachedOf(v)
		case "input_tokens_details":
			inputCached = cachedOf(v)
		}
	})
	if u.Prompt == 0 {
		u.Prompt = input
	}
	if u.Completion == 0 {
		u.Completion = output
	}
	if u.Cached == 0 {
		u.Cached = inputCached
	}
	u.Cached = min(u.Cached, u.Prompt)
	return u
}

// cachedOf reads the cached_tokens member of a *_tokens_details object;
// 0 when it has none or is not an object (null).
func cachedOf(details []byte) int64 {
	v, ok := member(details, "cached_tokens")
	if !ok {
		return 0
	}
	return count(v)
}

// count reads a token count: the leading digits of a JSON number, so that
// 12 and 12.0 read 12 and anything negative or not a number reads 0,
// saturating near 2^62.
func count(v []byte) int64 {
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
