package anthropic_test

import (
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/internal/anthropic"
)

func TestCountTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want int64
	}{
		// "hi": ceil(2/4) + 4.
		{"one message", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, 5},
		// "hello" + "world!" = 11 bytes -> 3, two messages -> 8.
		{"two messages", `{"model":"m","messages":[{"role":"user","content":"hello"},{"role":"assistant","content":"world!"}]}`, 11},
		// system "abcd" + "efgh" = 8 bytes, "x" 1 -> ceil(9/4)=3; system + 1 message -> 8.
		{"system is one message", `{"model":"m","system":[{"type":"text","text":"abcd"},{"type":"text","text":"efgh"}],"messages":[{"role":"user","content":"x"}]}`, 11},
		// tool_use input {"a":1} (7) + tool result "ok" (2) + text "q" (1) = 10 -> 3; three messages -> 12.
		{"tool blocks count", `{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"tool_use","id":"i","name":"f","input":{"a":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"i","content":"ok"},{"type":"image","source":{"type":"url","url":"https://example.invalid/big.png"}}]}]}`, 15},
		// tool {"name":"f","input_schema":{}} is 30 bytes -> 8; "x" -> 1 + 4.
		{"tools", `{"model":"m","tools":[{"name":"f","input_schema":{}}],"messages":[{"role":"user","content":"x"}]}`, 13},
		// with a description: {"name":"f","description":"dd","input_schema":{}} is 49 bytes -> 13.
		{"tool description", `{"model":"m","tools":[{"name":"f","description":"dd","input_schema":{}}],"messages":[{"role":"user","content":"x"}]}`, 18},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := anthropic.ParseCountTokensRequest([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := anthropic.CountTokens(r); got != tt.want {
				t.Errorf("CountTokens = %d, want %d", got, tt.want)
			}
		})
	}
	if got := anthropic.CountTokens(nil); got != 1 {
		t.Errorf("CountTokens(nil) = %d, want 1", got)
	}
}

// TestCountTokensToolBytes: the tool term is the tool definition's JSON
// size as the client sent it (compact).
func TestCountTokensToolBytes(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{`{"name":"f","input_schema":{}}`, `{"name":"f","description":"dd","input_schema":{}}`} {
		r := mustParse(t, `{"model":"m","max_tokens":1,"tools":[`+tool+`],"messages":[{"role":"user","content":""}]}`)
		if got, want := anthropic.CountTokens(r), int64((len(tool)+3)/4+4); got != want {
			t.Errorf("%s: CountTokens = %d, want %d", tool, got, want)
		}
	}
}

func TestWriteCountTokens(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	anthropic.WriteCountTokens(rec, 1234)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("status %d, headers %v", rec.Code, rec.Header())
	}
	if diff := cmp.Diff(decode(t, rec.Body.String()), decode(t, `{"input_tokens":1234}`)); diff != "" {
		t.Errorf("body (-got +want):\n%s", diff)
	}
}

func TestSetStreamHeaders(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	anthropic.SetStreamHeaders(rec.Header())
	if got := rec.Header().Get("Content-Type"); got != "text/event-stream" {
		t.Errorf("Content-Type %q", got)
	}
	if got := rec.Header().Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control %q", got)
	}
}
