package jsonw_test

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/helexa-ai/helexa-go/internal/jsonw"
)

func TestAppendString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{"q\"b\\n\nr\rt\t", `"q\"b\\n\nr\rt\t"`},
		{"\x00\x1f", `"\u0000\u001f"`},
		{"a\u2028b\u2029", `"a\u2028b\u2029"`},
		{"bad\xffutf8", `"bad\ufffdutf8"`},
		{"héllo ✓", `"héllo ✓"`},
	}
	for _, tt := range tests {
		if got := string(jsonw.AppendString(nil, tt.in)); got != tt.want {
			t.Errorf("AppendString(%q) = %s, want %s", tt.in, got, tt.want)
		}
		if got := string(jsonw.AppendString(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("AppendString([]byte %q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("hello \"world\"\n\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		out := jsonw.AppendString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("AppendString(%q) = %s: not JSON: %v", s, out, err)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("round trip of %q gave %q", s, got)
		}
	})
}
