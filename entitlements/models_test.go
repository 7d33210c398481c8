package entitlements_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements"
)

func TestModelAllowListAllows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		patterns []string
		allowed  []string
		refused  []string
	}{
		{"exact", []string{"llama-3-8b"}, []string{"llama-3-8b"}, []string{"llama-3-8b-x", "Llama-3-8b", "llama-3-8", ""}},
		{"star crosses slashes", []string{"meta-llama/*"}, []string{"meta-llama/", "meta-llama/Llama-3.1-8B", "meta-llama/a/b"}, []string{"meta-llama", "other/meta-llama/x"}},
		{"lone star", []string{"*"}, []string{"", "a", "org/model"}, nil},
		{"star inside", []string{"llama-*-instruct"}, []string{"llama--instruct", "llama-3-8b-instruct", "llama-x-instruct-instruct"}, []string{"llama-3-8b-instruct-q4", "llama-3-8b"}},
		{"question mark is one rune", []string{"qwen-?b"}, []string{"qwen-7b", "qwen-éb"}, []string{"qwen-14b", "qwen-b"}},
		{"several", []string{"a*", "*z"}, []string{"abc", "xyz"}, []string{"xyy"}},
		{"many stars", []string{"*a*a*a*a*b"}, []string{"aaaab"}, []string{strings.Repeat("a", 1000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := entitlements.NewModelAllowList(tt.patterns...)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range tt.allowed {
				if !l.Allows(name) {
					t.Errorf("%v refuses %q", tt.patterns, name)
				}
			}
			for _, name := range tt.refused {
				if l.Allows(name) {
					t.Errorf("%v allows %q", tt.patterns, name)
				}
			}
		})
	}
}

func TestModelAllowListZeroAllowsAll(t *testing.T) {
	t.Parallel()
	var l entitlements.ModelAllowList
	if !l.IsZero() || !l.Allows("anything") || l.Patterns() != nil || l.String() != "" {
		t.Errorf("zero value = %+v, want it to allow every model", l)
	}
}

func TestModelAllowListLongName(t *testing.T) {
	t.Parallel()
	l, _ := entitlements.NewModelAllowList("*")
	if l.Allows(strings.Repeat("x", 1025)) {
		t.Error("a name over 1024 bytes matched")
	}
}

func TestModelAllowListNormalised(t *testing.T) {
	t.Parallel()
	a, _ := entitlements.NewModelAllowList("b*", "a", "b*")
	b, _ := entitlements.NewModelAllowList("a", "b*")
	if a != b {
		t.Errorf("%q != %q: lists with the same patterns differ", a, b)
	}
	p := entitlements.Principal{AccountID: "x", Limits: entitlements.Limits{Models: a}}
	seen := map[entitlements.Principal]bool{p: true} // still a map key
	if !seen[entitlements.Principal{AccountID: "x", Limits: entitlements.Limits{Models: b}}] {
		t.Error("equal principals are different map keys")
	}
	back, err := entitlements.ParseModelAllowList(a.String())
	if err != nil || back != a {
		t.Errorf("ParseModelAllowList(%q) = %q, %v", a.String(), back, err)
	}
	if got, want := a.Patterns(), []string{"a", "b*"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Patterns() = %q, want %q", got, want)
	}
}

func TestModelAllowListRefuses(t *testing.T) {
	t.Parallel()
	for _, ps := range [][]string{
		{},
		{""},
		{"a b"},
		{"tab\there"},
		{"llama-[78]b"},
		{`esc\*`},
		{strings.Repeat("x", 257)},
		{"\xff"},
		make([]string, 257),
	} {
		if l, err := entitlements.NewModelAllowList(ps...); !errors.Is(err, entitlements.ErrBadModelPattern) {
			t.Errorf("NewModelAllowList(%q) = %q, %v; want ErrBadModelPattern", ps, l, err)
		}
	}
}
