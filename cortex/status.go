package cortex

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/neuron"
)

// The status page: GET /status renders a Status as HTML, GET /status.json
// as JSON (what "cortex status" reads).
//
// Who sees what: the fleet (neurons, GPUs, models, recent events) is shown
// to whoever may call GET /v1/models: anyone when the gateway does not
// require auth, else a caller with a valid API key, or anyone with
// WithPublicStatus. Errors that may name hosts or paths (a neuron's last
// poll error, a model's last engine error, the detail of an event, and the
// reason a neuron has no GPU when it names a path) and the budgets of the
// keys (WithStatusBudgets) are shown only to an admin key (WithAdminKeys):
// the fleet view never names an address, a port or a path, nor carries a
// transport error or an engine's output. A
// browser sends a key as the password of HTTP Basic auth (any user name):
// the HTML page answers 401 with a Basic challenge, and /status?admin=1
// asks for a key even when the fleet view is public.

// Status page defaults.
const (
	// DefaultStatusRefresh is how often the HTML status page reloads
	// itself; ?refresh=N sets it per request (0 turns it off).
	DefaultStatusRefresh = 5 * time.Second
	// budgetTimeout bounds the Snapshot calls of the admin view.
	budgetTimeout = 2 * time.Second
)

//go:embed templates/*.html
var templateFS embed.FS

// statusTemplates are the status page's templates; immutable once parsed.
var statusTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"pct":     pct,
	"ratio":   formatRatio,
	"mib":     formatMiB,
	"ago":     ago,
	"seconds": formatSeconds,
	"join":    strings.Join,
	"left":    left,
}).ParseFS(templateFS, "templates/*.html"))

// statusOptions returns the options of the [gateway] keys of the status
// page and cold starts, and lists the keys of [entitlements] for the
// admin view's budgets. The configuration was validated: the digests
// parse.
func (c Config) statusOptions() []GatewayOption {
	g := c.Gateway
	var opts []GatewayOption
	if g.ColdStartWait > 0 {
		opts = append(opts, WithColdStartWait(g.ColdStartWait.Std()))
	}
	for _, k := range g.AdminKeysSHA256 {
		if d, err := parseKeyDigest(k); err == nil {
			opts = append(opts, WithAdminKeys(d))
		}
	}
	if g.PublicStatus {
		opts = append(opts, WithPublicStatus(true))
	}
	if keys, err := c.Entitlements.APIKeys(); err == nil {
		seen := make(map[entitlements.Principal]bool, len(keys))
		for _, k := range keys {
			p := k.Principal
			p.KeyID = cmp.Or(p.KeyID, p.AccountID)
			if !seen[p] {
				seen[p] = true
				opts = append(opts, WithStatusBudgets(p))
			}
		}
	}
	return opts
}

// parseKeyDigest parses the hex SHA-256 digest of an API key, as
// "sha256sum" prints it.
func parseKeyDigest(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != sha256.Size {
		return d, fmt.Errorf("%q is not a hex SHA-256 digest (64 hex digits)", s)
	}
	copy(d[:], b)
	return d, nil
}

// Status is the state of the fleet as the status page shows it.
type Status struct {
	// GeneratedAt is when the Status was made, by the gateway's Clock.
	GeneratedAt time.Time `json:"generated_at"`
	// FleetAt is when the fleet snapshot it shows was taken.
	FleetAt time.Time `json:"fleet_at"`
	// Health is what GET /health reports.
	Health HealthReport `json:"health"`
	// Admin is true for the admin view: budgets and error details.
	Admin bool `json:"admin"`
	// Neurons are sorted by name.
	Neurons []StatusNeuron `json:"neurons"`
	// Models are the models of GET /v1/models, without the aliases
	// entries (each model lists its aliases).
	Models []StatusModel `json:"models"`
	// Events are the gateway's recent events (see Event), newest first;
	// their Detail is in the admin view only.
	Events []Event `json:"events"`
	// Budgets are the budgets of WithStatusBudgets; admin view only.
	Budgets []StatusBudget `json:"budgets,omitempty"`
}

// Neuron states in a StatusNeuron.
const (
	NeuronOK       = "ok"       // healthy, takes work
	NeuronDraining = "draining" // healthy, shutting down
	NeuronDown     = "down"     // its polls fail
	NeuronUnknown  = "unknown"  // never polled successfully yet
)

// StatusNeuron is one neuron in a Status.
type StatusNeuron struct {
	Name string `json:"name"`
	// State is NeuronOK, NeuronDraining, NeuronDown or NeuronUnknown.
	State string `json:"state"`
	// Healthy reports whether the neuron takes new work.
	Healthy bool `json:"healthy"`
	// Stale is true while the neuron is down: its models and GPUs are
	// the last known, as of LastSuccess, and its uptime and free VRAM are
	// not reported (0).
	Stale bool `json:"stale,omitempty"`
	// Hostname is the host the neuron reports in /discovery.
	Hostname string `json:"hostname,omitempty"`
	// UptimeSeconds is the neuron's uptime at its last /health; 0 while
	// the neuron is down.
	UptimeSeconds float64 `json:"uptime_seconds,omitempty"`
	// LastSuccess is when a poll of the neuron last succeeded.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Failures counts the consecutive failed polls.
	Failures int `json:"failures,omitempty"`
	// LastError is the error of the last failed poll; admin view only.
	LastError string `json:"last_error,omitempty"`
	// GPUNote says why the neuron has no usable GPU or no CUDA, when so;
	// in the fleet view, without what names a path or an address.
	GPUNote string `json:"gpu_note,omitempty"`
	// TotalVRAMMB is the VRAM of every GPU, in MiB.
	TotalVRAMMB uint64 `json:"total_vram_mb"`
	// FreeVRAMMB is the VRAM the gateway estimates a new model can use
	// (see route.NeuronState.FreeVRAMMB); 0 while the neuron is down.
	FreeVRAMMB uint64 `json:"free_vram_mb"`
	// GPUs are in the order of the neuron's /discovery.
	GPUs []StatusGPU `json:"gpus"`
	// Models are the models the neuron lists, sorted by id; while the
	// neuron is down, those it last listed, each Stale.
	Models []StatusReplica `json:"models"`
}

// StatusGPU is one GPU of a neuron.
type StatusGPU struct {
	Index   int    `json:"index"`
	Name    string `json:"name,omitempty"`
	TotalMB uint64 `json:"total_mb"`
	// UsedMB is the memory in use: the neuron's live sample, or when it
	// sent none (Sampled false), PlacedMB.
	UsedMB uint64 `json:"used_mb"`
	// PlacedMB is the VRAM the neuron's models declare on the GPU (a
	// model's VRAM split evenly over its devices, or over every device
	// when it names none). Engines that allocate lazily use less.
	PlacedMB uint64 `json:"placed_mb"`
	// UtilizationPct and TemperatureC come from the live sample; 0
	// without one.
	UtilizationPct int  `json:"utilization_pct"`
	TemperatureC   int  `json:"temperature_c,omitempty"`
	Sampled        bool `json:"sampled"`
}

// StatusReplica is one model on one neuron in a StatusNeuron.
type StatusReplica struct {
	ID     string             `json:"id"`
	Status neuron.ModelStatus `json:"status"`
	VRAMMB uint64             `json:"vram_mb"`
	// InFlight and Queued are the neuron's admission counts at its last
	// /health; Gateway is the gateway's own requests in flight now.
	InFlight int `json:"in_flight"`
	Queued   int `json:"queued"`
	Gateway  int `json:"gateway_in_flight"`
	// LoadingSeconds is how long a loading or recovering model has been
	// so.
	LoadingSeconds float64 `json:"loading_seconds,omitempty"`
	// LastUsed is when the gateway last sent the model a request here.
	LastUsed time.Time `json:"last_used,omitzero"`
	// Restarts counts the engine's restarts after a failure.
	Restarts int `json:"restarts,omitempty"`
	// LastError is the engine's last failure; admin view only.
	LastError string `json:"last_error,omitempty"`
	// Stale is true when the neuron is down: Status is what it last
	// reported, not what it is now.
	Stale bool `json:"stale,omitempty"`
	// Ejected is true while the replica is out of rotation for failing
	// again and again (see OutlierConfig), until EjectedUntil.
	Ejected      bool      `json:"ejected,omitempty"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	// Ejections counts the times the gateway ejected the replica.
	Ejections int `json:"ejections,omitempty"`
}

// Model states in a StatusModel, from the best location of the model.
const (
	ModelLoaded        = "loaded"         // ready on a healthy neuron
	ModelLoading       = "loading"        // loading somewhere
	ModelRecovering    = "recovering"     // failed or recovering, restarting
	ModelUnloading     = "unloading"      // being unloaded
	ModelCold          = "cold"           // loaded nowhere; a request loads it
	ModelNotDeployable = "not_deployable" // no known neuron can hold it
)

// StatusModel is one model in a Status.
type StatusModel struct {
	ID string `json:"id"`
	// State is one of ModelLoaded, ModelLoading, ModelRecovering,
	// ModelUnloading, ModelCold and ModelNotDeployable.
	State string `json:"state"`
	// InCatalogue is false for a model only a neuron knows.
	InCatalogue bool `json:"in_catalogue"`
	// VRAMMB is the catalogue's VRAM need; 0 when unknown.
	VRAMMB uint64 `json:"vram_mb,omitempty"`
	// Aliases are the model's other names.
	Aliases []string `json:"aliases,omitempty"`
	// Locations are the neurons that list it (or are loading it).
	Locations []ModelLocation `json:"locations"`
	// FeasibleOn lists the neurons whose hardware can hold it.
	FeasibleOn []string `json:"feasible_on"`
	// PromptCache is how much of its prompts its engines read from their
	// prompt cache since the gateway started; absent until a request of
	// the model reported usage.
	PromptCache *PromptCache `json:"prompt_cache,omitempty"`
	// Replicas is the replica count of a model with replica bounds in the
	// catalogue (min_replicas, max_replicas); absent for the others.
	Replicas *ModelReplicas `json:"replicas,omitempty"`
}

// ModelReplicas is the replica count of a scaled model, as the gateway's
// Scaler counts it (route.CountReplicas, without the gateway's own loads
// the snapshot does not list yet), with its bounds and the gateway's last
// scale decision for it.
type ModelReplicas struct {
	// Ready and Loading are the loaded replicas and those on their way,
	// on neurons that take work.
	Ready   int `json:"ready"`
	Loading int `json:"loading"`
	// Min and Max are the catalogue's bounds (catalogue.Model.ReplicaBounds).
	Min int `json:"min"`
	Max int `json:"max"`
	// LastScale is the gateway's last scale_out or scale_in event for the
	// model among the recent events; absent when there is none.
	LastScale *Event `json:"last_scale,omitempty"`
}

// StatusBudget is the budget of one principal in the admin view.
type StatusBudget struct {
	AccountID string `json:"account_id"`
	KeyID     string `json:"key_id"`
	// Unit is "tokens" or "usd" (micro-dollars in the amounts; FormatAmount
	// shows them as dollars and cents).
	Unit string `json:"unit"`
	// Window is "balance" or "rolling(Ns)".
	Window string `json:"window"`
	// HardCap and Remaining are absent when uncapped.
	HardCap   *int64 `json:"hard_cap,omitempty"`
	Spent     int64  `json:"spent"`
	Reserved  int64  `json:"reserved"`
	Remaining *int64 `json:"remaining,omitempty"`
	// ResetsAt is when a rolling window ends.
	ResetsAt time.Time `json:"resets_at,omitzero"`
	// Error is set when the Provider could not answer.
	Error string `json:"error,omitempty"`
}

// FormatAmount formats an amount of b's unit for people to read: tokens
// as an integer, usd (micro-dollars) as dollars and cents (FormatUSD).
func (b StatusBudget) FormatAmount(v int64) string {
	if b.Unit == entitlements.UnitMicroUSD.String() {
		return FormatUSD(v)
	}
	return strconv.FormatInt(v, 10)
}

// FormatUSD formats micro-dollars as dollars and cents, rounded to the
// nearest cent: "$12.35", "-$0.50", "$0.00"; an amount that is not zero
// but rounds to no cent is "<$0.01" (or "-<$0.01"), so that a small spend
// does not read as none.
func FormatUSD(micro int64) string {
	sign := ""
	u := uint64(micro)
	if micro < 0 {
		sign, u = "-", uint64(-(micro+1))+1 // no overflow at math.MinInt64
	}
	cents := (u + 5_000) / 10_000
	if cents == 0 && u != 0 {
		return sign + "<$0.01"
	}
	return fmt.Sprintf("%s$%d.%02d", sign, cents/100, cents%100)
}

// Status returns the fleet as the status page shows it; admin adds the
// budgets of WithStatusBudgets (one Provider Snapshot each, bounded by ctx
// and 2 s in all) and error details.
func (g *Gateway) Status(ctx context.Context, admin bool) Status {
	f := g.Fleet()
	now := g.clock.Now()
	s := Status{
		GeneratedAt: now,
		FleetAt:     f.At(),
		Health:      g.Health(),
		Admin:       admin,
		Neurons:     make([]StatusNeuron, 0, len(f.Neurons())),
		Models:      []StatusModel{},
		Events:      g.Events(),
	}
	if !admin {
		s.Events = publicEvents(s.Events)
	}
	for _, n := range f.Neurons() {
		s.Neurons = append(s.Neurons, neuronStatus(n, now, admin))
	}
	cat := f.Catalogue()
	if cat == nil {
		cat = g.fleets.catalogue()
	}
	events := s.Events
	for _, e := range g.Models().Data {
		if e.AliasOf != "" {
			continue
		}
		m := StatusModel{ID: e.ID, Aliases: e.Aliases, Locations: e.Locations, FeasibleOn: e.FeasibleOn}
		if p, ok := cat.Lookup(e.ID); ok {
			m.InCatalogue, m.VRAMMB = true, p.VRAMMB
			if p.Scaled() {
				m.Replicas = modelReplicas(f, p, events)
			}
		}
		m.State = modelState(f, m)
		if pc, ok := g.metrics.promptCache(e.ID); ok {
			m.PromptCache = &pc
		}
		s.Models = append(s.Models, m)
	}
	if admin {
		s.Budgets = g.budgets(ctx)
	}
	return s
}

func neuronStatus(n *route.NeuronState, now time.Time, admin bool) StatusNeuron {
	ns := StatusNeuron{
		Name: n.Name, Healthy: n.Available(), LastSuccess: n.LastSuccess, Failures: n.Failures,
		TotalVRAMMB: n.TotalVRAMMB(), FreeVRAMMB: n.FreeVRAMMB(), GPUs: []StatusGPU{}, Models: []StatusReplica{},
	}
	// A neuron that is down shows what it last reported, marked stale:
	// nothing of it is live (uptime, free VRAM, GPU samples).
	stale := !n.Healthy && !n.LastSuccess.IsZero()
	switch {
	case n.LastSuccess.IsZero():
		ns.State = NeuronUnknown
	case !n.Healthy:
		ns.State = NeuronDown
	case n.Draining():
		ns.State = NeuronDraining
	default:
		ns.State = NeuronOK
	}
	if admin && n.LastError != nil {
		ns.LastError = n.LastError.Error()
	}
	if stale {
		ns.Stale, ns.FreeVRAMMB = true, 0
	}
	samples := map[int]neuron.DeviceSample{}
	if h := n.Health; h != nil && !stale {
		ns.UptimeSeconds = h.UptimeSeconds
		for _, d := range h.Devices {
			samples[d.Index] = d
		}
	}
	if d := n.Discovery; d != nil {
		ns.Hostname = d.Hostname
		ns.GPUNote = cmp.Or(d.CUDAUnavailableReason, d.GPUUnavailableReason)
		if !admin && internalDetail.MatchString(ns.GPUNote) {
			ns.GPUNote = "no usable GPU (detail in the admin view)"
		}
		for _, dev := range d.Devices {
			gs := StatusGPU{Index: dev.Index, Name: dev.Name, TotalMB: dev.TotalMB, PlacedMB: placedMB(n, dev.Index, len(d.Devices))}
			gs.UsedMB = gs.PlacedMB
			if smp, ok := samples[dev.Index]; ok {
				gs.UsedMB, gs.UtilizationPct, gs.TemperatureC, gs.Sampled = smp.UsedMB, smp.UtilizationPct, smp.TemperatureC, true
			}
			ns.GPUs = append(ns.GPUs, gs)
		}
	}
	for i := range n.Models {
		m := &n.Models[i]
		rm := StatusReplica{
			ID: m.ID, Status: m.Status, VRAMMB: m.VRAMUsedMB, InFlight: m.InFlight, Queued: m.QueueDepth,
			Gateway: m.Live.InFlight(), LoadingSeconds: loadingSeconds(n, m, now), LastUsed: m.LastUse(), Restarts: m.Restarts,
			Stale: stale, Ejections: m.Ejection.Count(),
		}
		if m.Ejected(now) {
			rm.Ejected, rm.EjectedUntil = true, m.Ejection.Until()
		}
		if stale {
			rm.LoadingSeconds = 0
		}
		if admin {
			rm.LastError = m.LastError
		}
		ns.Models = append(ns.Models, rm)
	}
	return ns
}

// placedMB is the VRAM of the models placed on device index, each model's
// VRAM split evenly over its devices (over every device when it names
// none).
func placedMB(n *route.NeuronState, index, devices int) uint64 {
	var mb uint64
	for i := range n.Models {
		m := &n.Models[i]
		switch {
		case len(m.Devices) == 0 && devices > 0:
			mb += m.VRAMUsedMB / uint64(devices)
		case slices.Contains(m.Devices, index):
			mb += m.VRAMUsedMB / uint64(len(m.Devices))
		}
	}
	return mb
}

// modelReplicas counts the replicas of the scaled model p in f, with
// its last scale event in events (newest first).
func modelReplicas(f *route.Fleet, p catalogue.Model, events []Event) *ModelReplicas {
	r := route.CountReplicas(f, nil, p.ID)
	lo, hi := p.ReplicaBounds()
	mr := &ModelReplicas{Ready: r.Ready, Loading: r.Loading, Min: lo, Max: hi}
	for _, e := range events {
		if e.Model == p.ID && (e.Kind == EventScaleOut || e.Kind == EventScaleIn) {
			mr.LastScale = &e
			break
		}
	}
	return mr
}

// modelState sums up the locations of a model.
func modelState(f *route.Fleet, m StatusModel) string {
	rank := map[neuron.ModelStatus]int{neuron.StatusUnloading: 1, neuron.StatusFailed: 2, neuron.StatusRecovering: 2, neuron.StatusLoading: 3}
	best := 0
	for _, l := range m.Locations {
		r := rank[l.Status]
		if l.Status == neuron.StatusLoaded {
			r = 0
			if l.Healthy {
				r = 4
			}
		}
		best = max(best, r)
	}
	switch best {
	case 4:
		return ModelLoaded
	case 3:
		return ModelLoading
	case 2:
		return ModelRecovering
	case 1:
		return ModelUnloading
	}
	if len(m.FeasibleOn) > 0 || !m.InCatalogue {
		return ModelCold
	}
	for _, n := range f.Neurons() {
		if n.Discovery == nil {
			return ModelCold // its hardware is not known yet
		}
	}
	return ModelNotDeployable
}

// budgets returns the budgets of the principals of WithStatusBudgets.
func (g *Gateway) budgets(ctx context.Context) []StatusBudget {
	ps := g.settings().ops.budgets
	if len(ps) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, budgetTimeout)
	defer cancel()
	out := make([]StatusBudget, 0, len(ps))
	for _, p := range ps {
		b := StatusBudget{AccountID: p.AccountID, KeyID: cmp.Or(p.KeyID, p.AccountID), Unit: p.Unit.String()}
		if g.cfg.provider == nil {
			b.Error = "no entitlements provider"
			out = append(out, b)
			continue
		}
		snap, err := g.cfg.provider.Snapshot(ctx, p)
		if err != nil {
			b.Error = strings.TrimPrefix(err.Error(), "entitlements: ")
			out = append(out, b)
			continue
		}
		b.Window = snap.Window.String()
		b.Spent, b.Reserved, b.ResetsAt = int64(snap.Spent), int64(snap.Reserved), snap.ResetsAt
		if snap.HardCap != nil {
			hc := int64(*snap.HardCap)
			rem, _ := snap.Remaining()
			r := int64(rem)
			b.HardCap, b.Remaining = &hc, &r
		}
		out = append(out, b)
	}
	return out
}

// statusAccess decides what the caller of the status page sees: the admin
// view, the fleet view, or an error (ErrUnauthorized, or the Provider's).
func (g *Gateway) statusAccess(r *http.Request) (admin bool, err error) {
	key := statusKey(r)
	if key != "" && g.isAdminKey(key) {
		return true, nil
	}
	if r.URL.Query().Get("admin") != "" && len(g.settings().ops.adminKeys) > 0 {
		return false, ErrUnauthorized
	}
	if g.settings().ops.publicStatus || g.cfg.provider == nil || !g.settings().requireAuth {
		return false, nil
	}
	if key == "" {
		return false, ErrUnauthorized
	}
	p, err := g.cfg.provider.Resolve(r.Context(), key)
	switch {
	case err == nil && !p.IsAnonymous():
		return false, nil
	case err == nil, errors.Is(err, entitlements.ErrInvalidKey):
		return false, ErrUnauthorized
	case r.Context().Err() != nil:
		return false, r.Context().Err()
	}
	var unavail *entitlements.UnavailableError
	if !errors.As(err, &unavail) {
		err = &entitlements.UnavailableError{Err: err}
	}
	return false, err
}

// statusKey returns the API key of r: "Authorization: Bearer", else
// "x-api-key", else the password of HTTP Basic auth (what a browser
// sends).
func statusKey(r *http.Request) string {
	if k := apiKey(r); k != "" {
		return k
	}
	if _, pw, ok := r.BasicAuth(); ok {
		return strings.TrimSpace(pw)
	}
	return ""
}

// isAdminKey reports whether key is one of WithAdminKeys, in time that
// does not depend on which digest matches.
func (g *Gateway) isAdminKey(key string) bool {
	d := entitlements.KeyDigest(key)
	found := 0
	for _, a := range g.settings().ops.adminKeys {
		found |= subtle.ConstantTimeCompare(d[:], a[:])
	}
	return found == 1
}

// statusHeaders are the headers of every status answer: never cached
// (budgets), never framed, no scripts.
func statusHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
}

// serveStatusJSON answers GET /status.json.
func (g *Gateway) serveStatusJSON(w http.ResponseWriter, r *http.Request) {
	statusHeaders(w.Header())
	admin, err := g.statusAccess(r)
	if err != nil {
		writeError(w, err, g.cfg.retryAfter)
		return
	}
	writeJSON(w, http.StatusOK, g.Status(r.Context(), admin))
}

// statusPage is what the status template renders.
type statusPage struct {
	Status
	// Refresh is the reload period in seconds; 0: none.
	Refresh int
	// AdminLink offers the admin view to a caller without it.
	AdminLink bool
}

// errorPage is what the status error template renders.
type errorPage struct {
	Status  int
	Title   string
	Message string
}

// serveStatus answers GET /status: the HTML page.
func (g *Gateway) serveStatus(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	statusHeaders(h)
	admin, err := g.statusAccess(r)
	if err != nil {
		he := httpErrorFor(err, g.cfg.retryAfter)
		if he.status == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", `Basic realm="helexa status", charset="UTF-8"`)
			he.msg = "This page needs an API key: give it as the password (any user name)."
		}
		if he.retryAfter > 0 {
			h.Set("Retry-After", strconv.FormatInt(oaierr.RetryAfterSeconds(he.retryAfter), 10))
		}
		g.renderStatus(w, he.status, "error.html", errorPage{Status: he.status, Title: http.StatusText(he.status), Message: he.msg})
		return
	}
	refresh := int(DefaultStatusRefresh / time.Second)
	if v := r.URL.Query().Get("refresh"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			refresh = min(n, 3600)
		}
	}
	page := statusPage{Status: g.Status(r.Context(), admin), Refresh: refresh, AdminLink: !admin && len(g.settings().ops.adminKeys) > 0}
	g.renderStatus(w, http.StatusOK, "status.html", page)
}

// renderStatus renders a template into a buffer first, so that a template
// error is a clean 500 rather than half a page.
func (g *Gateway) renderStatus(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := statusTemplates.ExecuteTemplate(&buf, name, data); err != nil {
		g.log.Error("cortex: rendering the status page", "template", name, "err", err)
		writeError(w, errors.New("cortex: rendering the status page"), 0)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Template helpers.

// pct is used/total in whole percent, within [0, 100].
func pct(used, total uint64) int {
	if total == 0 {
		return 0
	}
	return int(min(used*100/total, 100))
}

// formatRatio formats a ratio in [0, 1] as a percentage with one
// decimal: "93.8%".
func formatRatio(r float64) string {
	return strconv.FormatFloat(r*100, 'f', 1, 64) + "%"
}

// formatMiB formats MiB as "512 MiB" or "23.5 GiB".
func formatMiB(mb uint64) string {
	if mb < 1024 {
		return strconv.FormatUint(mb, 10) + " MiB"
	}
	return strconv.FormatFloat(float64(mb)/1024, 'f', 1, 64) + " GiB"
}

// ago formats how long before now t was: "4s", "3m", "2h", "5d"; "never"
// for the zero time.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return formatSeconds(now.Sub(t).Seconds())
}

// left formats how long after now t is, as formatSeconds does.
func left(now, t time.Time) string { return formatSeconds(t.Sub(now).Seconds()) }

// formatSeconds formats a number of seconds like kubectl's AGE column.
func formatSeconds(s float64) string {
	d := time.Duration(max(s, 0) * float64(time.Second))
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}
