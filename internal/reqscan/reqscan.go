// Package reqscan reads the few fields the gateway needs from an inference
// request body (model, stream, the maximum output, n, stream_options and the
// prompt text for the estimate) in one pass over the bytes, without decoding
// the whole document, and splices edits (model alias, usage request, max
// tokens) back into the body without re-encoding it.
package reqscan

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Span is a byte range [Start, End) of the body. The zero Span means absent.
type Span struct{ Start, End int }

// Present reports whether the span was found.
func (s Span) Present() bool { return s.End > s.Start }

// Request is what Scan found. Spans index into the scanned body.
type Request struct {
	// Model is the "model" string, unescaped. Empty when absent.
	Model     string
	ModelSpan Span
	// Stream is the "stream" flag.
	Stream bool
	// MaxTokens is the maximum output the client asked for, from
	// max_completion_tokens, max_tokens or max_output_tokens (in that order
	// of preference); 0 when none was given.
	MaxTokens int64
	// MaxTokensSpans holds the value spans of max_tokens,
	// max_completion_tokens and max_output_tokens, indexed by MaxField*.
	MaxTokensSpans [3]Span
	// N is the "n" parameter (default 1).
	N int64
	// BestOf is the "best_of" parameter of a completion (0 when absent):
	// how many candidates the engine generates to return the best N.
	BestOf int64
	// StreamOptions is the span of the "stream_options" object value.
	StreamOptions Span
	// IncludeUsage is stream_options.include_usage.
	IncludeUsage     bool
	IncludeUsageSpan Span
	// streamOptionFields counts the fields of stream_options.
	streamOptionFields int
	// Messages counts the entries of "messages"; MessageChars counts the
	// bytes of their text (string content and text parts), plus a string
	// "system" (Anthropic), a string "prompt" or "input".
	Messages     int
	MessageChars int
	// Object is the span of the top-level object, braces included.
	Object Span
	// Fields counts the top-level fields.
	Fields int
}

// Indexes into Request.MaxTokensSpans.
const (
	MaxFieldMaxTokens           = 0 // max_tokens
	MaxFieldMaxCompletionTokens = 1 // max_completion_tokens
	MaxFieldMaxOutputTokens     = 2 // max_output_tokens
)

// PerMessageOverhead is the token overhead counted for each message in the
// prompt estimate (role markers and separators).
const PerMessageOverhead = 4

// PromptEstimate returns the estimated prompt tokens: message text / 4 plus
// PerMessageOverhead per message, or body bytes / 4 when there are no
// messages. It is never below 1.
func (r *Request) PromptEstimate(bodyLen int) int64 {
	var est int64
	if r.Messages > 0 {
		est = int64((r.MessageChars+3)/4) + int64(r.Messages*PerMessageOverhead)
	} else {
		est = int64((bodyLen + 3) / 4)
	}
	return max(est, 1)
}

// Prompt bound overheads: the tokens a chat template may add around the
// text it is given, per message and once.
const (
	boundPerMessage = 8
	boundBase       = 16
)

// PromptBound returns an upper bound of the prompt tokens of a body of
// bodyLen bytes: the body's bytes, plus what a chat template may add per
// message and once. Every prompt token comes from the body (messages,
// system, tools) or from the template, and a tokenizer whose every token
// covers at least one byte of its text (byte-level BPE; SentencePiece with
// byte fallback) cannot make more tokens than bytes. Images given by URL
// are the exception: their tokens are not in the body.
func (r *Request) PromptBound(bodyLen int) int64 {
	return int64(bodyLen) + int64(r.Messages)*boundPerMessage + boundBase
}

// Sequences is how many outputs the engine generates for the request: N,
// or BestOf when that is more.
func (r *Request) Sequences() int64 { return max(r.N, r.BestOf, 1) }

// Error is a request body the scanner refuses. Field names the offending
// top-level field when there is one.
type Error struct {
	Field  string
	Offset int
	Msg    string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("invalid request body: %s: %s", e.Field, e.Msg)
	}
	return fmt.Sprintf("invalid request body: %s (at byte %d)", e.Msg, e.Offset)
}

// ErrNotObject is returned (wrapped in *Error) when the body is not a JSON object.
var ErrNotObject = errors.New("reqscan: body is not a JSON object")

// Scan reads body into r. It checks that body is valid UTF-8 and one JSON
// object, and that the fields it reads have the right types. It does not
// allocate except for the model string when it contains escapes.
func Scan(body []byte, r *Request) error {
	*r = Request{N: 1}
	if !utf8.Valid(body) {
		return &Error{Msg: "body is not valid UTF-8"}
	}
	s := scanner{b: body}
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return &Error{Offset: s.i, Msg: "body must be a JSON object"}
	}
	start := s.i
	if err := s.object(r); err != nil {
		return err
	}
	r.Object = Span{start, s.i}
	s.ws()
	if s.i != len(s.b) {
		return &Error{Offset: s.i, Msg: "unexpected data after the JSON object"}
	}
	switch {
	case r.MaxTokensSpans[MaxFieldMaxCompletionTokens].Present():
		r.MaxTokens = mustInt(body, r.MaxTokensSpans[MaxFieldMaxCompletionTokens])
	case r.MaxTokensSpans[MaxFieldMaxTokens].Present():
		r.MaxTokens = mustInt(body, r.MaxTokensSpans[MaxFieldMaxTokens])
	case r.MaxTokensSpans[MaxFieldMaxOutputTokens].Present():
		r.MaxTokens = mustInt(body, r.MaxTokensSpans[MaxFieldMaxOutputTokens])
	}
	return nil
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) errf(format string, a ...any) error {
	return &Error{Offset: s.i, Msg: fmt.Sprintf(format, a...)}
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object scans the top-level object, dispatching on the keys it knows.
func (s *scanner) object(r *Request) error {
	return s.members(func(key []byte, esc bool) error {
		r.Fields++
		if esc {
			key = nil // escaped keys are never ones we read
		}
		return s.field(r, key, s.i)
	})
}

// members scans an object starting at s.i ('{'), calling fn with s.i at
// each member's value; fn must scan the value.
func (s *scanner) members(fn func(key []byte, esc bool) error) error {
	s.i++ // '{'
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		ks, ke, esc, err := s.str()
		if err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.errf("expected ':' after object key")
		}
		s.i++
		s.ws()
		if err := fn(s.b[ks:ke], esc); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.errf("unexpected end of body")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errf("expected ',' or '}' in object")
		}
	}
}

// elements scans an array starting at s.i ('['), calling fn with s.i at
// each element; fn must scan the element.
func (s *scanner) elements(fn func() error) error {
	s.i++ // '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if err := fn(); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.errf("unexpected end of body")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.errf("expected ',' or ']' in array")
		}
	}
}

// field scans the value of one top-level field starting at s.i.
func (s *scanner) field(r *Request, key []byte, vs int) error {
	switch string(key) {
	case "model":
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			if err := s.skip(); err != nil {
				return err
			}
			return &Error{Field: "model", Offset: vs, Msg: "must be a string"}
		}
		ss, se, esc, err := s.str()
		if err != nil {
			return err
		}
		r.ModelSpan = Span{vs, s.i}
		if esc {
			m, err := strconv.Unquote(string(s.b[vs:s.i]))
			if err != nil {
				return &Error{Field: "model", Offset: vs, Msg: "invalid string"}
			}
			r.Model = m
		} else {
			r.Model = string(s.b[ss:se])
		}
		return nil
	case "stream":
		v, err := s.boolean("stream")
		r.Stream = v
		return err
	case "max_tokens", "max_completion_tokens", "max_output_tokens":
		idx, name := MaxFieldMaxTokens, "max_tokens"
		if string(key) == "max_completion_tokens" {
			idx, name = MaxFieldMaxCompletionTokens, "max_completion_tokens"
		} else if string(key) == "max_output_tokens" {
			idx, name = MaxFieldMaxOutputTokens, "max_output_tokens"
		}
		if s.lit("null") {
			return nil
		}
		n, err := s.integer(name)
		if err != nil {
			return err
		}
		if n < 1 {
			return &Error{Field: name, Offset: vs, Msg: "must be a positive integer"}
		}
		r.MaxTokensSpans[idx] = Span{vs, s.i}
		return nil
	case "n":
		return s.count("n", vs, &r.N)
	case "best_of":
		return s.count("best_of", vs, &r.BestOf)
	case "stream_options":
		if s.lit("null") {
			return nil
		}
		if s.i >= len(s.b) || s.b[s.i] != '{' {
			return &Error{Field: "stream_options", Offset: vs, Msg: "must be an object"}
		}
		return s.streamOptions(r, vs)
	case "messages":
		if s.i >= len(s.b) || s.b[s.i] != '[' {
			if err := s.skip(); err != nil {
				return err
			}
			return &Error{Field: "messages", Offset: vs, Msg: "must be an array"}
		}
		return s.messages(r)
	case "system", "prompt", "input":
		if s.i < len(s.b) && s.b[s.i] == '"' {
			ss, se, _, err := s.str()
			r.MessageChars += se - ss
			return err
		}
		if string(key) == "system" {
			return s.textParts(r)
		}
		return s.skip()
	default:
		return s.skip()
	}
}

func (s *scanner) streamOptions(r *Request, vs int) error {
	err := s.members(func(key []byte, _ bool) error {
		r.streamOptionFields++
		if string(key) != "include_usage" {
			return s.skip()
		}
		us := s.i
		v, err := s.boolean("stream_options.include_usage")
		if err != nil {
			return err
		}
		r.IncludeUsage = v
		r.IncludeUsageSpan = Span{us, s.i}
		return nil
	})
	if err == nil {
		r.StreamOptions = Span{vs, s.i}
	}
	return err
}

// messages scans the messages array, counting entries and text bytes.
func (s *scanner) messages(r *Request) error {
	return s.elements(func() error {
		if s.i >= len(s.b) || s.b[s.i] != '{' {
			return &Error{Field: "messages", Offset: s.i, Msg: "each message must be an object"}
		}
		r.Messages++
		return s.message(r)
	})
}

// message scans one message object; "content" text counts toward the prompt.
func (s *scanner) message(r *Request) error {
	return s.members(func(key []byte, _ bool) error {
		if string(key) != "content" {
			return s.skip()
		}
		if s.i < len(s.b) && s.b[s.i] == '"' {
			return s.text(r)
		}
		return s.textParts(r)
	})
}

// textParts scans a content value that is not a string: an array of parts
// whose "text" strings count toward the prompt. Anything else is skipped.
func (s *scanner) textParts(r *Request) error {
	if s.i >= len(s.b) || s.b[s.i] != '[' {
		return s.skip()
	}
	return s.elements(func() error {
		if s.i < len(s.b) && s.b[s.i] == '{' {
			return s.textPart(r)
		}
		return s.skip()
	})
}

func (s *scanner) textPart(r *Request) error {
	return s.members(func(key []byte, _ bool) error {
		if k := string(key); (k == "text" || k == "content") && s.i < len(s.b) && s.b[s.i] == '"' {
			return s.text(r)
		}
		return s.skip()
	})
}

// text scans a string whose bytes count toward the prompt.
func (s *scanner) text(r *Request) error {
	ss, se, _, err := s.str()
	r.MessageChars += se - ss
	return err
}

// str scans a string starting at s.i ('"'), returning the bounds of its
// raw contents and whether it holds escapes.
func (s *scanner) str() (start, end int, esc bool, err error) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return 0, 0, false, s.errf("expected a string")
	}
	s.i++
	start = s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			end = s.i
			s.i++
			return start, end, esc, nil
		case c == '\\':
			esc = true
			if s.i+1 >= len(s.b) {
				return 0, 0, false, s.errf("unterminated string")
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) || !isHex4(s.b[s.i+2:s.i+6]) {
					return 0, 0, false, s.errf("invalid \\u escape")
				}
				s.i += 6
			default:
				return 0, 0, false, s.errf("invalid escape")
			}
		case c < 0x20:
			return 0, 0, false, s.errf("control character in string")
		default:
			s.i++
		}
	}
	return 0, 0, false, s.errf("unterminated string")
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func (s *scanner) lit(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

func (s *scanner) boolean(field string) (bool, error) {
	switch {
	case s.lit("true"):
		return true, nil
	case s.lit("false"), s.lit("null"):
		return false, nil
	}
	vs := s.i
	if err := s.skip(); err != nil {
		return false, err
	}
	return false, &Error{Field: field, Offset: vs, Msg: "must be a boolean"}
}

// integer scans a JSON number that must be an integer that fits in int64
// (an exponent-free fraction of zero such as 16.0 is refused too).
// count reads the value of field, a count of outputs: null (dst is left
// as it is) or an integer from 1 to maxCount.
func (s *scanner) count(field string, vs int, dst *int64) error {
	if s.lit("null") {
		return nil
	}
	n, err := s.integer(field)
	if err != nil {
		return err
	}
	if n < 1 || n > maxCount {
		return &Error{Field: field, Offset: vs, Msg: fmt.Sprintf("must be between 1 and %d", maxCount)}
	}
	*dst = n
	return nil
}

// maxCount bounds n and best_of.
const maxCount = 128

func (s *scanner) integer(field string) (int64, error) {
	vs := s.i
	if s.i < len(s.b) && (s.b[s.i] == '-' || '0' <= s.b[s.i] && s.b[s.i] <= '9') {
		if err := s.number(); err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(string(s.b[vs:s.i]), 10, 64)
		if err != nil {
			return 0, &Error{Field: field, Offset: vs, Msg: "must be an integer that fits in 64 bits"}
		}
		return n, nil
	}
	if err := s.skip(); err != nil {
		return 0, err
	}
	return 0, &Error{Field: field, Offset: vs, Msg: "must be an integer"}
}

func (s *scanner) number() error {
	st := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	// The integer part is 0 or starts with 1-9: JSON has no leading zeros.
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return &Error{Offset: st, Msg: "invalid number"}
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return &Error{Offset: st, Msg: "invalid number"}
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return &Error{Offset: st, Msg: "invalid number"}
		}
	}
	return nil
}

// skip scans over any JSON value, checking its syntax.
func (s *scanner) skip() error {
	return s.skipDepth(0)
}

const maxDepth = 256

func (s *scanner) skipDepth(depth int) error {
	if depth > maxDepth {
		return s.errf("nesting too deep")
	}
	s.ws()
	if s.i >= len(s.b) {
		return s.errf("unexpected end of body")
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, _, err := s.str()
		return err
	case c == '{':
		return s.members(func([]byte, bool) error { return s.skipDepth(depth + 1) })
	case c == '[':
		return s.elements(func() error { return s.skipDepth(depth + 1) })
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	case s.lit("true"), s.lit("false"), s.lit("null"):
		return nil
	default:
		return s.errf("invalid character %q", c)
	}
}

func mustInt(b []byte, sp Span) int64 {
	n, _ := strconv.ParseInt(string(b[sp.Start:sp.End]), 10, 64)
	return n
}
