package cortex

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// Gateway defaults: what NewGateway uses where no option sets a value.
const (
	// DefaultStreamIdleTimeout ends a stream that has sent nothing for this
	// long (WithStreamIdleTimeout).
	DefaultStreamIdleTimeout = 5 * time.Minute
	// DefaultMaxBodyBytes bounds a request body; a larger one is refused
	// with 413 request_too_large (WithMaxBodyBytes).
	DefaultMaxBodyBytes = 16 << 20
	// DefaultBodyReadTimeout bounds the time a client takes to send a
	// request body: 1 minute (WithBodyReadTimeout).
	DefaultBodyReadTimeout = time.Minute
	// DefaultLoadTimeout bounds a cold load: the unloads of its victims,
	// the load itself and the refresh of the fleet that follows
	// (WithLoadTimeout).
	DefaultLoadTimeout = 10 * time.Minute
	// DefaultMaxOutputTokens is the output the gateway reserves for a
	// request that sets no maximum, for a model without a known output
	// limit (and sends as the request's maximum when the caller has a
	// budget) (WithDefaultMaxOutput).
	DefaultMaxOutputTokens = 4096
	// DefaultColdStartWait is how long a non-streaming request waits for a
	// cold load of its model before the gateway answers 503 with
	// Retry-After; the load goes on in the background (WithColdStartWait).
	DefaultColdStartWait = 60 * time.Second
	// DefaultLoadBackoff and DefaultLoadBackoffMax bound how long the
	// gateway starts no new load of a model on a neuron where its load
	// failed (WithLoadBackoff).
	DefaultLoadBackoff    = 5 * time.Second
	DefaultLoadBackoffMax = 5 * time.Minute
	// DefaultPingInterval is how long a /v1/messages stream may send
	// nothing before the gateway writes a ping event (WithPingInterval).
	DefaultPingInterval = 10 * time.Second
	// DefaultSettleRetryWindow is how long a settle that failed is retried,
	// counted from the end of its request: 24 hours, the time
	// entitlements/redisledger remembers an expired lease (its
	// ExpiredLeaseRetention), within which a late Settle still records
	// the spend (WithSettleRetryWindow).
	DefaultSettleRetryWindow = 24 * time.Hour
	// DefaultSettleBackoff and DefaultSettleMaxBackoff bound the wait
	// between two attempts of a settle that failed: it doubles from the
	// first to the second, with jitter (WithSettleBackoff).
	DefaultSettleBackoff    = 100 * time.Millisecond
	DefaultSettleMaxBackoff = 30 * time.Second
)

// completionsDefaultMaxTokens is the max_tokens of a /v1/completions
// request that sets none: 16, the documented default of OpenAI's
// completions API (which vLLM follows; llama-server has none, so the
// gateway sends it to a budgeted request's engine).
const completionsDefaultMaxTokens = 16

// GatewayOption configures NewGateway.
type GatewayOption interface {
	applyGateway(*gatewayConfig)
}

// gatewayConfig is what the options set; newGatewayConfig holds the
// defaults and validate checks it once every option is applied.
type gatewayConfig struct {
	poller       route.Poller
	pollerOpts   []route.PollerOption
	router       route.Router
	routerOpts   []route.RouterOption
	adminFactory AdminFactory
	transport    http.RoundTripper
	registry     *prometheus.Registry
	logger       *slog.Logger
	clock        clock.Clock
	usage        *route.Usage
	seed         func() uint64 // nil: random
	// loadBackoff and loadBackoffMax: the backoff of failed loads (faults.go).
	loadBackoff, loadBackoffMax time.Duration
	provider                    entitlements.Provider
	retryAfter                  time.Duration
	defaultOutput               int64
	meter                       metering.Meter // entitlements: meter.go
	leaseTTL                    time.Duration  // entitlements: budget.go
	// Settles: settle.go, outbox.go.
	settleOutbox     string
	settleWindow     time.Duration
	settleBackoff    time.Duration
	settleMaxBackoff time.Duration
	pingInterval     time.Duration // Anthropic Messages streams: messages.go
	outlier          OutlierConfig // outlier ejection: outlier.go
	live             liveConfig    // what Reload can change: reload.go
	reload           ReloadFunc    // POST /admin/reload: reload.go
	web              webConfig     // access log and CORS: accesslog.go, cors.go
}

// liveConfig is the part of a gateway's configuration that SetOptions (and
// Reload) can change while it serves: the request limits and timeouts, the
// auth policy and the status page. A request reads it through
// Gateway.settings.
type liveConfig struct {
	requireAuth  bool
	strictCaps   bool
	idleTimeout  time.Duration
	maxBodyBytes int64
	bodyTimeout  time.Duration
	loadTimeout  time.Duration
	ops          operatorConfig // status page and cold starts: status.go, load.go
	scaler       route.Scaler   // nil: the gateway's default Scaler; scale.go
}

// newLiveConfig returns the live settings of a gateway without options.
func newLiveConfig() liveConfig {
	return liveConfig{
		idleTimeout:  DefaultStreamIdleTimeout,
		maxBodyBytes: DefaultMaxBodyBytes,
		bodyTimeout:  DefaultBodyReadTimeout,
		loadTimeout:  DefaultLoadTimeout,
		ops:          operatorConfig{coldStartWait: DefaultColdStartWait},
	}
}

// operatorConfig holds the options of the status page and of cold starts.
type operatorConfig struct {
	coldStartWait time.Duration
	adminKeys     [][sha256.Size]byte
	publicStatus  bool
	budgets       []entitlements.Principal
}

// newGatewayConfig returns the configuration of a gateway without options.
func newGatewayConfig() gatewayConfig {
	return gatewayConfig{
		clock:            clock.System{},
		loadBackoff:      DefaultLoadBackoff,
		loadBackoffMax:   DefaultLoadBackoffMax,
		retryAfter:       route.DefaultRetryAfter,
		defaultOutput:    DefaultMaxOutputTokens,
		settleWindow:     DefaultSettleRetryWindow,
		settleBackoff:    DefaultSettleBackoff,
		settleMaxBackoff: DefaultSettleMaxBackoff,
		pingInterval:     DefaultPingInterval,
		live:             newLiveConfig(),
	}
}

// validate checks the neuron configurations and the options once all are
// applied, and reports every problem it finds. The options of the default
// Poller and Router are checked by route.NewPoller and route.NewRouter.
func (c *gatewayConfig) validate(neurons []NeuronConfig) error {
	if err := validateNeurons(neurons); err != nil {
		return err
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("cortex: gateway: "+format, args...))
	}
	if c.clock == nil {
		bad("nil Clock")
	}
	if c.live.idleTimeout <= 0 {
		bad("stream idle timeout %v is not positive", c.live.idleTimeout)
	}
	if c.live.maxBodyBytes <= 0 {
		bad("max body bytes %d is not positive", c.live.maxBodyBytes)
	}
	if c.live.bodyTimeout < 0 {
		bad("body read timeout %v is negative", c.live.bodyTimeout)
	}
	if c.live.loadTimeout <= 0 {
		bad("load timeout %v is not positive", c.live.loadTimeout)
	}
	if c.loadBackoff <= 0 || c.loadBackoffMax < c.loadBackoff {
		bad("load backoff %v..%v: want 0 < first <= most", c.loadBackoff, c.loadBackoffMax)
	}
	if c.retryAfter <= 0 {
		bad("Retry-After %v is not positive", c.retryAfter)
	}
	if c.defaultOutput <= 0 {
		bad("default max output %d is not positive", c.defaultOutput)
	}
	if c.pingInterval <= 0 {
		bad("ping interval %v is not positive", c.pingInterval)
	}
	if c.live.requireAuth && c.provider == nil {
		bad("require auth needs an entitlements Provider (WithProvider)")
	}
	if c.leaseTTL < 0 {
		bad("lease TTL %v is negative", c.leaseTTL)
	}
	if c.settleWindow <= 0 {
		bad("settle retry window %v is not positive", c.settleWindow)
	}
	if c.settleBackoff < time.Millisecond || c.settleMaxBackoff < c.settleBackoff {
		bad("settle backoff %v..%v: want 1ms <= first <= most", c.settleBackoff, c.settleMaxBackoff)
	}
	if c.live.ops.coldStartWait <= 0 {
		bad("cold start wait %v is not positive", c.live.ops.coldStartWait)
	}
	for _, p := range c.live.ops.budgets {
		if p.IsAnonymous() {
			bad("WithStatusBudgets: a principal without an account")
			break
		}
	}
	for _, err := range checkOrigins(c.web.corsOrigins) {
		bad("WithCORSOrigins: %w", err)
	}
	if err := c.outlier.Validate(); err != nil {
		bad("outlier detection: %w", err)
	}
	if c.router != nil && len(c.routerOpts) > 0 {
		bad("WithRouterOptions configures the default Router, which WithRouter replaces: build the Router with the options instead")
	}
	if c.poller != nil && len(c.pollerOpts) > 0 {
		bad("WithPollerOptions configures the default Poller, which WithPoller replaces: build the Poller with the options instead")
	}
	return errors.Join(errs...)
}

type gatewayOptionFunc func(*gatewayConfig)

func (f gatewayOptionFunc) applyGateway(c *gatewayConfig) { f(c) }

// WithRouteSeeds sets where the gateway draws each request's
// route.Request.Seed, by which the default Router breaks ties between
// equally good replicas. Default: a random value per request, so that ties
// spread over the replicas. A function that returns 0 makes ties go to the
// first neuron name, as tests that expect one replica want; nil restores
// the default. It is called from many goroutines at once.
func WithRouteSeeds(next func() uint64) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.seed = next })
}

// WithUsage sets the live per-replica state (in-flight counts, last uses,
// ejections) that the gateway keeps and links every Fleet to. Default: a
// new route.Usage per Gateway. Give each gateway its own.
func WithUsage(u *route.Usage) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.usage = u })
}

// WithLogger sets where the gateway and its default Poller log. Default:
// nowhere.
func WithLogger(l *slog.Logger) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.logger = l })
}

// WithClock sets the gateway's clock, and its default Poller's (see
// route.WithClock). It stamps requests, events, records and the status
// page; it times load backoff, outlier ejection, per-key limits and the
// bucket windows; and its timers and tickers drive the keep-alives and the
// cold-start wait of a request waiting for a load, the stream idle
// timeout, Anthropic pings, the polls of a restarting model, and settle
// retries. Deadlines kept in real time do not follow it: the write
// deadline of a streaming client, the load and settle-attempt timeouts
// (context deadlines) and the timeouts of a Redis client. Lease renewals
// still run on real time. Default clock.System.
func WithClock(clk clock.Clock) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.clock = clk })
}

// WithPoller sets the Poller that keeps the neuron states fresh. Default:
// a route.FleetPoller over the gateway's neurons, with the gateway's Logger
// and Clock, its neuron clients sending over the gateway's Transport, and
// the options of WithPollerOptions. A Poller publishes neuron states only
// (route.Snapshot); the gateway builds the Fleet it routes over from each
// new one with its own catalogue and Usage, so a custom Poller cannot leave
// the Router without live counts. When it also implements route.Refresher,
// the gateway refreshes a neuron right after loading a model there. The
// default Poller tells the gateway of each snapshot as it publishes it; a
// custom Poller's snapshot is taken in, and its events (a neuron down, an
// engine restarted) recorded, when the gateway next reads the fleet: the
// next request, status page or metrics scrape.
func WithPoller(p route.Poller) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.poller = p })
}

// WithPollerOptions adds options for the default Poller, such as
// route.WithInterval or route.WithFailureThreshold. They come after the
// gateway's own. With WithPoller, NewGateway refuses them: they would
// configure nothing.
func WithPollerOptions(opts ...route.PollerOption) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.pollerOpts = append(c.pollerOpts, opts...) })
}

// WithRouter sets the Router. Default: route.NewRouter with the options of
// WithRouterOptions and the Retry-After of WithRetryAfter (2 s).
func WithRouter(r route.Router) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.router = r })
}

// WithRouterOptions adds options for the default Router, such as
// route.WithEvictor to replace the LRU Evictor. With WithRouter,
// NewGateway refuses them: they would configure nothing.
func WithRouterOptions(opts ...route.RouterOption) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.routerOpts = append(c.routerOpts, opts...) })
}

// WithAdminFactory sets how the gateway builds the NeuronAdmin of each
// neuron, through which it loads and unloads models and asks for
// endpoints. Default: a *neuron.Client with the neuron's endpoint and
// token, sending over the gateway's Transport.
func WithAdminFactory(f AdminFactory) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.adminFactory = f })
}

// WithTransport sets the RoundTripper for every request to a neuron:
// inference, and the management calls of the default neuron clients.
// Default: an *http.Transport tuned for a gateway (keep-alives, 256 idle
// connections per neuron, no compression, HTTP/1.1, no proxy from the
// environment), whose idle connections Shutdown closes.
func WithTransport(rt http.RoundTripper) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.transport = rt })
}

// WithRegistry sets the Prometheus registry the gateway's metrics are
// registered with and MetricsHandler serves. Default: a new registry per
// Gateway, with the Go and process collectors; never the global one.
func WithRegistry(r *prometheus.Registry) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.registry = r })
}

// WithStreamIdleTimeout sets how long a stream may send nothing (no event
// from the neuron, measured from the request for the first one) before the
// gateway cuts it. It is not a limit on the whole stream. Default 5m.
func WithStreamIdleTimeout(d time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.live.idleTimeout = d })
}

// WithMaxBodyBytes bounds a request body; a larger one is refused with 413
// request_too_large. Default 16 MiB.
func WithMaxBodyBytes(n int64) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.live.maxBodyBytes = n })
}

// WithBodyReadTimeout bounds the time a client takes to send a request body
// once its headers are in; a slower one is answered 408 request_timeout and
// its connection closed. 0 waits as long as the client likes. Default
// DefaultBodyReadTimeout (1m).
func WithBodyReadTimeout(d time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.live.bodyTimeout = d })
}

// WithLoadTimeout bounds a cold load: unloading its victims, loading the
// model and refreshing the neuron. Default 10m.
func WithLoadTimeout(d time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.live.loadTimeout = d })
}

// WithProvider sets the entitlements Provider that resolves API keys and
// holds budgets. Default none: every caller is anonymous and nothing is
// reserved.
func WithProvider(p entitlements.Provider) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.provider = p })
}

// WithRequireAuth makes a missing or unknown API key a 401 invalid_api_key
// on the /v1 routes. It needs a Provider. Default false: such callers are
// served as entitlements.Anonymous, without a budget.
func WithRequireAuth(required bool) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.live.requireAuth = required })
}

// WithRetryAfter sets the Retry-After the gateway sends with its own 503s
// (shutting down, a failed cold load) and gives the default Router.
// Default 2 s.
func WithRetryAfter(d time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.retryAfter = d })
}

// WithMeter sets the Meter that receives one metering.Record per finished
// inference request that got past auth (anonymous callers included), after
// its reservation is settled, and one settle record (metering.KindSettle)
// for a request whose settle was pending when it ended. Record is called
// on the request path and must not block (metering.FileSink does not).
// A record names the neuron that served the request (Neuron) and carries
// the request's X-Request-Id (RequestID), so that an embedder's Meter, a
// metering.Func, learns in process where each request went. Default:
// none.
func WithMeter(m metering.Meter) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.meter = m })
}

// WithLeaseTTL sets the lease TTL the gateway renews reservations that are
// leases (entitlements.Renewer) for, every third of it. Default: the
// provider's LeaseTTL when it is an entitlements.Leaser, else
// DefaultLeaseTTL.
func WithLeaseTTL(ttl time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.leaseTTL = ttl })
}

// WithStrictCaps makes the gateway reserve an upper bound of a request's
// prompt instead of an estimate: the bytes of its body, plus 8 tokens per
// message and 16 (reqscan's PromptBound), since a tokenizer whose every
// token covers at least one byte cannot make more tokens than bytes. The
// estimate (text / 4 plus 4 per message) can fall short (CJK text, code,
// tool definitions), and what a request uses beyond its reservation is
// recorded as an overspend past the cap; with strict caps it cannot be,
// except for images given by URL, whose tokens are not in the body. The
// cost: a prompt reserves about four times its tokens until it settles, so
// a nearly spent key is refused earlier. Default false;
// [entitlements] strict_caps in cortex.toml.
func WithStrictCaps(on bool) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.live.strictCaps = on })
}

// WithDefaultMaxOutput sets the output reserved for a request that sets no
// maximum, for a model whose catalogue entry has no output limit. Default
// 4096 tokens.
func WithDefaultMaxOutput(tokens int64) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.defaultOutput = tokens })
}

// WithSettleOutbox keeps the settles of the gateway in an outbox file at
// path (created when missing; its directory must exist), so that a settle
// that has not landed survives a restart or a crash of the gateway: each
// settle is written down before its first attempt, and the settles the
// file holds open at start are re-issued in the background. It needs a
// Provider that is an entitlements.Resumer (entitlements/redisledger);
// with another one the file stays empty. One gateway per file. Default
// none: a settle that fails is retried in memory only, and what is
// pending when the gateway stops is lost. See the package documentation;
// [gateway] settle_outbox in cortex.toml.
func WithSettleOutbox(path string) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.settleOutbox = path })
}

// WithSettleRetryWindow sets how long a settle that failed is retried,
// counted from the end of its request; then it is given up and logged.
// Default DefaultSettleRetryWindow (24 h); [gateway] settle_retry_window
// in cortex.toml.
func WithSettleRetryWindow(d time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.settleWindow = d })
}

// WithSettleBackoff sets the wait between the attempts of a settle that
// failed: first (at least 1 ms) doubled after each attempt up to most,
// each wait less up to half of it at random. Default
// DefaultSettleBackoff and DefaultSettleMaxBackoff (100 ms, 30 s).
func WithSettleBackoff(first, most time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.settleBackoff, c.settleMaxBackoff = first, most })
}

// WithOutlierDetection configures outlier ejection: a replica (a model on
// a neuron) whose answers fail again and again is taken out of rotation
// for a growing period (see OutlierConfig). Zero fields take their
// defaults; Disabled turns it off. Default: on, 5 failures in a row, 10 s
// times the number of ejections, at most 5 min. [outlier_detection] in
// cortex.toml.
func WithOutlierDetection(c OutlierConfig) GatewayOption {
	return gatewayOptionFunc(func(g *gatewayConfig) { g.outlier = c })
}

// WithColdStartWait sets how long a non-streaming request waits for a cold
// load of its model: past it, the request is answered 503
// service_unavailable with Retry-After while the load goes on. A streaming
// OpenAI request waits for the load (up to the load timeout) and receives
// SSE comments meanwhile; an Anthropic Messages stream waits like a
// non-streaming request. d must be positive. Default DefaultColdStartWait
// (60 s).
func WithColdStartWait(d time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.live.ops.coldStartWait = d })
}

// WithLoadBackoff sets how long the gateway starts no new load of a model
// on a neuron where its load failed: first after one failure, doubling with
// each failure in a row up to most; a load that succeeds clears it.
// Requests for the model meanwhile go to other neurons, or get 503
// service_unavailable with Retry-After. first must be positive and at most
// most. Default DefaultLoadBackoff and DefaultLoadBackoffMax (5 s and
// 5 min).
func WithLoadBackoff(first, most time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.loadBackoff, c.loadBackoffMax = first, most })
}

// WithPingInterval sets how long an Anthropic Messages stream may send
// nothing to the client before the gateway writes a ping event, so that
// proxies and clients keep a slow stream (a long prompt, a cold engine)
// open. Default DefaultPingInterval (10 s).
func WithPingInterval(d time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.pingInterval = d })
}

// WithAdminKeys sets the API keys that see the admin view of the status
// page: the budgets of WithStatusBudgets and the detail of errors. Give
// the SHA-256 digest of each key (entitlements.KeyDigest); an admin key
// need not be known to the Provider. Later calls add keys. Default none.
func WithAdminKeys(digests ...[sha256.Size]byte) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.live.ops.adminKeys = append(c.live.ops.adminKeys, digests...) })
}

// WithPublicStatus shows the fleet view of the status page to callers
// without a key even when the gateway requires auth (for a gateway on a
// private network); the admin view still needs an admin key. Default
// false: the status page asks for a key exactly when GET /v1/models does.
func WithPublicStatus(public bool) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.live.ops.publicStatus = public })
}

// WithStatusBudgets lists the principals whose budgets the admin view of
// the status page shows, from the Provider's Snapshot; each must name an
// account. Config.GatewayOptions passes the keys of [entitlements]. Later
// calls add principals. Default none.
func WithStatusBudgets(principals ...entitlements.Principal) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.live.ops.budgets = append(c.live.ops.budgets, principals...) })
}
