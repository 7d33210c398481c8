package cortex

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/neuron"
)

// loadGroup runs cold loads, one at a time per model and neuron: a
// request the Router sends to join a load in progress waits for it
// instead of starting it again. Loads run in their own goroutines, under
// the gateway's life and the load timeout, so a request that leaves does
// not stop them.
//
// It is not x/sync's singleflight.Group, which it resembles: every Router
// call sees the loads in progress with their neuron and start (Loads,
// published without a lock), shutdown refuses new loads and waits for
// those running (wait), and a recovery wait (awaitRecovery) shares the
// group with the loads, so that a replica has one wait whichever it is.
// singleflight offers none of these.
type loadGroup struct {
	// loads is the published list of the flights, for the Router and the
	// status pages; nil when none. Replaced, never modified, under mu.
	loads atomic.Pointer[[]route.Load]

	mu      sync.Mutex
	flights map[flightKey]*flight
	closed  bool
	wg      sync.WaitGroup
}

// flightKey names a flight: a model on a neuron.
type flightKey struct{ model, neuron string }

// flight is one load in progress. neuron and err are written before done
// is closed.
type flight struct {
	done   chan struct{}
	model  string
	target string    // the neuron the load runs on
	since  time.Time // when the load began
	neuron string
	err    error
}

// Loads returns the loads in progress, in no order; nil when none. The
// slice is shared: do not modify it. It takes no lock.
func (l *loadGroup) Loads() []route.Load {
	if p := l.loads.Load(); p != nil {
		return *p
	}
	return nil
}

// lookup returns the load in progress of model on target, or nil.
func (l *loadGroup) lookup(model, target string) *flight {
	if l.loads.Load() == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flights[flightKey{model, target}]
}

// publish replaces the published list after a change of flights; the
// caller holds mu.
func (l *loadGroup) publish() {
	if len(l.flights) == 0 {
		l.loads.Store(nil)
		return
	}
	loads := make([]route.Load, 0, len(l.flights))
	for _, f := range l.flights {
		loads = append(loads, route.Load{Model: f.model, Neuron: f.target, Since: f.since})
	}
	l.loads.Store(&loads)
}

// do returns the load in progress of model on target, or starts fn as
// that load, begun at since. After wait it starts nothing and returns a
// failed flight.
func (l *loadGroup) do(model, target string, since time.Time, fn func() (string, error)) *flight {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := flightKey{model, target}
	if f := l.flights[k]; f != nil {
		return f
	}
	f := &flight{done: make(chan struct{}), model: model, target: target, since: since}
	if l.closed {
		f.err = ErrShuttingDown
		close(f.done)
		return f
	}
	if l.flights == nil {
		l.flights = make(map[flightKey]*flight)
	}
	l.flights[k] = f
	l.publish()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		name, err := fn()
		l.mu.Lock()
		delete(l.flights, k)
		l.publish()
		f.neuron, f.err = name, err
		close(f.done)
		l.mu.Unlock()
	}()
	return f
}

// wait stops new loads and waits for those in progress.
func (l *loadGroup) wait() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.wg.Wait()
}

// startLoad starts the load of a Join or Load decision, single-flight per
// model and neuron, or returns that load already in progress; the request
// waits for it with waitLoad.
func (g *Gateway) startLoad(d route.Decision) *flight { return g.beginLoad(d, nil) }

// beginLoad is startLoad, for a request (scale nil) or for the Scaler's
// scale-out decision scale.
func (g *Gateway) beginLoad(d route.Decision, scale *route.ScaleDecision) *flight {
	return g.loads.do(d.Model.ID, d.Neuron, g.clock.Now(), func() (name string, err error) {
		defer func() {
			// A bug in a load must not take the gateway down with it.
			if p := recover(); p != nil {
				g.log.Error("cortex: panic in a load", "model", d.Model.ID, "neuron", d.Neuron, "panic", p, "stack", string(debug.Stack()))
				name, err = "", fmt.Errorf("cortex: panic in the load of %s: %v", d.Model.ID, p)
			}
		}()
		lctx, cancel := context.WithTimeout(g.life, g.settings().loadTimeout)
		defer cancel()
		return g.runLoad(lctx, d, scale)
	})
}

// runLoad claims the replica of a Load decision from the model's arbiter
// (claim.go), unloads the victims of d, in order, loads the model, and
// refreshes the neuron in the fleet snapshot. scale is the Scaler's
// decision d carries out, nil for a request's load.
func (g *Gateway) runLoad(ctx context.Context, d route.Decision, scale *route.ScaleDecision) (_ string, err error) {
	if g.upstream(d.Neuron) == nil {
		return "", fmt.Errorf("cortex: the router chose neuron %q, which is not configured", d.Neuron)
	}
	id := d.Model.ID
	claimed := claimNone
	if d.Action == route.ActionLoad {
		var err error
		if d, claimed, err = g.claimLoad(ctx, d, scale); err != nil {
			return "", err
		}
	}
	up := g.upstream(d.Neuron)
	start := g.clock.Now()
	log := g.log.With("model", id, "neuron", d.Neuron)
	defer g.refresh(ctx, d.Neuron)
	if claimed == claimGranted {
		defer func() {
			if err != nil {
				g.releaseReplica(id, d.Neuron)
			} else {
				g.reclaim(d.Model, d.Neuron, g.claimedReplicaTTL())
			}
		}()
	}
	if d.Action == route.ActionLoad && len(d.Evict) > 0 {
		if err := g.checkLoad(ctx, up, d); err != nil {
			g.backoff.fail(id, d.Neuron, g.clock.Now())
			g.metrics.loaded(id, d.Neuron, false)
			g.loadEvent(id, d.Neuron, start, loadCause(err))
			log.Warn("cortex: the load cannot start; nothing evicted", "err", err)
			return "", &LoadError{Neuron: d.Neuron, Model: id, Op: "load", Err: err, RetryAfter: g.loadRetry(err)}
		}
	}
	if d.Action == route.ActionLoad {
		for _, victim := range d.Evict {
			err := up.admin.Unload(ctx, victim, false)
			switch {
			case err == nil:
				log.Info("cortex: evicted model", "victim", victim)
				g.metrics.evicted(victim, d.Neuron)
				g.events.add(Event{Time: g.clock.Now(), Kind: EventEvict, Neuron: d.Neuron, Model: victim, For: id})
			case errors.Is(err, neuron.ErrModelNotFound):
				// Gone already: the room is there.
			default:
				g.metrics.loaded(id, d.Neuron, false)
				g.loadEvent(id, d.Neuron, start, "unload "+victim+": "+loadCause(err))
				log.Warn("cortex: eviction failed", "victim", victim, "err", err)
				return "", &LoadError{Neuron: d.Neuron, Model: id, Op: "unload " + victim, Err: err, RetryAfter: g.loadRetry(err)}
			}
			g.releaseReplica(victim, d.Neuron)
			up.forget(victim)
		}
	}
	log.Info("cortex: loading model", "action", d.Action.String(), "evicted", d.Evict)
	if _, err := up.admin.Load(ctx, loadSpec(d.Model)); err != nil {
		if g.life.Err() == nil && backsOff(g.loadRetry(err), err) {
			g.backoff.fail(id, d.Neuron, g.clock.Now())
		}
		g.metrics.loaded(id, d.Neuron, false)
		g.loadEvent(id, d.Neuron, start, loadCause(err))
		log.Warn("cortex: load failed", "err", err)
		if g.life.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrShuttingDown, err)
		}
		return "", &LoadError{Neuron: d.Neuron, Model: id, Op: "load", Err: err, RetryAfter: g.loadRetry(err)}
	}
	g.backoff.succeed(id, d.Neuron)
	g.metrics.loaded(id, d.Neuron, true)
	g.loadEvent(id, d.Neuron, start, "")
	// Used now: until its first request arrives, the model is not the
	// never-used first victim of another load.
	g.usage.Touch(d.Neuron, id, g.clock.Now())
	log.Info("cortex: model loaded", "took", g.clock.Now().Sub(start))
	return d.Neuron, nil
}

// LoadChecker is an optional NeuronAdmin capability: it asks the neuron
// whether a load could start there without starting anything (POST
// /models/check; neuron.Client has it). The gateway asks it before it
// evicts anything for a load, so that a load that cannot start (its
// engine's command or its model file is missing, an unknown engine) costs
// no victim.
type LoadChecker interface {
	Check(ctx context.Context, spec neuron.LoadSpec) error
}

// checkLoad asks the neuron of d whether d's load could start, when its
// admin can tell; an error is the neuron's refusal. A neuron that does not
// know the check (an older one: 404 not_found, 405), or cannot answer it,
// is not a refusal: the load itself will tell.
func (g *Gateway) checkLoad(ctx context.Context, up *upstream, d route.Decision) error {
	lc, ok := up.admin.(LoadChecker)
	if !ok {
		return nil
	}
	err := lc.Check(ctx, loadSpec(d.Model))
	var ae *neuron.APIError
	if err == nil || !errors.As(err, &ae) {
		return nil
	}
	switch {
	case errors.Is(err, neuron.ErrLoadFailed), errors.Is(err, neuron.ErrUnknownEngine),
		errors.Is(err, neuron.ErrInsufficientVRAM), errors.Is(err, neuron.ErrCUDAUnavailable),
		ae.Status == http.StatusUnprocessableEntity:
		return err
	}
	return nil
}

// loadEvent records the end of a load begun at start: a success when
// cause is empty.
func (g *Gateway) loadEvent(model, neuron string, start time.Time, cause string) {
	now := g.clock.Now()
	e := Event{Time: now, Kind: EventLoad, Neuron: neuron, Model: model, Took: now.Sub(start), Error: cause}
	if cause != "" {
		e.Kind = EventLoadFailed
	}
	g.events.add(e)
}

// refresh polls the neuron now when the poller can, so that the snapshot
// shows the outcome of a load.
func (g *Gateway) refresh(ctx context.Context, name string) {
	if g.refresher == nil || ctx.Err() != nil {
		return
	}
	if _, err := g.refresher.Refresh(ctx, name); err != nil {
		g.log.Debug("cortex: refresh after load failed", "neuron", name, "err", err)
	}
}

// loadRetry is the Retry-After of a failed load or unload: 0 when the
// neuron refused it for good (the load itself failed, an unknown engine, a
// bad request or a bad token), else at least the gateway's retry hint.
// VRAM still in use, a busy victim, a neuron shutting down or unreachable,
// or a load timeout may all pass.
func (g *Gateway) loadRetry(err error) time.Duration {
	var ae *neuron.APIError
	if !errors.As(err, &ae) {
		return g.cfg.retryAfter
	}
	switch {
	case errors.Is(err, neuron.ErrLoadFailed), errors.Is(err, neuron.ErrUnknownEngine),
		errors.Is(err, neuron.ErrUnauthorized), ae.Status == http.StatusBadRequest:
		return 0
	}
	return max(ae.RetryAfter, g.cfg.retryAfter)
}

// loadSpec is what the gateway asks a neuron to load for a catalogue
// model. Devices are left to the neuron. The engine is started with the
// catalogue's context (limit.context, 0 when unknown: the engine's
// default) and the model's own engine arguments; Limit is reported back.
func loadSpec(m catalogue.Model) neuron.LoadSpec {
	return neuron.LoadSpec{
		ModelID: m.ID,
		Engine:  m.Engine,
		Source:  m.Source,
		VRAMMB:  m.VRAMMB,
		Context: m.Limit.Context,
		EngineArgs: neuron.EngineArgs{
			Extra: slices.Clone(m.EngineArgs.Extra),
			Set:   maps.Clone(m.EngineArgs.Set),
		},
		Limit:        neuron.Limit{Context: m.Limit.Context, Input: m.Limit.Input, Output: m.Limit.Output},
		Capabilities: slices.Clone(m.Capabilities),
	}
}

// keepAliveInterval is the time between two SSE comments sent to a
// streaming request that waits for a cold load. The first comes, with the
// headers, one interval after the wait began: a load shorter than that is
// answered as if it had been warm, with a status code for its failures.
const keepAliveInterval = 5 * time.Second

// ErrStillLoading: a non-streaming request waited the cold-start bound
// (WithColdStartWait) and its model is still loading. It arrives wrapped in
// a *RetryError: 503 service_unavailable with Retry-After.
var ErrStillLoading = errors.New("cortex: model still loading")

// waitLoad waits for the load f on behalf of the request: a streaming
// request until the load ends, receiving an SSE comment every
// keepAliveInterval; a non-streaming one up to the cold-start wait.
func (c *exchange) waitLoad(f *flight) (string, error) {
	select {
	case <-f.done:
		return f.neuron, f.err
	default:
	}
	g := c.g
	ctx := c.r.Context()
	// An Anthropic Messages stream is translated from the engine's answer
	// on its way out (messagesWriter): it waits like a non-streaming
	// request, and its client gets a status code (503 and Retry-After
	// past the bound).
	if c.req.Stream && c.kind != routeMessages {
		tick, stop := g.clock.NewTicker(keepAliveInterval)
		defer stop()
		for {
			select {
			case <-f.done:
				return f.neuron, f.err
			case <-ctx.Done():
				return "", ctx.Err()
			case <-tick:
				if err := c.keepAlive(f); err != nil {
					return "", err
				}
			}
		}
	}
	wait := g.settings().ops.coldStartWait
	tick, stop := g.clock.NewTicker(wait)
	defer stop()
	select {
	case <-f.done:
		return f.neuron, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	case <-tick:
		return "", &route.RetryError{
			Err:        fmt.Errorf("%w: %s did not become ready within %v; the load goes on", ErrStillLoading, f.model, wait),
			RetryAfter: g.cfg.retryAfter,
		}
	}
}

// keepAlive sends the client of a streaming request an SSE comment saying
// how long its model has been loading. The first one sends the headers (200,
// text/event-stream) and puts a lateStream in front of the client's
// writer, so that what the request path writes later still makes a valid
// event stream.
func (c *exchange) keepAlive(f *flight) error {
	ls, ok := c.w.(*lateStream)
	if !ok {
		h := c.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		c.w.WriteHeader(http.StatusOK)
		ls = &lateStream{w: c.w, rc: http.NewResponseController(c.w), header: make(http.Header)}
		c.w = ls
	}
	secs := int64(c.g.clock.Now().Sub(f.since) / time.Second)
	if _, err := fmt.Fprintf(ls.w, ": loading %s %ds\n\n", f.model, max(secs, 0)); err != nil {
		return err
	}
	return flush(ls.rc)
}

// lateStream is the client's writer once the headers of an event stream
// were sent early, while the request waited for a cold load. What the
// request path writes afterwards goes through it: an event stream from the
// neuron is passed on as is; any other answer (the gateway's own error, a
// neuron's error, a JSON body) can no longer change the status, so it is
// sent as one SSE event instead, "event: error" for an error status, once
// its JSON body is complete. Headers set afterwards are dropped.
type lateStream struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	header http.Header
	mode   lateMode
	buf    []byte
}

type lateMode uint8

const (
	lateUnset lateMode = iota
	latePass           // an event stream: pass it on
	lateError          // an error answer: one "event: error"
	lateData           // a 2xx answer that is not a stream: one data event
)

// lateBodyMax bounds the body gathered into one event.
const lateBodyMax = 1 << 20

func (s *lateStream) Header() http.Header { return s.header }

func (s *lateStream) WriteHeader(code int) {
	if s.mode != lateUnset {
		return
	}
	switch {
	case code < 200 || code > 299:
		s.mode = lateError
	case isEventStream(s.header):
		s.mode = latePass
	default:
		s.mode = lateData
	}
}

func (s *lateStream) Write(b []byte) (int, error) {
	if s.mode == lateUnset {
		s.WriteHeader(http.StatusOK)
	}
	if s.mode == latePass {
		return s.w.Write(b)
	}
	if len(s.buf)+len(b) > lateBodyMax {
		return 0, errors.New("cortex: answer too large for an event")
	}
	s.buf = append(s.buf, b...)
	body := bytes.TrimSpace(s.buf)
	if len(body) == 0 || (body[0] == '{' && !json.Valid(body)) {
		return len(b), nil // wait for the rest of the JSON body
	}
	var out bytes.Buffer
	if s.mode == lateError {
		out.WriteString("event: error\n")
	}
	out.WriteString("data: ")
	if json.Valid(body) {
		_ = json.Compact(&out, body)
	} else {
		// Not JSON: wrap the text in an error envelope.
		env, _ := json.Marshal(oaierr.Envelope{Error: oaierr.Body{Message: string(body), Type: oaierr.TypeServer}})
		out.Write(env)
	}
	out.WriteString("\n\n")
	if s.mode == lateData {
		out.WriteString("data: [DONE]\n\n")
	}
	s.buf = s.buf[:0]
	if _, err := s.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(b), flush(s.rc)
}

// Flush flushes the client's connection.
func (s *lateStream) Flush() { _ = flush(s.rc) }

// Unwrap returns the client's writer, for http.ResponseController.
func (s *lateStream) Unwrap() http.ResponseWriter { return s.w }
