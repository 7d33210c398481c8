package cortex

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
)

// Reload: what a running Gateway can change without a restart, and how.
//
// A reload replaces things whole and never changes a thing in place: a new
// catalogue makes new Fleets (the Fleet a request was routed and priced
// over stays as it was), new neurons make a new set of upstreams and a new
// target set for the Poller, new settings are a new value. So a request in
// flight finishes with what it started with, and the next one sees the new
// configuration. Spend and reservations belong to the entitlements
// Provider, which a reload of the gateway does not touch (the keys of a
// Provider are reloaded through the Provider: see entitlements.Local's
// SetKeys).

// errNeuronRemoved is the failure of an attempt routed to a neuron that a
// reload removed in the meantime: retried on another replica like an
// unreachable neuron.
var errNeuronRemoved = errors.New("removed from the configuration")

// ErrReloadUnsupported is returned by SetNeurons and Reload when the
// gateway's Poller (WithPoller) cannot change its neurons: it does not
// implement route.Retargeter.
var ErrReloadUnsupported = errors.New("cortex: the poller cannot change its neurons (no route.Retargeter)")

// ReloadFunc reloads a gateway's configuration from where it came from
// (cortex reads cortex.toml again) for POST /admin/reload; see
// WithReloadFunc. It returns the settings that changed but take a restart
// to apply (they are reported, not refused), or an error when nothing was
// reloaded; an error that is, or joins, a *ConfigError is the new
// configuration's fault (400 invalid_config), any other a failure to apply
// it (500 reload_failed).
type ReloadFunc func(ctx context.Context) (restartNeeded []string, err error)

// WithReloadFunc serves POST /admin/reload: an admin key (WithAdminKeys)
// calls f, and the answer is 200 with {"reloaded": true,
// "restart_needed": [...]}, or f's error. Any other caller gets 401
// invalid_api_key, as does everyone when no admin key is configured.
// Default: no such route (404).
func WithReloadFunc(f ReloadFunc) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.reload = f })
}

// reloadError is the failure of a ReloadFunc, answered by httpErrorFor.
type reloadError struct{ err error }

func (e *reloadError) Error() string { return e.err.Error() }
func (e *reloadError) Unwrap() error { return e.err }

// ReloadAnswer is the body of a successful POST /admin/reload.
type ReloadAnswer struct {
	// Reloaded is always true.
	Reloaded bool `json:"reloaded"`
	// RestartNeeded names the settings that changed but take effect only
	// after a restart; empty when there are none.
	RestartNeeded []string `json:"restart_needed"`
}

// serveReload is POST /admin/reload.
func (g *Gateway) serveReload(w http.ResponseWriter, r *http.Request) {
	if key := apiKey(r); key == "" || !g.isAdminKey(key) {
		writeError(w, ErrUnauthorized, 0)
		return
	}
	restart, err := g.reloadFn(r.Context())
	if err != nil {
		g.log.Error("cortex: reload refused; the configuration in force is unchanged", "err", err)
		writeError(w, &reloadError{err}, 0)
		return
	}
	if restart == nil {
		restart = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(ReloadAnswer{Reloaded: true, RestartNeeded: restart})
}

// settings returns the live settings in force.
func (g *Gateway) settings() *liveConfig { return g.live.Load() }

// upstream returns the named neuron's upstream; nil when it is not
// configured (any more).
func (g *Gateway) upstream(name string) *upstream { return (*g.ups.Load())[name] }

// Neurons returns the configurations of the neurons the gateway serves
// over, in no particular order.
func (g *Gateway) Neurons() []NeuronConfig {
	ups := *g.ups.Load()
	out := make([]NeuronConfig, 0, len(ups))
	for _, u := range ups {
		out = append(out, u.cfg)
	}
	return out
}

// Catalogue returns the catalogue in force; nil when there is none.
func (g *Gateway) Catalogue() *catalogue.Catalogue { return g.fleets.catalogue() }

// buildUpstreams returns the upstreams of neurons, keeping those of prev
// whose configuration is unchanged (and with them their cached endpoints
// and, with the default Poller, its state of the neuron).
func (g *Gateway) buildUpstreams(neurons []NeuronConfig, prev map[string]*upstream) (map[string]*upstream, error) {
	ups := make(map[string]*upstream, len(neurons))
	for _, nc := range neurons {
		if u := prev[nc.Name]; u != nil && u.cfg == nc {
			ups[nc.Name] = u
			continue
		}
		base, err := url.Parse(nc.Endpoint)
		if err != nil { // Validate parsed it already
			return nil, fmt.Errorf("cortex: neuron %q: %w", nc.Name, err)
		}
		admin, err := g.newAdmin(nc)
		if err != nil {
			return nil, fmt.Errorf("cortex: neuron %q: admin client: %w", nc.Name, err)
		}
		if admin == nil {
			return nil, fmt.Errorf("cortex: neuron %q: admin factory returned nil", nc.Name)
		}
		u := newUpstream(nc, base, admin)
		if u.poll, err = g.newAPI(nc); err != nil {
			return nil, fmt.Errorf("cortex: neuron %q: %w", nc.Name, err)
		}
		ups[nc.Name] = u
	}
	return ups, nil
}

// targets returns the default Poller's targets of neurons, whose upstreams
// are in ups.
func (g *Gateway) targets(neurons []NeuronConfig, ups map[string]*upstream) []route.Target {
	targets := make([]route.Target, len(neurons))
	for i, nc := range neurons {
		targets[i] = route.Target{Name: nc.Name, Endpoint: nc.Endpoint, API: ups[nc.Name].poll}
	}
	return targets
}

// SetCatalogue makes cat the catalogue of the gateway (nil: none; only
// models resident on some neuron are served, under their ids). Requests
// that have been routed finish with the model they were priced with; the
// next ones see cat: its models, aliases, costs and limits. It never
// blocks on I/O.
func (g *Gateway) SetCatalogue(cat *catalogue.Catalogue) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	g.fleets.setCatalogue(cat)
}

// SetNeurons makes neurons the gateway's fleet. A neuron whose
// configuration (name, endpoint, token) is unchanged keeps its state; a new
// or changed one is polled at once, within ctx (a neuron that does not
// answer is unhealthy until it does, as at start); a removed one leaves
// the fleet, and the requests it is serving finish there. The gateway
// never loads or unloads anything because of it. It returns the error of
// an invalid configuration, or ErrReloadUnsupported for a Poller that is
// no route.Retargeter, and then changes nothing.
func (g *Gateway) SetNeurons(ctx context.Context, neurons []NeuronConfig) error {
	if err := validateNeurons(neurons); err != nil {
		return err
	}
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	return g.setNeuronsLocked(ctx, neurons)
}

func (g *Gateway) setNeuronsLocked(ctx context.Context, neurons []NeuronConfig) error {
	rt, ok := g.poller.(route.Retargeter)
	if !ok {
		return ErrReloadUnsupported
	}
	prev := *g.ups.Load()
	next, err := g.buildUpstreams(neurons, prev)
	if err != nil {
		return err
	}
	targets := g.targets(neurons, next)
	// While the Poller changes, the old and the new neurons are all
	// reachable: a request routed over the last snapshot finds its
	// neuron's upstream either way.
	union := make(map[string]*upstream, len(prev)+len(next))
	for name, u := range prev {
		union[name] = u
	}
	for name, u := range next {
		union[name] = u
	}
	g.ups.Store(&union)
	if err := rt.SetTargets(targets); err != nil {
		g.ups.Store(&prev)
		return fmt.Errorf("cortex: %w", err)
	}
	g.ups.Store(&next)
	var wg sync.WaitGroup
	for name, u := range next {
		if prev[name] != u {
			wg.Go(func() { g.refresh(ctx, name) })
		}
	}
	wg.Wait()
	return nil
}

// SetOptions changes the settings of a serving gateway that can change
// safely: those of WithRequireAuth, WithStrictCaps, WithStreamIdleTimeout,
// WithMaxBodyBytes, WithBodyReadTimeout, WithLoadTimeout,
// WithColdStartWait, WithAdminKeys, WithPublicStatus, WithStatusBudgets
// and WithScaler. The settings become what opts set, and the defaults
// for the rest, as if the gateway were built with them; other options
// (the Provider, the Poller, the Router, the transport, the settle outbox,
// the logger, ...) are ignored: they need a new Gateway. Requests in
// flight keep the settings they started with where they have read them
// already (a body being read, a load being waited for). It returns the
// error NewGateway would return for opts, and then changes nothing.
func (g *Gateway) SetOptions(opts ...GatewayOption) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	live, err := g.liveOf(opts)
	if err != nil {
		return err
	}
	g.live.Store(live)
	return nil
}

// liveOf returns the live settings opts set, validated.
func (g *Gateway) liveOf(opts []GatewayOption) (*liveConfig, error) {
	c := g.cfg
	c.live = newLiveConfig()
	for _, o := range opts {
		if o != nil {
			o.applyGateway(&c)
		}
	}
	if err := c.validate(g.Neurons()); err != nil {
		return nil, err
	}
	return &c.live, nil
}

// Reload replaces, in one step, the neurons, the catalogue and the live
// settings of a serving gateway: SetNeurons, SetCatalogue and SetOptions
// together, validated before anything changes (an invalid neuron list or
// option changes nothing, and Reload returns its error). The keys of the
// gateway's Provider are the Provider's: reload them there first (cortex
// serve does, see entitlements.Local's SetKeys). Reload is safe to call
// while the gateway serves; reloads are serialised.
func (g *Gateway) Reload(ctx context.Context, neurons []NeuronConfig, cat *catalogue.Catalogue, opts ...GatewayOption) error {
	if err := validateNeurons(neurons); err != nil {
		return err
	}
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	live, err := g.liveOf(opts)
	if err != nil {
		return err
	}
	if _, ok := g.poller.(route.Retargeter); !ok && !sameNeurons(g.Neurons(), neurons) {
		return ErrReloadUnsupported
	}
	if !sameNeurons(g.Neurons(), neurons) {
		if err := g.setNeuronsLocked(ctx, neurons); err != nil {
			return err
		}
	}
	g.fleets.setCatalogue(cat)
	g.live.Store(live)
	return nil
}

// sameNeurons reports whether a and b configure the same neurons, in any
// order.
func sameNeurons(a, b []NeuronConfig) bool {
	if len(a) != len(b) {
		return false
	}
	byName := make(map[string]NeuronConfig, len(a))
	for _, n := range a {
		byName[n.Name] = n
	}
	for _, n := range b {
		if m, ok := byName[n.Name]; !ok || m != n {
			return false
		}
	}
	return true
}

// ReloadOptions returns the options of c that SetOptions and Reload
// change on a serving gateway: require_auth and strict_caps of
// [entitlements]; stream_idle_timeout, max_body_bytes, body_read_timeout,
// load_timeout, cold_start_wait, admin_keys_sha256 and public_status of
// [gateway]; the default Scaler's knobs ([scaling]: a reload starts a
// new Scaler, with no memory of windows and cool-downs); and the budgets
// of the status page (the accounts of the keys). With the neurons, the
// catalogue (models_config) and the keys of [entitlements], that is what
// a reload changes; RestartNeeded names the rest.
func (c Config) ReloadOptions() []GatewayOption {
	g := c.Gateway
	opts := []GatewayOption{
		WithRequireAuth(c.Entitlements.RequireAuth),
		WithStrictCaps(c.Entitlements.StrictCaps),
	}
	if g.StreamIdleTimeout > 0 {
		opts = append(opts, WithStreamIdleTimeout(g.StreamIdleTimeout.Std()))
	}
	if g.MaxBodyBytes > 0 {
		opts = append(opts, WithMaxBodyBytes(g.MaxBodyBytes))
	}
	if g.BodyReadTimeout > 0 {
		opts = append(opts, WithBodyReadTimeout(g.BodyReadTimeout.Std()))
	}
	if g.LoadTimeout > 0 {
		opts = append(opts, WithLoadTimeout(g.LoadTimeout.Std()))
	}
	if c.Scaling.set() {
		// Validate checked the table: a Config that fails it keeps the
		// gateway's default Scaler.
		if sc, err := c.Scaling.Scaler(); err == nil {
			opts = append(opts, WithScaler(sc))
		}
	}
	return append(opts, c.statusOptions()...)
}

// RestartNeeded names the settings that differ between c, the
// configuration a gateway was started with, and next, and that a reload
// does not change: they take effect at the next start. Names are the
// TOML keys ("gateway.listen", "metering", "entitlements.redis"); nil
// when there are none. Everything a reload does not change is compared,
// so a table added to Config later is reported until Reload learns it.
func (c Config) RestartNeeded(next Config) []string {
	return diffFields("", reflect.ValueOf(c.restartOnly()), reflect.ValueOf(next.restartOnly()))
}

// restartOnly returns c without what a reload changes.
func (c Config) restartOnly() Config {
	c.ModelsConfig, c.Neurons, c.Scaling = "", nil, ScalingConfig{}
	c.Entitlements.Keys, c.Entitlements.RequireAuth, c.Entitlements.StrictCaps = nil, false, false
	g := &c.Gateway
	g.StreamIdleTimeout, g.MaxBodyBytes, g.BodyReadTimeout, g.LoadTimeout = 0, 0, 0, 0
	g.ColdStartWait, g.AdminKeysSHA256, g.PublicStatus = 0, nil, false
	return c
}

// diffFields names the fields of structs a and b (of one type) that
// differ, by their TOML keys under prefix, going into nested structs (not
// into pointers, slices or maps, which are named whole).
func diffFields(prefix string, a, b reflect.Value) []string {
	var out []string
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			name = f.Name
		}
		if prefix != "" {
			name = prefix + "." + name
		}
		fa, fb := a.Field(i), b.Field(i)
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type.NumField() > 0 && !f.Anonymous:
			out = append(out, diffFields(name, fa, fb)...)
		case !reflect.DeepEqual(fa.Interface(), fb.Interface()):
			out = append(out, name)
		}
	}
	return out
}
