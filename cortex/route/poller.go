package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/neuron"
)

// ErrUnknownNeuron is returned by FleetPoller.Refresh for a name that is
// not configured.
var ErrUnknownNeuron = errors.New("route: unknown neuron")

// Snapshot is what a Poller publishes: the state of every neuron at a
// time, and nothing of the gateway's. The gateway joins it with its
// catalogue and its live Usage to build the Fleet it routes over (see
// NewFleet), so a Poller cannot publish a fleet without live counts.
//
// A published Snapshot is immutable: neither the Poller nor anyone else
// may modify it, its Neurons or their Models afterwards. The Profile,
// LastUsed, Live and Ejection fields of its ModelStates are the gateway's
// to set and are ignored (NewFleet sets them).
type Snapshot struct {
	// At is when the snapshot was taken.
	At time.Time
	// Neurons holds one state per neuron, in any order, with unique
	// non-empty names and, within a neuron, unique non-empty model ids.
	Neurons []NeuronState
}

// Poller keeps the state of the fleet's neurons fresh, and publishes it as
// Snapshots.
//
// Concurrency: Snapshot may be called from any goroutine at any time, also
// while Run runs; it never blocks and never returns nil. The gateway calls
// it on every request, and builds a new Fleet each time it returns a
// pointer it has not seen, so a Poller returns the same *Snapshot until it
// has something new. Run is called once, and returns nil when ctx ends.
type Poller interface {
	// Run polls the fleet until ctx ends, then returns nil (or an error
	// when it cannot run at all).
	Run(ctx context.Context) error
	// Snapshot returns the latest snapshot.
	Snapshot() *Snapshot
}

// Refresher is an optional Poller capability: poll one neuron now and
// publish the result. FleetPoller has it. The gateway refreshes a neuron
// right after a cold load there, so that the next requests see the model
// loaded without waiting for the next polling round.
//
// Concurrency: Refresh may be called from many goroutines at once, also
// while Run runs.
type Refresher interface {
	// Refresh polls the named neuron, publishes a snapshot with the result
	// and returns it, with the poll's error.
	Refresh(ctx context.Context, neuron string) (*Snapshot, error)
}

// NeuronAPI is the part of a neuron's management API the poller uses.
// *neuron.Client implements it.
//
// Concurrency: the poller calls one NeuronAPI from several goroutines at
// once (a polling round and a Refresh). Every method must return when ctx
// ends.
type NeuronAPI interface {
	// Discovery returns the host's hardware (GET /discovery).
	Discovery(ctx context.Context) (neuron.Discovery, error)
	// Health returns the neuron's devices and admission state (GET /health).
	Health(ctx context.Context) (neuron.Health, error)
	// Models returns the neuron's models (GET /models).
	Models(ctx context.Context) ([]neuron.ModelInfo, error)
}

var _ NeuronAPI = (*neuron.Client)(nil)

// Target is one neuron a FleetPoller polls.
type Target struct {
	// Name identifies the neuron in snapshots. Required and unique.
	Name string
	// Endpoint is the neuron's base URL, copied into NeuronState.Endpoint.
	Endpoint string
	// API reaches the neuron's management API, such as a *neuron.Client
	// sending over the gateway's transport. Required.
	API NeuronAPI
}

// FleetPoller is the default Poller: it polls every target's management
// API concurrently, GET /models and GET /health on every round and GET
// /discovery until it has been fetched once, and publishes a new
// *Snapshot after each round.
//
// A poll succeeds when every call it makes succeeds; it stops at the first
// failed call. A neuron is healthy after one successful poll and unhealthy
// after FailureThreshold consecutive failed ones; a neuron that fails keeps
// its last known models, discovery and health. A poll cut short because
// its ctx ended changes nothing.
//
// FleetPoller is safe for concurrent use: Snapshot, Refresh and Run may be
// called from any goroutine. When polls of one neuron overlap (a round and
// a Refresh), the result of the one started last wins.
type FleetPoller struct {
	cfg pollerConfig
	log *slog.Logger
	set atomic.Pointer[targetSet] // replaced whole by SetTargets

	snap atomic.Pointer[Snapshot]

	mu sync.Mutex // guards the state of every target and publication
}

var (
	_ Poller     = (*FleetPoller)(nil)
	_ Refresher  = (*FleetPoller)(nil)
	_ Retargeter = (*FleetPoller)(nil)
)

// Retargeter is an optional Poller capability: change the neurons it
// polls while it runs. FleetPoller has it; the gateway's Reload needs it to
// add or remove neurons.
//
// Concurrency: SetTargets may be called from any goroutine, also while Run
// and Refresh run; calls are serialised.
type Retargeter interface {
	// SetTargets makes targets the neurons polled from now on, and
	// publishes a snapshot of them. A neuron whose name, endpoint and API
	// are unchanged keeps its state; a new or changed one starts unhealthy
	// and never polled, as in NewPoller; a removed one leaves the
	// snapshots. It validates targets as NewPoller does, and changes
	// nothing when they are invalid.
	SetTargets(targets []Target) error
}

// targetSet is the neurons a FleetPoller polls: immutable once published.
type targetSet struct {
	list   []*target // in configuration order
	byName map[string]*target
}

// target is one polled neuron.
type target struct {
	endpoint   string
	api        NeuronAPI
	started    atomic.Uint64 // polls started
	discovered atomic.Bool   // Discovery is cached

	// Guarded by FleetPoller.mu.
	applied uint64             // sequence of the latest applied poll
	state   NeuronState        // Models are set at publication
	models  []neuron.ModelInfo // last known GET /models
}

// NewPoller returns a FleetPoller over the given targets. It fails on a
// target without a name or an API, on a duplicate name, and on invalid
// options. The first snapshot, available at once from Snapshot, has every
// neuron unhealthy and never polled.
func NewPoller(targets []Target, opts ...PollerOption) (*FleetPoller, error) {
	cfg := newPollerConfig()
	for _, o := range opts {
		if o != nil {
			o.applyPoller(&cfg)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &FleetPoller{cfg: cfg, log: cfg.logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	set, err := newTargetSet(targets, nil)
	if err != nil {
		return nil, err
	}
	p.set.Store(set)
	now := cfg.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.publishLocked(now)
	return p, nil
}

// newTargetSet validates targets and builds their set, keeping the target
// of prev (nil: none) whose name, endpoint and API are unchanged.
func newTargetSet(targets []Target, prev *targetSet) (*targetSet, error) {
	set := &targetSet{list: make([]*target, len(targets)), byName: make(map[string]*target, len(targets))}
	for i, tg := range targets {
		switch {
		case tg.Name == "":
			return nil, fmt.Errorf("route: poller: target %d has no name", i)
		case set.byName[tg.Name] != nil:
			return nil, fmt.Errorf("route: poller: duplicate target %q", tg.Name)
		case tg.API == nil:
			return nil, fmt.Errorf("route: poller: target %q has no API", tg.Name)
		}
		t := prev.lookup(tg.Name)
		if t == nil || t.endpoint != tg.Endpoint || !sameAPI(t.api, tg.API) {
			t = &target{endpoint: tg.Endpoint, api: tg.API}
			t.state = NeuronState{Name: tg.Name, Endpoint: tg.Endpoint}
		}
		set.list[i] = t
		set.byName[tg.Name] = t
	}
	return set, nil
}

// sameAPI reports whether a and b are the same API value; false when
// their type cannot be compared.
func sameAPI(a, b NeuronAPI) bool {
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}

// lookup returns the named target; nil when there is none (or s is nil).
func (s *targetSet) lookup(name string) *target {
	if s == nil {
		return nil
	}
	return s.byName[name]
}

// SetTargets implements Retargeter. Polls in progress of a removed or
// replaced neuron are discarded when they end.
func (p *FleetPoller) SetTargets(targets []Target) error {
	now := p.cfg.clock.Now()
	p.mu.Lock()
	set, err := newTargetSet(targets, p.set.Load())
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.set.Store(set)
	s := p.publishLocked(now)
	p.mu.Unlock()
	p.published(s)
	return nil
}

// Snapshot returns the latest snapshot. It never blocks and never returns
// nil.
func (p *FleetPoller) Snapshot() *Snapshot { return p.snap.Load() }

// Interval returns the time between two polling rounds (WithInterval).
func (p *FleetPoller) Interval() time.Duration { return p.cfg.interval }

// Run polls every neuron at once, then once per interval, publishing a
// snapshot after each round, until ctx ends; then it returns nil. A round
// in progress when ctx ends is discarded.
func (p *FleetPoller) Run(ctx context.Context) error {
	tick, stop := p.cfg.clock.NewTicker(p.cfg.interval)
	defer stop()
	for {
		if ctx.Err() != nil {
			return nil
		}
		p.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
	}
}

// Refresh polls the named neuron now and publishes a snapshot with the
// result, which it returns with the poll's error (the snapshot counts the
// failure). The Gateway calls it right after loading or unloading a model.
// It returns ErrUnknownNeuron for a name that is not configured, and
// ctx.Err() without changing anything when ctx ends first.
func (p *FleetPoller) Refresh(ctx context.Context, name string) (*Snapshot, error) {
	t := p.set.Load().lookup(name)
	if t == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownNeuron, name)
	}
	res := p.poll(ctx, t)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := p.cfg.clock.Now()
	p.mu.Lock()
	ev := p.applyLocked(res)
	s := p.publishLocked(now)
	p.mu.Unlock()
	p.logEvent(ev)
	p.published(s)
	return s, res.err
}

// published tells the WithPublished functions of a new snapshot, once p.mu
// is released.
func (p *FleetPoller) published(s *Snapshot) {
	for _, f := range p.cfg.published {
		f(s)
	}
}

// round polls every neuron concurrently and publishes one snapshot.
func (p *FleetPoller) round(ctx context.Context) {
	targets := p.set.Load().list
	results := make([]pollResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { results[i] = p.poll(ctx, t) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	now := p.cfg.clock.Now()
	events := make([]pollEvent, len(results))
	p.mu.Lock()
	for i := range results {
		events[i] = p.applyLocked(results[i])
	}
	s := p.publishLocked(now)
	p.mu.Unlock()
	for _, ev := range events {
		p.logEvent(ev)
	}
	p.published(s)
}

// pollResult is what one poll of one neuron learned.
type pollResult struct {
	t         *target
	seq       uint64
	at        time.Time
	discovery *neuron.Discovery
	models    []neuron.ModelInfo
	modelsOK  bool
	health    *neuron.Health
	err       error
}

// poll calls the neuron's API without holding any lock: /discovery until
// cached, then /models and /health, stopping at the first failure.
func (p *FleetPoller) poll(ctx context.Context, t *target) pollResult {
	res := pollResult{t: t, seq: t.started.Add(1)}
	if !t.discovered.Load() {
		d, err := call(ctx, p.cfg.callTimeout, t.api.Discovery)
		if err != nil {
			res.err = fmt.Errorf("discovery: %w", err)
			res.at = p.cfg.clock.Now()
			return res
		}
		res.discovery = &d
	}
	models, err := call(ctx, p.cfg.callTimeout, t.api.Models)
	if err != nil {
		res.err = fmt.Errorf("models: %w", err)
		res.at = p.cfg.clock.Now()
		return res
	}
	res.models, res.modelsOK = models, true
	h, err := call(ctx, p.cfg.callTimeout, t.api.Health)
	if err != nil {
		res.err = fmt.Errorf("health: %w", err)
		res.at = p.cfg.clock.Now()
		return res
	}
	res.health = &h
	res.at = p.cfg.clock.Now()
	return res
}

// call runs one API call under the call timeout.
func call[T any](ctx context.Context, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return fn(ctx)
}

// pollEvent is what to log about one applied poll, once p.mu is released.
type pollEvent struct {
	kind     eventKind
	name     string
	failures int
	err      error
}

type eventKind uint8

const (
	eventNone eventKind = iota
	eventHealthy
	eventUnhealthy
	eventFailed
)

func (p *FleetPoller) logEvent(ev pollEvent) {
	switch ev.kind {
	case eventHealthy:
		p.log.Info("route: neuron healthy", "neuron", ev.name)
	case eventUnhealthy:
		p.log.Warn("route: neuron unhealthy", "neuron", ev.name, "failures", ev.failures, "err", ev.err)
	case eventFailed:
		p.log.Debug("route: neuron poll failed", "neuron", ev.name, "failures", ev.failures, "err", ev.err)
	}
}

// applyLocked folds a poll result into its target's state and says what
// to log. p.mu is held.
func (p *FleetPoller) applyLocked(res pollResult) pollEvent {
	t := res.t
	if res.seq <= t.applied {
		return pollEvent{} // a later poll of this neuron was applied already
	}
	t.applied = res.seq
	s := &t.state
	s.LastPoll = res.at
	if res.discovery != nil && s.Discovery == nil {
		s.Discovery = res.discovery
		t.discovered.Store(true)
	}
	if res.modelsOK {
		t.models = res.models
	}
	if res.health != nil {
		s.Health = res.health
	}
	wasHealthy := s.Healthy
	if res.err == nil {
		s.Healthy, s.Failures, s.LastError, s.LastSuccess = true, 0, nil, res.at
		if !wasHealthy {
			return pollEvent{kind: eventHealthy, name: s.Name}
		}
		return pollEvent{}
	}
	s.Failures++
	s.LastError = res.err
	if s.Failures >= p.cfg.threshold {
		s.Healthy = false
	}
	ev := pollEvent{kind: eventFailed, name: s.Name, failures: s.Failures, err: res.err}
	if wasHealthy && !s.Healthy {
		ev.kind = eventUnhealthy
	}
	return ev
}

// publishLocked builds a snapshot from every target's state and publishes
// it. p.mu is held.
func (p *FleetPoller) publishLocked(now time.Time) *Snapshot {
	targets := p.set.Load().list
	s := &Snapshot{At: now, Neurons: make([]NeuronState, len(targets))}
	for i, t := range targets {
		s.Neurons[i] = t.state
		s.Neurons[i].Models = modelStates(t.models, t.state.Health)
	}
	p.snap.Store(s)
	return s
}

// modelStates joins a neuron's models with the admission counts of its
// last /health, dropping entries without an id and repeated ids (keeping
// the first) so that a misbehaving neuron cannot break the snapshot.
func modelStates(models []neuron.ModelInfo, h *neuron.Health) []ModelState {
	var loads map[string]neuron.ModelLoad
	if h != nil && len(h.Models) > 0 {
		loads = make(map[string]neuron.ModelLoad, len(h.Models))
		for _, l := range h.Models {
			loads[l.ID] = l
		}
	}
	out := make([]ModelState, 0, len(models))
	seen := make(map[string]bool, len(models))
	for _, mi := range models {
		if mi.ID == "" || seen[mi.ID] {
			continue
		}
		seen[mi.ID] = true
		l := loads[mi.ID]
		out = append(out, ModelState{ModelInfo: mi, InFlight: l.InFlight, QueueDepth: l.QueueDepth})
	}
	return out
}
