package redisledger

import (
	"github.com/helexa-ai/helexa-go/clock"
	"log/slog"
	"time"
)

// Defaults.
const (
	// DefaultLeaseTTL is how long a reservation is held when its gateway
	// neither settles, releases nor renews it: 10 minutes.
	DefaultLeaseTTL = 10 * time.Minute
	// DefaultKeyPrefix is prepended to every Redis key the ledger uses:
	// "helexa:".
	DefaultKeyPrefix = "helexa:"
	// ExpiredLeaseRetention is how long the ledger remembers a lease that
	// expired, so that a late Settle still records its spend exactly once:
	// 24 hours. A Settle later than that returns
	// entitlements.ErrReservationSettled and records nothing.
	ExpiredLeaseRetention = 24 * time.Hour
	// MinLeaseTTL is the shortest lease TTL WithLeaseTTL accepts: 1 second.
	MinLeaseTTL = time.Second
	// DefaultPipelines is how many pipelines of budget calls a Ledger keeps
	// in flight at most before it batches further calls: 2.
	DefaultPipelines = 2
)

// Option configures a Ledger.
type Option interface {
	apply(*options)
}

type options struct {
	leaseTTL  time.Duration
	now       func() time.Time
	failOpen  bool
	keyPrefix string
	logger    *slog.Logger
	pipelines int
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLeaseTTL sets how long a reservation is held without being settled,
// released or renewed; after it the reservation's amount returns to the
// budget. Default DefaultLeaseTTL. New rejects a TTL under MinLeaseTTL. A
// gateway serving a request that may run longer renews the lease (the
// reservation is an entitlements.Renewer).
func WithLeaseTTL(d time.Duration) Option {
	return optionFunc(func(o *options) { o.leaseTTL = d })
}

// WithClock makes the ledger read time from now and pass it to Redis with
// every call, instead of using the Redis server's clock (TIME), which is the
// default (and what a nil now restores). The time places calls in rolling
// windows and decides when leases expire.
//
// With the default every replica agrees on the time because there is only
// one clock. With WithClock every replica sharing the ledger must run a
// synchronised clock (NTP): a replica whose clock runs ahead expires other
// replicas' leases early and rolls windows early; one running behind is
// counted in the current window (windows never move back). It is meant for
// tests, which need a manual clock. A nil clk restores the server's.
func WithClock(clk clock.Clock) Option {
	return optionFunc(func(o *options) {
		o.now = nil
		if clk != nil {
			o.now = clk.Now
		}
	})
}

// WithFailOpen makes Reserve succeed while Redis is unreachable. UNSAFE:
// such a reservation is not recorded anywhere, its Settle and Release do
// nothing, and every replica admits any amount until Redis is back, so budgets
// can be overspent without limit and the spend is lost. Resolve then answers
// from the keys this Ledger resolved successfully before the outage (a key
// revoked during the outage keeps working until Redis is back). Stats counts
// what was served that way. Default false: Reserve fails closed with an
// *entitlements.UnavailableError.
func WithFailOpen(on bool) Option {
	return optionFunc(func(o *options) { o.failOpen = on })
}

// WithKeyPrefix sets the prefix of every Redis key the ledger uses, so that
// several ledgers (or other applications) can share one Redis database.
// Default DefaultKeyPrefix; "" is allowed. New rejects a prefix containing
// '{' or '}', which would break the hash tags that keep each script within
// one Redis Cluster slot.
func WithKeyPrefix(prefix string) Option {
	return optionFunc(func(o *options) { o.keyPrefix = prefix })
}

// WithLogger sets the logger for events an operator should see: fail-open
// service during an outage (once per outage), and leases that expired before
// their request ended. Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

// WithPipelines sets how many pipelines of budget calls (Reserve, Settle,
// Release, Renew, Snapshot and the account scripts) the Ledger sends to
// Redis at once. A call that finds n in flight waits for one of them to
// return and is then sent together with every other call that waited, as
// one pipeline: one round trip for many calls, which is what lets one
// gateway process serve tens of thousands of reservations a second. An idle
// ledger sends each call at once; nothing waits for a batch to fill.
// Default DefaultPipelines; 0 sends every call on its own round trip. New
// rejects a negative n. Each pipeline in flight holds one connection of the
// client's pool.
func WithPipelines(n int) Option {
	return optionFunc(func(o *options) { o.pipelines = n })
}
