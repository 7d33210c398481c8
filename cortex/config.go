package cortex

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/config"
	"github.com/helexa-ai/helexa-go/neuron"
)

// Config defaults.
const (
	// DefaultListen is the address the gateway serves the API on.
	DefaultListen = "127.0.0.1:31313"
	// DefaultMetricsListen is the address the gateway serves /metrics on.
	DefaultMetricsListen = "127.0.0.1:31314"
)

// Config is cortex.toml, the configuration of the reference gateway
// daemon. Decode it with ParseConfig or LoadConfig, which apply the
// defaults and validate it.
//
//	models_config = "models.toml"
//
//	[gateway]
//	listen = "0.0.0.0:31313"
//	settle_outbox = "/var/lib/helexa/settles.jsonl"
//
//	[[neurons]]
//	name = "gpu-01"
//	endpoint = "http://10.0.0.5:31400"
//	token = "..."
//
//	[entitlements]
//	require_auth = true
type Config struct {
	// ModelsConfig is the path of models.toml, the catalogue. LoadConfig
	// resolves a relative path against the directory of the cortex.toml
	// file. Empty: no catalogue (only resident models are served).
	ModelsConfig string `toml:"models_config"`
	// Gateway is the [gateway] table.
	Gateway GatewayConfig `toml:"gateway"`
	// Neurons are the [[neurons]] the gateway routes to. At least one.
	Neurons []NeuronConfig `toml:"neurons"`
	// Entitlements is the [entitlements] table: API keys and budgets.
	Entitlements entitlements.Config `toml:"entitlements"`
	// Metering is the [metering] table: the meter file and the opt-in
	// per-account metrics.
	Metering MeteringConfig `toml:"metering"`
	// OutlierDetection is the [outlier_detection] table: replicas that
	// keep failing are taken out of rotation (WithOutlierDetection).
	//
	//	[outlier_detection]
	//	consecutive_failures = 5
	//	base_ejection_time = "10s"
	//	max_ejection_time = "5m"
	OutlierDetection OutlierConfig `toml:"outlier_detection"`
	// Routing is the [routing] table: the default Router's prefix
	// affinity (route.PrefixAffinity).
	//
	//	[routing]
	//	prefix_affinity = true
	//	affinity_depth = 8      # blocks of 256 bytes of prompt text
	//	affinity_bound = 1.25   # × the mean work of the model's replicas
	Routing RoutingConfig `toml:"routing"`
	// Scaling is the [scaling] table: the default Scaler's knobs for the
	// models with replica bounds in the catalogue (route.NewScaler).
	//
	//	[scaling]
	//	target_work = 4         # work per replica to scale out above
	//	window = "10s"
	//	cooldown = "30s"
	//	scale_in_idle = "5m"
	Scaling ScalingConfig `toml:"scaling"`
}

// ScalingConfig is the [scaling] table of cortex.toml. An absent key
// keeps the default Scaler's default.
type ScalingConfig struct {
	// TargetWork is the work per replica (in flight plus queued) above
	// which a model scales out (route.WithTargetWork). Default
	// route.DefaultTargetWork (4).
	TargetWork float64 `toml:"target_work"`
	// Window is how long the work must stay above the target before a
	// scale-out (route.WithScaleWindow). Default 10s.
	Window *neuron.Duration `toml:"window"`
	// Cooldown is the least time between two changes of a model's replica
	// count for demand (route.WithScaleCooldown). Default 30s.
	Cooldown *neuron.Duration `toml:"cooldown"`
	// ScaleInIdle is how long a replica of a model without idle_unload
	// serves nothing before it is scaled in (route.WithScaleInIdle).
	// Default 5m.
	ScaleInIdle *neuron.Duration `toml:"scale_in_idle"`
}

// set reports whether the table sets any key.
func (s ScalingConfig) set() bool {
	return s.TargetWork != 0 || s.Window != nil || s.Cooldown != nil || s.ScaleInIdle != nil
}

// Scaler returns the default Scaler with the table's knobs; it fails as
// route.NewScaler does.
func (s ScalingConfig) Scaler() (*route.DefaultScaler, error) {
	var opts []route.ScalerOption
	if s.TargetWork != 0 {
		opts = append(opts, route.WithTargetWork(s.TargetWork))
	}
	if s.Window != nil {
		opts = append(opts, route.WithScaleWindow(s.Window.Std()))
	}
	if s.Cooldown != nil {
		opts = append(opts, route.WithScaleCooldown(s.Cooldown.Std()))
	}
	if s.ScaleInIdle != nil {
		opts = append(opts, route.WithScaleInIdle(s.ScaleInIdle.Std()))
	}
	return route.NewScaler(opts...)
}

// RoutingConfig is the [routing] table of cortex.toml.
type RoutingConfig struct {
	// PrefixAffinity sends requests that share a prompt prefix to the same
	// replica (route.WithPrefixAffinity). Default false.
	PrefixAffinity bool `toml:"prefix_affinity"`
	// AffinityDepth is the prefix, in blocks of route.PrefixBlockBytes,
	// that decides the replica. Default route.DefaultAffinityDepth (8).
	AffinityDepth int `toml:"affinity_depth"`
	// AffinityBound caps a replica's work at this multiple of the mean.
	// Default route.DefaultAffinityBound (1.25).
	AffinityBound float64 `toml:"affinity_bound"`
	// AffinityRemember is how many recent prefixes the Router remembers;
	// a prefix gets affinity from its second request among them, -1 from
	// its first. Default route.DefaultAffinityRemember (4096).
	AffinityRemember int `toml:"affinity_remember"`
}

// routerOptions returns the default Router's options the table sets.
func (r RoutingConfig) routerOptions() []route.RouterOption {
	if !r.PrefixAffinity {
		return nil
	}
	return []route.RouterOption{route.WithPrefixAffinity(route.PrefixAffinity{Depth: r.AffinityDepth, Bound: r.AffinityBound, Remember: r.AffinityRemember})}
}

// MeteringConfig is the [metering] table: where the gateway meters every
// request it serves (see WithMeter and package cortex/metering).
//
//	[metering]
//	file = "/var/lib/helexa/meter.jsonl"
//	max_mb = 100
//	backups = 5
//	per_account_metrics = false
type MeteringConfig struct {
	// File is the JSON-lines meter file (a metering.FileSink). LoadConfig
	// resolves a relative path against the directory of the cortex.toml
	// file. Empty: no meter file.
	File string `toml:"file"`
	// MaxMB is the size in MiB past which the file is rotated. Default
	// (and 0) 100.
	MaxMB int64 `toml:"max_mb"`
	// Backups is how many rotated files are kept (file.1 the newest); 0
	// keeps none. Default (when absent) 5.
	Backups *int `toml:"backups"`
	// PerAccountMetrics exports per-account token and spend counters on
	// /metrics (metering.AccountSpend). Every account is a label value:
	// enable it only for a bounded number of accounts. Default false.
	PerAccountMetrics bool `toml:"per_account_metrics"`
	// MaxAccounts bounds the accounts with series of their own when
	// PerAccountMetrics is on; the rest are counted under "_other".
	// Default 0: no bound.
	MaxAccounts int `toml:"max_accounts"`
}

// FileSinkOptions returns the options of the meter file: its size bound
// and its backups, where the table sets them.
func (m MeteringConfig) FileSinkOptions() []metering.Option {
	var opts []metering.Option
	if m.MaxMB > 0 {
		opts = append(opts, metering.WithMaxBytes(m.MaxMB<<20))
	}
	if m.Backups != nil {
		opts = append(opts, metering.WithMaxBackups(*m.Backups))
	}
	return opts
}

// maxMeterMB bounds max_mb so that it converts to bytes without overflow.
const maxMeterMB = math.MaxInt64 >> 20

func (m MeteringConfig) validate() []string {
	var bad []string
	if m.MaxMB < 0 || m.MaxMB > maxMeterMB {
		bad = append(bad, fmt.Sprintf("max_mb %d is out of range", m.MaxMB))
	}
	if m.Backups != nil && *m.Backups < 0 {
		bad = append(bad, fmt.Sprintf("backups %d is negative", *m.Backups))
	}
	if m.File == "" && (m.MaxMB != 0 || m.Backups != nil) {
		bad = append(bad, "max_mb or backups set without a file")
	}
	if m.MaxAccounts < 0 {
		bad = append(bad, fmt.Sprintf("max_accounts %d is negative", m.MaxAccounts))
	}
	return bad
}

// GatewayConfig is the [gateway] table.
type GatewayConfig struct {
	// Listen is the address of the API. Default "127.0.0.1:31313".
	Listen string `toml:"listen"`
	// MetricsListen is the address of GET /metrics, a listener of its own.
	// Default "127.0.0.1:31314".
	MetricsListen string `toml:"metrics_listen"`
	// StreamIdleTimeout cuts a stream that sends nothing for this long.
	// Default 5m.
	StreamIdleTimeout neuron.Duration `toml:"stream_idle_timeout"`
	// MaxBodyBytes bounds a request body. Default 16 MiB.
	MaxBodyBytes int64 `toml:"max_body_bytes"`
	// BodyReadTimeout bounds the time a client takes to send a request
	// body once its headers are in (408 beyond). Default 1m.
	BodyReadTimeout neuron.Duration `toml:"body_read_timeout"`
	// LoadTimeout bounds a cold load. Default 10m.
	LoadTimeout neuron.Duration `toml:"load_timeout"`
	// PollInterval is the time between two polls of the neurons. Default
	// 2s.
	PollInterval neuron.Duration `toml:"poll_interval"`
	// FailureThreshold is how many consecutive failed polls make a neuron
	// unhealthy. Default 3.
	FailureThreshold int `toml:"failure_threshold"`
	// ColdStartWait is how long a non-streaming request waits for a cold
	// load before a 503 with Retry-After (WithColdStartWait). Default (and 0) 60s.
	ColdStartWait neuron.Duration `toml:"cold_start_wait"`
	// AdminKeysSHA256 are the hex SHA-256 digests of the API keys that see
	// the admin view of the status page (WithAdminKeys). Default none.
	AdminKeysSHA256 []string `toml:"admin_keys_sha256"`
	// PublicStatus shows the fleet view of the status page without a key
	// (WithPublicStatus). Default false.
	PublicStatus bool `toml:"public_status"`
	// SettleOutbox is the settle outbox file (WithSettleOutbox): the
	// settles that have not landed in the ledger survive a restart or a
	// crash there, for a ledger that can resume them ([entitlements.redis]).
	// LoadConfig resolves a relative path against the directory of the
	// cortex.toml file. Default none: a settle that fails is retried in
	// memory only.
	SettleOutbox string `toml:"settle_outbox"`
	// SettleRetryWindow is how long a settle that failed is retried before
	// it is given up (WithSettleRetryWindow). Default (and 0) 24h.
	SettleRetryWindow neuron.Duration `toml:"settle_retry_window"`
	// AccessLog = false turns off the access log, one line per request
	// (WithAccessLog). Default true.
	AccessLog *bool `toml:"access_log"`
	// CORSAllowedOrigins are the origins whose web pages may call the
	// gateway from a browser (WithCORSOrigins): "https://app.example.com",
	// or "*" alone for any. Default none: no CORS header at all.
	CORSAllowedOrigins []string `toml:"cors_allowed_origins"`
}

// ConfigError is one problem in cortex.toml: a syntax or type error, an
// unknown key, a duration written without a unit, or an invalid value. It
// reads "file:line: entry: message", leaving out what is unknown; its
// fields are File (the path given to LoadConfig, "cortex.toml" for
// ParseConfig and Validate), Line (1-based, 0 when unknown), Entry (such
// as "neurons[1] (gpu-02)" or "gateway") and Msg. neuron.ConfigError and
// entitlements.ConfigError are the same type.
type ConfigError = config.Error

// LoadConfig reads and parses the cortex.toml at path, and resolves a
// relative ModelsConfig, Metering.File and Gateway.SettleOutbox against
// the file's directory.
// Errors name the file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("cortex: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		for _, e := range flatten(err) {
			if ce, ok := errors.AsType[*ConfigError](e); ok {
				ce.File = path
			}
		}
		return Config{}, err
	}
	if c.ModelsConfig != "" && !filepath.IsAbs(c.ModelsConfig) {
		c.ModelsConfig = filepath.Join(filepath.Dir(path), c.ModelsConfig)
	}
	if c.Metering.File != "" && !filepath.IsAbs(c.Metering.File) {
		c.Metering.File = filepath.Join(filepath.Dir(path), c.Metering.File)
	}
	if c.Gateway.SettleOutbox != "" && !filepath.IsAbs(c.Gateway.SettleOutbox) {
		c.Gateway.SettleOutbox = filepath.Join(filepath.Dir(path), c.Gateway.SettleOutbox)
	}
	return c, nil
}

// flatten returns the errors joined in err, or err alone.
func flatten(err error) []error { return config.Flatten(err) }

// ParseConfig decodes a cortex.toml document strictly: an unknown key is an
// error with its line, as are syntax and type errors (each a
// *ConfigError). It applies the defaults, then validates the result: the
// problems Validate finds are *ConfigError values too, with the line of
// their entry where it is known, joined with errors.Join.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if errs := config.Decode(data, &c, config.Options{File: configFile}); len(errs) > 0 {
		return Config{}, config.Join(errs)
	}
	c.applyDefaults()
	if err := c.validate(scanLines(data)); err != nil {
		return Config{}, err
	}
	return c, nil
}

// applyDefaults sets the zero fields of the [gateway] table.
func (c *Config) applyDefaults() {
	g := &c.Gateway
	if g.Listen == "" {
		g.Listen = DefaultListen
	}
	if g.MetricsListen == "" {
		g.MetricsListen = DefaultMetricsListen
	}
	if g.StreamIdleTimeout == 0 {
		g.StreamIdleTimeout = neuron.Duration(DefaultStreamIdleTimeout)
	}
	if g.MaxBodyBytes == 0 {
		g.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if g.BodyReadTimeout == 0 {
		g.BodyReadTimeout = neuron.Duration(DefaultBodyReadTimeout)
	}
	if g.LoadTimeout == 0 {
		g.LoadTimeout = neuron.Duration(DefaultLoadTimeout)
	}
	if g.PollInterval == 0 {
		g.PollInterval = neuron.Duration(route.DefaultPollInterval)
	}
	if g.FailureThreshold == 0 {
		g.FailureThreshold = route.DefaultFailureThreshold
	}
}

// configFile names cortex.toml in the errors of ParseConfig and Validate.
const configFile = "cortex.toml"

// Validate checks the configuration: at least one neuron, each valid and
// named once, listen addresses set, positive limits, a valid
// [entitlements] table. It returns every problem, each a *ConfigError
// naming its entry, joined with errors.Join.
func (c Config) Validate() error { return c.validate(nil) }

func (c Config) validate(at *configLines) error {
	var errs []error
	bad := func(line int, entry, format string, args ...any) {
		errs = append(errs, &ConfigError{File: configFile, Line: line, Entry: entry, Msg: fmt.Sprintf(format, args...)})
	}
	g := c.Gateway
	gl := at.table("gateway")
	if g.Listen == "" {
		bad(gl, "gateway", "listen is empty")
	}
	if g.MetricsListen == "" {
		bad(gl, "gateway", "metrics_listen is empty")
	}
	if g.Listen != "" && g.Listen == g.MetricsListen && !strings.HasSuffix(g.Listen, ":0") {
		bad(gl, "gateway", "metrics_listen %q is the same address as listen", g.MetricsListen)
	}
	if g.MaxBodyBytes < 0 {
		bad(gl, "gateway", "max_body_bytes %d is negative", g.MaxBodyBytes)
	}
	if g.FailureThreshold < 0 {
		bad(gl, "gateway", "failure_threshold %d is negative", g.FailureThreshold)
	}
	if g.SettleRetryWindow < 0 {
		bad(gl, "gateway", "settle_retry_window %v is negative", g.SettleRetryWindow.Std())
	}
	for i, k := range g.AdminKeysSHA256 {
		if _, err := parseKeyDigest(k); err != nil {
			bad(gl, "gateway", "admin_keys_sha256[%d]: %v", i, err)
		}
	}
	for _, err := range checkOrigins(g.CORSAllowedOrigins) {
		bad(gl, "gateway", "cors_allowed_origins: %v", err)
	}
	if len(c.Neurons) == 0 {
		bad(0, "", "no [[neurons]]: the gateway needs at least one neuron")
	}
	seen := make(map[string]int, len(c.Neurons))
	for i, n := range c.Neurons {
		entry := "neurons[" + strconv.Itoa(i) + "]"
		if n.Name != "" {
			entry += " (" + n.Name + ")"
		}
		line := at.entry("neurons", i)
		if err := n.Validate(); err != nil {
			bad(line, entry, "%s", strings.TrimPrefix(err.Error(), "neuron "+strconv.Quote(n.Name)+": "))
			continue
		}
		if j, dup := seen[n.Name]; dup {
			bad(line, entry, "duplicate name %q (also neurons[%d])", n.Name, j)
		}
		seen[n.Name] = i
	}
	for _, msg := range c.Metering.validate() {
		bad(at.table("metering"), "metering", "%s", msg)
	}
	if c.Routing.AffinityDepth != 0 || c.Routing.AffinityBound != 0 || c.Routing.AffinityRemember != 0 || c.Routing.PrefixAffinity {
		if _, err := route.NewRouter(c.Routing.routerOptions()...); err != nil {
			bad(at.table("routing"), "routing", "%s", strings.TrimPrefix(err.Error(), "route: router: "))
		} else if !c.Routing.PrefixAffinity {
			bad(at.table("routing"), "routing", "affinity_depth, affinity_bound and affinity_remember need prefix_affinity = true")
		}
	}
	if c.Scaling.set() {
		if _, err := c.Scaling.Scaler(); err != nil {
			for _, e := range flatten(err) {
				bad(at.table("scaling"), "scaling", "%s", strings.TrimPrefix(e.Error(), "route: scaler: "))
			}
		}
	}
	if err := c.OutlierDetection.Validate(); err != nil {
		for _, e := range flatten(err) {
			bad(at.table("outlier_detection"), "outlier_detection", "%v", e)
		}
	}
	if err := c.Entitlements.Validate(); err != nil {
		for _, e := range flatten(err) {
			entry, msg, line := "entitlements", e.Error(), at.table("entitlements")
			if ce, ok := errors.AsType[*entitlements.ConfigError](e); ok {
				msg = ce.Msg
				if ce.Entry != "" {
					entry += "." + ce.Entry
				}
				if m := keyEntry.FindStringSubmatch(ce.Entry); m != nil {
					i, _ := strconv.Atoi(m[1])
					line = cmp.Or(at.entry("entitlements.keys", i), line)
				} else if ce.Entry == "redis" {
					line = cmp.Or(at.table("entitlements.redis"), line)
				}
			}
			bad(line, entry, "%s", msg)
		}
	}
	return errors.Join(errs...)
}

// GatewayOptions returns the options the [gateway] table sets: the stream
// idle timeout, the body limit and read timeout, the load timeout, the poll interval and
// failure threshold of the default poller, the settle outbox and retry
// window, the access log and the CORS origins, outlier ejection ([outlier_detection]), the default Router's
// prefix affinity ([routing]), the default Scaler's knobs ([scaling]), and whether auth is required
// ([entitlements] require_auth).
func (c Config) GatewayOptions() []GatewayOption {
	g := c.Gateway
	// What a reload can change, then what takes a restart.
	opts := c.ReloadOptions()
	if g.SettleOutbox != "" {
		opts = append(opts, WithSettleOutbox(g.SettleOutbox))
	}
	if g.SettleRetryWindow > 0 {
		opts = append(opts, WithSettleRetryWindow(g.SettleRetryWindow.Std()))
	}
	if g.AccessLog != nil && !*g.AccessLog {
		opts = append(opts, WithAccessLog(nil))
	}
	if len(g.CORSAllowedOrigins) > 0 {
		opts = append(opts, WithCORSOrigins(g.CORSAllowedOrigins...))
	}
	var popts []route.PollerOption
	if g.PollInterval > 0 {
		popts = append(popts, route.WithInterval(g.PollInterval.Std()))
	}
	if g.FailureThreshold > 0 {
		popts = append(popts, route.WithFailureThreshold(g.FailureThreshold))
	}
	opts = append(opts, WithOutlierDetection(c.OutlierDetection))
	if ropts := c.Routing.routerOptions(); len(ropts) > 0 {
		opts = append(opts, WithRouterOptions(ropts...))
	}
	return append(opts, WithPollerOptions(popts...))
}

// configLines knows the lines of the tables of a document, so that
// validation errors can point at their entry. A nil *configLines knows
// nothing.
type configLines struct {
	tables map[string]int   // [name] -> line
	arrays map[string][]int // [[name]] -> line of each entry
}

// keyEntry matches the entry of an entitlements key problem.
var keyEntry = regexp.MustCompile(`^keys\[(\d+)\]`)

var tableHeader = regexp.MustCompile(`^\s*(\[\[?)\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(#.*)?$`)

// scanLines finds the table headers of data. It does not parse TOML: a
// header inside a multi-line string would mislead it, which only costs a
// wrong line number in an error message.
func scanLines(data []byte) *configLines {
	l := &configLines{tables: make(map[string]int), arrays: make(map[string][]int)}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		m := tableHeader.FindSubmatch(sc.Bytes())
		if m == nil {
			continue
		}
		name := strings.ReplaceAll(string(m[2]), " ", "")
		if string(m[1]) == "[[" {
			l.arrays[name] = append(l.arrays[name], n)
		} else if _, ok := l.tables[name]; !ok {
			l.tables[name] = n
		}
	}
	return l
}

func (l *configLines) table(name string) int {
	if l == nil {
		return 0
	}
	return l.tables[name]
}

func (l *configLines) entry(name string, i int) int {
	if l == nil || i >= len(l.arrays[name]) {
		return 0
	}
	return l.arrays[name][i]
}
