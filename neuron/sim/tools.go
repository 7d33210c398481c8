package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/helexa-ai/helexa-go/internal/jsonw"
)

// toolDef is one entry of a chat request's "tools".
type toolDef struct {
	Type     string `json:"type"`
	Function struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// toolCall is the tool call one choice answers with.
type toolCall struct {
	id     string
	name   string
	args   []byte // a JSON object
	cuts   []int  // ends of the argument fragments a stream sends, in args
	tokens int    // completion tokens
}

// tool_choice modes.
const (
	choiceAuto     = "auto"
	choiceNone     = "none"
	choiceRequired = "required"
	choiceNamed    = "function" // {"type":"function","function":{"name":...}}
)

// planToolCalls decides whether the chat request in st is answered with a
// tool call (see the package documentation) and, when it is, fills
// j.calls with one call per choice.
func (st *reqState) planToolCalls(j *job) error {
	req := &st.req
	if len(req.Tools) == 0 {
		return nil
	}
	for i := range req.Tools {
		t := &req.Tools[i]
		if t.Type != "function" || t.Function.Name == "" {
			return badParam("tools", "tools[%d] must be {\"type\":\"function\",\"function\":{\"name\":...}}", i)
		}
	}
	mode, name, err := parseToolChoice(req.ToolChoice)
	if err != nil {
		return err
	}
	var tool *toolDef
	last := &req.Messages[len(req.Messages)-1]
	switch {
	case mode == choiceNone || last.Role != "user":
		return nil
	case mode == choiceNamed:
		i := slices.IndexFunc(req.Tools, func(t toolDef) bool { return t.Function.Name == name })
		if i < 0 {
			return badParam("tool_choice", "tool_choice names %q, which is not in tools", name)
		}
		tool = &req.Tools[i]
	default:
		i := slices.IndexFunc(req.Tools, func(t toolDef) bool { return strings.Contains(string(last.Content), t.Function.Name) })
		switch {
		case i >= 0:
			tool = &req.Tools[i]
		case mode == choiceRequired:
			tool = &req.Tools[0]
		default:
			return nil
		}
	}
	j.calls = make([]toolCall, len(j.choices))
	for i := range j.choices {
		j.calls[i] = newToolCall(tool, j.choices[i].seed)
	}
	return nil
}

// parseToolChoice reads tool_choice: absent is "auto".
func parseToolChoice(raw rawJSON) (mode, name string, err error) {
	bad := badParam("tool_choice", `tool_choice must be "none", "auto", "required" or {"type":"function","function":{"name":...}}`)
	switch {
	case len(raw) == 0:
		return choiceAuto, "", nil
	case raw[0] == '"':
		if err := json.Unmarshal(raw, &mode); err != nil {
			return "", "", bad
		}
		switch mode {
		case choiceAuto, choiceNone, choiceRequired:
			return mode, "", nil
		}
		return "", "", bad
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Type != "function" || named.Function.Name == "" {
		return "", "", bad
	}
	return choiceNamed, named.Function.Name, nil
}

// newToolCall builds the deterministic call of tool for a choice's seed:
// one argument per property of the tool's parameters schema, in name
// order, each value drawn from the seed.
func newToolCall(tool *toolDef, seed uint64) toolCall {
	c := toolCall{name: tool.Function.Name}
	var idb []byte
	idb = append(idb, "call_"...)
	c.id = string(appendHex(idb, mix(seed^0x7001)))
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal(tool.Function.Parameters, &schema) // not an object schema: no arguments
	names := make([]string, 0, len(schema.Properties))
	for n := range schema.Properties {
		names = append(names, n)
	}
	slices.Sort(names)
	c.args = append(c.args, '{')
	for i, n := range names {
		if i > 0 {
			c.cuts = append(c.cuts, len(c.args))
			c.args = append(c.args, ',')
		}
		c.args = jsonw.AppendString(c.args, n)
		c.args = append(c.args, ':')
		c.args = appendArgValue(c.args, schema.Properties[n], mix(seed+uint64(i+1)*golden))
	}
	c.args = append(c.args, '}')
	c.cuts = append(c.cuts, len(c.args))
	c.tokens = max(EstimateTokens(c.name)+EstimateTokens(string(c.args)), 1)
	return c
}

// appendArgValue appends a value for a property with the given schema: one
// of its enum values, else a value of its type (a word for a string or an
// unknown type, 0 to 99 for a number, a boolean, an empty array or
// object, null).
func appendArgValue(b []byte, schema json.RawMessage, h uint64) []byte {
	var s struct {
		Type json.RawMessage   `json:"type"`
		Enum []json.RawMessage `json:"enum"`
	}
	_ = json.Unmarshal(schema, &s)
	if len(s.Enum) > 0 {
		var buf bytes.Buffer
		if json.Compact(&buf, s.Enum[h%uint64(len(s.Enum))]) == nil {
			return append(b, buf.Bytes()...)
		}
	}
	var typ string
	if err := json.Unmarshal(s.Type, &typ); err != nil {
		var types []string
		if json.Unmarshal(s.Type, &types) == nil && len(types) > 0 {
			typ = types[0]
		}
	}
	switch typ {
	case "integer", "number":
		return appendInt(b, int(h%100))
	case "boolean":
		if h&1 == 1 {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case "array":
		return append(b, "[]"...)
	case "object":
		return append(b, "{}"...)
	case "null":
		return append(b, "null"...)
	}
	return jsonw.AppendString(b, words[h%uint64(len(words))])
}

// runToolCalls writes the tool call answer of j, streamed or not, paced
// as one step per argument fragment. Like run, it returns early when the
// client goes away and aborts the connection when the model stops
// serving. The faults of Config (CrashAfterTokens, Hang) apply to text
// answers only.
func (e *Engine) runToolCalls(w http.ResponseWriter, r *http.Request, st *reqState, j *job) {
	ctx := r.Context()
	if j.t.life != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(j.t.life, cancel)()
	}
	var p pacer
	p.init(e.clock, j.t.cfg)
	defer p.stop()

	f := &st.chat
	steps := 0
	for i := range j.calls {
		steps = max(steps, len(j.calls[i].cuts))
	}
	e.prompted.Add(uint64(j.promptTokens))
	if s := e.submit(st, j, steps); s != nil {
		defer j.t.gpu.leave(s)
		p.initSeq(s, &e.cached)
	}
	u := usage{prompt: j.promptTokens}
	for i := range j.calls {
		u.completion += j.calls[i].tokens
		j.choices[i].finish = "tool_calls"
	}
	e.generated.Add(uint64(u.completion))
	b := st.out[:0]
	if !j.stream {
		if err := p.wait(ctx, steps-1); err != nil {
			abortIfStopped(j.t)
			return
		}
		p.addCached(&u)
		b = f.toolBody(b, j.choices, j.calls, u)
		st.out = b
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for step := range steps {
		if err := p.wait(ctx, step); err != nil {
			abortIfStopped(j.t)
			return
		}
		b = b[:0]
		for i := range j.calls {
			if step < len(j.calls[i].cuts) {
				b = f.toolDelta(b, j.choices[i].index, &j.calls[i], step)
			}
		}
		st.out = b
		if _, err := w.Write(b); err != nil {
			return
		}
		_ = rc.Flush()
	}
	p.addCached(&u)
	b = f.streamTail(b[:0], j.choices, u)
	st.out = b
	if _, err := w.Write(b); err == nil {
		_ = rc.Flush()
	}
}

// toolDelta appends the chunk with fragment step of call, the answer of
// choice index: the first one also carries the role, the call's id, type
// and name.
func (f *chatFormat) toolDelta(b []byte, index int, call *toolCall, step int) []byte {
	from := 0
	if step > 0 {
		from = call.cuts[step-1]
	}
	b = append(b, f.prefix...)
	b = append(b, `{"index":`...)
	b = appendInt(b, index)
	if step == 0 {
		b = append(b, `,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"`...)
		b = append(b, call.id...)
		b = append(b, `","type":"function","function":{"name":`...)
		b = jsonw.AppendString(b, call.name)
		b = append(b, `,"arguments":`...)
	} else {
		b = append(b, `,"delta":{"tool_calls":[{"index":0,"function":{"arguments":`...)
	}
	b = jsonw.AppendString(b, string(call.args[from:call.cuts[step]]))
	return append(b, "}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"...)
}

// toolBody appends the non-streaming answer whose choices are tool calls.
func (f *chatFormat) toolBody(b []byte, choices []choice, calls []toolCall, u usage) []byte {
	b = f.head(b, "chat.completion")
	for i := range choices {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = appendInt(b, choices[i].index)
		b = append(b, `,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"`...)
		b = append(b, calls[i].id...)
		b = append(b, `","type":"function","function":{"name":`...)
		b = jsonw.AppendString(b, calls[i].name)
		b = append(b, `,"arguments":`...)
		b = jsonw.AppendString(b, string(calls[i].args))
		b = append(b, `}}]},"logprobs":null,"finish_reason":"tool_calls"}`...)
	}
	b = append(b, `],"usage":`...)
	b = appendUsage(b, u)
	return append(b, "}\n"...)
}
