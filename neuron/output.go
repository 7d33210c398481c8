package neuron

import (
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/helexa-ai/helexa-go/internal/sse"
)

// countOutput is the inference proxy's ModifyResponse: a successful
// streamed answer is relayed through an outputCounter, which counts its
// output, cuts it past the request's allowance and reports its count in
// the trailers TrailerOutputTokens and TrailerOutputCut (see
// HeaderMaxOutputTokens).
func countOutput(resp *http.Response) error {
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
	resp.Body = &outputCounter{body: resp.Body, rd: sse.NewReader(resp.Body), allow: allow, trailer: resp.Trailer}
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
			o.count += sse.Inspect(data).Outputs
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

// end sets the trailers, once.
func (o *outputCounter) end() {
	if o.ended {
		return
	}
	o.ended = true
	o.trailer.Set(TrailerOutputTokens, strconv.FormatInt(o.count, 10))
	o.trailer.Set(TrailerOutputCut, strconv.FormatBool(o.cut))
}

func (o *outputCounter) Close() error { return o.body.Close() }
