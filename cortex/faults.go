package cortex

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/internal/redact"
	"github.com/helexa-ai/helexa-go/neuron"
)

// maxAttempts bounds the neurons one request is sent to: the first and at
// most two retries (see retryable).
const maxAttempts = 3

// neuronAnswer is an error answer of a neuron that the gateway may retry
// elsewhere (see retryable), read whole and kept, so that it can still be
// relayed unchanged when no retry is possible.
type neuronAnswer struct {
	neuron string
	status int
	code   string // the envelope's code
	header http.Header
	body   []byte
}

func (a *neuronAnswer) Error() string {
	return fmt.Sprintf("neuron %s answered %d %s", a.neuron, a.status, a.code)
}

// Retryable answers of a neuron: it refused the request before its engine
// saw it, so sending it elsewhere costs nothing and charges nothing twice.
const answerPeekMax = 64 << 10

// retryableAnswer reads the error answer resp of the neuron name when it is
// one the gateway retries (503 model_not_ready or queue_full: the model is
// restarting there or its queue is full; 404 model_not_found: the model is
// gone from there, unloaded behind the snapshot's back), and returns it; nil
// otherwise, with resp's body as it was.
func retryableAnswer(name string, resp *http.Response) *neuronAnswer {
	if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusNotFound {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, answerPeekMax+1))
	var env oaierr.Envelope
	if err == nil && len(body) <= answerPeekMax && json.Unmarshal(body, &env) == nil {
		switch env.Error.Code {
		case neuron.CodeModelNotReady, neuron.CodeQueueFull, neuron.CodeModelNotFound:
			return &neuronAnswer{neuron: name, status: resp.StatusCode, code: env.Error.Code, header: resp.Header.Clone(), body: body}
		}
	}
	// Not one to retry: relay what was read and the rest.
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
	return nil
}

// retryable says whether err, the failure of one attempt, may be sent
// again, and how it failed: a connection failure before anything reached
// the client (not a stream that sent nothing for the idle timeout), or a
// retryable neuron answer. 0 when it may not.
func retryable(err error) route.Failure {
	var a *neuronAnswer
	switch {
	case errors.As(err, &a):
		switch a.code {
		case neuron.CodeModelNotFound:
			return route.FailedGone
		case neuron.CodeModelNotReady:
			return route.FailedNotReady
		}
		return route.FailedBusy
	case errors.Is(err, neuron.ErrModelNotFound):
		// The endpoint lookup: the neuron no longer has the model.
		return route.FailedGone
	case errors.Is(err, errStreamIdle):
		return 0
	case errors.Is(err, ErrUpstream):
		return route.FailedUnreachable
	}
	return 0
}

// relayAnswer relays a neuron's error answer to the client: its status,
// its relayed headers and its body, unless the body could tell the client
// about the inside of the fleet (see clientBody).
func (c *exchange) relayAnswer(a *neuronAnswer) {
	body, changed := clientBody(a.status, a.body)
	copyResponseHeader(c.w.Header(), a.header)
	if changed {
		c.w.Header().Del("Content-Length")
		c.w.Header().Set("Content-Type", "application/json")
		c.g.log.Warn("cortex: a neuron's error answer was replaced for the client", "neuron", a.neuron, "status", a.status,
			"body", string(a.body))
	}
	c.budgetHeaders()
	c.w.WriteHeader(a.status)
	c.status = a.status
	c.outcome = outcomeUpstream
	c.err = a
	if _, err := c.w.Write(body); err != nil && c.r.Context().Err() == nil {
		c.abort = true
	}
}

// neuronCodes are the codes of the neuron's own error answers, whose
// messages are the neuron's and reach the client when they are clean.
var neuronCodes = map[string]bool{
	neuron.CodeModelNotFound: true, neuron.CodeModelNotReady: true, neuron.CodeModelBusy: true,
	neuron.CodeQueueFull: true, neuron.CodeQueueTimeout: true, neuron.CodeRateLimitExceeded: true,
	neuron.CodeInvalidBody: true, neuron.CodeAmbiguousRequest: true, neuron.CodeMissingModel: true,
	neuron.CodeShuttingDown: true, neuron.CodeUpstreamConnection: true, neuron.CodeRequestTooLarge: true,
	neuron.CodeRequestTimeout: true, neuron.CodeUnsupportedMediaType: true,
}

// clientBody returns the body of a neuron's error answer as the client may
// see it: unchanged, unless it could tell about the inside of the fleet
// (an address, a port, a path, a transport error: redact.Find), or it is
// the engine's own server error (its output), or not an OpenAI envelope at
// all; then an envelope of the gateway's with the answer's code and a
// message that says only what failed.
func clientBody(status int, body []byte) ([]byte, bool) {
	b, ok := oaierr.Read(bytes.NewReader(body))
	switch {
	case ok && redact.Clean(b.Message) && (status < 500 || neuronCodes[b.Code]):
		return body, false
	case !ok && status < 500 && redact.Clean(string(body)):
		return body, false
	}
	if !ok {
		b = oaierr.Body{Code: CodeUpstreamError}
	}
	b.Type = oaierr.TypeForStatus(status)
	if status >= 500 {
		b.Message = "the model's engine failed to answer"
	} else {
		b.Message = "the model's engine refused the request"
	}
	out, err := json.Marshal(oaierr.Envelope{Error: b})
	if err != nil {
		return body, false
	}
	return out, true
}

// loadBackoff holds, per (model, neuron), when a new load may start after
// failed ones: the base after the first failure, doubling with each failure
// in a row up to the maximum; a load that succeeds clears it.
type loadBackoff struct {
	base, max time.Duration
	entries   atomic.Int32 // len(state), read without the lock

	mu    sync.Mutex
	state map[backoffKey]backoffState
}

type backoffKey struct{ model, neuron string }

type backoffState struct {
	failures int
	until    time.Time
}

// backsOff reports whether a failed load, whose Retry-After is retry,
// backs its model off on its neuron: one the neuron refused for good (its
// engine failed to start, an unknown engine, a file that is missing) or
// that ran past the load timeout, each of which would start an engine
// again for nothing. A refusal that passes (VRAM still held, a busy
// victim, a neuron shutting down or unreachable) carries its own
// Retry-After, and does not.
func backsOff(retry time.Duration, err error) bool {
	return retry == 0 || errors.Is(err, context.DeadlineExceeded)
}

// fail records a failed load of model on neuron at now.
func (b *loadBackoff) fail(model, neuron string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == nil {
		b.state = make(map[backoffKey]backoffState)
	}
	k := backoffKey{model, neuron}
	s := b.state[k]
	s.failures++
	d := b.base
	for i := 1; i < s.failures && d < b.max; i++ {
		d *= 2
	}
	s.until = now.Add(min(d, b.max))
	b.state[k] = s
	b.entries.Store(int32(len(b.state)))
}

// succeed clears the backoff of model on neuron.
func (b *loadBackoff) succeed(model, neuron string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.state, backoffKey{model, neuron})
	b.entries.Store(int32(len(b.state)))
}

// active appends to dst the neurons where model may not start a load at
// now, with when it may, and returns it. It takes no lock when no load
// failed.
func (b *loadBackoff) active(model string, now time.Time, dst []route.Backoff) []route.Backoff {
	if b.entries.Load() == 0 {
		return dst
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, s := range b.state {
		if k.model == model && now.Before(s.until) {
			dst = append(dst, route.Backoff{Neuron: k.neuron, Until: s.until})
		}
	}
	return dst
}

// recoveryPoll is how often a recovery wait refreshes the neuron the model
// is recovering on.
const recoveryPoll = time.Second

// awaitRecovery returns the wait, shared by every request for the
// replica, for the model to be ready again on the neuron where its engine
// is restarting (after a crash or a failed liveness probe). The wait
// refreshes the neuron until it lists the model loaded, the model is no
// longer recovering there (an error), or the load timeout passes.
func (g *Gateway) awaitRecovery(model, on string) *flight {
	return g.loads.do(model, on, g.clock.Now(), func() (string, error) {
		ctx, cancel := context.WithTimeout(g.life, g.settings().loadTimeout)
		defer cancel()
		tick, stop := g.clock.NewTicker(recoveryPoll)
		defer stop()
		for {
			g.refresh(ctx, on)
			recovering := false
			if n := g.Fleet().Neuron(on); n != nil && n.Available() {
				switch m := n.Model(model); {
				case m == nil:
				case m.Status == neuron.StatusLoaded:
					return on, nil
				case m.Restarting() || m.Status == neuron.StatusLoading:
					recovering = true
				}
			}
			if !recovering {
				return "", &route.RetryError{Err: fmt.Errorf("%w: %q did not recover", route.ErrModelRecovering, model), RetryAfter: g.cfg.retryAfter}
			}
			select {
			case <-ctx.Done():
				if g.life.Err() != nil {
					return "", ErrShuttingDown
				}
				return "", &route.RetryError{Err: fmt.Errorf("%w: %q still recovering after %v", route.ErrModelRecovering, model, g.settings().loadTimeout),
					RetryAfter: g.cfg.retryAfter}
			case <-tick:
			}
		}
	})
}
