package sim

import (
	"encoding/json"
	"net/http"

	"github.com/helexa-ai/helexa-go/internal/jsonw"
)

// serveChat answers POST /v1/chat/completions.
func (e *Engine) serveChat(w http.ResponseWriter, r *http.Request, st *reqState) {
	j, err := e.prepareChat(st)
	if err != nil {
		writeError(w, err)
		return
	}
	if len(j.calls) > 0 {
		e.runToolCalls(w, r, st, &j)
		return
	}
	e.run(w, r, st, &j)
}

func (e *Engine) prepareChat(st *reqState) (job, error) {
	if err := st.decode(); err != nil {
		return job{}, err
	}
	req := &st.req
	if len(req.Messages) == 0 {
		return job{}, badParam("messages", "messages must be a non-empty array")
	}
	budget, err := st.tokenLimit(limitArg{"max_completion_tokens", req.MaxCompletionTokens}, limitArg{"max_tokens", req.MaxTokens})
	if err != nil {
		return job{}, err
	}
	seed, tokens, start := fnvOffset, 0, len(st.text)
	for i := range req.Messages {
		m := &req.Messages[i]
		seed = hashMessage(seed, m.Role, string(m.Content))
		tokens += EstimateTokens(string(m.Content)) + MessageOverhead
		st.appendMessage(m.Role, string(m.Content))
	}
	st.prompts = append(st.prompts, prompt{seed: seed, tokens: tokens, start: start, end: len(st.text)})
	j, err := e.prepareGeneration(st, "messages", budget, false)
	if err != nil {
		return job{}, err
	}
	st.chat.init(st, false, e.nextID(), e.now().Unix(), e.answerModel(req.Model), req.StreamOptions.IncludeUsage)
	j.f = &st.chat
	if err := st.planToolCalls(&j); err != nil {
		return job{}, err
	}
	return j, nil
}

// serveCompletions answers POST /v1/completions.
func (e *Engine) serveCompletions(w http.ResponseWriter, r *http.Request, st *reqState) {
	j, err := e.prepareCompletions(st)
	if err != nil {
		writeError(w, err)
		return
	}
	e.run(w, r, st, &j)
}

func (e *Engine) prepareCompletions(st *reqState) (job, error) {
	if err := st.decode(); err != nil {
		return job{}, err
	}
	req := &st.req
	if err := st.parsePrompts(req.Prompt, "prompt"); err != nil {
		return job{}, err
	}
	budget, err := st.tokenLimit(limitArg{"max_tokens", req.MaxTokens})
	if err != nil {
		return job{}, err
	}
	j, err := e.prepareGeneration(st, "prompt", budget, true)
	if err != nil {
		return job{}, err
	}
	st.chat.init(st, true, e.nextID(), e.now().Unix(), e.answerModel(req.Model), req.StreamOptions.IncludeUsage)
	j.f = &st.chat
	return j, nil
}

// prepareGeneration checks the parameters shared by the generation routes
// and sets up the choices: best_of candidates (n when best_of is not set;
// completions only) per prompt. st.prompts must be filled.
func (e *Engine) prepareGeneration(st *reqState, promptParam string, budget int, bestOf bool) (job, error) {
	req := &st.req
	n, err := st.choiceCount()
	if err != nil {
		return job{}, err
	}
	candidates := n
	if req.BestOf.set && bestOf {
		if candidates = req.BestOf.v; candidates < n || candidates > maxChoices {
			return job{}, badParam("best_of", "best_of must be between n (%d) and %d, got %d", n, maxChoices, candidates)
		}
		if candidates > n && req.Stream {
			return job{}, badParam("best_of", "best_of above n cannot be streamed")
		}
	}
	maxStop, err := st.parseStops()
	if err != nil {
		return job{}, err
	}
	t, err := e.lookup(req.Model)
	if err != nil {
		return job{}, err
	}
	j := job{t: t, stream: req.Stream, stops: st.stops, maxStop: maxStop, n: n}
	longest := 0
	for _, p := range st.prompts {
		if p.tokens > t.cfg.ContextLength {
			return job{}, contextError(promptParam, p.tokens, t.cfg.ContextLength)
		}
		j.promptTokens += p.tokens
		longest = max(longest, p.tokens)
	}
	j.budget = min(budget, t.cfg.ContextLength-longest)
	total := len(st.prompts) * candidates
	if total > maxChoices {
		return job{}, badParam("n", "%d prompts times %d choices = %d is over %d choices", len(st.prompts), candidates, total, maxChoices)
	}
	if cap(st.choices) < total {
		st.choices = append(st.choices[:cap(st.choices)], make([]choice, total-cap(st.choices))...)
	}
	st.choices = st.choices[:total]
	for pi, p := range st.prompts {
		for k := range candidates {
			i := pi*candidates + k
			// Candidates past n are never returned: index -1 until
			// pick drops them.
			index := -1
			if k < n {
				index = pi*n + k
			}
			st.choices[i].reset(index, choiceSeed(p.seed, k))
		}
	}
	j.choices = st.choices
	return j, nil
}

// pick returns the choices an answer shows: all of them, or with best_of
// the first n candidates of each prompt (the "best" of a model that has no
// notion of better), moved to the front of choices by swapping, so that
// every choice keeps its own text buffer.
func (j *job) pick() []choice {
	shown := 0
	for i := range j.choices {
		if j.choices[i].index >= 0 {
			j.choices[shown], j.choices[i] = j.choices[i], j.choices[shown]
			shown++
		}
	}
	return j.choices[:shown]
}

// answerModel is the model id an answer reports.
func (e *Engine) answerModel(requested string) string {
	if requested == "" {
		return e.modelID
	}
	return requested
}

// parsePrompts reads a completions prompt or an embeddings input (a string,
// an array of strings, an array of token ids or an array of such arrays)
// into st.prompts.
func (st *reqState) parsePrompts(raw rawJSON, param string) error {
	bad := func() error {
		return badParam(param, "%s must be a string, an array of strings, or an array of token arrays", param)
	}
	if len(raw) == 0 {
		return badParam(param, "%s is required", param)
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return bad()
		}
		st.prompts = append(st.prompts, st.textPrompt(s))
		return nil
	case '[':
	default:
		return bad()
	}
	var texts []string
	if err := json.Unmarshal(raw, &texts); err == nil {
		for _, s := range texts {
			st.prompts = append(st.prompts, st.textPrompt(s))
		}
	} else {
		var ids []uint64
		if err := json.Unmarshal(raw, &ids); err == nil {
			st.prompts = append(st.prompts, st.tokenPrompt(ids))
		} else {
			var lists [][]uint64
			if err := json.Unmarshal(raw, &lists); err != nil {
				return bad()
			}
			for _, l := range lists {
				st.prompts = append(st.prompts, st.tokenPrompt(l))
			}
		}
	}
	if len(st.prompts) == 0 {
		return badParam(param, "%s must not be empty", param)
	}
	return nil
}

// textPrompt returns the prompt s, its text appended to st.text.
func (st *reqState) textPrompt(s string) prompt {
	start := len(st.text)
	st.text = append(st.text, s...)
	return prompt{seed: hashString(fnvOffset, s), tokens: EstimateTokens(s), start: start, end: len(st.text)}
}

// tokenPrompt returns the prompt of token ids, its text (four bytes per
// token, so that a block is as many tokens as for text) appended to
// st.text.
func (st *reqState) tokenPrompt(ids []uint64) prompt {
	p := prompt{seed: fnvOffset ^ 0x5a, tokens: len(ids), start: len(st.text)}
	for _, id := range ids {
		p.seed = hashUint(p.seed, id)
		st.text = append(st.text, byte(id), byte(id>>8), byte(id>>16), byte(id>>24))
	}
	p.end = len(st.text)
	return p
}

// appendMessage appends a chat message's text to st.text: its role and
// content, each ended by a zero byte.
func (st *reqState) appendMessage(role, content string) {
	st.text = append(st.text, role...)
	st.text = append(st.text, 0)
	st.text = append(st.text, content...)
	st.text = append(st.text, 0)
}

// chatFormat writes chat completions and text completions.
type chatFormat struct {
	text    bool // the text completion shape
	id      uint64
	created int64
	model   string
	usage   bool   // stream_options.include_usage
	prefix  []byte // "data: " and a chunk up to `"choices":[`
}

func (f *chatFormat) init(st *reqState, text bool, id uint64, created int64, model string, includeUsage bool) {
	*f = chatFormat{text: text, id: id, created: created, model: model, usage: includeUsage}
	if st.req.Stream {
		obj := "chat.completion.chunk"
		if text {
			obj = "text_completion"
		}
		b := append(st.prefix[:0], "data: "...)
		st.prefix = f.head(b, obj)
		f.prefix = st.prefix
	}
}

// head appends an answer object up to `"choices":[`.
func (f *chatFormat) head(b []byte, object string) []byte {
	b = append(b, `{"id":"`...)
	if f.text {
		b = append(b, "cmpl-"...)
	} else {
		b = append(b, "chatcmpl-"...)
	}
	b = appendHex(b, f.id)
	b = append(b, `","object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = appendInt(b, int(f.created))
	b = append(b, `,"model":`...)
	b = jsonw.AppendString(b, f.model)
	return append(b, `,"choices":[`...)
}

func (f *chatFormat) streamHead(b []byte) []byte { return b }

func (f *chatFormat) delta(b []byte, c *choice, text []byte, first bool) []byte {
	if f.text {
		if len(text) == 0 {
			return b
		}
		b = append(b, f.prefix...)
		b = append(b, `{"text":"`...)
		b = append(b, text...)
		b = append(b, `","index":`...)
		b = appendInt(b, c.index)
		return append(b, ",\"logprobs\":null,\"finish_reason\":null}]}\n\n"...)
	}
	if first {
		b = append(b, f.prefix...)
		b = append(b, `{"index":`...)
		b = appendInt(b, c.index)
		b = append(b, ",\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"...)
	}
	if len(text) > 0 {
		b = append(b, f.prefix...)
		b = append(b, `{"index":`...)
		b = appendInt(b, c.index)
		b = append(b, `,"delta":{"content":"`...)
		b = append(b, text...)
		b = append(b, "\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"...)
	}
	return b
}

func (f *chatFormat) streamTail(b []byte, choices []choice, u usage) []byte {
	for i := range choices {
		c := &choices[i]
		b = append(b, f.prefix...)
		if f.text {
			b = append(b, `{"text":"","index":`...)
			b = appendInt(b, c.index)
			b = append(b, `,"logprobs":null`...)
		} else {
			b = append(b, `{"index":`...)
			b = appendInt(b, c.index)
			b = append(b, `,"delta":{},"logprobs":null`...)
		}
		b = append(b, `,"finish_reason":"`...)
		b = append(b, c.finish...)
		b = append(b, "\"}]}\n\n"...)
	}
	if f.usage {
		b = append(b, f.prefix...)
		b = append(b, `],"usage":`...)
		b = appendUsage(b, u)
		b = append(b, "}\n\n"...)
	}
	return append(b, "data: [DONE]\n\n"...)
}

func (f *chatFormat) body(b []byte, choices []choice, u usage) []byte {
	obj := "chat.completion"
	if f.text {
		obj = "text_completion"
	}
	b = f.head(b, obj)
	for i := range choices {
		c := &choices[i]
		if i > 0 {
			b = append(b, ',')
		}
		if f.text {
			b = append(b, `{"text":"`...)
			b = append(b, c.text...)
			b = append(b, `","index":`...)
			b = appendInt(b, c.index)
		} else {
			b = append(b, `{"index":`...)
			b = appendInt(b, c.index)
			b = append(b, `,"message":{"role":"assistant","content":"`...)
			b = append(b, c.text...)
			b = append(b, `"}`...)
		}
		b = append(b, `,"logprobs":null,"finish_reason":"`...)
		b = append(b, c.finish...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"usage":`...)
	b = appendUsage(b, u)
	return append(b, "}\n"...)
}

// appendHex appends v as 16 lower-case hex digits.
func appendHex(b []byte, v uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[(v>>uint(shift))&0xf])
	}
	return b
}
