package sim

import (
	"encoding/json"
	"net/http"

	"github.com/helexa-ai/helexa-go/internal/jsonw"
)

// serveResponses answers POST /v1/responses (the Responses API).
func (e *Engine) serveResponses(w http.ResponseWriter, r *http.Request, st *reqState) {
	j, err := e.prepareResponses(st)
	if err != nil {
		writeError(w, err)
		return
	}
	e.run(w, r, st, &j)
}

func (e *Engine) prepareResponses(st *reqState) (job, error) {
	if err := st.decode(); err != nil {
		return job{}, err
	}
	req := &st.req
	if req.N.set && req.N.v != 1 {
		return job{}, badParam("n", "the Responses API has no n parameter")
	}
	if req.NCmpl.set && req.NCmpl.v != 1 {
		return job{}, badParam("n_cmpl", "the Responses API has one output")
	}
	if len(req.Stop) > 0 {
		return job{}, badParam("stop", "the Responses API has no stop parameter")
	}
	seed, tokens, start := fnvOffset, 0, len(st.text)
	if req.Instructions != "" {
		seed = hashMessage(seed, "system", req.Instructions)
		tokens += EstimateTokens(req.Instructions) + MessageOverhead
		st.appendMessage("system", req.Instructions)
	}
	raw := req.Input
	switch {
	case len(raw) == 0:
		return job{}, badParam("input", "input is required")
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return job{}, badParam("input", "input must be a string or an array of input items")
		}
		seed = hashMessage(seed, "user", s)
		tokens += EstimateTokens(s) + MessageOverhead
		st.appendMessage("user", s)
	default:
		var items []message
		if err := json.Unmarshal(raw, &items); err != nil {
			return job{}, badParam("input", "input must be a string or an array of input items")
		}
		if len(items) == 0 {
			return job{}, badParam("input", "input must not be empty")
		}
		for i := range items {
			seed = hashMessage(seed, items[i].Role, string(items[i].Content))
			tokens += EstimateTokens(string(items[i].Content)) + MessageOverhead
			st.appendMessage(items[i].Role, string(items[i].Content))
		}
	}
	st.prompts = append(st.prompts, prompt{seed: seed, tokens: tokens, start: start, end: len(st.text)})
	budget, err := st.tokenLimit(limitArg{"max_output_tokens", req.MaxOutputTokens})
	if err != nil {
		return job{}, err
	}
	j, err := e.prepareGeneration(st, "input", budget, false)
	if err != nil {
		return job{}, err
	}
	st.resp = responsesFormat{id: e.nextID(), created: e.now().Unix(), model: e.answerModel(req.Model)}
	j.f = &st.resp
	return j, nil
}

// responsesFormat writes Responses API answers and event streams.
type responsesFormat struct {
	id      uint64 // of the response and of its one message
	created int64
	model   string
	seq     int // sequence_number of the next event
}

// event appends the start of an event of type typ, up to the comma after
// its sequence number.
func (f *responsesFormat) event(b []byte, typ string) []byte {
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: {\"type\":\""...)
	b = append(b, typ...)
	b = append(b, `","sequence_number":`...)
	b = appendInt(b, f.seq)
	f.seq++
	return append(b, ',')
}

// itemRef appends the fields naming the one output text part.
func (f *responsesFormat) itemRef(b []byte) []byte {
	b = append(b, `"item_id":"msg_`...)
	b = appendHex(b, f.id)
	return append(b, `","output_index":0,"content_index":0,`...)
}

// response appends the response object; c is nil while in progress.
func (f *responsesFormat) response(b []byte, c *choice, u *usage) []byte {
	b = append(b, `{"id":"resp_`...)
	b = appendHex(b, f.id)
	b = append(b, `","object":"response","created_at":`...)
	b = appendInt(b, int(f.created))
	if c == nil {
		b = append(b, `,"status":"in_progress"`...)
	} else {
		b = append(b, `,"status":"completed"`...)
	}
	b = append(b, `,"model":`...)
	b = jsonw.AppendString(b, f.model)
	b = append(b, `,"output":[`...)
	if c != nil {
		b = f.item(b, c)
	}
	b = append(b, `],"usage":`...)
	if u == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"input_tokens":`...)
		b = appendInt(b, u.prompt)
		b = append(b, `,"output_tokens":`...)
		b = appendInt(b, u.completion)
		b = append(b, `,"total_tokens":`...)
		b = appendInt(b, u.prompt+u.completion)
		if u.details {
			b = append(b, `,"input_tokens_details":{"cached_tokens":`...)
			b = appendInt(b, u.cached)
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// item appends the output message; c is nil while in progress.
func (f *responsesFormat) item(b []byte, c *choice) []byte {
	b = append(b, `{"id":"msg_`...)
	b = appendHex(b, f.id)
	if c == nil {
		return append(b, `","type":"message","status":"in_progress","role":"assistant","content":[]}`...)
	}
	b = append(b, `","type":"message","status":"completed","role":"assistant","content":[`...)
	b = f.part(b, c)
	return append(b, "]}"...)
}

// part appends the output text part.
func (f *responsesFormat) part(b []byte, c *choice) []byte {
	b = append(b, `{"type":"output_text","text":"`...)
	if c != nil {
		b = append(b, c.text...)
	}
	return append(b, `","annotations":[]}`...)
}

func (f *responsesFormat) streamHead(b []byte) []byte {
	b = f.event(b, "response.created")
	b = append(b, `"response":`...)
	b = f.response(b, nil, nil)
	b = append(b, "}\n\n"...)
	b = f.event(b, "response.in_progress")
	b = append(b, `"response":`...)
	b = f.response(b, nil, nil)
	b = append(b, "}\n\n"...)
	b = f.event(b, "response.output_item.added")
	b = append(b, `"output_index":0,"item":`...)
	b = f.item(b, nil)
	b = append(b, "}\n\n"...)
	b = f.event(b, "response.content_part.added")
	b = f.itemRef(b)
	b = append(b, `"part":`...)
	b = f.part(b, nil)
	return append(b, "}\n\n"...)
}

func (f *responsesFormat) delta(b []byte, _ *choice, text []byte, _ bool) []byte {
	if len(text) == 0 {
		return b
	}
	b = f.event(b, "response.output_text.delta")
	b = f.itemRef(b)
	b = append(b, `"delta":"`...)
	b = append(b, text...)
	return append(b, "\",\"logprobs\":[]}\n\n"...)
}

func (f *responsesFormat) streamTail(b []byte, choices []choice, u usage) []byte {
	c := &choices[0]
	b = f.event(b, "response.output_text.done")
	b = f.itemRef(b)
	b = append(b, `"text":"`...)
	b = append(b, c.text...)
	b = append(b, "\",\"logprobs\":[]}\n\n"...)
	b = f.event(b, "response.content_part.done")
	b = f.itemRef(b)
	b = append(b, `"part":`...)
	b = f.part(b, c)
	b = append(b, "}\n\n"...)
	b = f.event(b, "response.output_item.done")
	b = append(b, `"output_index":0,"item":`...)
	b = f.item(b, c)
	b = append(b, "}\n\n"...)
	b = f.event(b, "response.completed")
	b = append(b, `"response":`...)
	b = f.response(b, c, &u)
	return append(b, "}\n\n"...)
}

func (f *responsesFormat) body(b []byte, choices []choice, u usage) []byte {
	b = f.response(b, &choices[0], &u)
	return append(b, '\n')
}
