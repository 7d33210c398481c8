package engine

import (
	"log/slog"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
)

// Option configures a Harness built by New.
type Option interface {
	apply(*options)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	logger        *slog.Logger
	defaultEngine string
	logLines      int
	backoffMin    time.Duration
	backoffMax    time.Duration
	host          string
	clock         clock.Clock
}

func defaultOptions() options {
	return options{
		logLines:   500,
		backoffMin: time.Second,
		backoffMax: 30 * time.Second,
		host:       "127.0.0.1",
		clock:      clock.System{},
	}
}

// WithLogger sets the logger for one line per engine start, ready, crash,
// restart and stop. Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

// WithDefaultEngine names the engine used for a LoadSpec with no Engine. It
// must be one of the templates. Default: the first template.
func WithDefaultEngine(name string) Option {
	return optionFunc(func(o *options) { o.defaultEngine = name })
}

// WithLogLines sets how many output lines are kept per model (stdout and
// stderr together). It must be positive. Default 500.
func WithLogLines(n int) Option {
	return optionFunc(func(o *options) { o.logLines = n })
}

// WithBackoff sets the delay before restarting a crashed engine: lo after
// the first crash, doubling on each further crash up to hi. The delay
// returns to lo once an engine has stayed ready for hi. lo must be positive
// and hi at least lo. Default 1s and 30s.
func WithBackoff(lo, hi time.Duration) Option {
	return optionFunc(func(o *options) { o.backoffMin, o.backoffMax = lo, hi })
}

// WithHost sets the address engines listen on, substituted for {host}.
// The harness probes engines and builds their endpoints on this host, or on
// 127.0.0.1 when it is an unspecified address such as 0.0.0.0. Default
// 127.0.0.1.
func WithHost(host string) Option {
	return optionFunc(func(o *options) { o.host = host })
}

// WithClock sets the clock of the engine supervisors: the restart backoff
// (WithBackoff) and the time an engine must stay ready to reset it, the
// start timeout (the stall of a load), the interval of the liveness probes
// of a loaded engine, and the stop timeout before SIGKILL, as well as the
// times in ModelInfo (LoadingSince, LoadedAt, LastFailureAt). With a
// clocktest.Fake these wait until the test moves the time.
//
// What stays in real time, whatever the clock: the polling of a loading
// engine's ready path (every 250ms, so that a load ends when the process is
// ready without the clock being moved), the timeout of each probe (an HTTP
// request's deadline: EngineConfig.LivenessTimeout), and the grace an
// exited engine's output has to drain. The engine processes themselves run
// in real time. Default clock.System; nil restores it.
func WithClock(clk clock.Clock) Option {
	return optionFunc(func(o *options) {
		if clk == nil {
			clk = clock.System{}
		}
		o.clock = clk
	})
}
