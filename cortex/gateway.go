package cortex

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/httpx"
	"github.com/helexa-ai/helexa-go/neuron"
)

// NeuronAdmin is the part of a neuron's management API the Gateway uses to
// change a neuron: load and unload models, and find where a model is
// served. *neuron.Client implements it.
//
// Concurrency: the Gateway calls one NeuronAdmin from many goroutines at
// once. Every method must return when ctx ends; errors from the neuron
// should be *neuron.APIError values (errors.Is maps them to the neuron
// package's sentinels).
type NeuronAdmin interface {
	// Load loads the model and returns when it is ready (POST /models/load).
	Load(ctx context.Context, spec neuron.LoadSpec) (neuron.ModelInfo, error)
	// Unload stops the model (POST /models/unload); without force, a model
	// with requests in flight is refused with neuron.ErrModelBusy.
	Unload(ctx context.Context, id string, force bool) error
	// Endpoint returns the URL at which the neuron serves inference for the
	// model (GET /models/{id}/endpoint).
	Endpoint(ctx context.Context, id string) (string, error)
}

var _ NeuronAdmin = (*neuron.Client)(nil)

// AdminFactory builds the NeuronAdmin of one configured neuron; NewGateway
// calls it once per neuron.
type AdminFactory func(NeuronConfig) (NeuronAdmin, error)

// Gateway is the cortex: an http.Handler serving the OpenAI-compatible API
// over a fleet of neurons (see the package documentation for the request
// path). Routes: POST /v1/chat/completions, /v1/completions,
// /v1/embeddings and /v1/responses, the Anthropic Messages API (POST
// /v1/messages and /v1/messages/count_tokens, see WithPingInterval), GET
// /v1/models and GET /v1/models/{id} (models.go), GET /v1/me (the calling key's MeReport), the public GET
// /health, and the status page, GET /status and GET /status.json (see
// Status). Metrics are served separately, by MetricsHandler.
//
// Call Run to keep the fleet snapshot fresh, and Shutdown at the end. A
// Gateway is safe for concurrent use.
type Gateway struct {
	cfg       gatewayConfig
	log       *slog.Logger
	clock     clock.Clock
	poller    route.Poller
	refresher route.Refresher // nil when the poller cannot refresh
	fleets    *fleetView      // the Fleets of the poller's snapshots
	router    route.Router
	scaler    route.Scaler // the default Scaler, when the live settings set none: scale.go
	usage     *route.Usage
	transport http.RoundTripper
	ownsTrans bool // the transport is the default one: close its idle connections
	metrics   *metrics
	mux       *http.ServeMux
	access    *slog.Logger // the access log; nil: off (accesslog.go)
	cors      *corsPolicy  // nil: no origin allowed (cors.go)

	// Entitlements: budget.go, meter.go.
	limits   *entitlements.KeyLimiter // the limits of keys whose provider is no Limiter
	leaseTTL time.Duration            // of the renewals of reservations that are leases
	meter    metering.Meter           // nil: none
	settler  *settler                 // settles reservations, and retries those that failed: settle.go

	loads   loadGroup
	backoff loadBackoff // of the loads that failed: faults.go
	events  eventLog    // recent loads and evictions, for the status page
	// outliers ejects the replicas that keep failing: outlier.go.
	outliers *outliers

	// Reload: reload.go. The neurons, the catalogue (in fleets) and the
	// live settings are replaced whole, never changed in place.
	ups      atomic.Pointer[map[string]*upstream] // by neuron name
	live     atomic.Pointer[liveConfig]
	newAdmin AdminFactory
	newAPI   func(NeuronConfig) (route.NeuronAPI, error) // the default poller's client of a neuron
	reloadMu sync.Mutex                                  // serialises reloads
	reloadFn ReloadFunc                                  // POST /admin/reload; nil: no such route

	// life ends when Shutdown has drained: loads in progress stop.
	life     context.Context
	stopLife context.CancelFunc

	active      atomic.Int64 // requests in flight past the shutdown gate
	closing     atomic.Bool
	drained     chan struct{}
	drainedOnce sync.Once
	shutOnce    sync.Once
}

// NewGateway returns a Gateway over the given neurons and catalogue (nil:
// no catalogue; only models resident on some neuron are served, under
// their ids). It validates the neuron configurations and the options,
// builds the default Poller, Router and neuron clients where no option
// replaces them, and registers the metrics.
func NewGateway(neurons []NeuronConfig, cat *catalogue.Catalogue, opts ...GatewayOption) (*Gateway, error) {
	cfg := newGatewayConfig()
	for _, o := range opts {
		if o != nil {
			o.applyGateway(&cfg)
		}
	}
	if err := cfg.validate(neurons); err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:       cfg,
		log:       cfg.logger,
		clock:     cfg.clock,
		usage:     cfg.usage,
		transport: cfg.transport,
		reloadFn:  cfg.reload,
		drained:   make(chan struct{}),
		backoff:   loadBackoff{base: cfg.loadBackoff, max: cfg.loadBackoffMax},
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.access, g.cors = cfg.accessLogger(), newCORSPolicy(cfg.web.corsOrigins)
	g.limits = entitlements.NewKeyLimiter(g.clock)
	if g.usage == nil {
		g.usage = route.NewUsage()
	}
	g.outliers = newOutliers(cfg.outlier, g.clock.Now, g.usage)
	g.meter = cfg.meter
	g.leaseTTL = cfg.leaseTTL
	if l, ok := cfg.provider.(entitlements.Leaser); ok && g.leaseTTL == 0 {
		g.leaseTTL = l.LeaseTTL()
	}
	if g.leaseTTL <= 0 {
		g.leaseTTL = DefaultLeaseTTL
	}
	if g.transport == nil {
		g.transport = newTransport()
		g.ownsTrans = true
	}
	httpClient := &http.Client{Transport: g.transport}
	g.live.Store(&cfg.live)
	g.newAdmin = cfg.adminFactory
	if g.newAdmin == nil {
		g.newAdmin = func(nc NeuronConfig) (NeuronAdmin, error) { return newNeuronClient(nc, httpClient) }
	}
	g.newAPI = func(nc NeuronConfig) (route.NeuronAPI, error) { return newNeuronClient(nc, httpClient) }
	ups, err := g.buildUpstreams(neurons, nil)
	if err != nil {
		return nil, err
	}
	g.ups.Store(&ups)

	g.poller = cfg.poller
	if g.poller == nil {
		targets := g.targets(neurons, ups)
		popts := []route.PollerOption{
			route.WithLogger(g.log),
			route.WithClock(g.clock),
			// Build each new snapshot's Fleet at once, so that its events
			// and readmissions are recorded when it is published.
			route.WithPublished(func(*route.Snapshot) { g.fleets.Fleet() }),
		}
		p, err := route.NewPoller(targets, append(popts, cfg.pollerOpts...)...)
		if err != nil {
			return nil, fmt.Errorf("cortex: %w", err)
		}
		g.poller = p
	}
	g.refresher, _ = g.poller.(route.Refresher)
	g.fleets = &fleetView{poller: g.poller, usage: g.usage, log: g.log, observe: g.observeFleet}
	g.fleets.cat.Store(cat)
	g.outliers.fleet, g.outliers.notify = g.Fleet, g.outlierChanged
	g.router = cfg.router
	if g.router == nil {
		r, err := route.NewRouter(append([]route.RouterOption{route.WithRetryAfter(cfg.retryAfter)}, cfg.routerOpts...)...)
		if err != nil {
			return nil, err
		}
		g.router = r
	}
	if g.scaler, err = route.NewScaler(); err != nil {
		return nil, err
	}

	reg := cfg.registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		if err := registerAll(reg, collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, err
		}
	}
	m, err := newMetrics(reg, g.Fleet, g.clock)
	if err != nil {
		return nil, err
	}
	g.metrics = m
	sm, err := newSettleMetrics(reg)
	if err != nil {
		return nil, err
	}
	// Last, once nothing else can fail: the outbox's settles are re-issued
	// at once.
	var (
		ob      *outbox
		pending []outboxEntry
	)
	if cfg.settleOutbox != "" {
		var bad int
		if ob, pending, bad, err = openOutbox(cfg.settleOutbox); err != nil {
			return nil, err
		}
		if bad > 0 {
			g.log.Warn("cortex: the settle outbox has lines it cannot read (cut short by a crash?); they are dropped",
				"path", cfg.settleOutbox, "lines", bad)
		}
	}
	g.settler = newSettler(g, ob, sm)
	g.settler.replay(pending)

	g.life, g.stopLife = context.WithCancel(context.Background())
	g.routes()
	return g, nil
}

// newNeuronClient is the default neuron client: endpoint and token over
// the given http.Client.
func newNeuronClient(nc NeuronConfig, hc *http.Client) (*neuron.Client, error) {
	opts := []neuron.ClientOption{neuron.WithDoer(hc)}
	if nc.Token != "" {
		opts = append(opts, neuron.WithToken(nc.Token))
	}
	return neuron.NewClient(nc.Endpoint, opts...)
}

// newTransport is the default transport to the neurons: HTTP/1.1 with
// keep-alives and enough idle connections for a busy gateway, no
// compression (the gateway reads usage out of the bodies), no proxy from
// the environment (neurons are on the operator's network), and no response
// header timeout (a prompt may take long to process; streams have the idle
// timeout, and every request ends with its client).
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
}

// Run runs the Poller until ctx ends, keeping the fleet snapshot fresh,
// and beside it the idle loop, which unloads the models idle past their
// catalogue idle_unload (idle.go) and scales the replicas of the models
// with replica bounds (scale.go), on the gateway's Clock. It returns what
// the Poller's Run returns (nil when ctx ends), once both have stopped.
func (g *Gateway) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	idle := make(chan struct{})
	go func() {
		defer close(idle)
		g.runIdle(ctx)
	}()
	err := g.poller.Run(ctx)
	cancel()
	<-idle
	return err
}

// Fleet returns the Fleet the gateway routes over: the Poller's latest
// Snapshot joined with the gateway's catalogue and Usage. It never blocks
// on I/O, and does not allocate while the Snapshot is unchanged.
func (g *Gateway) Fleet() *route.Fleet { return g.fleets.Fleet() }

// Poller returns the Poller the gateway reads the fleet from: the one given
// with WithPoller, or the default *route.FleetPoller.
func (g *Gateway) Poller() route.Poller { return g.poller }

// Usage returns the live per-replica state of the gateway: in-flight
// counts, last uses and ejections.
func (g *Gateway) Usage() *route.Usage { return g.usage }

// InFlight returns the number of inference requests the gateway is
// serving.
func (g *Gateway) InFlight() int { return int(g.active.Load()) }

// MetricsHandler returns the handler of the gateway's Prometheus metrics,
// to serve on its own listener (metrics_listen).
func (g *Gateway) MetricsHandler() http.Handler { return g.metrics.handler }

// Shutdown stops the Gateway: new inference requests are refused with 503
// shutting_down and Retry-After, and Shutdown waits for the requests in
// flight until they end or ctx ends. Then cold loads still in progress
// stop waiting (the neurons finish them), and the idle connections of the
// default transport are closed. It returns ctx.Err() when the requests in
// flight did not end in time. Then, within what is left of ctx, it waits
// for the settles still being retried to land; those that have not are
// left in the settle outbox for the next start (WithSettleOutbox), or
// logged as lost without one. GET /health and GET /v1/models keep
// answering. Later calls wait for the drain again and return at once when
// it is over. Shutdown does not stop Run: cancel its ctx.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.closing.Store(true)
	if g.active.Load() == 0 {
		g.drainedOnce.Do(func() { close(g.drained) })
	}
	var err error
	select {
	case <-g.drained:
	case <-ctx.Done():
		err = ctx.Err()
	}
	g.shutOnce.Do(func() {
		g.stopLife()
		g.loads.wait()
		if serr := g.settler.drain(ctx); serr != nil {
			g.log.Error("cortex: closing the settle outbox failed", "err", serr)
		}
		if g.ownsTrans {
			g.transport.(*http.Transport).CloseIdleConnections()
		}
	})
	return err
}

// enter admits a request past the shutdown gate; false once Shutdown has
// begun. Every true enter is followed by one leave.
func (g *Gateway) enter() bool {
	g.active.Add(1)
	if g.closing.Load() {
		g.leave()
		return false
	}
	return true
}

func (g *Gateway) leave() {
	if g.active.Add(-1) == 0 && g.closing.Load() {
		g.drainedOnce.Do(func() { close(g.drained) })
	}
}

// Inference routes.
var inferenceRoutes = [...]struct {
	path string
	kind routeKind
}{
	{"/v1/chat/completions", routeChat},
	{"/v1/completions", routeCompletions},
	{"/v1/embeddings", routeEmbeddings},
	{"/v1/responses", routeResponses},
}

// routeKind is the API of an inference route.
type routeKind uint8

const (
	routeChat routeKind = iota
	routeCompletions
	routeEmbeddings
	routeResponses
	routeMessages // Anthropic Messages, sent to the neuron as chat completions: messages.go
)

// asksUsage reports whether a streaming request on the route can ask for
// a usage chunk with stream_options.include_usage. A Responses API stream
// carries usage in its response.completed event instead.
func (k routeKind) asksUsage() bool { return k == routeChat || k == routeCompletions }

func (g *Gateway) routes() {
	m := http.NewServeMux()
	for _, r := range inferenceRoutes {
		kind := r.kind
		m.HandleFunc("POST "+r.path, func(w http.ResponseWriter, req *http.Request) { g.serveInference(w, req, kind) })
	}
	m.HandleFunc("POST /v1/messages", g.serveMessages)
	// The inference routes log their access line as they finish; the
	// others through logged.
	info := slog.LevelInfo
	m.HandleFunc("POST /v1/messages/count_tokens", g.logged(info, g.serveCountTokens))
	m.HandleFunc("GET /v1/models", g.logged(info, g.serveModels))
	m.HandleFunc("GET /v1/models/{id...}", g.logged(info, g.serveModel))
	m.HandleFunc("GET /v1/me", g.logged(info, g.serveMe))
	m.HandleFunc("GET /health", g.logged(slog.LevelDebug, g.serveHealth))
	m.HandleFunc("GET /status", g.logged(info, g.serveStatus))
	m.HandleFunc("GET /status.json", g.logged(info, g.serveStatusJSON))
	if g.reloadFn != nil {
		m.HandleFunc("POST /admin/reload", g.logged(info, g.serveReload))
	}
	g.mux = m
}

// ServeHTTP serves the gateway's routes. Every request gets its request
// id (the client's X-Request-Id, or a new one), which its answer carries;
// CORS preflights of allowed origins are answered (WithCORSOrigins). An
// unknown route answers 404 and a known route with the wrong method 405,
// both as OpenAI error envelopes.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpx.RequestID(w, r)
	if g.cors.serve(w, r) {
		g.logRoute(slog.LevelInfo, r, http.StatusNoContent, g.clock.Now())
		return
	}
	h, status, allow := httpx.Lookup(g.mux, r)
	switch status {
	case http.StatusMethodNotAllowed:
		start := g.clock.Now()
		w.Header().Set("Allow", allow)
		writeError(w, &routeError{method: true, msg: fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path)}, 0)
		g.logRoute(slog.LevelInfo, r, status, start)
		return
	case http.StatusNotFound:
		start := g.clock.Now()
		writeError(w, &routeError{msg: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)}, 0)
		g.logRoute(slog.LevelInfo, r, status, start)
		return
	}
	h.ServeHTTP(w, r)
}
