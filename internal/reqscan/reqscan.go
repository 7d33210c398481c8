// Package reqscan reads the few fields the gateway needs from an inference
// request body (model, stream, the output bounds, the output counts,
// stream_options and the prompts) in one pass over the bytes, without
// decoding the whole document, and splices edits (model alias, usage
// request, output bounds) back into the body without re-encoding it.
//
// # One reading for everyone
//
// The gateway accounts for a request from this reading, then forwards the
// body to a neuron and an engine that read it with other decoders: Go's
// encoding/json matches keys without regard to case (with Unicode simple
// folding: "ſtream" is "stream") and keeps the last of duplicate keys;
// Python's and nlohmann's keep the last duplicate and match case exactly;
// every decoder unescapes keys. Scan refuses, with an *Error whose
// Ambiguous is true, every body two such decoders could read differently
// in a way that matters:
//
//   - a key that appears twice in one object, at any depth, compared after
//     unescaping (RFC 7493, I-JSON);
//   - a key that names a field Scan reads (see ReadFields) only after
//     unescaping or case folding, such as "Max_Tokens", "\u006dodel" or
//     "\u017ftream", at the top level or in stream_options.
//
// What is left has one meaning for every decoder: each field Scan reads
// appears once, spelt exactly, and any other key cannot be mistaken for
// it. The bounds every engine the neuron runs obeys (max_tokens,
// max_completion_tokens, max_output_tokens, llama-server's n_predict,
// max_new_tokens) are all read, so that the caller can rewrite them to the
// value it reserved (SetMaxTokens), and so are the counts of outputs (n,
// best_of, llama-server's n_cmpl, and the prompts of a prompt array).
package reqscan

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/helexa-ai/helexa-go/internal/fingerprint"
)

// Span is a byte range [Start, End) of the body. The zero Span means absent.
type Span struct{ Start, End int }

// Present reports whether the span was found.
func (s Span) Present() bool { return s.End > s.Start }

// Request is what Scan found. Spans index into the scanned body.
type Request struct {
	// Model is the "model" string, unescaped. Empty when absent or null;
	// ModelSpan covers a null too.
	Model     string
	ModelSpan Span
	// Stream is the "stream" flag.
	Stream bool
	// MaxTokens is the maximum output per sequence the client asked for:
	// the first present of max_completion_tokens, max_tokens,
	// max_output_tokens, n_predict and max_new_tokens; 0 when none was
	// given. The caller rewrites every one present to what it reserved
	// (SetMaxTokens), so which one it reads does not matter to the engine.
	MaxTokens int64
	// MaxTokensSpans holds the value spans of the output bounds, indexed
	// by MaxField*; a null bound has its span too.
	MaxTokensSpans [maxFields]Span
	// N is the "n" parameter (default 1).
	N int64
	// BestOf is the "best_of" parameter of a completion (0 when absent):
	// how many candidates the engine generates to return the best N.
	BestOf int64
	// NCmpl is llama-server's "n_cmpl" (0 when absent): the completions
	// per prompt, which wins over n there.
	NCmpl int64
	// Prompts counts the prompts of "prompt": 1 for a string or an array
	// of token ids, the length of an array of strings or of token-id
	// arrays; 0 when absent. An engine completes each prompt of an array.
	Prompts int64
	// StreamOptions is the span of the "stream_options" value: an object,
	// or null.
	StreamOptions Span
	// IncludeUsage is stream_options.include_usage.
	IncludeUsage     bool
	IncludeUsageSpan Span
	// streamOptionFields counts the fields of stream_options;
	// streamOptionsNull says it is null.
	streamOptionFields int
	streamOptionsNull  bool
	// Messages counts the entries of "messages"; MessageChars counts the
	// bytes of their text (string content and text parts), plus a string
	// "system" (Anthropic), the strings of "prompt" or a string "input".
	Messages     int
	MessageChars int
	// Prefix fingerprints the leading blocks of that text, in body order
	// (route.Prefix documents it).
	Prefix fingerprint.Hasher
	// Object is the span of the top-level object, braces included.
	Object Span
	// Fields counts the top-level fields.
	Fields int
}

// Indexes into Request.MaxTokensSpans, in the order MaxTokens prefers them.
const (
	MaxFieldMaxCompletionTokens = iota // max_completion_tokens
	MaxFieldMaxTokens                  // max_tokens
	MaxFieldMaxOutputTokens            // max_output_tokens (Responses API)
	MaxFieldNPredict                   // n_predict (llama-server; wins over max_tokens there)
	MaxFieldMaxNewTokens               // max_new_tokens (TGI, SGLang's sampling parameter)
	maxFields
)

// maxFieldNames are the output bound fields, indexed by MaxField*.
var maxFieldNames = [maxFields]string{"max_completion_tokens", "max_tokens", "max_output_tokens", "n_predict", "max_new_tokens"}

// ReadFields are the top-level fields Scan reads. A key that differs from
// one of them but matches it after unescaping or case folding makes a body
// ambiguous.
var ReadFields = []string{
	"model", "stream", "stream_options", "n", "best_of", "n_cmpl",
	"prompt", "input", "messages", "system",
	"max_completion_tokens", "max_tokens", "max_output_tokens", "n_predict", "max_new_tokens",
}

// streamOptionFields are the fields of stream_options Scan reads.
var streamOptionReadFields = []string{"include_usage"}

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

// Sequences is how many outputs the engine may generate for the request:
// per prompt the most of n, best_of and n_cmpl (best_of candidates are
// generated to return n; n_cmpl wins over n in llama-server), times the
// prompts of a prompt array.
func (r *Request) Sequences() int64 {
	return max(r.N, r.BestOf, r.NCmpl, 1) * max(r.Prompts, 1)
}

// Error is a request body the scanner refuses. Field names the offending
// top-level field when there is one. Ambiguous is true for a body that
// decoders could read differently (see the package documentation).
type Error struct {
	Field     string
	Offset    int
	Msg       string
	Ambiguous bool
}

func (e *Error) Error() string {
	if e.Ambiguous {
		return "ambiguous request body: " + e.Msg
	}
	if e.Field != "" {
		return fmt.Sprintf("invalid request body: %s: %s", e.Field, e.Msg)
	}
	return fmt.Sprintf("invalid request body: %s (at byte %d)", e.Msg, e.Offset)
}

// ErrNotObject is returned (wrapped in *Error) when the body is not a JSON object.
var ErrNotObject = errors.New("reqscan: body is not a JSON object")

// Scan reads body into r. It checks that body is valid UTF-8 and one JSON
// object without duplicate keys, that no key is a variant of a field it
// reads, and that the fields it reads have the right types. It allocates
// only for escaped keys, an escaped model string and objects of many keys.
func Scan(body []byte, r *Request) error { return scan(body, r, false) }

// scan is Scan; lax skips the checks for ambiguity, for the benchmark that
// measures their cost.
func scan(body []byte, r *Request, lax bool) error {
	*r = Request{N: 1}
	if !utf8.Valid(body) {
		return &Error{Msg: "body is not valid UTF-8"}
	}
	s := scanners.Get().(*scanner)
	defer func() {
		*s = scanner{keys: s.keys[:0]}
		scanners.Put(s)
	}()
	s.b, s.lax = body, lax
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
	for _, sp := range r.MaxTokensSpans {
		if sp.Present() && body[sp.Start] != 'n' { // not null
			r.MaxTokens = mustInt(body, sp)
			break
		}
	}
	return nil
}

type scanner struct {
	b []byte
	i int
	// keys holds the keys of the objects being scanned, innermost last,
	// for the duplicate check.
	keys []key
	lax  bool // no ambiguity checks (see scan)
}

// scanners keeps scanners, and the key stacks they grew, between scans.
var scanners = sync.Pool{New: func() any { return &scanner{keys: make([]key, 0, 32)} }}

// key is one object key: its raw span in the body, and its unescaped
// bytes when it has escapes.
type key struct {
	raw   Span
	unesc []byte
}

// name returns the key's unescaped bytes.
func (s *scanner) name(k key) []byte {
	if k.unesc != nil {
		return k.unesc
	}
	return s.b[k.raw.Start:k.raw.End]
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
	return s.members(func(name []byte, esc bool, ks int) error {
		r.Fields++
		if s.lax {
			return s.field(r, string(name), s.i)
		}
		field, err := readField(name, esc, ks, ReadFields)
		if err != nil {
			return err
		}
		return s.field(r, field, s.i)
	})
}

// readField returns the field of fields that the key name (unescaped; esc
// when it was written with escapes) is, or "" when it is none of them. A
// key that matches a field only after unescaping or case folding is an
// ambiguous *Error.
func readField(name []byte, esc bool, at int, fields []string) (string, error) {
	for _, f := range fields {
		if !esc && string(name) == f {
			return f, nil
		}
	}
	for _, f := range fields {
		if foldEqual(name, f) {
			how := "differs only in case from"
			if esc {
				how = "is written with escapes for"
			}
			return "", &Error{Field: f, Offset: at, Ambiguous: true,
				Msg: fmt.Sprintf("the key %q %s the field %q, which decoders read differently; spell it exactly", name, how, f)}
		}
	}
	return "", nil
}

// foldEqual reports whether name matches the ASCII field f under a case
// folding that covers Go's encoding/json's: ASCII letters fold to upper
// case, and any other rune r to unicode.ToUpper(unicode.ToLower(r)), so
// that U+017F (ſ) matches "s" and U+212A (Kelvin sign) matches "k", as in
// Go. It also folds a few runes Go does not (U+0131, dotless i): refusing
// those too costs nothing.
func foldEqual(name []byte, f string) bool {
	j := 0
	for i := 0; i < len(name); {
		if j >= len(f) {
			return false
		}
		c := name[i]
		if c < utf8.RuneSelf {
			if upper(c) != upper(f[j]) {
				return false
			}
			i++
			j++
			continue
		}
		r, n := utf8.DecodeRune(name[i:])
		if unicode.ToUpper(unicode.ToLower(r)) != rune(upper(f[j])) {
			return false
		}
		i += n
		j++
	}
	return j == len(f)
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// linearKeys is how many keys of one object are checked for duplicates
// by comparison with each other; past it the object's keys go in a set.
const linearKeys = 16

// members scans an object starting at s.i ('{'), calling fn with s.i at
// each member's value, with the member's unescaped key, whether it had
// escapes and where it starts; fn must scan the value. A key that appears
// twice, compared after unescaping, is an ambiguous *Error.
func (s *scanner) members(fn func(name []byte, esc bool, at int) error) error {
	s.i++ // '{'
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	base := len(s.keys)
	defer func() { s.keys = s.keys[:base] }()
	var set map[string]struct{} // the keys, once there are many
	for {
		s.ws()
		at := s.i
		ks, ke, esc, err := s.str()
		if err != nil {
			return err
		}
		k := key{raw: Span{ks, ke}}
		if esc {
			if k.unesc, err = unescape(s.b[ks-1 : ke+1]); err != nil {
				return &Error{Offset: at, Msg: "invalid string"}
			}
		}
		name := s.name(k)
		switch {
		case s.lax:
		case set != nil:
			if _, dup := set[string(name)]; dup {
				return duplicate(name, at)
			}
			set[string(name)] = struct{}{}
		default:
			for _, o := range s.keys[base:] {
				if string(s.name(o)) == string(name) {
					return duplicate(name, at)
				}
			}
			s.keys = append(s.keys, k)
			if n := len(s.keys) - base; n > linearKeys {
				set = make(map[string]struct{}, 2*n)
				for _, o := range s.keys[base:] {
					set[string(s.name(o))] = struct{}{}
				}
			}
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.errf("expected ':' after object key")
		}
		s.i++
		s.ws()
		if err := fn(name, esc, at); err != nil {
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

func duplicate(name []byte, at int) error {
	return &Error{Offset: at, Ambiguous: true,
		Msg: fmt.Sprintf("the key %q appears twice in one object (at byte %d), which decoders read differently", name, at)}
}

// unescape returns the contents of the quoted JSON string q.
func unescape(q []byte) ([]byte, error) {
	v, err := strconv.Unquote(string(q))
	if err != nil {
		// JSON's \/ and a lone surrogate escape are not Go's.
		var out string
		if jerr := json.Unmarshal(q, &out); jerr != nil {
			return nil, jerr
		}
		v = out
	}
	if v == "" {
		return []byte{}, nil
	}
	return []byte(v), nil
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

// field scans the value of one top-level field starting at s.i; key is
// the field (of ReadFields) or "" for any other.
func (s *scanner) field(r *Request, key string, vs int) error {
	switch key {
	case "model":
		if s.lit("null") {
			r.ModelSpan = Span{vs, s.i} // absent, and replaced by SetModel
			return nil
		}
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
			m, err := unescape(s.b[vs:s.i])
			if err != nil {
				return &Error{Field: "model", Offset: vs, Msg: "invalid string"}
			}
			r.Model = string(m)
		} else {
			r.Model = string(s.b[ss:se])
		}
		return nil
	case "stream":
		v, err := s.boolean("stream")
		r.Stream = v
		return err
	case "max_completion_tokens", "max_tokens", "max_output_tokens", "n_predict", "max_new_tokens":
		idx := 0
		for i, f := range maxFieldNames {
			if f == key {
				idx = i
			}
		}
		if s.lit("null") {
			// Kept, so that SetMaxTokens rewrites it: a bound added
			// beside it would be a duplicate key, and the null would win
			// with the decoders that keep the last.
			r.MaxTokensSpans[idx] = Span{vs, s.i}
			return nil
		}
		n, err := s.integer(key)
		if err != nil {
			return err
		}
		if n < 1 {
			return &Error{Field: key, Offset: vs, Msg: "must be a positive integer"}
		}
		r.MaxTokensSpans[idx] = Span{vs, s.i}
		return nil
	case "n":
		return s.count("n", vs, &r.N)
	case "best_of":
		return s.count("best_of", vs, &r.BestOf)
	case "n_cmpl":
		return s.count("n_cmpl", vs, &r.NCmpl)
	case "stream_options":
		if s.lit("null") {
			r.StreamOptions, r.streamOptionsNull = Span{vs, s.i}, true // replaced by RequestUsage
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
	case "prompt":
		return s.prompt(r, vs)
	case "system", "input":
		if s.i < len(s.b) && s.b[s.i] == '"' {
			return s.text(r)
		}
		if key == "system" {
			return s.textParts(r)
		}
		return s.skip()
	default:
		return s.skip()
	}
}

// prompt scans "prompt" in its four shapes: a string, an array of
// strings, an array of token ids, an array of token-id arrays; null is
// absent. Anything else, an empty array or a mix of shapes is refused.
func (s *scanner) prompt(r *Request, vs int) error {
	bad := func() error {
		return &Error{Field: "prompt", Offset: vs, Msg: "must be a string, an array of strings, an array of token ids or an array of token-id arrays"}
	}
	switch {
	case s.lit("null"):
		return nil
	case s.i < len(s.b) && s.b[s.i] == '"':
		r.Prompts = 1
		return s.text(r)
	case s.i < len(s.b) && s.b[s.i] == '{':
		// The Responses API's reference to a stored prompt template: one
		// prompt, no array of them.
		return s.skip()
	case s.i >= len(s.b) || s.b[s.i] != '[':
		if err := s.skip(); err != nil {
			return err
		}
		return bad()
	}
	const (
		shapeNone = iota
		shapeString
		shapeToken
		shapeTokens
	)
	shape, n := shapeNone, int64(0)
	err := s.elements(func() error {
		el := shapeToken
		switch {
		case s.i < len(s.b) && s.b[s.i] == '"':
			el = shapeString
			if err := s.text(r); err != nil {
				return err
			}
		case s.i < len(s.b) && s.b[s.i] == '[':
			el = shapeTokens
			if err := s.tokens(r); err != nil {
				return err
			}
		default:
			if _, err := s.integer("prompt"); err != nil {
				return bad()
			}
			r.MessageChars += 4 // a token id is about four bytes of text
		}
		if shape != shapeNone && shape != el {
			return bad()
		}
		shape = el
		n++
		return nil
	})
	if err != nil {
		return err
	}
	switch shape {
	case shapeNone:
		return &Error{Field: "prompt", Offset: vs, Msg: "must not be an empty array"}
	case shapeToken:
		n = 1
	}
	r.Prompts = n
	return nil
}

// tokens scans one token-id array of a prompt array.
func (s *scanner) tokens(r *Request) error {
	return s.elements(func() error {
		if _, err := s.integer("prompt"); err != nil {
			return err
		}
		r.MessageChars += 4
		return nil
	})
}

func (s *scanner) streamOptions(r *Request, vs int) error {
	err := s.members(func(name []byte, esc bool, at int) error {
		r.streamOptionFields++
		f, err := readField(name, esc, at, streamOptionReadFields)
		if err != nil {
			return err
		}
		if f != "include_usage" {
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
	return s.members(func(key []byte, _ bool, _ int) error {
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
	return s.members(func(key []byte, _ bool, _ int) error {
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
	if err == nil {
		r.Prefix.Write(s.b[ss:se])
	}
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
		return s.members(func([]byte, bool, int) error { return s.skipDepth(depth + 1) })
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
