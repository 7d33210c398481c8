// Package engineargs checks the per-model engine arguments of a catalogue
// model (catalogue.EngineArgs) and of a load (neuron.EngineArgs), so that
// models.toml and the neuron's API refuse the same values. The rules are
// written for people in the catalogue's package documentation.
package engineargs

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Limits on one model's engine arguments. They bound what a load may ask
// the neuron to pass to an engine; real command lines stay far below them.
const (
	// MaxArgs is the most arguments Extra and Set may hold together
	// (each Set entry counts for two).
	MaxArgs = 256
	// MaxArgLen is the longest argument, in bytes.
	MaxArgLen = 16 << 10
)

// OwnedFlags are the flags the neuron sets itself on every engine it
// starts: a model may neither set nor repeat them. Templates may own more
// (see neuron/engine): any flag whose value there is built from {model},
// {id}, {port}, {host} or {gpus}.
var OwnedFlags = []string{"--host", "--port"}

// Problem is one refused value: Key names it ("extra[2]", "set.--port")
// and Msg says why.
type Problem struct {
	Key string
	Msg string
}

func (p Problem) Error() string { return p.Key + ": " + p.Msg }

// Check returns what is wrong with extra and set, in a stable order (extra
// first, then set by key); nil when both are acceptable.
func Check(extra []string, set map[string]string) []Problem {
	var ps []Problem
	add := func(key, format string, a ...any) { ps = append(ps, Problem{key, fmt.Sprintf(format, a...)}) }
	if n := len(extra) + 2*len(set); n > MaxArgs {
		add("engine_args", "%d arguments, more than %d", n, MaxArgs)
	}
	for i, a := range extra {
		key := fmt.Sprintf("extra[%d]", i)
		if msg := checkValue(a); msg != "" {
			add(key, "%s", msg)
			continue
		}
		if f, ok := owned(a); ok {
			add(key, "%s is set by the neuron", f)
			continue
		}
		if f := flagName(a); f != "" {
			if _, dup := set[f]; dup {
				add(key, "%s is also in set: give it in one of them", f)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		key := "set." + k
		if !validFlag(k) {
			add(key, "%q is not a flag (\"-x\" or \"--name\": a dash, then letters, digits, '-', '_' or '.')", k)
			continue
		}
		if f, ok := owned(k); ok {
			add(key, "%s is set by the neuron", f)
			continue
		}
		if msg := checkValue(set[k]); msg != "" {
			add(key, "%s", msg)
		}
	}
	return ps
}

// checkValue returns why one argument is refused, or "".
func checkValue(s string) string {
	switch {
	case len(s) > MaxArgLen:
		return fmt.Sprintf("longer than %d bytes", MaxArgLen)
	case strings.IndexByte(s, 0) >= 0:
		return "holds a NUL byte"
	}
	if p := Placeholder(s); p != "" {
		return fmt.Sprintf("holds the placeholder %s: per-model values are passed as written, never expanded", p)
	}
	return ""
}

// Placeholder returns the first "{name}" or "{name?}" in s, a name being
// letters, digits and underscores as in engine templates; "" when none.
func Placeholder(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] != '{' {
			continue
		}
		j := i + 1
		for j < len(s) && isNameByte(s[j]) {
			j++
		}
		if j > i+1 && j < len(s) && s[j] == '?' {
			j++
		}
		if j > i+1 && j < len(s) && s[j] == '}' {
			return s[i : j+1]
		}
	}
	return ""
}

func isNameByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// validFlag reports whether s is a flag name: "-" or "--", then letters,
// digits, '-', '_' or '.', starting with a letter or digit.
func validFlag(s string) bool {
	name := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "-")
	if len(name) == len(s) || name == "" || !isNameByte(name[0]) || name[0] == '_' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isNameByte(c) && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// flagName returns the flag an argument names: "--ctx-size" for
// "--ctx-size" and "--ctx-size=4096"; "" when it is no flag.
func flagName(a string) string {
	f, _, _ := strings.Cut(a, "=")
	if !validFlag(f) {
		return ""
	}
	return f
}

// owned returns the owned flag that a names ("--port", "--port=80").
func owned(a string) (string, bool) {
	f := flagName(a)
	for _, o := range OwnedFlags {
		if f == o {
			return o, true
		}
	}
	return "", false
}
