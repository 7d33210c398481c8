package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/neuron"
)

// probeInterval is how often a loading engine's ready path is polled, in
// real time (see WithClock).
const probeInterval = 250 * time.Millisecond

// Harness runs one engine child process per model. Build it with New; the
// zero value is not usable. All methods may be called concurrently; Models,
// Endpoint and Logs never block on a load in progress.
type Harness struct {
	tmpls      atomic.Pointer[templates] // replaced whole by SetEngines
	host       string                    // what {host} expands to
	dialHost   string                    // where the harness reaches engines
	logLines   int
	backoffMin time.Duration
	backoffMax time.Duration
	log        *slog.Logger
	client     *http.Client
	clock      clock.Clock

	mu     sync.Mutex
	models map[string]*model
	closed bool
}

var (
	_ neuron.Harness       = (*Harness)(nil)
	_ neuron.LogSource     = (*Harness)(nil)
	_ neuron.HarnessCloser = (*Harness)(nil)
)

// model is one loaded (or loading) model. Its supervisor goroutine owns the
// engine process; the fields under "guarded" are shared with the Harness
// methods through Harness.mu.
type model struct {
	id   string
	spec neuron.LoadSpec
	tmpl *template
	logs *ring

	stop  chan struct{} // closed once to ask the supervisor to stop
	ready chan struct{} // closed when the first load succeeded or failed
	done  chan struct{} // closed when the supervisor has exited

	// guarded by Harness.mu
	info     neuron.ModelInfo
	port     int
	stopping bool
	loadErr  error // why the first load failed; read after ready is closed
}

// New validates the engine templates and returns a Harness that starts
// engines from them. Defaults are applied to each template: ReadyPath
// "/health", StartTimeout 10m, StopTimeout 10s. Names must be unique and
// non-empty, commands non-empty, and placeholders among {model} {id} {port}
// {host} {gpus} {context}.
func New(engines []neuron.EngineConfig, opts ...Option) (*Harness, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if len(engines) == 0 {
		return nil, errors.New("engine: no engine templates")
	}
	h := &Harness{
		host:       o.host,
		logLines:   o.logLines,
		backoffMin: o.backoffMin,
		backoffMax: o.backoffMax,
		log:        o.logger,
		clock:      o.clock,
		models:     make(map[string]*model),
	}
	ts, err := newTemplates(engines, o.defaultEngine)
	if err != nil {
		return nil, err
	}
	h.tmpls.Store(ts)
	if o.logLines <= 0 {
		return nil, fmt.Errorf("engine: log lines must be positive, got %d", o.logLines)
	}
	if o.backoffMin <= 0 || o.backoffMax < o.backoffMin {
		return nil, fmt.Errorf("engine: invalid backoff %v..%v", o.backoffMin, o.backoffMax)
	}
	dial, err := dialHost(o.host)
	if err != nil {
		return nil, err
	}
	h.dialHost = dial
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	// The ready and liveness probes use a new connection each: a probe
	// is sent every liveness interval, longer than engines keep an idle
	// connection (llama-server 5 s), so a pooled one would often be one
	// the engine is closing, and a probe failed by that would count
	// against a healthy engine.
	h.client = &http.Client{Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
	}}
	return h, nil
}

// templates are the engine templates of a Harness and the default one.
type templates struct {
	byName        map[string]*template
	defaultEngine string
}

// newTemplates validates engines and builds their templates; an empty
// defaultEngine is the first.
func newTemplates(engines []neuron.EngineConfig, defaultEngine string) (*templates, error) {
	if len(engines) == 0 {
		return nil, errors.New("engine: no engine templates")
	}
	ts := &templates{byName: make(map[string]*template, len(engines)), defaultEngine: defaultEngine}
	for _, c := range engines {
		t, err := newTemplate(c)
		if err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		if _, dup := ts.byName[t.name]; dup {
			return nil, fmt.Errorf("engine: duplicate engine name %q", t.name)
		}
		ts.byName[t.name] = t
	}
	if ts.defaultEngine == "" {
		ts.defaultEngine = engines[0].Name
	}
	if _, ok := ts.byName[ts.defaultEngine]; !ok {
		return nil, fmt.Errorf("engine: default engine %q is not a template", ts.defaultEngine)
	}
	return ts, nil
}

// SetEngines replaces the engine templates, and the default one (empty:
// the first), as New validates them: the loads that start from now on use
// them. Engines already running, or loading, are untouched, and so are
// their restarts (a model keeps the template it was loaded with until it
// is unloaded). An invalid set changes nothing. It is safe to call at any
// time.
func (h *Harness) SetEngines(engines []neuron.EngineConfig, defaultEngine string) error {
	ts, err := newTemplates(engines, defaultEngine)
	if err != nil {
		return err
	}
	h.tmpls.Store(ts)
	return nil
}

// dialHost checks host and returns where to reach an engine listening on it.
func dialHost(host string) (string, error) {
	if host == "" || strings.ContainsAny(host, "/?#@[] \t") {
		return "", fmt.Errorf("engine: invalid host %q", host)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		if strings.Contains(host, ":") {
			return "", fmt.Errorf("engine: invalid host %q", host)
		}
		return host, nil
	}
	if ip.IsUnspecified() {
		if ip.To4() == nil {
			return "::1", nil
		}
		return "127.0.0.1", nil
	}
	return host, nil
}

// Load starts spec's model on its engine (spec.Engine, or the default
// engine) and waits until the engine is ready. It returns the model's info,
// or ctx's error when ctx ends first: the load itself goes on, and a later
// Load of the same id waits for it.
//
// Concurrent Loads of one id share one engine process. A Load of an id the
// harness already runs returns its current info at once (whatever its
// status) and ignores the rest of spec. A Load of an id being unloaded
// waits for the unload, then starts a new engine.
//
// Errors: neuron.ErrUnknownEngine, ErrInvalidSpec, neuron.ErrShuttingDown
// after Close, neuron.ErrCannotStart when a model the harness does not run
// fails Check (nothing is started), and a *LoadError (neuron.ErrLoadFailed)
// when the engine exits or is not ready within its start timeout; the
// harness then forgets the model.
func (h *Harness) Load(ctx context.Context, spec neuron.LoadSpec) (neuron.ModelInfo, error) {
	if err := ctx.Err(); err != nil {
		return neuron.ModelInfo{}, err
	}
	if err := checkSpec(spec); err != nil {
		return neuron.ModelInfo{}, err
	}
	t, err := h.template(spec)
	if err != nil {
		return neuron.ModelInfo{}, err
	}
	h.mu.Lock()
	_, known := h.models[spec.ModelID]
	h.mu.Unlock()
	if !known {
		// Refused before anything starts (Check); the files are looked
		// at without the lock.
		if err := h.preflight(spec, t); err != nil {
			return neuron.ModelInfo{}, err
		}
	}
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return neuron.ModelInfo{}, neuron.ErrShuttingDown
		}
		m := h.models[spec.ModelID]
		if m == nil {
			m = h.startLocked(spec, t)
		}
		if m.stopping {
			done := m.done
			h.mu.Unlock()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return neuron.ModelInfo{}, ctx.Err()
			}
		}
		ready := m.ready
		h.mu.Unlock()

		select {
		case <-ready:
		case <-ctx.Done():
			return neuron.ModelInfo{}, ctx.Err()
		}
		h.mu.Lock()
		info, err := m.snapshot(), m.loadErr
		h.mu.Unlock()
		if err != nil {
			return neuron.ModelInfo{}, err
		}
		return info, nil
	}
}

func checkSpec(spec neuron.LoadSpec) error {
	switch {
	case spec.ModelID == "":
		return fmt.Errorf("%w: empty model id", ErrInvalidSpec)
	case strings.HasPrefix(spec.ModelID, "-"):
		return fmt.Errorf("%w: model id %q starts with -", ErrInvalidSpec, spec.ModelID)
	case strings.HasPrefix(spec.Source, "-"):
		return fmt.Errorf("%w: source %q starts with -", ErrInvalidSpec, spec.Source)
	case spec.Context < 0:
		return fmt.Errorf("%w: negative context", ErrInvalidSpec)
	case slices.ContainsFunc(spec.Devices, func(d int) bool { return d < 0 }):
		return fmt.Errorf("%w: negative device index", ErrInvalidSpec)
	}
	if err := spec.EngineArgs.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	return nil
}

// startLocked registers a new model and starts its supervisor.
func (h *Harness) startLocked(spec neuron.LoadSpec, t *template) *model {
	spec.Devices = slices.Clone(spec.Devices)
	spec.Capabilities = slices.Clone(spec.Capabilities)
	spec.EngineArgs.Extra = slices.Clone(spec.EngineArgs.Extra)
	spec.EngineArgs.Set = maps.Clone(spec.EngineArgs.Set)
	limit := spec.Limit
	if limit.Context == 0 {
		limit.Context = spec.Context
	}
	m := &model{
		id:    spec.ModelID,
		spec:  spec,
		tmpl:  t,
		logs:  newRing(h.logLines),
		stop:  make(chan struct{}),
		ready: make(chan struct{}),
		done:  make(chan struct{}),
		info: neuron.ModelInfo{
			ID:           spec.ModelID,
			Engine:       t.name,
			Status:       neuron.StatusLoading,
			Devices:      spec.Devices,
			VRAMUsedMB:   spec.VRAMMB,
			Limit:        limit,
			Capabilities: spec.Capabilities,
			LoadingSince: h.clock.Now(),
		},
	}
	h.models[m.id] = m
	s := &supervisor{h: h, m: m}
	go s.run()
	return m
}

// snapshot copies the model's info; the caller holds Harness.mu.
func (m *model) snapshot() neuron.ModelInfo {
	info := m.info
	info.Devices = slices.Clone(info.Devices)
	info.Capabilities = slices.Clone(info.Capabilities)
	return info
}

// stopLocked asks the model's supervisor to stop; the caller holds
// Harness.mu.
func (m *model) stopLocked() {
	if !m.stopping {
		m.stopping = true
		m.info.Status = neuron.StatusUnloading
		close(m.stop)
	}
}

// Unload stops id's engine (SIGTERM to its process group, SIGKILL after the
// template's stop timeout), waits for it and forgets the model. The model
// is "unloading" meanwhile. When ctx ends first Unload returns ctx's error
// and the stop goes on. neuron.ErrModelNotFound when id is unknown.
func (h *Harness) Unload(ctx context.Context, id string) error {
	h.mu.Lock()
	m := h.models[id]
	if m == nil {
		h.mu.Unlock()
		return fmt.Errorf("%w: %q", neuron.ErrModelNotFound, id)
	}
	m.stopLocked()
	done := m.done
	h.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close unloads every model in parallel and waits for their engines to
// exit, or for ctx to end (then it returns ctx's error while the stops go
// on). Loads after Close fail with neuron.ErrShuttingDown. Close may be
// called more than once.
func (h *Harness) Close(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	dones := make([]chan struct{}, 0, len(h.models))
	for _, m := range h.models {
		m.stopLocked()
		dones = append(dones, m.done)
	}
	h.mu.Unlock()
	for _, done := range dones {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Models returns a snapshot of every model, sorted by id.
func (h *Harness) Models() []neuron.ModelInfo {
	h.mu.Lock()
	out := make([]neuron.ModelInfo, 0, len(h.models))
	for _, m := range h.models {
		out = append(out, m.snapshot())
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b neuron.ModelInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Endpoint returns the base URL of id's engine, http://host:port.
// neuron.ErrModelNotFound when id is unknown, neuron.ErrNotReady when it is
// not loaded (loading, failed, recovering or unloading).
func (h *Harness) Endpoint(id string) (*url.URL, error) {
	h.mu.Lock()
	m := h.models[id]
	var (
		status neuron.ModelStatus
		port   int
	)
	if m != nil {
		status, port = m.info.Status, m.port
	}
	h.mu.Unlock()
	switch {
	case m == nil:
		return nil, fmt.Errorf("%w: %q", neuron.ErrModelNotFound, id)
	case status != neuron.StatusLoaded:
		return nil, fmt.Errorf("%w: %q is %s", neuron.ErrNotReady, id, status)
	}
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(h.dialHost, strconv.Itoa(port))}, nil
}

// Logs returns the last lines id's engine printed on stdout and stderr,
// oldest first, across its restarts (at most WithLogLines of them).
// neuron.ErrModelNotFound when id is unknown.
func (h *Harness) Logs(id string) ([]string, error) {
	h.mu.Lock()
	m := h.models[id]
	h.mu.Unlock()
	if m == nil {
		return nil, fmt.Errorf("%w: %q", neuron.ErrModelNotFound, id)
	}
	return m.logs.last(0), nil
}
