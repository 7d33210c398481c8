package anthropic_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/internal/anthropic"
)

func FuzzToChat(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","max_tokens":5,"system":[{"type":"text","text":"s"}],"stream":true,"stop_sequences":["x"],"temperature":0.2,"top_k":3,"metadata":{"user_id":"u"},"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]}]}`,
		`{"model":"m","max_tokens":5,"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f","disable_parallel_tool_use":true},"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":[1,{"b":null}]}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","is_error":true,"content":[{"type":"text","text":"e"},{"type":"image","source":{"type":"url","url":"u"}}]},{"type":"text","text":"go on"}]}]}`,
		`{"model":"m","max_tokens":1e3,"messages":[{"role":"assistant","content":[]}]}`,
		`{"model":"\u00e9","max_tokens":5,"messages":[{"role":"user","content":"\ud800"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := anthropic.ParseRequest(body)
		if err != nil {
			var re *anthropic.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("ParseRequest error %T %v, want *RequestError", err, err)
			}
			return
		}
		out, err := anthropic.ToChat(r)
		if err != nil {
			t.Fatalf("ToChat of a parsed request: %v", err)
		}
		var chat struct {
			Model    string            `json:"model"`
			Messages []json.RawMessage `json:"messages"`
		}
		if err := json.Unmarshal(out, &chat); err != nil {
			t.Fatalf("ToChat output is not JSON: %v\n%s", err, out)
		}
		if chat.Model != r.Model || len(chat.Messages) == 0 {
			t.Fatalf("ToChat output lost the model or the messages: %s", out)
		}
		if n := anthropic.CountTokens(r); n < 1 {
			t.Fatalf("CountTokens = %d", n)
		}
	})
}

// FuzzStream feeds newline-separated payloads (plus the control words
// <ping>, <finish> and <abort>) and checks that every event is well formed
// and that the sequence follows Anthropic's grammar.
func FuzzStream(f *testing.F) {
	seeds := [][]string{
		{chunk(`{"role":"assistant","content":""}`, `null`, ``), textDelta("Hi"), chunk(`{}`, `"stop"`, ``), usageChunk, "[DONE]"},
		{textDelta("a"), toolDelta(0, "c", "f", `{"x"`), toolDelta(1, "d", "g", `{}`), toolDelta(0, "", "", `:1}`), chunk(`{}`, `"tool_calls"`, ``), "<finish>"},
		{toolDelta(0, "c", "", ""), toolDelta(1, "d", "g", `{`), "<ping>", toolDelta(0, "", "f", `[]`), textDelta("x"), "<finish>"},
		{"<ping>", textDelta("a"), "<abort>"},
		{textDelta("a"), `{"error":{"message":"boom","code":500}}`},
		{textDelta("a\u2028\x01"), `{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":{"k":1}}}]},"finish_reason":"stop","stop_reason":"x"}]}`, "[DONE]"},
	}
	for _, s := range seeds {
		f.Add(strings.Join(s, "\n"))
	}
	f.Fuzz(func(t *testing.T, in string) {
		r := mustParse(t, `{"model":"m","max_tokens":10,"stop_sequences":["x"],"messages":[{"role":"user","content":"hi"}]}`)
		var out bytes.Buffer
		st, err := anthropic.NewStreamTranslator(&out, r)
		if err != nil {
			t.Fatal(err)
		}
		ended := false
		for _, line := range strings.Split(in, "\n") {
			var err error
			switch line {
			case "<ping>":
				err = st.Ping()
			case "<finish>":
				err = st.Finish()
				ended = true
			case "<abort>":
				err = st.Abort(errors.New("x"))
				ended = true
			default:
				err = st.Feed([]byte(line))
			}
			if errors.Is(err, anthropic.ErrClosed) && !ended {
				ended = true // an in-stream error or [DONE] ended it
			}
		}
		if !ended {
			_ = st.Finish()
		}
		evs, err := parseEvents(out.String())
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		if err := checkProtocol(evs, true); err != nil {
			t.Fatalf("protocol: %v\n%s", err, out.String())
		}
	})
}

// FuzzStreamOps drives the translator with well-formed chunks chosen by
// ops (text, tool call fragments with and without index, finish reasons,
// usage, pings, raw payloads, [DONE], Finish, Abort) cut from the text in
// s. Besides the grammar it checks that no text is lost: the text deltas
// add up to the text fed before the stream ended.
func FuzzStreamOps(f *testing.F) {
	f.Add([]byte{0, 0, 1, 9, 17, 3, 4, 7}, `Hello {"a":1} world`)
	f.Add([]byte{1, 9, 1, 9, 0, 5, 2, 3 | 2<<3, 15}, `{"x":"y"}{"z":[1,2]}`)
	f.Add([]byte{5, 6, 0, 1, 0, 3 | 1<<3, 4, 7 | 1<<3}, "\x00\u2028é😀\"\\")
	f.Fuzz(func(t *testing.T, ops []byte, s string) {
		if len(ops) > 200 {
			return
		}
		r := mustParse(t, `{"model":"m","max_tokens":10,"stop_sequences":["x"],"messages":[{"role":"user","content":"hi"}]}`)
		var out bytes.Buffer
		st, err := anthropic.NewStreamTranslator(&out, r)
		if err != nil {
			t.Fatal(err)
		}
		pos := 0
		piece := func(b byte) string {
			if len(s) == 0 {
				return ""
			}
			n := int(b>>4)%6 + 1
			var sb strings.Builder
			for range n {
				sb.WriteByte(s[pos%len(s)])
				pos++
			}
			return sb.String()
		}
		var fed strings.Builder
		ended := false
		for _, b := range ops {
			var err error
			text := ""
			switch b % 8 {
			case 0:
				enc := jsonString(t, piece(b))
				_ = json.Unmarshal([]byte(enc), &text) // the text as the engine sent it
				err = st.Feed([]byte(chunk(`{"content":`+enc+`}`, `null`, ``)))
			case 1:
				id, name := "", ""
				if b&0x20 != 0 {
					id, name = "id"+piece(b), "fn"
				}
				err = st.Feed([]byte(toolDelta(int(b>>3)%3, id, name, piece(b))))
			case 2:
				err = st.Feed([]byte(chunk(`{"tool_calls":[{"id":`+jsonString(t, piece(b))+`,"function":{"name":"g","arguments":`+jsonString(t, piece(b))+`}}]}`, `null`, ``)))
			case 3:
				reasons := []string{`"stop"`, `"length"`, `"tool_calls"`, `"content_filter"`, `null`}
				err = st.Feed([]byte(chunk(`{}`, reasons[int(b>>3)%len(reasons)], `,"stop_reason":"x"`)))
			case 4:
				err = st.Feed([]byte(usageChunk))
			case 5:
				err = st.Ping()
			case 6:
				err = st.Feed([]byte(piece(b)))
			case 7:
				switch (b >> 3) % 3 {
				case 0:
					err = st.Feed([]byte("[DONE]"))
				case 1:
					err = st.Finish()
				default:
					err = st.Abort(errors.New("x"))
				}
				ended = true
			}
			if err == nil && !ended {
				fed.WriteString(text)
			}
			if errors.Is(err, anthropic.ErrClosed) {
				ended = true
			}
			var ae *anthropic.APIError
			if errors.As(err, &ae) {
				ended = true // a raw payload held an error object
			}
		}
		_ = st.Finish()
		evs, err := parseEvents(out.String())
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		if err := checkProtocol(evs, true); err != nil {
			t.Fatalf("protocol: %v\n%s", err, out.String())
		}
		var got strings.Builder
		for _, e := range evs {
			if e.Name != "content_block_delta" {
				continue
			}
			if d := e.Data.(map[string]any)["delta"].(map[string]any); d["type"] == "text_delta" {
				got.WriteString(d["text"].(string))
			}
		}
		if want := fed.String(); got.String() != want {
			t.Fatalf("text %q, want %q\n%s", got.String(), want, out.String())
		}
	})
}
