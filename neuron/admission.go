package neuron

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
)

// Admission defaults.
const (
	DefaultMaxInFlight = 4
	DefaultMaxQueue    = 64
	DefaultMaxWait     = 30 * time.Second
)

// AdmissionConfig bounds the inference requests the Agent forwards to each
// model's engine. It is the [admission] table of neuron.toml. Every limit is
// per model; a zero field takes its default.
type AdmissionConfig struct {
	// MaxInFlight is how many requests may be at the engine at once.
	// Default 4.
	MaxInFlight int `toml:"max_in_flight" json:"max_in_flight"`
	// MaxQueue is how many requests may wait, first in first out, for a
	// slot. Default 64; a negative value disables the queue (a request that
	// finds every slot busy is refused at once with queue_full).
	MaxQueue int `toml:"max_queue" json:"max_queue"`
	// MaxWait is the longest a request waits in the queue before it is
	// refused with queue_timeout. Default 30s.
	MaxWait Duration `toml:"max_wait" json:"max_wait"`
	// PerPrincipal caps the requests (in flight plus queued) one principal
	// may have at a model; beyond it requests are refused with
	// rate_limit_exceeded. The principal is the X-Helexa-Account-Id and
	// X-Helexa-Key-Id pair; requests without them share one anonymous
	// principal. Default 0: no cap.
	PerPrincipal int `toml:"per_principal" json:"per_principal"`
}

// withDefaults returns c with zero fields set to their defaults.
func (c AdmissionConfig) withDefaults() AdmissionConfig {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.MaxWait == 0 {
		c.MaxWait = Duration(DefaultMaxWait)
	}
	return c
}

func (c AdmissionConfig) validate() error {
	if c.MaxInFlight < 0 {
		return fmt.Errorf("max_in_flight %d is negative", c.MaxInFlight)
	}
	if c.PerPrincipal < 0 {
		return fmt.Errorf("per_principal %d is negative", c.PerPrincipal)
	}
	if c.MaxWait < 0 {
		return fmt.Errorf("max_wait %s is negative", c.MaxWait.Std())
	}
	return nil
}

// admission is the per-model gate in front of the engines: a counting
// semaphore with a bounded FIFO queue, a maximum wait and a per-principal
// cap. One mutex guards all of it; each waiter has its own channel, closed
// when a releasing request hands it its slot.
//
// It is not x/sync's semaphore.Weighted, which is FIFO too: the queue here
// is bounded (queue_full at once past max_queue), its depth is reported
// (GET /health, cortex's routing), a principal's cap counts its queued
// requests with those in flight, and an unload drains a model's gate. The
// Weighted semaphore has no queue bound and no view of its waiters.
type admission struct {
	clock clock.Clock // times the queue's waits

	mu       sync.Mutex
	cfg      AdmissionConfig // defaults applied; replaced by set
	maxQueue int             // cfg.MaxQueue, 0 when the queue is disabled
	models   map[string]*modelGate
}

// modelGate is the admission state of one model. A gate with nothing in
// flight, nothing queued and no unload in progress is deleted, so a holder
// of a slot or a queued waiter always keeps its gate alive.
type modelGate struct {
	inFlight  int
	waiters   []*waiter
	principal map[string]int // in flight + queued, per principal; nil without a cap
	unloading bool
}

type waiter struct {
	ready   chan struct{} // closed when the slot is handed over
	granted bool          // under admission.mu
}

func newAdmission(cfg AdmissionConfig, clk clock.Clock) *admission {
	cfg = cfg.withDefaults()
	return &admission{cfg: cfg, maxQueue: max(cfg.MaxQueue, 0), clock: clk, models: make(map[string]*modelGate)}
}

// set replaces the limits (a reload). Requests in flight and queued stay;
// a higher max_in_flight admits queued requests at once, a lower one
// admits none until the count is below it; a queue over a lower max_queue
// drains as slots free up. A per_principal cap that was off counts, at a
// model busy when it is turned on, only the requests admitted from then
// on.
func (a *admission) set(cfg AdmissionConfig) {
	cfg = cfg.withDefaults()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfg, a.maxQueue = cfg, max(cfg.MaxQueue, 0)
	for _, g := range a.models {
		if cfg.PerPrincipal > 0 && g.principal == nil {
			g.principal = make(map[string]int)
		}
		for g.inFlight < cfg.MaxInFlight && len(g.waiters) > 0 {
			w := g.waiters[0]
			g.waiters[0] = nil
			g.waiters = g.waiters[1:]
			g.inFlight++
			w.granted = true
			close(w.ready)
		}
	}
}

// limits returns the limits in force: the configuration and the queue
// bound.
func (a *admission) limits() (AdmissionConfig, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg, a.maxQueue
}

// gateLocked returns id's gate, creating it.
func (a *admission) gateLocked(id string) *modelGate {
	g := a.models[id]
	if g == nil {
		g = &modelGate{}
		if a.cfg.PerPrincipal > 0 {
			g.principal = make(map[string]int)
		}
		a.models[id] = g
	}
	return g
}

// dropIfIdleLocked deletes id's gate when nothing refers to it any more.
func (a *admission) dropIfIdleLocked(id string, g *modelGate) {
	if g.inFlight == 0 && len(g.waiters) == 0 && !g.unloading && a.models[id] == g {
		delete(a.models, id)
	}
}

// acquire takes a slot for a request to model id on behalf of principal,
// waiting in the queue when every slot is busy. It returns the function that
// gives the slot back; calling it more than once has no further effect. On
// error nothing is held: a request whose ctx ends while it waits leaves the
// queue (and passes on a slot it was handed in the same instant).
func (a *admission) acquire(ctx context.Context, id, principal string) (release func(), err error) {
	a.mu.Lock()
	cfg := a.cfg
	g := a.gateLocked(id)
	switch {
	case g.unloading:
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: %s is being unloaded", ErrNotReady, id)
	case cfg.PerPrincipal > 0 && g.principal[principal] >= cfg.PerPrincipal:
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: %d requests for %s", ErrRateLimited, cfg.PerPrincipal, id)
	case g.inFlight < cfg.MaxInFlight && len(g.waiters) == 0:
		g.inFlight++
		incPrincipal(g, principal)
		a.mu.Unlock()
		return a.releaser(id, g, principal), nil
	case len(g.waiters) >= a.maxQueue:
		n := a.maxQueue
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: %d waiting for %s", ErrQueueFull, n, id)
	}
	w := &waiter{ready: make(chan struct{})}
	g.waiters = append(g.waiters, w)
	incPrincipal(g, principal)
	a.mu.Unlock()

	timer := a.clock.NewTimer(cfg.MaxWait.Std())
	defer timer.Stop()
	select {
	case <-w.ready:
		return a.releaser(id, g, principal), nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C():
		err = fmt.Errorf("%w: waited %s for %s", ErrQueueTimeout, cfg.MaxWait.Std(), id)
	}

	a.mu.Lock()
	if w.granted {
		// The slot arrived as the wait ended. A timed-out request uses it;
		// a cancelled one passes it on.
		a.mu.Unlock()
		release = a.releaser(id, g, principal)
		if errors.Is(err, ErrQueueTimeout) {
			return release, nil
		}
		release()
		return nil, err
	}
	if i := slices.Index(g.waiters, w); i >= 0 {
		g.waiters = slices.Delete(g.waiters, i, i+1)
	}
	decPrincipal(g, principal)
	a.dropIfIdleLocked(id, g)
	a.mu.Unlock()
	return nil, err
}

// incPrincipal and decPrincipal count principal's requests on g (under
// admission.mu); they do nothing without a per-principal cap.
func incPrincipal(g *modelGate, principal string) {
	if g.principal != nil {
		g.principal[principal]++
	}
}

func decPrincipal(g *modelGate, principal string) {
	if g.principal == nil {
		return
	}
	if n := g.principal[principal] - 1; n > 0 {
		g.principal[principal] = n
	} else {
		delete(g.principal, principal)
	}
}

// releaser returns the once-only release of a slot held on g.
func (a *admission) releaser(id string, g *modelGate, principal string) func() {
	var done atomic.Bool
	return func() {
		if done.Swap(true) {
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		decPrincipal(g, principal)
		if len(g.waiters) > 0 {
			// Hand the slot to the oldest waiter: inFlight is unchanged.
			w := g.waiters[0]
			g.waiters[0] = nil
			g.waiters = g.waiters[1:]
			w.granted = true
			close(w.ready)
			return
		}
		g.inFlight--
		a.dropIfIdleLocked(id, g)
	}
}

// counts returns the requests in flight and queued for id.
func (a *admission) counts(id string) (inFlight, queued int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if g := a.models[id]; g != nil {
		return g.inFlight, len(g.waiters)
	}
	return 0, 0
}

// beginUnload stops admitting requests to id. Unless force, it refuses with
// ErrModelBusy while requests are in flight or queued. endUnload undoes it.
func (a *admission) beginUnload(id string, force bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.gateLocked(id)
	if g.unloading {
		return fmt.Errorf("%w: %s is already being unloaded", ErrModelBusy, id)
	}
	if !force && (g.inFlight > 0 || len(g.waiters) > 0) {
		n, q := g.inFlight, len(g.waiters)
		a.dropIfIdleLocked(id, g)
		return fmt.Errorf("%w: %s has %d requests in flight and %d queued", ErrModelBusy, id, n, q)
	}
	g.unloading = true
	return nil
}

func (a *admission) endUnload(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if g := a.models[id]; g != nil {
		g.unloading = false
		a.dropIfIdleLocked(id, g)
	}
}

// SetAdmission replaces the admission limits of a serving Agent (a
// reload of neuron.toml's [admission]): requests in flight and queued
// stay admitted, a higher max_in_flight admits queued requests at once,
// and a lower one admits no more until fewer are in flight. A per_principal
// cap turned on counts, at a model busy at that moment, only the requests
// admitted from then on. An invalid configuration changes nothing.
func (a *Agent) SetAdmission(cfg AdmissionConfig) error {
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("neuron: admission: %w", err)
	}
	a.adm.set(cfg)
	return nil
}
