package entitlements

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ModelAllowList is the models a key may use: glob patterns over model ids
// and aliases. The zero value allows every model.
//
// It holds its patterns as one normalised string (sorted, without
// duplicates, joined by newlines, which no pattern contains), so that a
// Principal stays a comparable value of scalars: usable as a map key and
// compared with ==, as Local and the key limiter do. Two lists with the
// same patterns in any order are equal.
//
// The glob is deliberately small: '*' matches any run of characters,
// '/' included (model ids such as "meta-llama/Llama-3.1-8B" have
// slashes, and path.Match's '*' would stop at them), and '?' matches one
// character. Every other character matches itself, case-sensitively, as
// the catalogue resolves names. '[', ']' and '\' are refused rather than
// read as literals, so that a pattern written for path.Match ("llama-[78]b")
// is an error at load instead of a silent never-match.
type ModelAllowList struct {
	s string // normalised patterns joined by "\n"; "" allows every model
}

// Limits of patterns.
const (
	// MaxModelPatterns is the most patterns one allow-list holds.
	MaxModelPatterns = 256
	// MaxModelPatternLen is the longest pattern, in bytes.
	MaxModelPatternLen = 256
)

// maxMatchedName is the longest model name matched against patterns;
// a longer name matches none, so a client cannot make matching expensive.
const maxMatchedName = 1024

// ErrBadModelPattern is the error of NewModelAllowList and
// ParseModelAllowList for a pattern they refuse.
var ErrBadModelPattern = errors.New("entitlements: bad model pattern")

// NewModelAllowList checks patterns and returns their allow-list. It
// refuses an empty list (a key that may use no model is written with a
// hard cap of 0, or revoked), an empty pattern, one with white space or
// control characters, '[', ']' or '\', one longer than
// MaxModelPatternLen, and more than MaxModelPatterns patterns; each error
// wraps ErrBadModelPattern.
func NewModelAllowList(patterns ...string) (ModelAllowList, error) {
	if len(patterns) == 0 {
		return ModelAllowList{}, fmt.Errorf("%w: the list is empty: it would allow no model (leave it out to allow every model)", ErrBadModelPattern)
	}
	if len(patterns) > MaxModelPatterns {
		return ModelAllowList{}, fmt.Errorf("%w: %d patterns, over the %d allowed", ErrBadModelPattern, len(patterns), MaxModelPatterns)
	}
	for i, p := range patterns {
		if msg := checkPattern(p); msg != "" {
			return ModelAllowList{}, fmt.Errorf("%w: models[%d] %q: %s", ErrBadModelPattern, i, p, msg)
		}
	}
	ps := slices.Clone(patterns)
	slices.Sort(ps)
	return ModelAllowList{s: strings.Join(slices.Compact(ps), "\n")}, nil
}

// ParseModelAllowList reads the form String writes: "" is the zero value
// (every model), anything else NewModelAllowList's patterns joined by
// newlines. Ledgers store allow-lists in this form.
func ParseModelAllowList(s string) (ModelAllowList, error) {
	if s == "" {
		return ModelAllowList{}, nil
	}
	return NewModelAllowList(strings.Split(s, "\n")...)
}

// checkPattern returns what is wrong with a pattern, or "".
func checkPattern(p string) string {
	switch {
	case p == "":
		return "empty"
	case len(p) > MaxModelPatternLen:
		return fmt.Sprintf("longer than %d bytes", MaxModelPatternLen)
	case !utf8.ValidString(p):
		return "not valid UTF-8"
	case strings.ContainsAny(p, `[]\`):
		return `'[', ']' and '\' are not supported: use '*' (any run of characters) and '?' (one character)`
	}
	for _, r := range p {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "has white space or control characters"
		}
	}
	return ""
}

// String returns the normalised patterns joined by newlines; "" for the
// zero value. ParseModelAllowList reads it back.
func (l ModelAllowList) String() string { return l.s }

// Equal reports whether l and o hold the same patterns, as l == o does
// (it lets go-cmp compare values that hold a ModelAllowList).
func (l ModelAllowList) Equal(o ModelAllowList) bool { return l == o }

// IsZero reports whether l is the zero value, which allows every model.
func (l ModelAllowList) IsZero() bool { return l.s == "" }

// Patterns returns the patterns, sorted; nil for the zero value.
func (l ModelAllowList) Patterns() []string {
	if l.s == "" {
		return nil
	}
	return strings.Split(l.s, "\n")
}

// Allows reports whether some pattern matches name exactly (the zero value
// allows every name). A name longer than 1024 bytes matches no pattern.
func (l ModelAllowList) Allows(name string) bool {
	if l.s == "" {
		return true
	}
	if len(name) > maxMatchedName {
		return false
	}
	for p := range strings.SplitSeq(l.s, "\n") {
		if globMatch(p, name) {
			return true
		}
	}
	return false
}

// globMatch reports whether pattern matches all of name: '*' any run of
// runes, '?' one rune, anything else itself. It backtracks only to the
// last '*', so it takes O(len(pattern) * len(name)) at worst.
func globMatch(pattern, name string) bool {
	px, nx := 0, 0
	starP, starN := -1, 0
	for nx < len(name) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starP, starN = px, nx
				px++
				continue
			case '?':
				_, w := utf8.DecodeRuneInString(name[nx:])
				px, nx = px+1, nx+w
				continue
			default:
				if c == name[nx] {
					px, nx = px+1, nx+1
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last '*' take one more rune and try again after it.
		_, w := utf8.DecodeRuneInString(name[starN:])
		starN += w
		px, nx = starP+1, starN
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}
