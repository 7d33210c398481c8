package sim

import (
	"context"
	"net/http"
)

// format writes one kind of answer: chat, completions or responses.
type format interface {
	// streamHead returns b with what a stream starts with, before the
	// first token.
	streamHead(b []byte) []byte
	// delta returns b with the stream events for text, the new text of
	// choice c at one step; first is true at the first step (text may then
	// be empty).
	delta(b []byte, c *choice, text []byte, first bool) []byte
	// streamTail returns b with the end of a stream.
	streamTail(b []byte, choices []choice, u usage) []byte
	// body returns b with the non-streaming answer.
	body(b []byte, choices []choice, u usage) []byte
}

// usage is the token accounting of one answer. Under a GPU model, details
// is set and cached is the prompt tokens found in the prefix cache.
type usage struct {
	prompt, completion int
	cached             int
	details            bool
}

// job is one generation request, ready to run.
type job struct {
	t            target
	f            format
	stream       bool
	budget       int // tokens per choice
	promptTokens int
	n            int      // choices shown per prompt
	choices      []choice // best_of candidates per prompt: n unless best_of is set
	stops        [][]byte
	maxStop      int
	calls        []toolCall // one per choice when the answer is a tool call (tools.go)
}

// run generates j's answer and writes it, streamed or not. It returns early
// when the client goes away, and aborts the connection when the model stops
// serving or crashes.
func (e *Engine) run(w http.ResponseWriter, r *http.Request, st *reqState, j *job) {
	ctx := r.Context()
	if j.t.life != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(j.t.life, cancel)()
	}
	cfg := j.t.cfg
	var p pacer
	p.init(e.clock, cfg)
	defer p.stop()
	e.prompted.Add(uint64(j.promptTokens))
	if s := e.submit(st, j, j.budget); s != nil {
		defer j.t.gpu.leave(s)
		p.initSeq(s, &e.cached)
	}

	var rc *http.ResponseController
	b := st.out[:0] // st.out keeps the grown buffer for the next request
	if j.stream {
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		rc = http.NewResponseController(w)
		b = j.f.streamHead(b)
		st.out = b
		if _, err := w.Write(b); err != nil {
			return
		}
		_ = rc.Flush()
	}

	live := len(j.choices)
	for step := 0; step < j.budget && live > 0; step++ {
		if err := p.wait(ctx, step); err != nil {
			abortIfStopped(j.t)
			return
		}
		b = b[:0]
		made := 0
		for i := range j.choices {
			c := &j.choices[i]
			if c.finish != "" {
				continue
			}
			from := c.sent
			c.next(j.stops, j.maxStop)
			made++
			if c.finish == "" && c.tokens >= j.budget {
				c.finish = "length"
				c.flush()
			}
			if c.finish != "" {
				live--
			}
			if j.stream && (step == 0 || c.sent > from) {
				b = j.f.delta(b, c, c.text[from:c.sent], step == 0)
			}
		}
		e.generated.Add(uint64(made))
		st.out = b
		if len(b) > 0 {
			if _, err := w.Write(b); err != nil {
				return
			}
			_ = rc.Flush()
		}
		if n := cfg.CrashAfterTokens; n > 0 && step+1 == n {
			if j.t.crash != nil {
				j.t.crash()
			}
			panic(http.ErrAbortHandler)
		}
		if cfg.Hang && step == 0 {
			<-ctx.Done()
			abortIfStopped(j.t)
			return
		}
	}

	if p.s != nil && j.budget == 0 { // the prefill still runs
		if err := p.wait(ctx, 0); err != nil {
			abortIfStopped(j.t)
			return
		}
	}
	for i := range j.choices {
		if j.choices[i].finish == "" { // a zero budget
			j.choices[i].finish = "length"
		}
	}
	// Like vLLM, usage counts the tokens of the choices returned, not those
	// of the best_of candidates dropped; Stats counts them all.
	shown := j.pick()
	u := usage{prompt: j.promptTokens}
	p.addCached(&u)
	for i := range shown {
		u.completion += shown[i].tokens
	}
	b = b[:0]
	if j.stream {
		b = j.f.streamTail(b, shown, u)
		st.out = b
		if _, err := w.Write(b); err == nil {
			_ = rc.Flush()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	b = j.f.body(b, shown, u)
	st.out = b
	_, _ = w.Write(b)
}

// submit puts the request of j on the GPU model of its target, for budget
// tokens per choice, and returns its seq; nil when the target has no GPU
// model. The caller must call j.t.gpu.leave on it when the request ends.
func (e *Engine) submit(st *reqState, j *job, budget int) *seq {
	r := j.t.gpu
	if r == nil {
		return nil
	}
	prompt := 0
	for _, p := range st.prompts {
		start := len(st.blocks)
		st.blocks = blockChain(st.blocks, st.text[p.start:p.end], p.tokens, r.g.BlockTokens)
		st.chains = append(st.chains, st.blocks[start:len(st.blocks):len(st.blocks)])
		prompt += p.tokens
	}
	s := newSeq(st.chains, prompt, len(j.choices), budget)
	r.submit(s)
	return s
}

// addCached sets the cached tokens of u under a GPU model; the prefill of
// p.s must be done.
func (p *pacer) addCached(u *usage) {
	if p.s != nil {
		u.cached, u.details = p.s.cached, true
	}
}

// abortIfStopped aborts the connection when the model behind t stopped
// serving; a request whose client went away just returns.
func abortIfStopped(t target) {
	if t.life != nil && t.life.Err() != nil {
		panic(http.ErrAbortHandler)
	}
}
