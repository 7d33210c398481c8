package catalogue

import (
	"errors"
	"strconv"

	"github.com/helexa-ai/helexa-go/internal/config"
)

// Sentinel errors. Every problem that Parse, Load and New report is an
// *Error whose Err is one of these, so callers can tell them apart with
// errors.Is.
var (
	// ErrSyntax is a file that is not valid TOML, or a value of the wrong
	// type ("vram_mb = \"24G\"").
	ErrSyntax = errors.New("catalogue: invalid TOML")
	// ErrUnknownField is a key that models.toml does not define, usually a
	// typo ("vram_gb").
	ErrUnknownField = errors.New("catalogue: unknown field")
	// ErrMissingID is a model without an id.
	ErrMissingID = errors.New("catalogue: missing id")
	// ErrDuplicateID is a second model with an id already taken.
	ErrDuplicateID = errors.New("catalogue: duplicate id")
	// ErrNegative is a negative number where only zero or more makes sense.
	ErrNegative = errors.New("catalogue: negative value")
	// ErrInvalidValue is any other value out of range: a price that is not
	// a finite number, a name with spaces, an empty list element.
	ErrInvalidValue = errors.New("catalogue: invalid value")
	// ErrUnknownModel is an alias whose target is not a model id.
	ErrUnknownModel = errors.New("catalogue: alias to unknown model")
	// ErrAliasShadowsID is an alias whose name is also a model id.
	ErrAliasShadowsID = errors.New("catalogue: alias shadows a model id")
	// ErrAliasChain is an alias whose target is another alias. Aliases
	// resolve in one hop.
	ErrAliasChain = errors.New("catalogue: alias to an alias")
)

// Error is one problem in a catalogue, with where it is. When a catalogue
// has several problems, Parse, Load and New return them all, joined with
// errors.Join in the order of the file; errors.As finds the first.
//
// Error() reads "path:line: entry: message", leaving out what is unknown:
//
//	models.toml:12: models[3] (llama-3-8b): negative vram_mb
type Error struct {
	// Path is the file given to Load; empty for Parse and New.
	Path string
	// Line is the 1-based line in the file; 0 when unknown (New, or a
	// value written inline where lines cannot be told apart).
	Line int
	// Entry names the entry at fault: "models[3] (llama-3-8b)" (the index
	// counts [[models]] entries from 0), "aliases.fast". Empty for a
	// problem outside any entry.
	Entry string
	// Msg says what is wrong, for people: "negative vram_mb".
	Msg string
	// Err is the sentinel for the kind of problem (ErrNegative, ...).
	Err error
}

// Error formats the problem as "path:line: entry: message", as every
// configuration file's errors read (internal/config).
func (e *Error) Error() string {
	s := (&config.Error{File: e.Path, Line: e.Line, Entry: e.Entry, Msg: e.Msg}).Error()
	if e.Path == "" && e.Line == 0 {
		return "catalogue: " + s
	}
	return s
}

// Unwrap returns the sentinel in Err.
func (e *Error) Unwrap() error { return e.Err }

// joinErrors returns nil, the single error, or all of them joined.
func joinErrors(errs []*Error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// entryName names the i-th model: "models[3] (llama-3-8b)".
func entryName(i int, id string) string {
	s := "models[" + strconv.Itoa(i) + "]"
	switch {
	case validName(id):
		s += " (" + id + ")"
	case id != "":
		s += " (" + strconv.Quote(id) + ")"
	}
	return s
}

// aliasEntry names an alias as a TOML key under [aliases]: aliases.fast, or
// aliases."llama3.1" when the name is not a bare key.
func aliasEntry(name string) string {
	return "aliases." + tomlKey(name)
}

// tomlKey returns name as a bare TOML key when it is one, else quoted.
func tomlKey(name string) string {
	if name == "" {
		return `""`
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return strconv.Quote(name)
		}
	}
	return name
}
