package route

import (
	"errors"
	"fmt"
	"github.com/helexa-ai/helexa-go/clock"
	"log/slog"
	"time"
)

// Poller defaults: what NewPoller uses where no option sets a value.
const (
	// DefaultPollInterval is the time between two polling rounds
	// (WithInterval).
	DefaultPollInterval = 2 * time.Second
	// DefaultCallTimeout bounds each call to a neuron's management API
	// (WithCallTimeout).
	DefaultCallTimeout = time.Second
	// DefaultFailureThreshold is the number of consecutive failed polls
	// after which a neuron is unhealthy (WithFailureThreshold).
	DefaultFailureThreshold = 3
)

// PollerOption configures NewPoller.
type PollerOption interface {
	applyPoller(*pollerConfig)
}

// pollerConfig is what the Poller options set; newPollerConfig holds the
// defaults and validate checks it once every option is applied.
type pollerConfig struct {
	interval    time.Duration
	callTimeout time.Duration
	threshold   int
	logger      *slog.Logger
	clock       clock.Clock
	published   []func(*Snapshot)
}

// newPollerConfig returns the configuration of a Poller without options.
func newPollerConfig() pollerConfig {
	return pollerConfig{
		interval:    DefaultPollInterval,
		callTimeout: DefaultCallTimeout,
		threshold:   DefaultFailureThreshold,
		clock:       clock.System{},
	}
}

// validate checks the configuration once every option is applied and
// reports every problem it finds.
func (c *pollerConfig) validate() error {
	var errs []error
	if c.interval <= 0 {
		errs = append(errs, fmt.Errorf("route: poller: interval %v is not positive", c.interval))
	}
	if c.callTimeout <= 0 {
		errs = append(errs, fmt.Errorf("route: poller: call timeout %v is not positive", c.callTimeout))
	}
	if c.threshold < 1 {
		errs = append(errs, fmt.Errorf("route: poller: failure threshold %d is below 1", c.threshold))
	}
	if c.clock == nil {
		errs = append(errs, errors.New("route: poller: nil Clock"))
	}
	return errors.Join(errs...)
}

type pollerOptionFunc func(*pollerConfig)

func (o pollerOptionFunc) applyPoller(c *pollerConfig) { o(c) }

// WithInterval sets the time between polling rounds. Default
// DefaultPollInterval (2 s).
func WithInterval(d time.Duration) PollerOption {
	return pollerOptionFunc(func(c *pollerConfig) { c.interval = d })
}

// WithCallTimeout bounds each call to a neuron's management API. Default
// DefaultCallTimeout (1 s).
func WithCallTimeout(d time.Duration) PollerOption {
	return pollerOptionFunc(func(c *pollerConfig) { c.callTimeout = d })
}

// WithFailureThreshold sets how many consecutive failed polls make a
// neuron unhealthy. One successful poll makes it healthy again. Default
// DefaultFailureThreshold (3).
func WithFailureThreshold(n int) PollerOption {
	return pollerOptionFunc(func(c *pollerConfig) { c.threshold = n })
}

// WithLogger sets where health transitions are logged. Default: nowhere.
func WithLogger(l *slog.Logger) PollerOption {
	return pollerOptionFunc(func(c *pollerConfig) { c.logger = l })
}

// WithClock sets the poller's clock: it stamps snapshots and polls, and
// its ticker paces Run's rounds. Each call to a neuron is bounded by
// WithCallTimeout in real time (a context deadline), whatever the clock.
// Default clock.System.
func WithClock(clk clock.Clock) PollerOption {
	return pollerOptionFunc(func(c *pollerConfig) { c.clock = clk })
}

// WithPublished adds a function the poller calls with each snapshot it
// publishes after the first, with no lock held; snapshots published
// concurrently (a round and a Refresh) may be told in either order. It
// must not block. The gateway uses it to build the Fleet of a new
// snapshot at once, and to record what changed. Default none.
func WithPublished(f func(*Snapshot)) PollerOption {
	return pollerOptionFunc(func(c *pollerConfig) {
		if f != nil {
			c.published = append(c.published, f)
		}
	})
}
