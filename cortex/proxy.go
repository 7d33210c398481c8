package cortex

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/internal/httpx"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/internal/sse"
	"github.com/helexa-ai/helexa-go/neuron"
)

// errStreamIdle is a stream whose neuron sent nothing, not even the
// answer's headers, for the stream idle timeout.
var errStreamIdle = errors.New("no answer within the stream idle timeout")

// scanLimit bounds the non-streaming body kept for the usage scan, which
// reads the top-level "usage" of the whole body. A larger answer has no
// usage the gateway can trust, and is settled at its whole reservation.
const scanLimit = 4 << 20

// Buffers of copyBody, pooled: one to copy through, one to keep the body
// for the usage scan (returned to the pool unless it grew past
// scanPoolMax).
var (
	copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	scanBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}
)

const scanPoolMax = 64 << 10

// proxy sends the request to the model on the named neuron and relays the
// answer. It returns an error wrapping ErrUpstream when the neuron could
// not be reached and nothing was sent to the client, a *neuronAnswer for a
// neuron's answer that may be retried elsewhere (kept, not relayed), another
// error to answer with, or nil when an answer (a success or the neuron's own
// error) was relayed, completely or not.
func (c *exchange) proxy(name string) (err error) {
	g := c.g
	up := g.upstream(name)
	if up == nil {
		// Removed by a reload since the route was chosen: try another.
		return &UpstreamError{Neuron: name, Err: errNeuronRemoved}
	}
	c.neuron = name
	id := c.model.ID
	defer func() { c.reportAttempt(name, err) }()
	ctr := g.usage.Counter(name, id)
	ctr.Add()
	ctr.Touch(g.clock.Now())
	defer func() {
		ctr.Touch(g.clock.Now())
		ctr.Done()
	}()

	base, err := up.endpoint(c.r.Context(), g.Fleet(), id)
	if err != nil {
		return err
	}
	// The request to the neuron follows the client's until the answer's
	// headers arrive; a non-streaming answer is then read to its end
	// whatever the client does, for its usage (copyBody).
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.r.Context()))
	defer cancel()
	unfollow := context.AfterFunc(c.r.Context(), cancel)
	defer unfollow()
	out, err := http.NewRequestWithContext(ctx, http.MethodPost, targetURL(base, c.target()), bytes.NewReader(c.body))
	if err != nil {
		return &UpstreamError{Neuron: name, Err: err}
	}
	out.ContentLength = int64(len(c.body))
	c.outboundHeader(out.Header, up.cfg.Token)

	// A stream is cut when the neuron sends nothing for the idle timeout,
	// from the request on.
	var idle *idleTimer
	if c.req.Stream {
		idle = newIdleTimer(g.clock, g.settings().idleTimeout, cancel)
		defer idle.stop()
	}
	resp, err := g.transport.RoundTrip(out)
	if err != nil {
		switch {
		case c.r.Context().Err() != nil:
			return c.r.Context().Err()
		case idle.fired():
			return &UpstreamError{Neuron: name, Err: fmt.Errorf("%w (%v)", errStreamIdle, g.settings().idleTimeout)}
		}
		up.forget(id)
		return &UpstreamError{Neuron: name, Err: err}
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		idle.stop()
		if a := retryableAnswer(name, resp); a != nil {
			return a // dispatch retries it, or relays it
		}
		c.relayError(resp)
		return nil
	}
	c.served = true
	if c.req.Stream && isEventStream(resp.Header) {
		c.stream(resp, idle)
	} else {
		idle.stop()
		unfollow()
		c.copyBody(resp, cancel)
	}
	c.readTrailer(resp)
	return nil
}

// readTrailer reads what the neuron counted of the answer, from the
// trailer it sends after a streamed answer's last byte (see
// neuron.TrailerOutputTokens).
func (c *exchange) readTrailer(resp *http.Response) {
	if v := resp.Trailer.Get(neuron.TrailerOutputTokens); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			c.neuronOutput = n
		}
	}
	if resp.Trailer.Get(neuron.TrailerOutputCut) == "true" {
		c.cut = true
	}
}

// targetURL is the neuron's endpoint joined with the client's path. The
// client's query string is not forwarded: no OpenAI inference route has
// query parameters, and a client's (an ?api_key=, an engine-specific
// switch) must not reach the engine.
func targetURL(base *url.URL, client *url.URL) string {
	u := *base
	u.Path = base.Path + client.Path
	u.RawPath = ""
	u.RawQuery = ""
	return u.String()
}

// forwardHeaders are the only client headers sent on to a neuron, in
// canonical form. It is an allowlist: a header the gateway does not know
// never reaches the fleet. They are the body's type, what the client
// accepts, its user agent, and trace context for correlating logs.
// Credentials never pass (the gateway sends the neuron's own token and its
// own principal headers), nor does Accept-Encoding, so that answers arrive
// uncompressed for the usage scan. The request id is the gateway's
// (httpx.RequestID), sent by outboundHeader.
var forwardHeaders = []string{"Accept", "Content-Type", "User-Agent", "Traceparent", "Tracestate", "Openai-Beta"}

// relayHeaders are the only response headers of a neuron relayed to the
// client, in canonical form: the answer's type and length, when to retry,
// and the engine's processing time. It is an allowlist: what an engine adds
// (Server: llama.cpp, its own CORS headers, its timing headers, its own
// request id) stays inside the fleet; the answer carries the gateway's
// request id.
var relayHeaders = []string{"Content-Type", "Content-Length", "Retry-After", "Openai-Processing-Ms"}

// outboundHeader fills h, the header of the request to a neuron: the
// client's forwardHeaders (less any its Connection header names as
// hop-by-hop), the request id, the neuron's token and the principal
// headers.
func (c *exchange) outboundHeader(h http.Header, token string) {
	src := c.r.Header
	var connTokens []string
	for _, v := range src["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				connTokens = append(connTokens, f)
			}
		}
	}
	for _, k := range forwardHeaders {
		if vv := src[k]; len(vv) > 0 && !containsFold(connTokens, k) {
			h[k] = append([]string(nil), vv...)
		}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	if id := src[httpx.HeaderRequestID]; len(id) > 0 {
		h[httpx.HeaderRequestID] = id[:1]
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	if !c.principal.IsAnonymous() {
		h.Set(neuron.HeaderAccountID, c.principal.AccountID)
		h.Set(neuron.HeaderKeyID, c.principal.KeyID)
	}
	if n := c.allowance(); n > 0 {
		h.Set(neuron.HeaderMaxOutputTokens, strconv.FormatInt(n, 10))
	}
}

func containsFold(list []string, k string) bool {
	for _, s := range list {
		if strings.EqualFold(s, k) {
			return true
		}
	}
	return false
}

// copyResponseHeader copies the relayHeaders of a neuron's response
// header to the client's.
func copyResponseHeader(dst, src http.Header) {
	for _, k := range relayHeaders {
		if vv := src[k]; len(vv) > 0 {
			dst[k] = append([]string(nil), vv...)
		}
	}
}

func isEventStream(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mt == "text/event-stream"
}

// relayError passes a neuron's error answer to the client unchanged:
// status, headers (Retry-After among them) and body.
func (c *exchange) relayError(resp *http.Response) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, answerPeekMax+1))
	if err != nil && len(body) == 0 {
		c.brokeOff(err, nil)
		if c.abort {
			// Nothing was sent yet: answer for the neuron.
			c.abort = false
			c.fail(&UpstreamError{Neuron: c.neuron, Err: err})
		}
		return
	}
	c.relayAnswer(&neuronAnswer{neuron: c.neuron, status: resp.StatusCode, header: resp.Header, body: body})
}

// copyBody relays a non-streaming answer as it arrives, and reads its
// usage. When the client leaves, the rest of the answer is still read from
// the neuron (within scanLimit and the stream idle timeout, then cancel
// ends it): the engine generated it whole, and its usage is at its end.
func (c *exchange) copyBody(resp *http.Response, cancel context.CancelFunc) {
	copyResponseHeader(c.w.Header(), resp.Header)
	c.budgetHeaders()
	c.w.WriteHeader(resp.StatusCode)
	c.status = resp.StatusCode
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	sp := scanBufs.Get().(*[]byte)
	scan := (*sp)[:0]
	defer func() {
		if cap(scan) <= scanPoolMax {
			*sp = scan[:0]
			scanBufs.Put(sp)
		}
	}()
	overflow := false
	var gone clock.Timer // bounds the read after the client left
	defer func() {
		if gone != nil {
			gone.Stop()
		}
	}()
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if c.firstToken.IsZero() {
				c.firstToken = c.g.clock.Now()
			}
			if !overflow {
				scan = append(scan, buf[:n]...)
				if len(scan) > scanLimit {
					overflow, scan = true, scan[:0]
				}
			}
			if gone == nil {
				if _, err := c.w.Write(buf[:n]); err != nil {
					c.outcome, c.err = outcomeCanceled, err
					gone = c.g.clock.AfterFunc(c.g.settings().idleTimeout, cancel)
				}
			}
			if gone != nil && overflow {
				return // nobody to serve, no usage to find
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if gone == nil {
				c.brokeOff(rerr, nil)
			}
			return
		}
	}
	if overflow {
		return
	}
	u := sse.Inspect(scan)
	if u.HasUsage {
		c.engineUsage, c.hasUsage = u.Usage, true
	}
	c.outputs, c.lengthChoices = u.Outputs, u.LengthChoices
}

// stream relays an SSE answer event by event, each written as it arrives
// and flushed as soon as no further event is already waiting in the read
// buffer: events the engine sent apart reach the client apart, events it
// sent together go out in one write, and nothing waits. It reads the usage
// and counts the content events on the way, and drops the usage-only chunk
// the gateway asked for when the client did not.
func (c *exchange) stream(resp *http.Response, idle *idleTimer) {
	h := c.w.Header()
	copyResponseHeader(h, resp.Header)
	c.budgetHeaders()
	h.Del("Content-Length")
	c.w.WriteHeader(resp.StatusCode)
	c.status = resp.StatusCode
	rc := http.NewResponseController(c.w)
	if err := c.flushStream(rc); err != nil {
		return
	}
	rd := sse.NewReader(resp.Body)
	pending := false // written but not flushed
	for {
		if pending && rd.Buffered() == 0 {
			if err := c.flushStream(rc); err != nil {
				return
			}
			pending = false
		}
		ev, err := rd.Next()
		if err == io.EOF {
			if pending {
				if err := c.flushStream(rc); err != nil {
					return
				}
			}
			return
		}
		if err != nil {
			c.brokeOff(err, idle)
			c.streamError(rc)
			return
		}
		idle.reset()
		if data := sse.Data(ev); data != nil && !sse.IsDone(data) {
			ch := sse.Inspect(data)
			if ch.HasUsage {
				c.engineUsage, c.hasUsage = ch.Usage, true
			}
			if ch.Content {
				c.chunks++
				c.outputs += ch.Outputs
				c.lengthChoices += ch.LengthChoices
				if c.firstToken.IsZero() {
					c.firstToken = c.g.clock.Now()
				}
			}
			if ch.UsageOnly && !c.clientUsage {
				continue
			}
		}
		c.writeDeadline(rc)
		if _, err := c.w.Write(ev); err != nil {
			c.clientStopped(err)
			return
		}
		pending = true
	}
}

// writeDeadline gives the next write to a streaming client the stream idle
// timeout: a client that accepts no bytes for that long (its socket
// buffers full) is cut, so that it holds no slot of its key, no admission
// slot and no engine sequence.
func (c *exchange) writeDeadline(rc *http.ResponseController) {
	// The connection's deadline is in real time, whatever the gateway's
	// clock.
	_ = rc.SetWriteDeadline(time.Now().Add(c.g.settings().idleTimeout))
}

// flushStream flushes the stream to the client under the write deadline,
// recording a client that left or stopped reading.
func (c *exchange) flushStream(rc *http.ResponseController) error {
	c.writeDeadline(rc)
	err := flush(rc)
	if err != nil {
		c.clientStopped(err)
	}
	return err
}

// clientStopped records a stream whose client went away or stopped
// reading (the write deadline passed).
func (c *exchange) clientStopped(err error) {
	c.outcome, c.err = outcomeCanceled, err
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.err = fmt.Errorf("the client accepted nothing for %v: %w", c.g.settings().idleTimeout, err)
		c.abort = true
	}
}

// flush flushes what was written to the client; a writer that cannot
// flush is not an error.
func flush(rc *http.ResponseController) error {
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// brokeOff records an answer from a neuron that ended early: the client
// left, the stream idle timeout cut it, or the neuron's connection broke.
// In the last two cases the client's connection is aborted, so that the
// client sees the answer is incomplete.
func (c *exchange) brokeOff(err error, idle *idleTimer) {
	c.err = err
	switch {
	case c.r.Context().Err() != nil:
		c.outcome = outcomeCanceled
	case idle.fired():
		c.outcome = outcomeTimeout
		c.err = fmt.Errorf("stream idle for %v: %w", c.g.settings().idleTimeout, err)
		c.abort = true
	default:
		c.outcome = outcomeBroken
		c.abort = true
	}
}

// streamError ends a stream that broke off (c.abort set by brokeOff) with
// an error event, before the connection is aborted, so that an SSE client
// learns why its stream ended: "data: " and an OpenAI error envelope, code
// upstream_timeout after the idle timeout, upstream_connection_error when
// the neuron's stream broke. The events before it were whole: the reader
// drops a partial one.
func (c *exchange) streamError(rc *http.ResponseController) {
	if !c.abort {
		return // the client left: nobody to tell
	}
	body := oaierr.Body{Type: oaierr.TypeServer, Code: CodeUpstreamConnection, Message: "the neuron's stream broke off"}
	if c.outcome == outcomeTimeout {
		body.Code, body.Message = CodeUpstreamTimeout, "the neuron sent nothing within the stream idle timeout"
	}
	b, err := json.Marshal(oaierr.Envelope{Error: body})
	if err != nil {
		return
	}
	ev := make([]byte, 0, len(b)+8)
	ev = append(append(append(ev, "data: "...), b...), "\n\n"...)
	c.writeDeadline(rc) // the last write's may have passed while the neuron was silent
	if _, err := c.w.Write(ev); err == nil {
		_ = flush(rc)
	}
}

// idleTimer cancels a request when it is not reset for its duration. Its
// methods accept a nil receiver (no timer).
type idleTimer struct {
	d       time.Duration
	t       clock.Timer
	expired atomic.Bool
}

func newIdleTimer(clk clock.Clock, d time.Duration, cancel context.CancelFunc) *idleTimer {
	it := &idleTimer{d: d}
	it.t = clk.AfterFunc(d, func() {
		it.expired.Store(true)
		cancel()
	})
	return it
}

// reset restarts the timer after activity.
func (it *idleTimer) reset() {
	if it != nil && !it.expired.Load() {
		it.t.Reset(it.d)
	}
}

// fired reports whether the timer cancelled the request.
func (it *idleTimer) fired() bool { return it != nil && it.expired.Load() }

func (it *idleTimer) stop() {
	if it != nil {
		it.t.Stop()
	}
}
