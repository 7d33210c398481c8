package reqscan_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/internal/reqscan"
)

type summary struct {
	Model        string
	Stream       bool
	MaxTokens    int64
	N            int64
	BestOf       int64
	IncludeUsage bool
	Messages     int
	MessageChars int
}

func sum(r *reqscan.Request) summary {
	return summary{r.Model, r.Stream, r.MaxTokens, r.N, r.BestOf, r.IncludeUsage, r.Messages, r.MessageChars}
}

func TestScan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    summary
		wantErr string // substring; empty means success
	}{
		{name: "chat", in: `{"model":"m","messages":[{"role":"user","content":"hello world!"}]}`,
			want: summary{Model: "m", N: 1, Messages: 1, MessageChars: 12}},
		{name: "stream and limits", in: `{"stream":true,"max_tokens":20,"n":2,"model":"x","stream_options":{"include_usage":true}}`,
			want: summary{Model: "x", Stream: true, MaxTokens: 20, N: 2, IncludeUsage: true}},
		{name: "max_completion_tokens wins", in: `{"model":"m","max_tokens":5,"max_completion_tokens":7}`,
			want: summary{Model: "m", MaxTokens: 7, N: 1}},
		{name: "max_output_tokens", in: `{"model":"m","max_output_tokens":9,"input":"abcd"}`,
			want: summary{Model: "m", MaxTokens: 9, N: 1, MessageChars: 4}},
		{name: "text parts and system blocks", in: `{"model":"m","system":[{"type":"text","text":"abc"}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:x"}}]}]}`,
			want: summary{Model: "m", N: 1, Messages: 1, MessageChars: 5}},
		{name: "escaped model", in: `{"model":"a\u0062c"}`, want: summary{Model: "abc", N: 1}},
		{name: "best_of", in: `{"model":"m","prompt":"x","n":2,"best_of":5}`,
			want: summary{Model: "m", N: 2, BestOf: 5, MessageChars: 1}},
		{name: "nulls", in: `{"model":"m","max_tokens":null,"n":null,"best_of":null,"stream_options":null,"stream":null}`,
			want: summary{Model: "m", N: 1}},
		{name: "whitespace", in: " \n{ \"model\" : \"m\" , \"stream\" : false }\n", want: summary{Model: "m", N: 1}},
		{name: "empty object", in: `{}`, want: summary{N: 1}},
		{name: "unknown fields skipped", in: `{"tools":[{"a":[1,2.5e3,-0.1,true,false,null,{"b":"c\"d"}]}],"model":"m"}`, want: summary{Model: "m", N: 1}},

		{name: "not an object", in: `[1]`, wantErr: "must be a JSON object"},
		{name: "empty body", in: ``, wantErr: "must be a JSON object"},
		{name: "truncated", in: `{"model":"m"`, wantErr: "unexpected end"},
		{name: "trailing data", in: `{"model":"m"} x`, wantErr: "after the JSON object"},
		{name: "model not string", in: `{"model":5}`, wantErr: "model: must be a string"},
		{name: "stream not bool", in: `{"stream":"yes"}`, wantErr: "stream: must be a boolean"},
		{name: "negative max_tokens", in: `{"max_tokens":-1}`, wantErr: "max_tokens: must be a positive integer"},
		{name: "zero max_tokens", in: `{"max_tokens":0}`, wantErr: "must be a positive integer"},
		{name: "fractional max_tokens", in: `{"max_tokens":1.5}`, wantErr: "fits in 64 bits"},
		{name: "huge max_tokens", in: `{"max_tokens":99999999999999999999}`, wantErr: "fits in 64 bits"},
		{name: "max_tokens string", in: `{"max_tokens":"10"}`, wantErr: "must be an integer"},
		{name: "n too big", in: `{"n":1000}`, wantErr: "n: must be between"},
		{name: "best_of zero", in: `{"best_of":0}`, wantErr: "best_of: must be between"},
		{name: "best_of string", in: `{"best_of":"3"}`, wantErr: "must be an integer"},
		{name: "messages not array", in: `{"messages":"hi"}`, wantErr: "messages: must be an array"},
		{name: "message not object", in: `{"messages":["hi"]}`, wantErr: "each message must be an object"},
		{name: "invalid utf8", in: "{\"model\":\"\xff\"}", wantErr: "UTF-8"},
		{name: "control char", in: "{\"model\":\"a\nb\"}", wantErr: "control character"},
		{name: "bad escape", in: `{"model":"\x"}`, wantErr: "invalid escape"},
		{name: "bad literal", in: `{"a":tru}`, wantErr: "invalid character"},
		{name: "missing colon", in: `{"a" 1}`, wantErr: "expected ':'"},
		{name: "too deep", in: `{"a":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`, wantErr: "too deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r reqscan.Request
			err := reqscan.Scan([]byte(tt.in), &r)
			if tt.wantErr != "" {
				var se *reqscan.Error
				if err == nil || !errors.As(err, &se) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Scan error = %v, want *Error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if diff := cmp.Diff(sum(&r), tt.want); diff != "" {
				t.Errorf("Scan (-got +want):\n%s", diff)
			}
			// The scanner accepts only what encoding/json accepts.
			if !json.Valid([]byte(tt.in)) {
				t.Errorf("Scan accepted invalid JSON %q", tt.in)
			}
		})
	}
}

func TestPromptEstimate(t *testing.T) {
	t.Parallel()
	r := reqscan.Request{Messages: 2, MessageChars: 9}
	if got, want := r.PromptEstimate(1000), int64(3+2*reqscan.PerMessageOverhead); got != want {
		t.Errorf("PromptEstimate with messages = %d, want %d", got, want)
	}
	r = reqscan.Request{}
	if got := r.PromptEstimate(401); got != 101 {
		t.Errorf("PromptEstimate without messages = %d, want 101", got)
	}
	if got := r.PromptEstimate(0); got != 1 {
		t.Errorf("PromptEstimate of empty body = %d, want 1", got)
	}
}

func TestEdits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		edit func(r *reqscan.Request) []reqscan.Edit
		want map[string]any
	}{
		{name: "set model", in: `{"model":"alias","x":1}`,
			edit: func(r *reqscan.Request) []reqscan.Edit { return []reqscan.Edit{r.SetModel("real/id")} },
			want: map[string]any{"model": "real/id", "x": 1.0}},
		{name: "insert model into empty object", in: `{ }`,
			edit: func(r *reqscan.Request) []reqscan.Edit { return []reqscan.Edit{r.SetModel("m")} },
			want: map[string]any{"model": "m"}},
		{name: "usage added", in: `{"model":"m","stream":true}`,
			edit: func(r *reqscan.Request) []reqscan.Edit { e, _ := r.RequestUsage(); return []reqscan.Edit{e} },
			want: map[string]any{"model": "m", "stream": true, "stream_options": map[string]any{"include_usage": true}}},
		{name: "usage into existing options", in: `{"stream_options":{"continuous":true}}`,
			edit: func(r *reqscan.Request) []reqscan.Edit { e, _ := r.RequestUsage(); return []reqscan.Edit{e} },
			want: map[string]any{"stream_options": map[string]any{"include_usage": true, "continuous": true}}},
		{name: "usage into blank options", in: `{"stream_options":{  }}`,
			edit: func(r *reqscan.Request) []reqscan.Edit { e, _ := r.RequestUsage(); return []reqscan.Edit{e} },
			want: map[string]any{"stream_options": map[string]any{"include_usage": true}}},
		{name: "usage false flipped", in: `{"stream_options":{"include_usage":false,"a":1}}`,
			edit: func(r *reqscan.Request) []reqscan.Edit { e, _ := r.RequestUsage(); return []reqscan.Edit{e} },
			want: map[string]any{"stream_options": map[string]any{"include_usage": true, "a": 1.0}}},
		{name: "clamp existing fields", in: `{"max_tokens":100,"max_completion_tokens":90}`,
			edit: func(r *reqscan.Request) []reqscan.Edit { return r.SetMaxTokens(7, "max_tokens") },
			want: map[string]any{"max_tokens": 7.0, "max_completion_tokens": 7.0}},
		{name: "every engine's bound rewritten", in: `{"max_tokens":5,"n_predict":100000,"max_new_tokens":9000}`,
			edit: func(r *reqscan.Request) []reqscan.Edit { return r.SetMaxTokens(5, "max_tokens") },
			want: map[string]any{"max_tokens": 5.0, "n_predict": 5.0, "max_new_tokens": 5.0}},
		{name: "route's bound added beside another", in: `{"max_completion_tokens":90}`,
			edit: func(r *reqscan.Request) []reqscan.Edit { return r.SetMaxTokens(7, "max_tokens") },
			want: map[string]any{"max_tokens": 7.0, "max_completion_tokens": 7.0}},
		{name: "clamp adds field", in: `{"model":"m"}`,
			edit: func(r *reqscan.Request) []reqscan.Edit { return r.SetMaxTokens(7, "max_output_tokens") },
			want: map[string]any{"model": "m", "max_output_tokens": 7.0}},
		{name: "all together", in: `{"model":"a","stream":true,"max_tokens":50}`,
			edit: func(r *reqscan.Request) []reqscan.Edit {
				e, _ := r.RequestUsage()
				return append(r.SetMaxTokens(10, "max_tokens"), r.SetModel("b"), e)
			},
			want: map[string]any{"model": "b", "stream": true, "max_tokens": 10.0, "stream_options": map[string]any{"include_usage": true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r reqscan.Request
			if err := reqscan.Scan([]byte(tt.in), &r); err != nil {
				t.Fatal(err)
			}
			out := reqscan.Apply([]byte(tt.in), tt.edit(&r)...)
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("edited body %q is not JSON: %v", out, err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("edited body %s (-got +want):\n%s", out, diff)
			}
		})
	}
}

func TestRequestUsageAlreadySet(t *testing.T) {
	t.Parallel()
	var r reqscan.Request
	if err := reqscan.Scan([]byte(`{"stream_options":{"include_usage":true}}`), &r); err != nil {
		t.Fatal(err)
	}
	if _, changed := r.RequestUsage(); changed {
		t.Error("RequestUsage changed a request that already asks for usage")
	}
}

// FuzzScan checks that Scan never panics, accepts only valid JSON objects,
// and that its edits always produce valid JSON with the new values.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`,
		`{"model":"m","stream_options":{"include_usage":false},"max_tokens":3}`,
		`{"system":[{"type":"text","text":"x"}],"messages":[{"content":[{"type":"text","text":"y"}]}]}`,
		`{}`, `[]`, `{"a":[1,{"b":null}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r reqscan.Request
		if err := reqscan.Scan(body, &r); err != nil {
			return
		}
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("Scan accepted %q, which encoding/json refuses: %v", body, err)
		}
		e, _ := r.RequestUsage()
		out := reqscan.Apply(body, append(r.SetMaxTokens(5, "max_tokens"), r.SetModel("z"), e)...)
		// A map keeps keys exactly (struct decoding would match them
		// case-insensitively, as engines written in other languages do not).
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("edited %q into invalid JSON %q: %v", body, out, err)
		}
		so, _ := got["stream_options"].(map[string]any)
		if got["model"] != "z" || got["max_tokens"] != 5.0 || so["include_usage"] != true {
			t.Fatalf("edits lost in %q", out)
		}
	})
}

func tenKB() []byte {
	var b strings.Builder
	b.WriteString(`{"model":"llama-3.1-8b-instruct","stream":true,"max_tokens":256,"messages":[`)
	for i := 0; b.Len() < 10<<10; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"role":"user","content":"message %d: the quick brown fox jumps over the lazy dog, again and again, \"quoted\" text"}`, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkScan10KB measures the prescan of a 10 KB chat body (target <= 20 us).
func BenchmarkScan10KB(b *testing.B) {
	body := tenKB()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var r reqscan.Request
	for b.Loop() {
		if err := reqscan.Scan(body, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJSONUnmarshal10KB is the reference: a full encoding/json decode
// of the same body into the fields the gateway needs.
func BenchmarkJSONUnmarshal10KB(b *testing.B) {
	body := tenKB()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var v struct {
			Model     string `json:"model"`
			Stream    bool   `json:"stream"`
			MaxTokens int64  `json:"max_tokens"`
			Messages  []struct {
				Role    string          `json:"role"`
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSequences(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want int64
	}{
		{`{"model":"m"}`, 1},
		{`{"model":"m","n":3}`, 3},
		{`{"model":"m","best_of":4}`, 4},
		{`{"model":"m","n":5,"best_of":2}`, 5},
	} {
		var r reqscan.Request
		if err := reqscan.Scan([]byte(tt.in), &r); err != nil {
			t.Fatalf("Scan(%s): %v", tt.in, err)
		}
		if got := r.Sequences(); got != tt.want {
			t.Errorf("Sequences(%s) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestPromptBound: the bound is the body's bytes plus the template's
// tokens, never below the estimate.
func TestPromptBound(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"model":"m","messages":[{"role":"user","content":"Hello there"}]}`,
		`{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"` + strings.Repeat("日本語", 100) + `"}]}`,
		`{"model":"m","prompt":"Hello"}`,
	} {
		var r reqscan.Request
		if err := reqscan.Scan([]byte(in), &r); err != nil {
			t.Fatalf("Scan(%s): %v", in, err)
		}
		want := int64(len(in) + 8*r.Messages + 16)
		if got := r.PromptBound(len(in)); got != want || got < r.PromptEstimate(len(in)) {
			t.Errorf("PromptBound(%.40s…) = %d, want %d (estimate %d)", in, got, want, r.PromptEstimate(len(in)))
		}
	}
}
