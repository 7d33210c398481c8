package neuron

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
)

// Agent defaults: what NewAgent uses where no option sets a value.
const (
	// DefaultDrainTimeout bounds how long Shutdown waits for requests in
	// flight (WithDrainTimeout).
	DefaultDrainTimeout = 30 * time.Second
	// DefaultMaxBodyBytes bounds an inference request body
	// (WithMaxBodyBytes).
	DefaultMaxBodyBytes = 16 << 20
	// DefaultBodyReadTimeout bounds the time a client takes to send an
	// inference request body (WithBodyReadTimeout).
	DefaultBodyReadTimeout = time.Minute
	// DefaultVersion is what GET /version reports (WithVersion).
	DefaultVersion = "dev"
)

// Option configures an Agent.
type Option interface {
	applyAgent(*agentOptions)
}

// ClientOption configures a Client.
type ClientOption interface {
	applyClient(*clientOptions)
}

// SharedOption configures both an Agent and a Client.
type SharedOption interface {
	Option
	ClientOption
}

// agentOptions is what the Agent options set; newAgentOptions holds the
// defaults and validate checks them once every option is applied.
type agentOptions struct {
	token         string
	advertiseURL  string
	hostname      string
	admission     AdmissionConfig
	defaultModels []LoadSpec
	logger        *slog.Logger
	version       string
	drainTimeout  time.Duration
	maxBodyBytes  int64
	bodyTimeout   time.Duration
	clock         clock.Clock
	accessLog     *slog.Logger // accesslog.go
	accessLogSet  bool
}

// newAgentOptions returns the options of an Agent without options.
func newAgentOptions() agentOptions {
	return agentOptions{
		version:      DefaultVersion,
		drainTimeout: DefaultDrainTimeout,
		maxBodyBytes: DefaultMaxBodyBytes,
		bodyTimeout:  DefaultBodyReadTimeout,
		clock:        clock.System{},
	}
}

// validate checks the options once all are applied, reports every
// problem it finds, and trims the advertised URL's trailing slashes.
func (o *agentOptions) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("neuron: NewAgent: "+format, args...))
	}
	if o.advertiseURL != "" {
		if err := checkHTTPURL(o.advertiseURL); err != nil {
			bad("advertise URL: %w", err)
		}
		o.advertiseURL = strings.TrimRight(o.advertiseURL, "/")
	}
	if err := o.admission.validate(); err != nil {
		bad("admission: %w", err)
	}
	if o.drainTimeout < 0 {
		bad("negative drain timeout %s", o.drainTimeout)
	}
	if o.maxBodyBytes <= 0 {
		bad("max body bytes %d is not positive", o.maxBodyBytes)
	}
	if o.bodyTimeout < 0 {
		bad("body read timeout %v is negative", o.bodyTimeout)
	}
	for i, s := range o.defaultModels {
		if s.ModelID == "" {
			bad("default model %d: model_id is required", i)
		}
	}
	return errors.Join(errs...)
}

// clientOptions is what the Client options set.
type clientOptions struct {
	token string
	doer  Doer
}

type clientOptionFunc func(*clientOptions)

func (f clientOptionFunc) applyClient(o *clientOptions) { f(o) }

// WithDoer sets what sends the Client's requests. Default
// http.DefaultClient. Timeouts come from the ctx of each call.
func WithDoer(d Doer) ClientOption {
	return clientOptionFunc(func(o *clientOptions) { o.doer = d })
}

type agentOptionFunc func(*agentOptions)

func (f agentOptionFunc) applyAgent(o *agentOptions) { f(o) }

type tokenOption string

func (t tokenOption) applyAgent(o *agentOptions)   { o.token = string(t) }
func (t tokenOption) applyClient(o *clientOptions) { o.token = string(t) }

// WithToken sets the bearer token. On an Agent it is required on every
// route (401 invalid_token otherwise), except that GET /health without it
// answers the status alone; on a Client it is sent as "Authorization:
// Bearer <token>". Default: none (an Agent without a token is open).
func WithToken(token string) SharedOption { return tokenOption(token) }

// WithAdvertiseURL sets the URL the Agent reports in GET
// /models/{id}/endpoint: its own address as seen by cortex, for example
// "http://10.0.0.5:31400". Default: "http://" plus the Host of the request.
func WithAdvertiseURL(u string) Option {
	return agentOptionFunc(func(o *agentOptions) { o.advertiseURL = u })
}

// WithHostname overrides the hostname reported in GET /discovery. Default:
// what the Discoverer reports, else the operating system's hostname.
func WithHostname(name string) Option {
	return agentOptionFunc(func(o *agentOptions) { o.hostname = name })
}

// WithAdmission sets the per-model admission limits. Default: the
// AdmissionConfig defaults (4 in flight, 64 queued, 30s wait, no
// per-principal cap).
func WithAdmission(c AdmissionConfig) Option {
	return agentOptionFunc(func(o *agentOptions) { o.admission = c })
}

// WithDefaultModels sets the models Start loads in the background, one
// after the other, in order. Default: none.
func WithDefaultModels(specs []LoadSpec) Option {
	return agentOptionFunc(func(o *agentOptions) { o.defaultModels = append([]LoadSpec(nil), specs...) })
}

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return agentOptionFunc(func(o *agentOptions) { o.logger = l })
}

// WithVersion sets the version GET /version reports. Default
// DefaultVersion ("dev").
func WithVersion(v string) Option {
	return agentOptionFunc(func(o *agentOptions) { o.version = v })
}

// WithDrainTimeout bounds how long Shutdown waits for requests in flight
// before it stops the engines. Default DefaultDrainTimeout (30 s).
func WithDrainTimeout(d time.Duration) Option {
	return agentOptionFunc(func(o *agentOptions) { o.drainTimeout = d })
}

// WithClock sets the agent's clock: its timers bound a request's wait in
// an admission queue (AdmissionConfig.MaxWait) and Shutdown's drain
// (WithDrainTimeout), and it tells the uptime in GET /health and the
// loading_seconds of GET /models (the time since a model's LoadingSince,
// which the Harness reads on its own clock: give both the same one). The
// body read timeout is a connection deadline, kept in real time whatever
// the clock. The engine supervisors of package engine take their clock
// through engine.WithClock. Default clock.System; nil restores it.
func WithClock(clk clock.Clock) Option {
	return agentOptionFunc(func(o *agentOptions) {
		if clk == nil {
			clk = clock.System{}
		}
		o.clock = clk
	})
}

// WithBodyReadTimeout bounds the time a client takes to send an inference
// request body once its headers are in; a slower one is answered 408
// request_timeout. 0 waits as long as the client likes. Default
// DefaultBodyReadTimeout (1 min).
func WithBodyReadTimeout(d time.Duration) Option {
	return agentOptionFunc(func(o *agentOptions) { o.bodyTimeout = d })
}

// WithMaxBodyBytes limits the size of an inference request body; a larger
// one is refused with 413. Default DefaultMaxBodyBytes (16 MiB).
func WithMaxBodyBytes(n int64) Option {
	return agentOptionFunc(func(o *agentOptions) { o.maxBodyBytes = n })
}
