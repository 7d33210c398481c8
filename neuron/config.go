package neuron

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/internal/config"
)

// Config defaults.
const (
	DefaultListen       = "127.0.0.1:31400"
	DefaultReadyPath    = "/health"
	DefaultStartTimeout = 10 * time.Minute
	DefaultStopTimeout  = 10 * time.Second
	// DefaultLivenessInterval, DefaultLivenessTimeout and
	// DefaultLivenessFailures are the liveness probing of a loaded engine
	// (EngineConfig).
	DefaultLivenessInterval = 5 * time.Second
	DefaultLivenessTimeout  = 3 * time.Second
	DefaultLivenessFailures = 3
)

// Discovery kinds of neuron.toml.
const (
	DiscoveryNVML   = "nvml"
	DiscoveryStatic = "static"
)

// Config is neuron.toml, the configuration of the reference neuron daemon.
// Decode it with ParseConfig or LoadConfig, which apply the defaults and
// validate it.
type Config struct {
	// Listen is the address the daemon serves on. Default "127.0.0.1:31400".
	Listen string `toml:"listen"`
	// AdvertiseURL is the neuron's URL as cortex reaches it (see
	// WithAdvertiseURL). Default: derived from each request's Host.
	AdvertiseURL string `toml:"advertise_url"`
	// Token is the bearer token required on the API (see WithToken).
	// Default: none.
	Token string `toml:"token"`
	// Discovery chooses how the GPUs are found.
	Discovery DiscoveryConfig `toml:"discovery"`
	// Engines are the engine templates. At least one is required.
	Engines []EngineConfig `toml:"engines"`
	// DefaultEngine names the engine of a LoadSpec without one. Default:
	// the first engine.
	DefaultEngine string `toml:"default_engine"`
	// Admission holds the per-model admission limits.
	Admission AdmissionConfig `toml:"admission"`
	// DefaultModels are loaded at start, in order.
	DefaultModels []LoadSpec `toml:"default_models"`
	// DrainTimeout bounds the wait for requests in flight at shutdown.
	// Default 30s.
	DrainTimeout Duration `toml:"drain_timeout"`
	// AccessLog = false turns off the access log, one line per request
	// (WithAccessLog). Default true.
	AccessLog *bool `toml:"access_log"`
}

// DiscoveryConfig is the [discovery] table.
type DiscoveryConfig struct {
	// Kind is "nvml" (ask the NVIDIA driver; default) or "static" (report
	// Devices as configured, for hosts without NVML and for development).
	Kind string `toml:"kind"`
	// Hostname overrides the reported hostname (see WithHostname).
	Hostname string `toml:"hostname"`
	// Devices are the GPUs of a static discovery; required for "static",
	// refused for "nvml".
	Devices []Device `toml:"devices"`
}

// ConfigError is one problem in neuron.toml: a syntax or type error, an
// unknown key, or a duration written without a unit. It reads
// "file:line: message"; its fields are File (the path given to
// LoadConfig, "neuron.toml" for ParseConfig), Line (1-based, 0 when
// unknown), Entry and Msg. cortex.ConfigError and entitlements.ConfigError
// are the same type.
type ConfigError = config.Error

// LoadConfig reads and parses the neuron.toml at path.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("neuron: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		for _, e := range config.Flatten(err) {
			if ce, ok := errors.AsType[*ConfigError](e); ok {
				ce.File = path
			}
		}
	}
	return c, err
}

// ParseConfig decodes a neuron.toml document strictly: an unknown key is an
// error, reported with its line (a *ConfigError, as are syntax and type
// errors and a duration written as a bare number; several are joined with
// errors.Join). It applies the defaults and returns the result of Validate.
func ParseConfig(data []byte) (Config, error) {
	c := Config{
		Listen:       DefaultListen,
		Discovery:    DiscoveryConfig{Kind: DiscoveryNVML},
		DrainTimeout: Duration(DefaultDrainTimeout),
	}
	if errs := config.Decode(data, &c, config.Options{File: "neuron.toml"}); len(errs) > 0 {
		return Config{}, config.Join(errs)
	}
	c.Admission = c.Admission.withDefaults()
	for i := range c.Engines {
		e := &c.Engines[i]
		if e.ReadyPath == "" {
			e.ReadyPath = DefaultReadyPath
		}
		if e.StartTimeout == 0 {
			e.StartTimeout = Duration(DefaultStartTimeout)
		}
		if e.StopTimeout == 0 {
			e.StopTimeout = Duration(DefaultStopTimeout)
		}
		if e.LivenessInterval == 0 {
			e.LivenessInterval = Duration(DefaultLivenessInterval)
		}
		if e.LivenessTimeout == 0 {
			e.LivenessTimeout = Duration(DefaultLivenessTimeout)
		}
		if e.LivenessFailures == 0 {
			e.LivenessFailures = DefaultLivenessFailures
		}
	}
	if c.DefaultEngine == "" && len(c.Engines) > 0 {
		c.DefaultEngine = c.Engines[0].Name
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks the configuration and names the offending entry.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Listen == "" {
		bad("listen is empty")
	}
	if c.AdvertiseURL != "" {
		if err := checkHTTPURL(c.AdvertiseURL); err != nil {
			bad("advertise_url: %v", err)
		}
	}
	switch c.Discovery.Kind {
	case DiscoveryNVML:
		if len(c.Discovery.Devices) > 0 {
			bad("discovery: devices are only for kind %q", DiscoveryStatic)
		}
	case DiscoveryStatic:
		if len(c.Discovery.Devices) == 0 {
			bad("discovery: kind %q needs at least one [[discovery.devices]]", DiscoveryStatic)
		}
	default:
		bad("discovery: kind %q is neither %q nor %q", c.Discovery.Kind, DiscoveryNVML, DiscoveryStatic)
	}
	devices := make(map[int]bool)
	for i, d := range c.Discovery.Devices {
		if devices[d.Index] {
			bad("discovery.devices[%d]: duplicate index %d", i, d.Index)
		}
		devices[d.Index] = true
		if d.Index < 0 {
			bad("discovery.devices[%d]: negative index %d", i, d.Index)
		}
		if d.TotalMB == 0 {
			bad("discovery.devices[%d] (index %d): total_mb is required", i, d.Index)
		}
	}

	engines := make(map[string]bool)
	if len(c.Engines) == 0 {
		bad("no [[engines]]: at least one engine template is required")
	}
	for i, e := range c.Engines {
		switch {
		case e.Name == "":
			bad("engines[%d]: name is required", i)
		case engines[e.Name]:
			bad("engines[%d]: duplicate name %q", i, e.Name)
		}
		engines[e.Name] = true
		if len(e.Command) == 0 || e.Command[0] == "" {
			bad("engines[%d] (%q): command is empty", i, e.Name)
		}
		if e.ReadyPath != "" && !strings.HasPrefix(e.ReadyPath, "/") {
			bad("engines[%d] (%q): ready_path %q does not start with /", i, e.Name, e.ReadyPath)
		}
		if e.LivenessFailures < 0 {
			bad("engines[%d] (%q): liveness_failures %d is negative", i, e.Name, e.LivenessFailures)
		}
	}
	if c.DefaultEngine != "" && !engines[c.DefaultEngine] {
		bad("default_engine %q is not an [[engines]] name", c.DefaultEngine)
	}
	if err := c.Admission.validate(); err != nil {
		bad("admission: %v", err)
	}

	ids := make(map[string]bool)
	for i, m := range c.DefaultModels {
		switch {
		case m.ModelID == "":
			bad("default_models[%d]: model_id is required", i)
		case ids[m.ModelID]:
			bad("default_models[%d]: duplicate model_id %q", i, m.ModelID)
		}
		ids[m.ModelID] = true
		if m.Engine != "" && !engines[m.Engine] {
			bad("default_models[%d] (%q): engine %q is not an [[engines]] name", i, m.ModelID, m.Engine)
		}
		if c.Discovery.Kind == DiscoveryStatic {
			for _, d := range m.Devices {
				if !devices[d] {
					bad("default_models[%d] (%q): device %d is not a [[discovery.devices]] index", i, m.ModelID, d)
				}
			}
		}
		if m.Context < 0 {
			bad("default_models[%d] (%q): negative context %d", i, m.ModelID, m.Context)
		}
		if err := m.EngineArgs.Validate(); err != nil {
			bad("default_models[%d] (%q): %v", i, m.ModelID, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("neuron: invalid config: %w", err)
	}
	return nil
}

// AgentOptions returns the Agent options the configuration sets: token,
// advertise URL, hostname, admission, default models, drain timeout and
// whether the access log is on.
func (c Config) AgentOptions() []Option {
	opts := []Option{
		WithToken(c.Token),
		WithAdvertiseURL(c.AdvertiseURL),
		WithHostname(c.Discovery.Hostname),
		WithAdmission(c.Admission),
		WithDefaultModels(c.DefaultModels),
		WithDrainTimeout(c.DrainTimeout.Std()),
	}
	if c.AccessLog != nil && !*c.AccessLog {
		opts = append(opts, WithAccessLog(nil))
	}
	return opts
}

// StaticDiscovery returns the Discovery of a static [discovery] table.
func (c Config) StaticDiscovery() Discovery {
	return Discovery{Hostname: c.Discovery.Hostname, Devices: append([]Device(nil), c.Discovery.Devices...)}
}
