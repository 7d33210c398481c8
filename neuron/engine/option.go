package engine

import (
	"log/slog"
	"time"
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
}

func defaultOptions() options {
	return options{
		logLines:   500,
		backoffMin: time.Second,
		backoffMax: 30 * time.Second,
		host:       "127.0.0.1",
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
