package neuron

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/internal/httpx"
)

// maxManagementBody bounds the body of the management API's POST routes
// (/models/load, /models/check, /models/unload, /replicas/claim and
// /replicas/release).
const maxManagementBody = 1 << 20

// Agent is the neuron: an http.Handler serving the management API and
// forwarding inference requests to the engines of a Harness.
//
// Routes: GET /discovery, /health, /version, /models, /models/{id}/endpoint,
// /models/{id}/logs and /v1/models; POST /models/load, /models/check,
// /models/unload, /replicas/claim, /replicas/release,
// /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/responses
// (see the package doc for what each answers).
// With a token (WithToken) every route requires it (401 invalid_token),
// unknown routes included, with one exception: GET /health without the
// token answers {"status":"ok"} (or "shutting_down") and nothing else, for
// load balancers and probes that cannot send a header. An unknown route
// answers 404 and a known route with the wrong method 405, both as OpenAI
// error envelopes. POST bodies must be JSON: a Content-Type other than
// application/json (or application/*+json) is a 415
// unsupported_media_type; none at all is taken as JSON.
//
// An inference request is read whole (at most WithMaxBodyBytes, else 413),
// its "model" looked up in the harness (404 model_not_found; 503
// model_not_ready while the model loads, recovers or unloads), admitted
// through the model's gate (see AdmissionConfig: 503 queue_full or
// queue_timeout, 429 rate_limit_exceeded) and proxied to the engine with its
// path, query and headers, less Authorization; the answer streams back
// unbuffered, and an engine's own errors reach the client unchanged. An
// engine that fails before it answers is 503 model_not_ready when the
// harness has meanwhile marked it failed (a crash, or liveness probes that
// found it hung), else 502 upstream_connection_error. The messages of the
// inference routes name no address, port, path or transport error; those
// go to the log. Retry-After is 1s on admission refusals and 5s on
// model_not_ready and shutting_down.
//
// Call Start before serving and Shutdown at the end. An Agent is safe for
// concurrent use.
type Agent struct {
	h       Harness
	d       Discoverer
	opts    agentOptions
	log     *slog.Logger
	access  *slog.Logger // nil: off (accesslog.go)
	mux     *http.ServeMux
	adm     *admission
	proxies *proxyCache
	claims  *claimTable // claims.go
	created time.Time
	// tokenSum is the SHA-256 digest of the token; unused without one.
	tokenSum [sha256.Size]byte

	// life ends when Shutdown has drained: loads in progress stop waiting.
	life     context.Context
	stopLife context.CancelFunc

	activated chan struct{} // closed when default-model activation ends

	mu           sync.Mutex
	started      bool
	discovery    Discovery
	reservations map[string]*reservation // by model id
	activation   Activation
	inFlight     int  // requests past the shutdown gate
	shutting     bool // Shutdown has begun
	drained      chan struct{}
	drainClosed  bool
	shutdownDone chan struct{}
	shutdownErr  error
}

// NewAgent returns an Agent running models on h and reporting the hardware
// d discovers. It checks the options: an advertise URL must be an absolute
// http(s) URL and the admission limits must not be negative.
func NewAgent(h Harness, d Discoverer, opts ...Option) (*Agent, error) {
	if h == nil {
		return nil, errors.New("neuron: NewAgent: nil Harness")
	}
	if d == nil {
		return nil, errors.New("neuron: NewAgent: nil Discoverer")
	}
	o := newAgentOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applyAgent(&o)
		}
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		h:            h,
		d:            d,
		opts:         o,
		log:          logger,
		adm:          newAdmission(o.admission, o.clock),
		claims:       newClaimTable(o.clock, defaultClaimLimit),
		created:      o.clock.Now(),
		tokenSum:     sha256.Sum256([]byte(o.token)),
		activated:    make(chan struct{}),
		reservations: make(map[string]*reservation),
		drained:      make(chan struct{}),
	}
	a.access = logger
	if o.accessLogSet {
		a.access = o.accessLog
	}
	if a.access != nil && !a.access.Enabled(context.Background(), slog.LevelError) {
		// A logger that writes nothing (the default: discard): the
		// request path need not gather an access line for it.
		a.access = nil
	}
	a.proxies = newProxyCache(slog.NewLogLogger(logger.Handler(), slog.LevelWarn), a.proxyError)
	a.life, a.stopLife = context.WithCancel(context.Background())
	a.routes()
	return a, nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

func (a *Agent) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /discovery", a.handleDiscovery)
	m.HandleFunc("GET /health", a.handleHealth)
	m.HandleFunc("GET /version", a.handleVersion)
	m.HandleFunc("GET /models", a.handleModels)
	m.HandleFunc("POST /models/load", a.handleLoad)
	m.HandleFunc("POST /models/check", a.handleCheck)
	m.HandleFunc("POST /models/unload", a.handleUnload)
	m.HandleFunc("POST /replicas/claim", a.handleClaim)
	m.HandleFunc("POST /replicas/release", a.handleRelease)
	m.HandleFunc("GET /models/{id}/endpoint", a.handleEndpoint)
	m.HandleFunc("GET /models/{id}/logs", a.handleLogs)
	m.HandleFunc("GET /v1/models", a.handleOpenAIModels)
	for _, p := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"} {
		m.HandleFunc("POST "+p, a.handleInference)
	}
	a.mux = m
}

// Start discovers the hardware once and begins loading the default models
// in the background (progress in GET /health's activation). A discovery
// error is recorded as the GPU-unavailable reason, never returned; loads
// are then refused only when Discovery reports a CUDA-unavailable reason.
// Start returns an error only when called twice or after Shutdown. The
// activation outlives ctx's cancellation (it keeps ctx's values) and ends
// with Shutdown.
func (a *Agent) Start(ctx context.Context) error {
	a.mu.Lock()
	switch {
	case a.shutting:
		a.mu.Unlock()
		return ErrShuttingDown
	case a.started:
		a.mu.Unlock()
		return errors.New("neuron: Agent already started")
	}
	a.started = true
	a.mu.Unlock()

	disc, err := a.d.Discover(ctx)
	if err != nil {
		a.log.WarnContext(ctx, "neuron: hardware discovery failed", "err", err)
		if disc.GPUUnavailableReason == "" {
			disc.GPUUnavailableReason = err.Error()
		}
	}
	if disc.GPUUnavailableReason != "" {
		a.log.WarnContext(ctx, "neuron: no usable GPU", "reason", disc.GPUUnavailableReason)
	}
	if disc.CUDAUnavailableReason != "" {
		a.log.WarnContext(ctx, "neuron: CUDA unavailable, loads will be refused", "reason", disc.CUDAUnavailableReason)
	}
	if a.opts.hostname != "" {
		disc.Hostname = a.opts.hostname
	}
	if disc.Hostname == "" {
		disc.Hostname, _ = os.Hostname()
	}
	if disc.OS == "" {
		disc.OS = runtime.GOOS
	}
	if disc.Arch == "" {
		disc.Arch = runtime.GOARCH
	}
	if disc.Devices == nil {
		disc.Devices = []Device{}
	}

	specs := a.opts.defaultModels
	a.mu.Lock()
	a.discovery = disc
	a.activation = Activation{Total: len(specs)}
	for _, s := range specs {
		a.activation.Pending = append(a.activation.Pending, s.ModelID)
	}
	a.mu.Unlock()
	if len(specs) == 0 {
		close(a.activated)
		return nil
	}
	go a.activate(context.WithoutCancel(ctx), specs)
	return nil
}

// activate loads the default models one after the other.
func (a *Agent) activate(ctx context.Context, specs []LoadSpec) {
	defer close(a.activated)
	for _, spec := range specs {
		if a.life.Err() != nil {
			return
		}
		_, err := a.load(ctx, spec)
		a.mu.Lock()
		if i := slices.Index(a.activation.Pending, spec.ModelID); i >= 0 {
			a.activation.Pending = slices.Delete(a.activation.Pending, i, i+1)
		}
		if err != nil {
			a.activation.Failed++
		} else {
			a.activation.Loaded++
		}
		a.mu.Unlock()
		if err != nil {
			a.log.ErrorContext(ctx, "neuron: default model failed to load", "model", spec.ModelID, "err", err)
		} else {
			a.log.InfoContext(ctx, "neuron: default model loaded", "model", spec.ModelID)
		}
	}
}

// Shutdown stops the Agent: new loads, checks, unloads, replica claims and
// releases, and inference requests are refused with 503 shutting_down (and
// Retry-After), requests in flight may finish for up to the drain timeout
// (or until ctx ends), then loads still waiting are abandoned and every
// engine is stopped (HarnessCloser.Close when the Harness has it, else
// Unload of each model). The management GET routes keep answering; GET
// /health reports "shutting_down". The error reports a drain cut short and
// failures to stop engines. Later calls wait for the first and return its
// result.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	if a.shutdownDone != nil {
		done := a.shutdownDone
		a.mu.Unlock()
		select {
		case <-done:
			return a.shutdownErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a.shutting = true
	a.shutdownDone = make(chan struct{})
	a.closeDrainedLocked()
	inFlight, started := a.inFlight, a.started
	a.mu.Unlock()
	a.log.InfoContext(ctx, "neuron: shutting down", "in_flight", inFlight)

	var errs []error
	if err := a.drain(ctx); err != nil {
		errs = append(errs, err)
	}
	a.stopLife()
	if started {
		select {
		case <-a.activated:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("neuron: waiting for activation: %w", ctx.Err()))
		}
	}
	if err := a.stopEngines(ctx); err != nil {
		errs = append(errs, err)
	}
	a.proxies.closeIdle()

	err := errors.Join(errs...)
	a.mu.Lock()
	a.shutdownErr = err
	close(a.shutdownDone)
	a.mu.Unlock()
	return err
}

// drain waits for the requests in flight, up to the drain timeout or the
// end of ctx.
func (a *Agent) drain(ctx context.Context) error {
	select {
	case <-a.drained:
		return nil
	default:
	}
	timer := a.opts.clock.NewTimer(a.opts.drainTimeout)
	defer timer.Stop()
	select {
	case <-a.drained:
		return nil
	case <-timer.C():
		if n := a.inFlightCount(); n > 0 {
			return fmt.Errorf("neuron: drain timed out after %s with %d requests in flight", a.opts.drainTimeout, n)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("neuron: drain: %w", ctx.Err())
	}
}

func (a *Agent) stopEngines(ctx context.Context) error {
	if hc, ok := a.h.(HarnessCloser); ok {
		if err := hc.Close(ctx); err != nil {
			return fmt.Errorf("neuron: stopping engines: %w", err)
		}
		return nil
	}
	var errs []error
	for _, m := range a.h.Models() {
		if err := a.h.Unload(ctx, m.ID); err != nil && !errors.Is(err, ErrModelNotFound) {
			errs = append(errs, fmt.Errorf("neuron: unloading %s: %w", m.ID, err))
		}
	}
	return errors.Join(errs...)
}

// enter admits a request past the shutdown gate; false once Shutdown has
// begun. Every true enter is followed by one leave.
func (a *Agent) enter() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.shutting {
		return false
	}
	a.inFlight++
	return true
}

func (a *Agent) leave() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inFlight--
	a.closeDrainedLocked()
}

func (a *Agent) closeDrainedLocked() {
	if a.shutting && a.inFlight == 0 && !a.drainClosed {
		a.drainClosed = true
		close(a.drained)
	}
}

func (a *Agent) inFlightCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inFlight
}

// ServeHTTP serves the management API and the inference routes. Every
// request gets its request id (its X-Request-Id, which cortex sends, or a
// new one): the answer carries it, an engine receives it with the request,
// and the access log names it (WithAccessLog).
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpx.RequestID(w, r)
	if a.access != nil {
		a.serveLogged(w, r)
		return
	}
	a.serve(w, r)
}

// serve serves r once it has its request id.
func (a *Agent) serve(w http.ResponseWriter, r *http.Request) {
	if !a.authorized(r) {
		if a.liveness(r) {
			a.handleLiveness(w, r)
			return
		}
		writeError(w, ErrUnauthorized)
		return
	}
	// The routes use path wildcards, so they are served through the mux.
	switch _, status, allow := httpx.Lookup(a.mux, r); status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", allow)
		writeError(w, &APIError{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed,
			Message: fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path)})
		return
	case http.StatusNotFound:
		writeError(w, &APIError{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
		return
	}
	a.mux.ServeHTTP(w, r)
}

// liveness reports whether r is a GET or HEAD /health, which a caller
// without the token may ask: it gets the status alone (handleLiveness).
func (a *Agent) liveness(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.URL.Path == "/health"
}

// livenessAnswer is GET /health without the token: the status alone, for
// load balancers and probes that cannot send a header. The models, devices
// and load of the host are for token holders.
type livenessAnswer struct {
	Status string `json:"status"`
}

func (a *Agent) handleLiveness(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	status := "ok"
	if a.shutting {
		status = CodeShuttingDown
	}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, livenessAnswer{Status: status})
}

// authorized reports whether r carries the Agent's token, or the Agent has
// none. The comparison is of SHA-256 digests, in constant time: it reveals
// neither the token nor its length.
func (a *Agent) authorized(r *http.Request) bool {
	if a.opts.token == "" {
		return true
	}
	got, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) == 1
}

func bearer(h string) (string, bool) {
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeBody reads a JSON request body of at most limit bytes, sent within
// timeout, into v.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration, v any) error {
	if err := checkJSON(r.Header); err != nil {
		return err
	}
	body, err := readBody(w, r, limit, timeout)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	return nil
}

func (a *Agent) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.Discovery())
}

// Discovery returns the hardware found by Start (zero before Start).
func (a *Agent) Discovery() Discovery {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.discovery
	d.Devices = slices.Clone(d.Devices)
	return d
}

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.Health(r.Context()))
}

// Health returns the state GET /health reports: live device samples, the
// admission state of every model and the activation progress.
func (a *Agent) Health(ctx context.Context) Health {
	samples, err := a.d.Sample(ctx)
	if err != nil {
		a.log.DebugContext(ctx, "neuron: device sample failed", "err", err)
	}
	if samples == nil {
		samples = []DeviceSample{}
	}
	cfg, maxQueue := a.adm.limits()
	models := a.h.Models()
	loads := make([]ModelLoad, 0, len(models))
	for _, m := range models {
		n, q := a.adm.counts(m.ID)
		loads = append(loads, ModelLoad{ID: m.ID, Status: m.Status, InFlight: n, QueueDepth: q,
			MaxInFlight: cfg.MaxInFlight, MaxQueue: maxQueue})
	}
	a.mu.Lock()
	status := "ok"
	if a.shutting {
		status = CodeShuttingDown
	}
	act := a.activation
	act.Pending = slices.Clone(act.Pending)
	if len(act.Pending) == 0 {
		act.Pending = nil
	}
	a.mu.Unlock()
	return Health{
		Status:        status,
		UptimeSeconds: a.opts.clock.Now().Sub(a.created).Seconds(),
		Devices:       samples,
		Models:        loads,
		Activation:    act,
	}
}

func (a *Agent) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Version{Version: a.opts.version, GoVersion: runtime.Version()})
}

func (a *Agent) handleModels(w http.ResponseWriter, r *http.Request) {
	models := a.h.Models()
	if models == nil {
		models = []ModelInfo{}
	}
	now := a.opts.clock.Now()
	for i := range models {
		if since := models[i].LoadingSince; !since.IsZero() {
			models[i].LoadingSeconds = now.Sub(since).Round(time.Millisecond).Seconds()
		}
	}
	writeJSON(w, http.StatusOK, modelList{Models: models})
}

// modelList is the answer of GET /models.
type modelList struct {
	Models []ModelInfo `json:"models"`
}

func (a *Agent) handleLoad(w http.ResponseWriter, r *http.Request) {
	if !a.enter() {
		writeError(w, ErrShuttingDown)
		return
	}
	defer a.leave()
	var spec LoadSpec
	if err := decodeBody(w, r, maxManagementBody, a.opts.bodyTimeout, &spec); err != nil {
		writeError(w, err)
		return
	}
	// The load goes on when the client leaves; only Shutdown stops the wait.
	info, err := a.load(context.WithoutCancel(r.Context()), spec)
	if err != nil {
		a.log.WarnContext(r.Context(), "neuron: load failed", "model", spec.ModelID, "err", err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// checkAnswer is the answer of POST /models/check.
type checkAnswer struct {
	ModelID string `json:"model_id"`
	Status  string `json:"status"`
}

func (a *Agent) handleCheck(w http.ResponseWriter, r *http.Request) {
	if !a.enter() {
		writeError(w, ErrShuttingDown)
		return
	}
	defer a.leave()
	var spec LoadSpec
	if err := decodeBody(w, r, maxManagementBody, a.opts.bodyTimeout, &spec); err != nil {
		writeError(w, err)
		return
	}
	if err := a.Check(r.Context(), spec); err != nil {
		a.log.InfoContext(r.Context(), "neuron: load check failed", "model", spec.ModelID, "err", err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, checkAnswer{ModelID: spec.ModelID, Status: "ok"})
}

// unloadAnswer is the answer of POST /models/unload.
type unloadAnswer struct {
	ModelID string `json:"model_id"`
	Status  string `json:"status"`
}

func (a *Agent) handleUnload(w http.ResponseWriter, r *http.Request) {
	if !a.enter() {
		writeError(w, ErrShuttingDown)
		return
	}
	defer a.leave()
	var req UnloadRequest
	if err := decodeBody(w, r, maxManagementBody, a.opts.bodyTimeout, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.ModelID == "" {
		writeError(w, fmt.Errorf("%w: model_id is required", ErrInvalidRequest))
		return
	}
	if err := a.unload(context.WithoutCancel(r.Context()), req.ModelID, req.Force); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, unloadAnswer{ModelID: req.ModelID, Status: "unloaded"})
}

// unload stops model id: ErrModelNotFound when unknown, ErrModelBusy while
// requests are in flight or queued unless force. New requests for id are
// refused (503 model_not_ready) while it unloads.
func (a *Agent) unload(ctx context.Context, id string, force bool) error {
	if !a.known(id) {
		return fmt.Errorf("%w: %s", ErrModelNotFound, id)
	}
	if err := a.adm.beginUnload(id, force); err != nil {
		return err
	}
	defer a.adm.endUnload(id)
	err := a.h.Unload(ctx, id)
	if err != nil && !errors.Is(err, ErrModelNotFound) {
		return err
	}
	a.dropReservation(id)
	a.proxies.drop(id)
	if err != nil {
		return err
	}
	a.log.InfoContext(ctx, "neuron: model unloaded", "model", id, "force", force)
	return nil
}

// known reports whether the harness knows model id.
func (a *Agent) known(id string) bool {
	return slices.ContainsFunc(a.h.Models(), func(m ModelInfo) bool { return m.ID == id })
}

func (a *Agent) handleEndpoint(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !a.known(id) {
		writeError(w, fmt.Errorf("%w: %s", ErrModelNotFound, id))
		return
	}
	writeJSON(w, http.StatusOK, Endpoint{URL: a.advertiseURL(r)})
}

// advertiseURL is the Agent's own URL as clients should reach it.
func (a *Agent) advertiseURL(r *http.Request) string {
	if a.opts.advertiseURL != "" {
		return a.opts.advertiseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// logsAnswer is the answer of GET /models/{id}/logs.
type logsAnswer struct {
	ModelID string   `json:"model_id"`
	Lines   []string `json:"lines"`
}

func (a *Agent) handleLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var lines []string
	if ls, ok := a.h.(LogSource); ok {
		var err error
		if lines, err = ls.Logs(id); err != nil {
			writeError(w, err)
			return
		}
	} else if !a.known(id) {
		writeError(w, fmt.Errorf("%w: %s", ErrModelNotFound, id))
		return
	}
	if lines == nil {
		lines = []string{}
	}
	writeJSON(w, http.StatusOK, logsAnswer{ModelID: id, Lines: lines})
}
