package cortex

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/neuron"
)

// Poller defaults.
const (
	// DefaultPollInterval is the time between two polling rounds.
	DefaultPollInterval = 2 * time.Second
	// DefaultCallTimeout bounds each call to a neuron's management API.
	DefaultCallTimeout = time.Second
	// DefaultFailureThreshold is the number of consecutive failed polls
	// after which a neuron is unhealthy.
	DefaultFailureThreshold = 3
)

// ErrUnknownNeuron is returned by FleetPoller.Refresh for a name that is
// not configured.
var ErrUnknownNeuron = errors.New("cortex: unknown neuron")

// Poller keeps a snapshot of the fleet fresh.
//
// Concurrency: Fleet may be called from any goroutine at any time, also
// while Run runs; it never blocks and never returns nil. Run is called
// once, and returns nil when ctx ends.
type Poller interface {
	// Run polls the fleet until ctx ends, then returns nil (or an error
	// when it cannot run at all).
	Run(ctx context.Context) error
	// Fleet returns the latest snapshot.
	Fleet() *Fleet
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

// ClientFactory builds the NeuronAPI of one configured neuron; NewPoller
// calls it once per neuron.
type ClientFactory func(NeuronConfig) (NeuronAPI, error)

// Clock is the poller's source of time: the timestamps of snapshots and
// polls, and the ticks of Run. The default is the system clock.
//
// Concurrency: Now may be called from many goroutines at once.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTicker returns a channel that delivers a tick every d and a
	// function that stops it.
	NewTicker(d time.Duration) (c <-chan time.Time, stop func())
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// PollerOption configures NewPoller.
type PollerOption interface {
	applyPoller(*pollerConfig)
}

// Option configures several constructors of the package at once: NewPoller
// and NewGateway. WithLogger, WithUsage and WithClock are Options.
type Option interface {
	PollerOption
	GatewayOption
}

type pollerConfig struct {
	interval    time.Duration
	callTimeout time.Duration
	threshold   int
	factory     ClientFactory
	usage       *Usage
	logger      *slog.Logger
	clock       Clock
	// Set by the Gateway for its default Poller (gatewayHooks).
	outliers *outliers               // links each ModelState's Ejection; nil: none
	observe  func(prev, next *Fleet) // told of each new snapshot; nil: none
}

type pollerOptionFunc func(*pollerConfig)

func (o pollerOptionFunc) applyPoller(c *pollerConfig) { o(c) }

// WithInterval sets the time between polling rounds. Default 2 s.
func WithInterval(d time.Duration) PollerOption {
	return pollerOptionFunc(func(c *pollerConfig) { c.interval = d })
}

// WithCallTimeout bounds each call to a neuron's management API. Default
// 1 s.
func WithCallTimeout(d time.Duration) PollerOption {
	return pollerOptionFunc(func(c *pollerConfig) { c.callTimeout = d })
}

// WithFailureThreshold sets how many consecutive failed polls make a
// neuron unhealthy. One successful poll makes it healthy again. Default 3.
func WithFailureThreshold(n int) PollerOption {
	return pollerOptionFunc(func(c *pollerConfig) { c.threshold = n })
}

// WithClientFactory sets how the poller reaches each neuron, for example to
// share an *http.Client, or to poll fakes in tests. The default builds a
// *neuron.Client with the neuron's endpoint and token.
func WithClientFactory(f ClientFactory) PollerOption {
	return pollerOptionFunc(func(c *pollerConfig) { c.factory = f })
}

// usageOption, loggerOption and clockOption are Options.
type (
	usageOption  struct{ u *Usage }
	loggerOption struct{ l *slog.Logger }
	clockOption  struct{ c Clock }
)

func (o usageOption) applyPoller(c *pollerConfig) { c.usage = o.u }

// gatewayHooks is how a Gateway links its default Poller to itself: the
// snapshots point to the gateway's ejections, and the gateway sees each
// snapshot the poller publishes (for its events and readmissions).
type gatewayHooks struct {
	o       *outliers
	observe func(prev, next *Fleet)
}

func (h gatewayHooks) applyPoller(c *pollerConfig) { c.outliers, c.observe = h.o, h.observe }
func (o loggerOption) applyPoller(c *pollerConfig) { c.logger = o.l }
func (o clockOption) applyPoller(c *pollerConfig)  { c.clock = o.c }

// WithUsage sets the live counters that snapshots link to (see
// ModelState.Live). Default none: Live is nil and LastUsed zero.
func WithUsage(u *Usage) Option { return usageOption{u} }

// WithLogger sets where health transitions are logged. Default: nowhere.
func WithLogger(l *slog.Logger) Option { return loggerOption{l} }

// WithClock sets the clock. Default the system clock.
func WithClock(c Clock) Option { return clockOption{c} }

// FleetPoller is the default Poller: it polls every configured neuron's
// management API concurrently, GET /models and GET /health on every round
// and GET /discovery until it has been fetched once, and publishes a new
// *Fleet after each round.
//
// A poll succeeds when every call it makes succeeds; it stops at the first
// failed call. A neuron is healthy after one successful poll and unhealthy
// after FailureThreshold consecutive failed ones; a neuron that fails keeps
// its last known models, discovery and health. A poll cut short because
// its ctx ended changes nothing.
//
// FleetPoller is safe for concurrent use: Fleet, Refresh and Run may be
// called from any goroutine. When polls of one neuron overlap (a round and
// a Refresh), the result of the one started last wins.
type FleetPoller struct {
	cfg     pollerConfig
	cat     *catalogue.Catalogue
	log     *slog.Logger
	targets []*target // in configuration order
	byName  map[string]*target

	fleet atomic.Pointer[Fleet]

	mu sync.Mutex // guards the state of every target and publication
}

var _ Poller = (*FleetPoller)(nil)

// target is one polled neuron.
type target struct {
	api        NeuronAPI
	started    atomic.Uint64 // polls started
	discovered atomic.Bool   // Discovery is cached

	// Guarded by FleetPoller.mu.
	applied uint64             // sequence of the latest applied poll
	state   NeuronState        // Models and derived values are set at publication
	models  []neuron.ModelInfo // last known GET /models
}

// NewPoller returns a FleetPoller for the given neurons and catalogue (nil:
// no catalogue). It validates the neuron configurations (unique names,
// http(s) endpoints) and the options, and builds one client per neuron. The
// first snapshot, available at once from Fleet, has every neuron unhealthy
// and never polled.
func NewPoller(neurons []NeuronConfig, cat *catalogue.Catalogue, opts ...PollerOption) (*FleetPoller, error) {
	if err := validateNeurons(neurons); err != nil {
		return nil, err
	}
	cfg := pollerConfig{
		interval:    DefaultPollInterval,
		callTimeout: DefaultCallTimeout,
		threshold:   DefaultFailureThreshold,
		clock:       systemClock{},
	}
	for _, o := range opts {
		if o != nil {
			o.applyPoller(&cfg)
		}
	}
	switch {
	case cfg.interval <= 0:
		return nil, fmt.Errorf("cortex: poller: interval %v is not positive", cfg.interval)
	case cfg.callTimeout <= 0:
		return nil, fmt.Errorf("cortex: poller: call timeout %v is not positive", cfg.callTimeout)
	case cfg.threshold < 1:
		return nil, fmt.Errorf("cortex: poller: failure threshold %d is below 1", cfg.threshold)
	case cfg.clock == nil:
		return nil, errors.New("cortex: poller: nil Clock")
	case cfg.factory == nil:
		cfg.factory = defaultClientFactory
	}
	p := &FleetPoller{
		cfg:     cfg,
		cat:     cat,
		log:     cfg.logger,
		targets: make([]*target, len(neurons)),
		byName:  make(map[string]*target, len(neurons)),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	for i, nc := range neurons {
		api, err := cfg.factory(nc)
		if err != nil {
			return nil, fmt.Errorf("cortex: poller: neuron %q: %w", nc.Name, err)
		}
		if api == nil {
			return nil, fmt.Errorf("cortex: poller: neuron %q: client factory returned nil", nc.Name)
		}
		t := &target{api: api}
		t.state = NeuronState{Name: nc.Name, Endpoint: nc.Endpoint}
		p.targets[i] = t
		p.byName[nc.Name] = t
	}
	now := cfg.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.publishLocked(now); err != nil {
		return nil, err
	}
	return p, nil
}

// Fleet returns the latest snapshot. It never blocks and never returns nil.
func (p *FleetPoller) Fleet() *Fleet { return p.fleet.Load() }

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
func (p *FleetPoller) Refresh(ctx context.Context, name string) (*Fleet, error) {
	t := p.byName[name]
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
	prev := p.fleet.Load()
	f, err := p.publishLocked(now)
	p.mu.Unlock()
	p.logEvent(ev)
	if err != nil {
		return nil, err
	}
	p.observed(prev, f)
	return f, res.err
}

// observed tells the observer of a new snapshot, once p.mu is released.
// Snapshots published concurrently (a round and a Refresh) may be told in
// either order; each comes with the one it replaced.
func (p *FleetPoller) observed(prev, next *Fleet) {
	if p.cfg.observe != nil && next != nil {
		p.cfg.observe(prev, next)
	}
}

// round polls every neuron concurrently and publishes one snapshot.
func (p *FleetPoller) round(ctx context.Context) {
	results := make([]pollResult, len(p.targets))
	var wg sync.WaitGroup
	for i, t := range p.targets {
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
	prev := p.fleet.Load()
	f, err := p.publishLocked(now)
	p.mu.Unlock()
	for _, ev := range events {
		p.logEvent(ev)
	}
	if err != nil {
		p.log.Error("cortex: cannot build the fleet snapshot", "err", err)
		return
	}
	p.observed(prev, f)
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
		p.log.Info("cortex: neuron healthy", "neuron", ev.name)
	case eventUnhealthy:
		p.log.Warn("cortex: neuron unhealthy", "neuron", ev.name, "failures", ev.failures, "err", ev.err)
	case eventFailed:
		p.log.Debug("cortex: neuron poll failed", "neuron", ev.name, "failures", ev.failures, "err", ev.err)
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
func (p *FleetPoller) publishLocked(now time.Time) (*Fleet, error) {
	states := make([]NeuronState, len(p.targets))
	for i, t := range p.targets {
		states[i] = t.state
		states[i].Models = modelStates(t.models, t.state.Health)
		if o := p.cfg.outliers; o != nil {
			for j := range states[i].Models {
				m := &states[i].Models[j]
				m.Ejection = o.ejection(t.state.Name, m.ID)
			}
		}
	}
	f, err := newFleet(p.cat, p.cfg.usage, now, states)
	if err != nil {
		return nil, err
	}
	p.fleet.Store(f)
	return f, nil
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

var _ NeuronAPI = (*neuron.Client)(nil)

// defaultClientFactory builds a *neuron.Client with the neuron's endpoint
// and token over http.DefaultClient; the poller bounds each call with its
// call timeout.
func defaultClientFactory(nc NeuronConfig) (NeuronAPI, error) {
	var opts []neuron.ClientOption
	if nc.Token != "" {
		opts = append(opts, neuron.WithToken(nc.Token))
	}
	return neuron.NewClient(nc.Endpoint, opts...)
}
