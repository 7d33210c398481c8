package cortex

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/neuron"
)

// loadGroup runs cold loads, one at a time per model: a request for a
// model that is being loaded waits for that load instead of routing and
// loading again. Loads run in their own goroutines, under the gateway's
// life and the load timeout, so a request that leaves does not stop them.
type loadGroup struct {
	active atomic.Int32 // len(flights), read without the lock

	mu      sync.Mutex
	flights map[string]*flight // by model id
	closed  bool
	wg      sync.WaitGroup
}

// flight is one load in progress. neuron and err are written before done
// is closed.
type flight struct {
	done   chan struct{}
	neuron string
	err    error
}

// lookup returns the load in progress of model, or nil. It takes no lock
// when no load is in progress.
func (l *loadGroup) lookup(model string) *flight {
	if l.active.Load() == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flights[model]
}

// do returns the load in progress of model, or starts fn as the load of
// model. After wait it starts nothing and returns a failed flight.
func (l *loadGroup) do(model string, fn func() (string, error)) *flight {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.flights[model]; f != nil {
		return f
	}
	f := &flight{done: make(chan struct{})}
	if l.closed {
		f.err = ErrShuttingDown
		close(f.done)
		return f
	}
	if l.flights == nil {
		l.flights = make(map[string]*flight)
	}
	l.flights[model] = f
	l.active.Add(1)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		name, err := fn()
		l.mu.Lock()
		delete(l.flights, model)
		l.active.Add(-1)
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

// await waits for f or the end of ctx, and returns the neuron the model
// was loaded on.
func (f *flight) await(ctx context.Context) (string, error) {
	select {
	case <-f.done:
		return f.neuron, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// load carries out a Join or Load decision, single-flight per model, and
// returns the neuron the model is ready on.
func (g *Gateway) load(ctx context.Context, d Decision) (string, error) {
	f := g.loads.do(d.Model.ID, func() (name string, err error) {
		defer func() {
			// A bug in a load must not take the gateway down with it.
			if p := recover(); p != nil {
				g.log.Error("cortex: panic in a load", "model", d.Model.ID, "neuron", d.Neuron, "panic", p, "stack", string(debug.Stack()))
				name, err = "", fmt.Errorf("cortex: panic in the load of %s: %v", d.Model.ID, p)
			}
		}()
		lctx, cancel := context.WithTimeout(g.life, g.cfg.loadTimeout)
		defer cancel()
		return g.runLoad(lctx, d)
	})
	return f.await(ctx)
}

// runLoad unloads the victims of d, in order, loads the model, and
// refreshes the neuron in the fleet snapshot.
func (g *Gateway) runLoad(ctx context.Context, d Decision) (string, error) {
	up := g.upstreams[d.Neuron]
	if up == nil {
		return "", fmt.Errorf("cortex: the router chose neuron %q, which is not configured", d.Neuron)
	}
	id := d.Model.ID
	start := g.clock.Now()
	log := g.log.With("model", id, "neuron", d.Neuron)
	defer g.refresh(ctx, d.Neuron)
	if d.Action == ActionLoad {
		for _, victim := range d.Evict {
			err := up.admin.Unload(ctx, victim, false)
			switch {
			case err == nil:
				log.Info("cortex: evicted model", "victim", victim)
				g.metrics.evicted(victim, d.Neuron)
			case errors.Is(err, neuron.ErrModelNotFound):
				// Gone already: the room is there.
			default:
				g.metrics.loaded(id, d.Neuron, false)
				log.Warn("cortex: eviction failed", "victim", victim, "err", err)
				return "", &LoadError{Neuron: d.Neuron, Model: id, Op: "unload " + victim, Err: err, RetryAfter: g.loadRetry(err)}
			}
			up.forget(victim)
		}
	}
	log.Info("cortex: loading model", "action", d.Action.String(), "evicted", d.Evict)
	if _, err := up.admin.Load(ctx, loadSpec(d.Model)); err != nil {
		g.metrics.loaded(id, d.Neuron, false)
		log.Warn("cortex: load failed", "err", err)
		if g.life.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrShuttingDown, err)
		}
		return "", &LoadError{Neuron: d.Neuron, Model: id, Op: "load", Err: err, RetryAfter: g.loadRetry(err)}
	}
	g.metrics.loaded(id, d.Neuron, true)
	// Used now: until its first request arrives, the model is not the
	// never-used first victim of another load.
	g.usage.Touch(d.Neuron, id, g.clock.Now())
	log.Info("cortex: model loaded", "took", g.clock.Now().Sub(start))
	return d.Neuron, nil
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
// model. Devices are left to the neuron, and so is the engine's context
// length (Limit is reported back, not enforced by the neuron).
func loadSpec(m catalogue.Model) neuron.LoadSpec {
	return neuron.LoadSpec{
		ModelID:      m.ID,
		Engine:       m.Engine,
		Source:       m.Source,
		VRAMMB:       m.VRAMMB,
		Limit:        neuron.Limit{Context: m.Limit.Context, Input: m.Limit.Input, Output: m.Limit.Output},
		Capabilities: slices.Clone(m.Capabilities),
	}
}
