package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/neuron"
)

// logLines is how many log lines the Harness keeps per model.
const logLines = 100

// Harness is an in-process neuron.Harness over simulated engines. A load
// takes Config.LoadTime and then the model is served by one loopback HTTP
// server the Harness owns, whose URL Endpoint returns for every loaded
// model; that server routes each request by its "model" field (404
// model_not_found for an unknown id, 503 model_not_ready while the model is
// not loaded).
//
// Concurrency: every method may be called from many goroutines at once.
type Harness struct {
	base     Config
	perModel map[string]Config
	logger   *slog.Logger

	engine    *Engine
	srv       *http.Server
	url       *url.URL
	serveDone chan struct{}
	loads     sync.WaitGroup // load and recovery goroutines

	mu     sync.Mutex
	closed bool
	models map[string]*model
	logs   map[string][]string // by model id; outlives the model
}

var (
	_ neuron.Harness       = (*Harness)(nil)
	_ neuron.LogSource     = (*Harness)(nil)
	_ neuron.HarnessCloser = (*Harness)(nil)
)

// model is one model known to the Harness. Its fields are guarded by
// Harness.mu.
type model struct {
	cfg   Config // with spec.Context applied
	info  neuron.ModelInfo
	op    *loadOp // the current or last load
	life  context.Context
	kill  context.CancelFunc
	crash func()   // Harness.crash of this model
	gpu   *replica // of cfg.GPU, new at each load and restart; nil without one
}

// loadOp is one load (or restart) of a model. info and err are written
// before done is closed.
type loadOp struct {
	done chan struct{}
	info neuron.ModelInfo
	err  error
}

// HarnessOption configures a Harness.
type HarnessOption interface {
	applyHarness(*Harness)
}

type harnessOption func(*Harness)

func (f harnessOption) applyHarness(h *Harness) { f(h) }

// WithModelConfig gives model id its own Config instead of the Harness's.
func WithModelConfig(id string, cfg Config) HarnessOption {
	return harnessOption(func(h *Harness) { h.perModel[id] = cfg })
}

// WithLogger sets where the Harness logs loads, unloads and crashes.
// Default: no logging.
func WithLogger(l *slog.Logger) HarnessOption {
	return harnessOption(func(h *Harness) { h.logger = l })
}

// NewHarness returns a Harness whose models behave as cfg says (or as their
// WithModelConfig says), with its HTTP server listening on a free loopback
// port. It fails when a Config is invalid or the listener cannot be opened.
// Call Close to stop it.
func NewHarness(cfg Config, opts ...HarnessOption) (*Harness, error) {
	h := &Harness{
		base:      cfg,
		perModel:  make(map[string]Config),
		models:    make(map[string]*model),
		logs:      make(map[string][]string),
		serveDone: make(chan struct{}),
	}
	for _, o := range opts {
		o.applyHarness(h)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for id, c := range h.perModel {
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("model %q: %w", id, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sim: harness listener: %w", err)
	}
	h.url = &url.URL{Scheme: "http", Host: ln.Addr().String()}
	h.engine = NewEngine(cfg)
	h.engine.backend = h
	errLog := log.New(io.Discard, "", 0)
	if h.logger != nil {
		errLog = slog.NewLogLogger(h.logger.Handler(), slog.LevelWarn)
	}
	h.srv = NewServer(cfg, h.engine)
	h.srv.ErrorLog = errLog
	go func() {
		defer close(h.serveDone)
		_ = h.srv.Serve(ln)
	}()
	return h, nil
}

// Load starts model spec.ModelID and waits until it is loaded: after the
// model's LoadTime, or at once when it is already loaded. Concurrent loads
// of one id share one load; loading a failed model starts a new load; a
// model recovering from a crash is waited for. A cancelled ctx stops the
// wait, not the load. With FailLoad the model ends "failed" and the error
// wraps neuron.ErrLoadFailed. After Close it returns neuron.ErrShuttingDown.
func (h *Harness) Load(ctx context.Context, spec neuron.LoadSpec) (neuron.ModelInfo, error) {
	if spec.ModelID == "" {
		return neuron.ModelInfo{}, errors.New("sim: load: empty model id")
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return neuron.ModelInfo{}, neuron.ErrShuttingDown
	}
	m := h.models[spec.ModelID]
	if m != nil && m.info.Status == neuron.StatusLoaded {
		info := m.snapshot()
		h.mu.Unlock()
		return info, nil
	}
	var logMsg string
	if m == nil || m.info.Status == neuron.StatusFailed && isDone(m.op) {
		m = h.startLoad(spec, m)
		logMsg = "loading"
	}
	op := m.op
	h.mu.Unlock()
	if logMsg != "" {
		h.log(logMsg, spec.ModelID, slog.Duration("load_time", m.cfg.LoadTime))
	}

	select {
	case <-ctx.Done():
		return neuron.ModelInfo{}, ctx.Err()
	case <-op.done:
		return op.info, op.err
	}
}

// startLoad creates (or, for a failed model, replaces) the model and starts
// its load. h.mu must be held.
func (h *Harness) startLoad(spec neuron.LoadSpec, old *model) *model {
	if old != nil {
		old.kill()
	}
	cfg, ok := h.perModel[spec.ModelID]
	if !ok {
		cfg = h.base
	}
	if spec.Context > 0 {
		cfg.ContextLength = spec.Context
	}
	cfg = cfg.withDefaults()
	limit := spec.Limit
	if limit.Context == 0 {
		limit.Context = cfg.ContextLength
	}
	now := time.Now()
	m := &model{
		cfg: cfg,
		info: neuron.ModelInfo{
			ID:           spec.ModelID,
			Engine:       "sim",
			Status:       neuron.StatusLoading,
			Devices:      slices.Clone(spec.Devices),
			VRAMUsedMB:   spec.VRAMMB,
			Limit:        limit,
			Capabilities: slices.Clone(spec.Capabilities),
			LoadingSince: now,
		},
	}
	m.crash = func() { _ = h.crash(m, "sim: crashed after CrashAfterTokens tokens") }
	h.models[spec.ModelID] = m
	h.note(spec.ModelID, now, "loading (load_time=%v)", cfg.LoadTime)
	h.begin(m)
	return m
}

// begin starts a load or restart of m: a new life and a new loadOp. h.mu
// must be held.
func (h *Harness) begin(m *model) {
	m.life, m.kill = context.WithCancel(context.Background())
	m.newGPU()
	m.op = &loadOp{done: make(chan struct{})}
	h.loads.Add(1)
	go h.runLoad(m, m.op, m.life)
}

// runLoad waits out the load time of m and then marks it loaded or failed,
// unless it was unloaded (or crashed, or closed) meanwhile.
func (h *Harness) runLoad(m *model, op *loadOp, life context.Context) {
	defer h.loads.Done()
	id := m.info.ID
	if d := m.cfg.LoadTime; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-life.Done():
			t.Stop()
		}
	}
	var msg string
	h.mu.Lock()
	now := time.Now()
	switch {
	case h.closed:
		op.err = fmt.Errorf("%w: sim: %s: harness closed while loading", neuron.ErrShuttingDown, id)
		op.info = m.snapshot()
	case life.Err() != nil || h.models[id] != m:
		op.err = fmt.Errorf("%w: sim: %s was unloaded while loading", neuron.ErrLoadFailed, id)
		op.info = m.snapshot()
	case m.cfg.FailLoad:
		m.info.Status = neuron.StatusFailed
		m.info.LastError = "sim: load failed (FailLoad)"
		m.info.LoadingSince = time.Time{}
		op.err = fmt.Errorf("%w: sim: %s: load failed (FailLoad)", neuron.ErrLoadFailed, id)
		op.info = m.snapshot()
		m.kill()
		msg = "load failed"
		h.note(id, now, "load failed (FailLoad)")
	default:
		m.info.Status = neuron.StatusLoaded
		m.info.LoadedAt = now
		m.info.LoadingSince = time.Time{}
		op.info = m.snapshot()
		msg = "loaded"
		h.note(id, now, "loaded")
	}
	close(op.done)
	h.mu.Unlock()
	if msg != "" {
		h.log(msg, id)
	}
}

// Unload stops model id at once: requests in flight are aborted and a load
// in progress fails. It returns neuron.ErrModelNotFound for an unknown id.
func (h *Harness) Unload(_ context.Context, id string) error {
	h.mu.Lock()
	m := h.models[id]
	if m == nil {
		h.mu.Unlock()
		return fmt.Errorf("%w: %s", neuron.ErrModelNotFound, id)
	}
	delete(h.models, id)
	m.kill()
	h.note(id, time.Now(), "unloaded")
	h.mu.Unlock()
	h.log("unloaded", id)
	return nil
}

// Crash simulates a crash of model id's engine, for tests: requests in
// flight are aborted, the model is "failed" (LastError set, Restarts
// incremented), then "recovering" while it restarts, then "loaded" again
// after its LoadTime (or "failed" for good with FailLoad). Load waits for
// the recovery. It returns neuron.ErrModelNotFound for an unknown id and
// neuron.ErrNotReady when the model is not loaded.
func (h *Harness) Crash(id string) error {
	h.mu.Lock()
	m := h.models[id]
	h.mu.Unlock()
	if m == nil {
		return fmt.Errorf("%w: %s", neuron.ErrModelNotFound, id)
	}
	return h.crash(m, "sim: simulated crash")
}

// crash fails m and starts its recovery.
func (h *Harness) crash(m *model, reason string) error {
	id := m.info.ID
	h.mu.Lock()
	if h.closed || h.models[id] != m {
		h.mu.Unlock()
		return fmt.Errorf("%w: %s", neuron.ErrModelNotFound, id)
	}
	if m.info.Status != neuron.StatusLoaded {
		h.mu.Unlock()
		return fmt.Errorf("%w: %s is %s", neuron.ErrNotReady, id, m.info.Status)
	}
	now := time.Now()
	m.kill()
	m.info.Status = neuron.StatusFailed
	m.info.LastError = reason
	m.info.Restarts++
	m.info.LoadedAt = time.Time{}
	m.info.LoadingSince = now
	h.note(id, now, "crashed: %s", reason)
	op := &loadOp{done: make(chan struct{})}
	m.op = op
	h.loads.Add(1)
	h.mu.Unlock()
	h.log("crashed", id, slog.String("reason", reason))

	// The restart: "failed" until this goroutine runs, then "recovering"
	// for the load time.
	go func() {
		h.mu.Lock()
		if h.closed || h.models[id] != m || m.op != op {
			op.err = fmt.Errorf("%w: sim: %s was unloaded while recovering", neuron.ErrLoadFailed, id)
			close(op.done)
			h.mu.Unlock()
			h.loads.Done()
			return
		}
		m.info.Status = neuron.StatusRecovering
		m.life, m.kill = context.WithCancel(context.Background())
		m.newGPU()
		h.note(id, time.Now(), "recovering")
		h.mu.Unlock()
		h.runLoad(m, op, m.life)
	}()
	return nil
}

// Models returns every model the Harness knows, sorted by id.
func (h *Harness) Models() []neuron.ModelInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]neuron.ModelInfo, 0, len(h.models))
	for _, id := range slices.Sorted(maps.Keys(h.models)) {
		out = append(out, h.models[id].snapshot())
	}
	return out
}

// Stats returns the counters of the engine that serves every model of the
// harness (see Engine.Stats).
func (h *Harness) Stats() Stats { return h.engine.Stats() }

// Endpoint returns the URL of the Harness's server for a loaded model:
// neuron.ErrModelNotFound when id is unknown, neuron.ErrNotReady while it
// is not loaded.
func (h *Harness) Endpoint(id string) (*url.URL, error) {
	if _, err := h.lookup(id); err != nil {
		return nil, err
	}
	u := *h.url
	return &u, nil
}

// Logs returns the last lines logged for id (loads, unloads, crashes),
// oldest first; they outlive an unload. neuron.ErrModelNotFound when the id
// was never loaded.
func (h *Harness) Logs(id string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	lines, ok := h.logs[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", neuron.ErrModelNotFound, id)
	}
	return slices.Clone(lines), nil
}

// Close stops every model (aborting requests in flight), stops the server
// and forgets all models and logs. Later Loads return
// neuron.ErrShuttingDown. It is safe to call more than once.
func (h *Harness) Close(_ context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	for _, m := range h.models {
		m.kill()
	}
	clear(h.models)
	clear(h.logs)
	h.mu.Unlock()
	err := h.srv.Close()
	<-h.serveDone
	h.loads.Wait()
	return err
}

// lookup implements backend for the Harness's engine.
func (h *Harness) lookup(id string) (target, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.models[id]
	if m == nil {
		return target{}, fmt.Errorf("%w: %s", neuron.ErrModelNotFound, id)
	}
	if m.info.Status != neuron.StatusLoaded {
		return target{}, fmt.Errorf("%w: %s is %s", neuron.ErrNotReady, id, m.info.Status)
	}
	return target{cfg: &m.cfg, life: m.life, crash: m.crash, gpu: m.gpu}, nil
}

// loaded implements backend for the Harness's engine.
func (h *Harness) loaded() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []string
	for id, m := range h.models {
		if m.info.Status == neuron.StatusLoaded {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// note appends a line to id's log. h.mu must be held.
func (h *Harness) note(id string, at time.Time, format string, args ...any) {
	line := at.UTC().Format(time.RFC3339Nano) + " sim[" + id + "]: " + fmt.Sprintf(format, args...)
	lines := append(h.logs[id], line)
	if len(lines) > logLines {
		lines = slices.Delete(lines, 0, len(lines)-logLines)
	}
	h.logs[id] = lines
}

// log reports an event to the optional logger. h.mu must not be held.
func (h *Harness) log(msg, id string, attrs ...slog.Attr) {
	if h.logger == nil {
		return
	}
	h.logger.LogAttrs(context.Background(), slog.LevelInfo, "sim: "+msg, append(attrs, slog.String("model", id))...)
}

// newGPU gives m a new replica of its GPU model, with an empty cache, as
// an engine that starts has. h.mu must be held.
func (m *model) newGPU() {
	if m.cfg.GPU != nil {
		m.gpu = newReplica(*m.cfg.GPU, nil)
	}
}

// snapshot copies m's info. h.mu must be held.
func (m *model) snapshot() neuron.ModelInfo {
	info := m.info
	info.Devices = slices.Clone(info.Devices)
	info.Capabilities = slices.Clone(info.Capabilities)
	return info
}

// isDone reports whether op has finished.
func isDone(op *loadOp) bool {
	select {
	case <-op.done:
		return true
	default:
		return false
	}
}
