package cortex

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/internal/anthropic"
	"github.com/helexa-ai/helexa-go/internal/reqscan"
	"github.com/helexa-ai/helexa-go/internal/sse"
)

// The Anthropic Messages API.
//
// POST /v1/messages takes the request path of a chat completion: the body
// is parsed and checked (anthropic.ParseRequest: a refusal is a 400
// invalid_request_error), translated into a chat completions body
// (anthropic.ToChat) and from there on treated as one: alias resolution,
// the context check and the reservation (the prompt estimate is
// anthropic.CountTokens, the output max_tokens), routing, the proxy to the
// neuron's /v1/chat/completions, settling and metrics. A streaming request
// asks the engine for its usage chunk. The answer is translated back on
// its way to the client by messagesWriter: a JSON completion into a
// Message (anthropic.FromChat), an SSE stream into Anthropic's event
// sequence (anthropic.StreamTranslator) with a ping event whenever the
// engine has been silent for the ping interval (WithPingInterval), and
// every error, the gateway's own and the neuron's, into Anthropic's error
// shape with the same status and headers (Retry-After among them): the
// gateway maps an error to a status once (httpErrorFor), then the OpenAI
// envelope is rendered as anthropic.FromOpenAIError reads it. A stream
// that breaks off (the neuron's connection, the idle timeout) ends with an
// error event rather than a cut connection; a non-streaming answer that
// breaks off, or that is not a chat completion, becomes a 502 api_error.
//
// POST /v1/messages/count_tokens answers {"input_tokens": n}, the same
// estimate the reservation uses. It is authenticated like the other routes
// and answers 404 for a model neither the catalogue nor the fleet knows,
// but reserves nothing and reaches no neuron.

// maxMessageBody bounds a non-streaming chat completion buffered for
// translation into a Message; a larger one is answered with a 502.
const maxMessageBody = 32 << 20

// errAnswerEnded is a write after the answer was ended.
var errAnswerEnded = errors.New("cortex: messages: write after the answer ended")

// chatCompletionsPath is the neuron route a Messages request is sent to.
const chatCompletionsPath = "/v1/chat/completions"

// translator is the seam through which a route whose API the neuron does
// not speak reuses the request path. The exchange finds it on its
// http.ResponseWriter (the writer also translates the answer back, see
// messagesWriter) and calls it from the request's goroutine: it turns the
// client's body into the body sent to the neuron, gives the prompt
// estimate, and names the neuron's route. The OpenAI routes have none.
type translator interface {
	// translateRequest returns the body to send for the client's body, or
	// the error to answer with.
	translateRequest(body []byte) ([]byte, error)
	// promptEstimate is the prompt estimate of the translated request.
	promptEstimate() int64
	// upstreamPath is the path of the neuron's route.
	upstreamPath() string
}

// target is the URL whose path and query the request to the neuron takes:
// the client's, or the translator's route with the client's query.
func (c *exchange) target() *url.URL {
	if c.tr == nil {
		return c.r.URL
	}
	u := *c.r.URL
	u.Path, u.RawPath = c.tr.upstreamPath(), ""
	return &u
}

// serveMessages serves POST /v1/messages (see the comment at the top of
// this file).
func (g *Gateway) serveMessages(w http.ResponseWriter, r *http.Request) {
	m := newMessagesWriter(w, g.clock, g.cfg.pingInterval, g.log)
	defer func() {
		p := recover()
		m.end(p != nil)
		// The exchange aborts (http.ErrAbortHandler) an answer that broke
		// off so that an OpenAI client sees it incomplete; an Anthropic
		// client has been told with an error instead. Anything else is a
		// bug and propagates.
		if p != nil && p != http.ErrAbortHandler {
			panic(p)
		}
	}()
	g.serveInference(m, r, routeMessages)
}

// serveCountTokens serves POST /v1/messages/count_tokens.
func (g *Gateway) serveCountTokens(w http.ResponseWriter, r *http.Request) {
	n, err := g.countTokens(w, r)
	if err != nil {
		m := newMessagesWriter(w, g.clock, g.cfg.pingInterval, g.log)
		writeError(m, err, g.cfg.retryAfter)
		m.end(false)
		return
	}
	anthropic.WriteCountTokens(w, n)
}

// countTokens authenticates r, reads and checks its body and returns the
// estimate.
func (g *Gateway) countTokens(w http.ResponseWriter, r *http.Request) (int64, error) {
	p, err := g.principal(r)
	if err != nil {
		return 0, err
	}
	body, err := g.readBody(w, r)
	if err != nil {
		return 0, err
	}
	req, err := anthropic.ParseCountTokensRequest(body)
	if err != nil {
		return 0, bodyError(err)
	}
	if _, err := modelFor(g.Fleet(), p, req.Model); err != nil {
		return 0, err
	}
	return anthropic.CountTokens(req), nil
}

// bodyError returns Anthropic's refusal of a body (*anthropic.RequestError)
// as the scanner's (*reqscan.Error), which the gateway answers with 400
// invalid_request_body and the offending field in the message.
func bodyError(err error) error {
	var re *anthropic.RequestError
	if errors.As(err, &re) {
		return &reqscan.Error{Field: re.Param, Msg: re.Msg}
	}
	return err
}

// writerMode is what a messagesWriter is relaying.
type writerMode uint8

const (
	modeNone   writerMode = iota // nothing written yet
	modeError                    // an error answer, buffered
	modeJSON                     // a chat completion, buffered
	modeStream                   // a chat completion stream, translated as it comes
)

// messagesWriter is the http.ResponseWriter the exchange of a Messages
// request writes its OpenAI-shaped answer to; it writes the Anthropic
// answer to the client's writer. It is also the exchange's translator.
//
// The exchange calls it from the request's goroutine; in stream mode a
// pinger goroutine writes ping events too, so every use of the client's
// writer and of the stream translator holds mu. end must be called once,
// before the handler returns: it writes what was buffered and stops the
// pinger.
type messagesWriter struct {
	w     http.ResponseWriter
	clock clock.Clock // arms the ping timer
	ping  time.Duration
	log   *slog.Logger
	req   *anthropic.Request // set by translateRequest
	input int64              // the prompt estimate

	mu      sync.Mutex
	mode    writerMode
	status  int
	buf     []byte // the buffered answer (modeError, modeJSON)
	over    bool   // the buffered answer exceeded maxMessageBody
	pending []byte // stream bytes not yet a whole event
	st      *anthropic.StreamTranslator
	timer   clock.Timer   // fires a ping; reset by every event
	stop    chan struct{} // closed by end to stop the pinger
	done    chan struct{} // closed when the pinger has returned
	ended   bool
}

var (
	_ http.ResponseWriter = (*messagesWriter)(nil)
	_ translator          = (*messagesWriter)(nil)
)

func newMessagesWriter(w http.ResponseWriter, clk clock.Clock, ping time.Duration, log *slog.Logger) *messagesWriter {
	return &messagesWriter{w: w, clock: clk, ping: ping, log: log}
}

func (m *messagesWriter) translateRequest(body []byte) ([]byte, error) {
	req, err := anthropic.ParseRequest(body)
	if err != nil {
		return nil, bodyError(err)
	}
	chat, err := anthropic.ToChat(req)
	if err != nil {
		return nil, bodyError(err)
	}
	m.req, m.input = req, anthropic.CountTokens(req)
	return chat, nil
}

func (m *messagesWriter) promptEstimate() int64 { return m.input }

func (m *messagesWriter) upstreamPath() string { return chatCompletionsPath }

// Header returns the client's header map: the exchange's headers
// (Retry-After, WWW-Authenticate, the neuron's) reach the client.
func (m *messagesWriter) Header() http.Header { return m.w.Header() }

// Unwrap returns the client's writer, for http.ResponseController.
func (m *messagesWriter) Unwrap() http.ResponseWriter { return m.w }

// WriteHeader picks the mode from the status and the content type: an
// error status buffers an error, a 2xx event stream answering a streaming
// request is translated as it comes, anything else 2xx is buffered as a
// chat completion.
func (m *messagesWriter) WriteHeader(code int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writeHeaderLocked(code)
}

func (m *messagesWriter) writeHeaderLocked(code int) {
	if m.mode != modeNone || m.ended || code < 200 {
		return
	}
	m.status = code
	h := m.w.Header()
	switch {
	case code >= 300:
		m.mode = modeError
	case m.req != nil && m.req.Stream && isEventStream(h):
		m.mode = modeStream
		h.Del("Content-Length")
		anthropic.SetStreamHeaders(h)
		m.w.WriteHeader(code)
		// NewStreamTranslator fails only for a nil writer or request.
		m.st, _ = anthropic.NewStreamTranslator(flushWriter{m.w}, m.req, anthropic.WithInputTokens(m.input))
		m.startPinger()
	default:
		m.mode = modeJSON
	}
}

// Write buffers an answer, or translates the events of a stream.
func (m *messagesWriter) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		return 0, errAnswerEnded
	}
	m.writeHeaderLocked(http.StatusOK)
	if m.mode != modeStream {
		if len(m.buf)+len(p) > maxMessageBody {
			m.over = true
			return len(p), nil
		}
		m.buf = append(m.buf, p...)
		return len(p), nil
	}
	m.pending = append(m.pending, p...)
	rest := m.pending
	for {
		ev, next, ok := cutEvent(rest)
		if !ok {
			break
		}
		rest = next
		if err := m.feed(ev); err != nil {
			m.pending = m.pending[:0]
			return 0, err
		}
	}
	m.pending = append(m.pending[:0], rest...)
	m.timer.Reset(m.ping)
	return len(p), nil
}

// FlushError is a no-op: buffered answers are written by end, and the
// stream translator flushes every event it writes.
func (m *messagesWriter) FlushError() error { return nil }

// feed translates one upstream event. Only a failure to write to the
// client is returned: an event that is not a chunk is dropped, and the
// events after the end of the Anthropic stream (an in-stream engine error
// ends it) are ignored.
func (m *messagesWriter) feed(ev []byte) error {
	data := sse.Data(ev)
	if data == nil {
		return nil
	}
	err := m.st.Feed(data)
	var apiErr *anthropic.APIError
	switch {
	case err == nil, errors.Is(err, anthropic.ErrClosed), errors.Is(err, anthropic.ErrIncomplete), errors.As(err, &apiErr):
		return nil
	case errors.Is(err, anthropic.ErrBadChat):
		m.log.Debug("cortex: messages: dropped an event that is not a chat completion chunk", "err", err)
		return nil
	}
	return err
}

// cutEvent splits the first whole SSE event (up to its blank line) off b.
func cutEvent(b []byte) (ev, rest []byte, ok bool) {
	for off := 0; off < len(b); {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			break
		}
		line := b[off : off+i+1]
		off += i + 1
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			return b[:off], b[off:], true
		}
	}
	return nil, b, false
}

// startPinger starts the goroutine that writes a ping event whenever the
// stream has been silent for the ping interval. mu is held.
func (m *messagesWriter) startPinger() {
	m.timer = m.clock.NewTimer(m.ping)
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(m.done)
		for {
			select {
			case <-m.stop:
				return
			case <-m.timer.C():
				m.mu.Lock()
				if !m.ended {
					_ = m.st.Ping() // a write error is sticky: the next Write returns it
					m.timer.Reset(m.ping)
				}
				m.mu.Unlock()
			}
		}
	}()
}

// end finishes the answer once the exchange is over: it stops the pinger,
// then writes the buffered answer translated, or ends the stream. aborted
// says the exchange aborted the answer (it broke off, or the gateway
// panicked): a stream then ends with an error event, and a buffered
// answer that was not an error becomes a 502 (or 500 when nothing came).
func (m *messagesWriter) end(aborted bool) {
	if m.stop != nil {
		close(m.stop)
		<-m.done
		m.timer.Stop()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		return
	}
	m.ended = true
	switch m.mode {
	case modeStream:
		if len(m.pending) > 0 && !aborted {
			_ = m.feed(m.pending) // a last event without its blank line
		}
		if aborted {
			_ = m.st.Abort(errors.New("the answer broke off"))
		} else {
			_ = m.st.Finish()
		}
	case modeError:
		typ, msg := anthropic.FromOpenAIError(m.status, m.buf)
		m.writeError(m.status, typ, msg)
	case modeJSON:
		m.endJSON(aborted)
	case modeNone:
		if aborted {
			m.writeError(http.StatusInternalServerError, anthropic.ErrorTypeAPI, "internal error")
		}
	}
}

// endJSON writes the buffered chat completion as a Message. mu is held.
func (m *messagesWriter) endJSON(aborted bool) {
	const broken = "the model's answer broke off"
	switch {
	case aborted:
		m.writeError(http.StatusBadGateway, anthropic.ErrorTypeAPI, broken)
		return
	case m.over:
		m.log.Warn("cortex: messages: the chat completion is too large to translate", "limit", maxMessageBody)
		m.writeError(http.StatusBadGateway, anthropic.ErrorTypeAPI, "the model's answer is too large")
		return
	case m.req == nil:
		m.writeError(http.StatusBadGateway, anthropic.ErrorTypeAPI, broken)
		return
	}
	msg, err := anthropic.FromChat(m.buf, m.req)
	if err != nil {
		m.log.Warn("cortex: messages: the engine's answer is not a chat completion", "err", err)
		m.writeError(http.StatusBadGateway, anthropic.ErrorTypeAPI, "the model's answer could not be read")
		return
	}
	h := m.w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	m.w.WriteHeader(m.status)
	_, _ = m.w.Write(append(msg, '\n'))
}

// writeError writes an Anthropic error; the headers set so far (such as
// Retry-After) are kept, less the length of the body it replaces. mu is
// held.
func (m *messagesWriter) writeError(status int, typ, msg string) {
	m.w.Header().Del("Content-Length")
	anthropic.WriteError(m.w, status, typ, msg, 0)
}

// flushWriter writes to an http.ResponseWriter and flushes it through
// http.ResponseController, which finds the flusher of wrapped writers.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }

func (f flushWriter) Flush() { _ = http.NewResponseController(f.w).Flush() }
