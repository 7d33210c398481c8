package neuron

import (
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/helexa-ai/helexa-go/internal/httpx"
	"github.com/helexa-ai/helexa-go/internal/sse"
)

// countOutput is the inference proxy's ModifyResponse: a successful
// streamed answer is relayed through an outputCounter, which counts its
// output, cuts it past the request's allowance and reports its count in
// the trailers TrailerOutputTokens and TrailerOutputCut (see
// HeaderMaxOutputTokens), and in the request's access line. The engine's
// own X-Request-Id is dropped: the answer carries the request's.
func countOutput(resp *http.Response) error {
	resp.Header.Del(httpx.HeaderRequestID)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/event-stream" {
		return nil
	}
	allow, _ := resp.Request.Context().Value(allowanceKey{}).(int64)
	if resp.Trailer == nil {
		resp.Trailer = make(http.Header)
	}
	// Declared now, so that the proxy announces them; set at the end.
	resp.Trailer[TrailerOutputTokens] = nil
	resp.Trailer[TrailerOutputCut] = nil
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	e := accessOf(resp.Request.Context())
	if e != nil {
		e.streamed = true
	}
	resp.Body = &outputCounter{body: resp.Body, rd: sse.NewReader(resp.Body), allow: allow, trailer: resp.Trailer, access: e}
	return nil
}

// outputCounter relays an SSE answer event by event, counting the choices
// that carry output (at least a token each; sse.Chunk.Outputs). When the
// count passes the allowance (0: none) the event that passed it is not
// relayed: the answer ends there, and closing the engine's body cancels
// its request.
type outputCounter struct {
	body    io.ReadCloser
	rd      *sse.Reader
	allow   int64
	trailer http.Header
	access  *accessEntry // nil: the access log is off

	pending []byte // the rest of the event being relayed
	count   int64
	cut     bool
	ended   bool
}

func (o *outputCounter) Read(p []byte) (int, error) {
	for len(o.pending) == 0 {
		if o.ended {
			return 0, io.EOF
		}
		ev, err := o.rd.Next()
		if err != nil {
			o.end()
			return 0, err
		}
		if data := sse.Data(ev); data != nil && !sse.IsDone(data) {
			ch := sse.Inspect(data)
			o.count += ch.Outputs
			o.observe(ch)
			if o.allow > 0 && o.count > o.allow {
				o.count, o.cut = o.allow, true
				o.end()
				_ = o.body.Close()
				return 0, io.EOF
			}
		}
		o.pending = ev
	}
	n := copy(p, o.pending)
	o.pending = o.pending[n:]
	return n, nil
}

// observe notes an event in the access entry: the output so far (the
// count survives a client that leaves before the end), the time of the
// first output, and the engine's usage.
func (o *outputCounter) observe(ch sse.Chunk) {
	e := o.access
	if e == nil {
		return
	}
	e.output = o.count
	if ch.Outputs > 0 && e.firstOutput.IsZero() {
		e.firstOutput = e.now()
	}
	if ch.HasUsage {
		e.hasUsage = true
		e.prompt, e.completion, e.cached = ch.Usage.Prompt, ch.Usage.Completion, ch.Usage.Cached
	}
}

// end sets the trailers and the access entry's counts, once.
func (o *outputCounter) end() {
	if o.ended {
		return
	}
	o.ended = true
	if o.access != nil {
		o.access.output, o.access.cut = o.count, o.cut
	}
	o.trailer.Set(TrailerOutputTokens, strconv.FormatInt(o.count, 10))
	o.trailer.Set(TrailerOutputCut, strconv.FormatBool(o.cut))
}

func (o *outputCounter) Close() error { return o.body.Close() }
