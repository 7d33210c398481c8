package cortex

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// Gateway defaults.
const (
	// DefaultStreamIdleTimeout ends a stream that has sent nothing for this
	// long.
	DefaultStreamIdleTimeout = 5 * time.Minute
	// DefaultMaxBodyBytes bounds a request body; a larger one is refused
	// with 413 request_too_large.
	DefaultMaxBodyBytes = 16 << 20
	// DefaultBodyReadTimeout bounds the time a client takes to send a
	// request body: 1 minute.
	DefaultBodyReadTimeout = time.Minute
	// DefaultLoadTimeout bounds a cold load: the unloads of its victims,
	// the load itself and the refresh of the fleet that follows.
	DefaultLoadTimeout = 10 * time.Minute
	// DefaultMaxOutputTokens is the output the gateway reserves for a
	// request that sets no maximum, for a model without a known output
	// limit (and sends as the request's maximum when the caller has a
	// budget).
	DefaultMaxOutputTokens = 4096
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
	idleTimeout  time.Duration
	maxBodyBytes int64
	bodyTimeout  time.Duration
	loadTimeout  time.Duration
	// loadBackoff and loadBackoffMax: WithLoadBackoff (faults.go).
	loadBackoff, loadBackoffMax time.Duration
	provider                    entitlements.Provider
	requireAuth                 bool
	retryAfter                  time.Duration
	defaultOutput               int64
	strictCaps                  bool
	meter                       metering.Meter // entitlements: meter.go
	leaseTTL                    time.Duration  // entitlements: budget.go
	// Settles: settle.go, outbox.go.
	settleOutbox     string
	settleWindow     time.Duration
	settleBackoff    time.Duration
	settleMaxBackoff time.Duration
	pingInterval     time.Duration  // Anthropic Messages streams: messages.go
	outlier          OutlierConfig  // outlier ejection: outlier.go
	ops              operatorConfig // status page and cold starts: status.go, load.go
}

type gatewayOptionFunc func(*gatewayConfig)

func (f gatewayOptionFunc) applyGateway(c *gatewayConfig) { f(c) }

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
// WithRouterOptions and a Retry-After of the retry hint (2 s).
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
	return gatewayOptionFunc(func(c *gatewayConfig) { c.idleTimeout = d })
}

// WithMaxBodyBytes bounds a request body; a larger one is refused with 413
// request_too_large. Default 16 MiB.
func WithMaxBodyBytes(n int64) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.maxBodyBytes = n })
}

// WithBodyReadTimeout bounds the time a client takes to send a request body
// once its headers are in; a slower one is answered 408 request_timeout and
// its connection closed. 0 waits as long as the client likes. Default
// DefaultBodyReadTimeout (1m).
func WithBodyReadTimeout(d time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.bodyTimeout = d })
}

// WithLoadTimeout bounds a cold load: unloading its victims, loading the
// model and refreshing the neuron. Default 10m.
func WithLoadTimeout(d time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.loadTimeout = d })
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
	return gatewayOptionFunc(func(c *gatewayConfig) { c.requireAuth = required })
}

// WithRetryHint sets the Retry-After the gateway sends with its own 503s
// (shutting down, a failed cold load) and gives the default Router.
// Default 2 s.
func WithRetryHint(d time.Duration) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.retryAfter = d })
}

// WithMeter sets the Meter that receives one metering.Record per finished
// inference request that got past auth (anonymous callers included), after
// its reservation is settled, and one settle record (metering.KindSettle)
// for a request whose settle was pending when it ended. Record is called
// on the request path and must not block (metering.FileSink does not).
// Default: none.
func WithMeter(m metering.Meter) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.meter = m })
}

// WithLeaseTTL sets the lease TTL the gateway renews reservations for,
// every third of it, when the Provider is a LeaseRenewer. Default: the
// provider's LeaseTTL() when it has that method, else DefaultLeaseTTL.
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
	return gatewayOptionFunc(func(c *gatewayConfig) { c.strictCaps = on })
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
