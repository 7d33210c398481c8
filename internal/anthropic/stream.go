package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/helexa-ai/helexa-go/internal/jsonw"
	"github.com/helexa-ai/helexa-go/internal/sse"
)

// StreamTranslator turns a chat completions SSE stream into Anthropic's
// Messages event stream. The gateway feeds it the data payload of each
// upstream event (Feed), calls Ping on a timer while the engine is silent,
// and calls Finish when the upstream body ends, or Abort when it fails.
// Every event is written to w as "event: <name>\ndata: <json>\n\n" in one
// Write; when w is an http.Flusher, each call that wrote something flushes.
//
// The events are, in order: message_start (usage.input_tokens the prompt
// estimate, output_tokens 0), then per content block content_block_start,
// content_block_delta (text_delta for text, input_json_delta with one
// partial_json per arguments fragment for a tool call) and
// content_block_stop, then message_delta (stop_reason, stop_sequence and
// usage) and message_stop. Pings may fall anywhere after message_start.
// A block is stopped before the next one starts, so blocks never overlap.
//
// Tool calls: a chat stream may interleave the fragments of several tool
// calls (by their "index"). The first tool call streams live; a later one
// is held back while the open one's arguments are not yet a complete JSON
// value, and starts (with everything held so far) as soon as they are, so
// that engines which send the calls one after the other stream every call
// live and engines which interleave still produce whole, ordered blocks.
// What is still held back is written at the end. A fragment that arrives
// for a tool call whose block was already stopped (it was complete, or text
// followed it) is dropped. A tool call delta without an index belongs to
// the call with its id, or, without an id, to the last call.
//
// Usage: message_delta's usage.output_tokens is completion_tokens from the
// engine's usage (the chunk stream_options.include_usage adds, or usage on
// any chunk), else the number of chunks that carried output. When the
// engine reported prompt tokens, message_delta also carries input_tokens and
// cache_read_input_tokens (the same split as FromChat), which replace the
// estimate of message_start in clients that read them.
//
// Errors: when the stream ends ([DONE] or Finish) without a finish_reason
// the translator writes an error event (api_error) instead of
// message_delta and returns ErrIncomplete. An error object sent in-stream
// by the engine becomes an error event and Feed returns it as an *APIError.
// Abort writes an error event for a failure the gateway saw; after any
// error event or message_stop the stream has ended. A write error is sticky:
// every later call returns it and writes nothing.
//
// A StreamTranslator is not safe for concurrent use: the gateway calls it
// from one goroutine (a select over upstream events and a ping ticker).
type StreamTranslator struct {
	w       io.Writer
	flusher http.Flusher
	model   string
	stops   []string
	input   int64
	id      string

	phase phase
	err   error // sticky write error
	wrote bool  // wrote since the last flush

	next       int       // index of the next content block
	open       blockKind // kind of the open block
	openAt     int       // index of the open block
	active     *toolState
	tools      []*toolState
	toolBlocks int // tool_use blocks started

	finished   bool
	finish     string
	engineStop []byte
	usage      chatUsage
	hasUsage   bool
	counted    int64

	buf []byte
}

type phase uint8

const (
	phaseNew phase = iota
	phaseStarted
	phaseEnded
)

type blockKind uint8

const (
	blockNone blockKind = iota
	blockText
	blockTool
)

type toolPhase uint8

const (
	toolPending toolPhase = iota
	toolOpen
	toolClosed
)

type toolState struct {
	key      int // the chat stream's tool call index
	id, name string
	args     []byte
	emitted  int // bytes of args written
	phase    toolPhase
	block    int
}

// StreamOption configures a StreamTranslator.
type StreamOption interface {
	apply(*StreamTranslator)
}

type streamOptionFunc func(*StreamTranslator)

func (f streamOptionFunc) apply(t *StreamTranslator) { f(t) }

// WithInputTokens sets message_start's usage.input_tokens. The default is
// CountTokens(req).
func WithInputTokens(n int64) StreamOption {
	return streamOptionFunc(func(t *StreamTranslator) { t.input = max(n, 0) })
}

// WithMessageID sets the message id. The default is "msg_" + the id of the
// first chunk, or a random "msg_" id when the first event is not a chunk
// with an id (a ping before any output).
func WithMessageID(id string) StreamOption {
	return streamOptionFunc(func(t *StreamTranslator) { t.id = id })
}

// NewStreamTranslator returns a translator that writes the answer to req
// to w. It writes nothing until the first call.
func NewStreamTranslator(w io.Writer, req *Request, opts ...StreamOption) (*StreamTranslator, error) {
	if w == nil {
		return nil, errors.New("anthropic: NewStreamTranslator with a nil writer")
	}
	if req == nil {
		return nil, errors.New("anthropic: NewStreamTranslator with a nil Request")
	}
	t := &StreamTranslator{
		w:     w,
		model: req.Model,
		stops: req.StopSequences,
		input: -1,
		buf:   make([]byte, 0, 512),
	}
	t.flusher, _ = w.(http.Flusher)
	for _, o := range opts {
		o.apply(t)
	}
	if t.input < 0 {
		t.input = CountTokens(req)
	}
	return t, nil
}

type streamChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content   *string         `json:"content"`
			ToolCalls []toolCallDelta `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string         `json:"finish_reason"`
		StopReason   json.RawMessage `json:"stop_reason"`
	} `json:"choices"`
	Usage *chatUsage      `json:"usage"`
	Error json.RawMessage `json:"error"`
}

type toolCallDelta struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Function struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// Feed translates one upstream event payload: a chat completion chunk, the
// "[DONE]" sentinel (which finishes the stream as Finish does), or an
// engine error object. An empty payload is ignored. A payload that is not
// a chunk returns an error wrapping ErrBadChat and writes nothing; the
// gateway then decides whether to Abort. After the stream has ended Feed
// returns ErrClosed.
func (t *StreamTranslator) Feed(data []byte) error {
	if t.err != nil {
		return t.err
	}
	if t.phase == phaseEnded {
		return ErrClosed
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil
	}
	if sse.IsDone(data) {
		return t.Finish()
	}
	var c streamChunk
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("%w: %v", ErrBadChat, err)
	}
	if present(c.Error) || c.Object == "error" {
		status, typ, msg := translateError(0, data)
		t.writeError(typ, msg)
		t.flush()
		if t.err != nil {
			return t.err
		}
		return &APIError{Status: status, Type: typ, Message: msg}
	}
	t.start(c.ID)
	if c.Usage != nil {
		t.usage, t.hasUsage = *c.Usage, true
	}
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Index != 0 {
			continue // n > 1 is never requested; read the first choice only
		}
		produced := false
		if ch.Delta.Content != nil && *ch.Delta.Content != "" {
			t.text(*ch.Delta.Content)
			produced = true
		}
		if len(ch.Delta.ToolCalls) > 0 {
			if t.open == blockText {
				t.stopBlock()
			}
			for j := range ch.Delta.ToolCalls {
				if t.toolDelta(&ch.Delta.ToolCalls[j]) {
					produced = true
				}
			}
			t.pump(false)
		}
		if produced {
			t.counted++
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			t.finished, t.finish = true, *ch.FinishReason
			t.engineStop = append(t.engineStop[:0], ch.StopReason...)
		}
	}
	t.flush()
	return t.err
}

// Ping writes a ping event (after message_start, which it writes first when
// nothing has been written yet). After the stream has ended it writes
// nothing and returns nil.
func (t *StreamTranslator) Ping() error {
	if t.err != nil || t.phase == phaseEnded {
		return t.err
	}
	t.start("")
	t.begin("ping")
	t.buf = append(t.buf, `{"type":"ping"}`...)
	t.commit()
	t.flush()
	return t.err
}

// Finish ends the stream after the upstream body ended: it stops the open
// block, writes what tool calls were held back, then message_delta and
// message_stop. When no finish_reason was seen it writes an error event
// instead and returns ErrIncomplete. Calling Finish after the stream has
// ended does nothing and returns nil (or the sticky write error).
func (t *StreamTranslator) Finish() error {
	if t.err != nil || t.phase == phaseEnded {
		return t.err
	}
	if !t.finished {
		t.writeError(ErrorTypeAPI, "the model's output stream ended before it finished")
		t.flush()
		if t.err != nil {
			return t.err
		}
		return ErrIncomplete
	}
	t.start("")
	if t.open == blockText {
		t.stopBlock()
	}
	t.pump(true)
	reason, seq := stopReason(t.finish, t.engineStop, t.stops, t.toolBlocks > 0)

	t.begin("message_delta")
	t.buf = append(t.buf, `{"type":"message_delta","delta":{"stop_reason":`...)
	t.buf = jsonw.AppendString(t.buf, reason)
	t.buf = append(t.buf, `,"stop_sequence":`...)
	if seq != nil {
		t.buf = jsonw.AppendString(t.buf, *seq)
	} else {
		t.buf = append(t.buf, "null"...)
	}
	t.buf = append(t.buf, `},"usage":{`...)
	out := t.counted
	if t.hasUsage {
		out = max(t.usage.CompletionTokens, 0)
	}
	if t.hasUsage && t.usage.PromptTokens > 0 {
		cached := t.usage.cached()
		t.buf = append(t.buf, `"input_tokens":`...)
		t.buf = strconv.AppendInt(t.buf, max(t.usage.PromptTokens-cached, 0), 10)
		t.buf = append(t.buf, `,"cache_read_input_tokens":`...)
		t.buf = strconv.AppendInt(t.buf, cached, 10)
		t.buf = append(t.buf, ',')
	}
	t.buf = append(t.buf, `"output_tokens":`...)
	t.buf = strconv.AppendInt(t.buf, out, 10)
	t.buf = append(t.buf, "}}"...)
	t.commit()

	t.begin("message_stop")
	t.buf = append(t.buf, `{"type":"message_stop"}`...)
	t.commit()
	t.phase = phaseEnded
	t.flush()
	return t.err
}

// Abort ends the stream with an error event for a failure the gateway saw
// (upstream connection lost, engine crashed, deadline). An *APIError in
// err's chain gives the type and message; context.DeadlineExceeded gives
// timeout_error; anything else api_error with a generic message (err's
// text may name internal hosts and is not shown). After the stream has
// ended Abort writes nothing and returns nil (or the sticky write error).
func (t *StreamTranslator) Abort(err error) error {
	if t.err != nil || t.phase == phaseEnded {
		return t.err
	}
	typ, msg := ErrorTypeAPI, "the model's output stream failed"
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		typ, msg = ae.errType(), ae.Message
	case errors.Is(err, context.DeadlineExceeded):
		typ, msg = ErrorTypeTimeout, "the model's output stream timed out"
	}
	t.writeError(typ, msg)
	t.flush()
	return t.err
}

// start writes message_start once.
func (t *StreamTranslator) start(chunkID string) {
	if t.phase != phaseNew {
		return
	}
	t.phase = phaseStarted
	if t.id == "" {
		t.id = messageID(chunkID)
	}
	t.begin("message_start")
	t.buf = append(t.buf, `{"type":"message_start","message":{"id":`...)
	t.buf = jsonw.AppendString(t.buf, t.id)
	t.buf = append(t.buf, `,"type":"message","role":"assistant","model":`...)
	t.buf = jsonw.AppendString(t.buf, t.model)
	t.buf = append(t.buf, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":`...)
	t.buf = strconv.AppendInt(t.buf, t.input, 10)
	t.buf = append(t.buf, `,"output_tokens":0}}}`...)
	t.commit()
}

// text writes a text delta, stopping any tool block and starting a text
// block as needed.
func (t *StreamTranslator) text(s string) {
	if t.open == blockTool || t.hasPending() {
		t.pump(true)
	}
	if t.open != blockText {
		t.openAt, t.open = t.next, blockText
		t.next++
		t.begin("content_block_start")
		t.buf = append(t.buf, `{"type":"content_block_start","index":`...)
		t.buf = strconv.AppendInt(t.buf, int64(t.openAt), 10)
		t.buf = append(t.buf, `,"content_block":{"type":"text","text":""}}`...)
		t.commit()
	}
	t.begin("content_block_delta")
	t.buf = append(t.buf, `{"type":"content_block_delta","index":`...)
	t.buf = strconv.AppendInt(t.buf, int64(t.openAt), 10)
	t.buf = append(t.buf, `,"delta":{"type":"text_delta","text":`...)
	t.buf = jsonw.AppendString(t.buf, s)
	t.buf = append(t.buf, "}}"...)
	t.commit()
}

// toolDelta records one tool call delta; it reports whether the delta
// carried argument text that was kept.
func (t *StreamTranslator) toolDelta(d *toolCallDelta) bool {
	ts := t.toolFor(d)
	if ts.id == "" {
		ts.id = d.ID
	}
	if ts.name == "" {
		ts.name = d.Function.Name
	}
	var frag []byte
	switch kindOf(d.Function.Arguments) {
	case 0, 'n':
	case '"':
		var s string
		if json.Unmarshal(d.Function.Arguments, &s) == nil {
			frag = []byte(s)
		}
	default: // an engine that sends the arguments as an object
		frag = d.Function.Arguments
	}
	if len(frag) == 0 || ts.phase == toolClosed {
		return false
	}
	ts.args = append(ts.args, frag...)
	return true
}

// toolFor finds or adds the tool call a delta belongs to.
func (t *StreamTranslator) toolFor(d *toolCallDelta) *toolState {
	var key int
	switch {
	case d.Index != nil:
		key = *d.Index
	case d.ID != "":
		for _, ts := range t.tools {
			if ts.id == d.ID {
				return ts
			}
		}
		for _, ts := range t.tools {
			key = max(key, ts.key+1)
		}
	case len(t.tools) > 0:
		return t.tools[len(t.tools)-1]
	}
	for _, ts := range t.tools {
		if ts.key == key {
			return ts
		}
	}
	ts := &toolState{key: key}
	t.tools = append(t.tools, ts)
	return ts
}

func (t *StreamTranslator) hasPending() bool {
	for _, ts := range t.tools {
		if ts.phase == toolPending {
			return true
		}
	}
	return false
}

// nextPending returns the first tool call not yet started, or nil. Unless
// final, a call whose name has not arrived yet holds back itself and those
// after it.
func (t *StreamTranslator) nextPending(final bool) *toolState {
	for _, ts := range t.tools {
		if ts.phase == toolPending {
			if ts.name == "" && !final {
				return nil
			}
			return ts
		}
	}
	return nil
}

// pump writes what the tool calls allow: new arguments of the open call;
// when the open call is complete and another waits, the switch to the next.
// When final it writes everything and stops the last block.
func (t *StreamTranslator) pump(final bool) {
	for {
		if a := t.active; a != nil {
			if a.emitted < len(a.args) {
				t.inputJSONDelta(a.block, a.args[a.emitted:])
				a.emitted = len(a.args)
			}
			next := t.nextPending(final)
			if !final && (next == nil || !json.Valid(a.args)) {
				return
			}
			t.stopBlock()
			a.phase, t.active = toolClosed, nil
			if next == nil {
				return
			}
		}
		next := t.nextPending(final)
		if next == nil {
			return
		}
		if next.id == "" {
			next.id = randomID(toolUseIDPrefix)
		}
		next.phase, next.block, t.active = toolOpen, t.next, next
		t.openAt, t.open = t.next, blockTool
		t.next++
		t.toolBlocks++
		t.begin("content_block_start")
		t.buf = append(t.buf, `{"type":"content_block_start","index":`...)
		t.buf = strconv.AppendInt(t.buf, int64(next.block), 10)
		t.buf = append(t.buf, `,"content_block":{"type":"tool_use","id":`...)
		t.buf = jsonw.AppendString(t.buf, next.id)
		t.buf = append(t.buf, `,"name":`...)
		t.buf = jsonw.AppendString(t.buf, next.name)
		t.buf = append(t.buf, `,"input":{}}}`...)
		t.commit()
	}
}

func (t *StreamTranslator) inputJSONDelta(index int, frag []byte) {
	t.begin("content_block_delta")
	t.buf = append(t.buf, `{"type":"content_block_delta","index":`...)
	t.buf = strconv.AppendInt(t.buf, int64(index), 10)
	t.buf = append(t.buf, `,"delta":{"type":"input_json_delta","partial_json":`...)
	t.buf = jsonw.AppendString(t.buf, frag)
	t.buf = append(t.buf, "}}"...)
	t.commit()
}

func (t *StreamTranslator) stopBlock() {
	t.begin("content_block_stop")
	t.buf = append(t.buf, `{"type":"content_block_stop","index":`...)
	t.buf = strconv.AppendInt(t.buf, int64(t.openAt), 10)
	t.buf = append(t.buf, '}')
	t.commit()
	t.open = blockNone
}

// writeError writes an error event and ends the stream.
func (t *StreamTranslator) writeError(typ, msg string) {
	t.begin("error")
	t.buf = append(t.buf, `{"type":"error","error":{"type":`...)
	t.buf = jsonw.AppendString(t.buf, typ)
	t.buf = append(t.buf, `,"message":`...)
	t.buf = jsonw.AppendString(t.buf, msg)
	t.buf = append(t.buf, "}}"...)
	t.commit()
	t.phase = phaseEnded
}

func (t *StreamTranslator) begin(event string) {
	t.buf = append(t.buf[:0], "event: "...)
	t.buf = append(t.buf, event...)
	t.buf = append(t.buf, "\ndata: "...)
}

func (t *StreamTranslator) commit() {
	t.buf = append(t.buf, "\n\n"...)
	if t.err == nil {
		_, t.err = t.w.Write(t.buf)
		t.wrote = true
	}
}

func (t *StreamTranslator) flush() {
	if t.wrote && t.err == nil && t.flusher != nil {
		t.flusher.Flush()
	}
	t.wrote = false
}
