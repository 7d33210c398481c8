package cortex

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// ModelList is the answer of GET /v1/models: the OpenAI list shape, whose
// entries carry the fleet's view of each model besides the OpenAI fields.
type ModelList struct {
	// Object is "list".
	Object string `json:"object"`
	// Data has the catalogue's models sorted by id, then the models
	// resident on some neuron that the catalogue does not list, then one
	// entry per alias, sorted by alias.
	Data []ModelEntry `json:"data"`
}

// ModelEntry is one model, or one alias, in a ModelList.
type ModelEntry struct {
	// ID is the model id, or the alias.
	ID string `json:"id"`
	// Object is "model".
	Object string `json:"object"`
	// Created is when the model last became loaded on the first neuron
	// that has it loaded (Unix seconds); 0 when it is loaded nowhere.
	Created int64 `json:"created"`
	// OwnedBy is "helexa".
	OwnedBy string `json:"owned_by"`
	// AliasOf is the model id an alias entry points to; empty for a model.
	AliasOf string `json:"alias_of,omitempty"`
	// Loaded reports whether some available neuron has the model loaded.
	Loaded bool `json:"loaded"`
	// Locations lists the neurons that list the model, in name order.
	Locations []ModelLocation `json:"locations"`
	// FeasibleOn lists the neurons whose hardware can hold a catalogue
	// model, healthy or not, in name order.
	FeasibleOn []string `json:"feasible_on"`
	// Limit holds the token limits; absent when unknown.
	Limit *catalogue.Limit `json:"limit,omitempty"`
	// Cost is the price in USD per 1M tokens; absent when not priced.
	Cost *catalogue.Cost `json:"cost,omitempty"`
	// Capabilities such as "chat" or "embeddings"; absent when unknown.
	Capabilities []string `json:"capabilities,omitempty"`
	// Aliases are the other names of a model, sorted.
	Aliases []string `json:"aliases,omitempty"`
}

// ModelLocation is one neuron that lists a model.
type ModelLocation struct {
	Neuron string             `json:"neuron"`
	Status neuron.ModelStatus `json:"status"`
	VRAMMB uint64             `json:"vram_mb"`
	// Healthy is false when the neuron does not take new work.
	Healthy bool `json:"healthy"`
	// LoadingSeconds is, while the model is loading or recovering, how
	// long it has been so, to the second; 0 otherwise. A load the gateway
	// has just asked for is listed as loading before the neuron's next
	// poll shows it.
	LoadingSeconds float64 `json:"loading_seconds,omitempty"`
}

// Models returns the catalogue joined with the latest fleet snapshot, as
// GET /v1/models answers it.
func (g *Gateway) Models() ModelList {
	f := g.Fleet()
	cat := f.Catalogue()
	if cat == nil {
		cat = g.fleets.catalogue()
	}
	byTarget := make(map[string][]string)
	aliases := cat.Aliases()
	for _, name := range slices.Sorted(maps.Keys(aliases)) {
		byTarget[aliases[name]] = append(byTarget[aliases[name]], name)
	}
	list := ModelList{Object: "list", Data: []ModelEntry{}}
	entries := make(map[string]ModelEntry)
	now, loads := g.clock.Now(), g.loads.Loads()
	for _, m := range cat.Models() {
		e := modelEntry(f, m.ID, now, loads)
		for _, n := range f.Neurons() {
			if n.Discovery != nil && catalogue.Feasible(m, n.DeviceVRAMMB()) {
				e.FeasibleOn = append(e.FeasibleOn, n.Name)
			}
		}
		if m.Limit != (catalogue.Limit{}) {
			l := m.Limit
			e.Limit = &l
		}
		e.Cost = m.Cost
		e.Capabilities = m.Capabilities
		e.Aliases = byTarget[m.ID]
		entries[m.ID] = e
		list.Data = append(list.Data, e)
	}
	for _, id := range f.ModelIDs() {
		if _, ok := cat.Lookup(id); ok {
			continue
		}
		e := modelEntry(f, id, now, loads)
		for _, n := range f.Neurons() {
			if m := n.Model(id); m != nil {
				if m.Limit != (neuron.Limit{}) && e.Limit == nil {
					e.Limit = &catalogue.Limit{Context: m.Limit.Context, Input: m.Limit.Input, Output: m.Limit.Output}
				}
				if e.Capabilities == nil {
					e.Capabilities = slices.Clone(m.Capabilities)
				}
			}
		}
		list.Data = append(list.Data, e)
	}
	for _, name := range slices.Sorted(maps.Keys(aliases)) {
		e := entries[aliases[name]]
		e.AliasOf, e.ID, e.Aliases = e.ID, name, nil
		list.Data = append(list.Data, e)
	}
	return list
}

// modelEntry returns the entry of id with its locations at the time now,
// a load in progress among them even when the snapshot does not show it
// yet.
func modelEntry(f *route.Fleet, id string, now time.Time, loads []route.Load) ModelEntry {
	e := ModelEntry{ID: id, Object: "model", OwnedBy: "helexa", Locations: []ModelLocation{}, FeasibleOn: []string{}}
	for _, n := range f.Neurons() {
		m := n.Model(id)
		if m == nil {
			for _, l := range loads {
				if l.Model == id && l.Neuron == n.Name {
					e.Locations = append(e.Locations, ModelLocation{Neuron: n.Name, Status: neuron.StatusLoading,
						VRAMMB: resolvedVRAM(f, id), Healthy: n.Available(), LoadingSeconds: wholeSeconds(now.Sub(l.Since))})
				}
			}
			continue
		}
		e.Locations = append(e.Locations, ModelLocation{Neuron: n.Name, Status: m.Status, VRAMMB: m.VRAMUsedMB, Healthy: n.Available(),
			LoadingSeconds: loadingSeconds(n, m, now)})
		if m.Status == neuron.StatusLoaded && n.Available() {
			if !e.Loaded && !m.LoadedAt.IsZero() {
				e.Created = m.LoadedAt.Unix()
			}
			e.Loaded = true
		}
	}
	return e
}

// loadingSeconds is how long m has been loading or recovering at the time
// now: the neuron's count at the last poll plus the time since, else the
// time since LoadingSince; 0 for a model in another state.
func loadingSeconds(n *route.NeuronState, m *route.ModelState, now time.Time) float64 {
	if m.Status != neuron.StatusLoading && m.Status != neuron.StatusRecovering {
		return 0
	}
	switch {
	case m.LoadingSeconds > 0 && !n.LastSuccess.IsZero():
		return wholeSeconds(time.Duration(m.LoadingSeconds*float64(time.Second)) + now.Sub(n.LastSuccess))
	case !m.LoadingSince.IsZero():
		return wholeSeconds(now.Sub(m.LoadingSince))
	}
	return 0
}

// wholeSeconds is d in whole seconds, never negative.
func wholeSeconds(d time.Duration) float64 {
	return float64(max(d, 0) / time.Second)
}

// ModelsFor returns Models as the key of p sees it: only the models and
// aliases its allow-list lets it use. A model entry is listed when the
// allow-list allows its id, an alias entry when it allows the alias or the
// model it points to (as the request path does).
func (g *Gateway) ModelsFor(p entitlements.Principal) ModelList {
	list := g.Models()
	allow := p.Limits.Models
	if allow.IsZero() {
		return list
	}
	list.Data = slices.DeleteFunc(list.Data, func(e ModelEntry) bool {
		return !allow.Allows(e.ID) && (e.AliasOf == "" || !allow.Allows(e.AliasOf))
	})
	return list
}

// serveModels answers GET /v1/models, in Anthropic's shape when the
// request carries anthropic-version.
func (g *Gateway) serveModels(w http.ResponseWriter, r *http.Request) {
	p, err := g.principal(r)
	if err != nil {
		g.writeModelsError(w, r, err)
		return
	}
	list := g.ModelsFor(p)
	if isAnthropic(r) {
		writeJSON(w, http.StatusOK, anthropicModelList(list))
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// serveModel answers GET /v1/models/{id}: the entry of ModelsFor with that
// id (a model or an alias), in OpenAI's shape with the fleet's fields, or
// in Anthropic's when the request carries anthropic-version. A model the
// key may not use answers 404 model_not_found, as one that does not
// exist: OpenAI does the same, and it keeps a key from probing the
// catalogue. Ids may hold slashes ("org/model").
func (g *Gateway) serveModel(w http.ResponseWriter, r *http.Request) {
	p, err := g.principal(r)
	if err != nil {
		g.writeModelsError(w, r, err)
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/v1/models/") // unescaped: %2F is a slash
	for _, e := range g.ModelsFor(p).Data {
		if e.ID != id {
			continue
		}
		if isAnthropic(r) {
			writeJSON(w, http.StatusOK, anthropicModel(e))
			return
		}
		writeJSON(w, http.StatusOK, e)
		return
	}
	g.writeModelsError(w, r, fmt.Errorf("%w: %q", route.ErrModelNotFound, id))
}

// writeModelsError writes err in the envelope of the request's API.
func (g *Gateway) writeModelsError(w http.ResponseWriter, r *http.Request, err error) {
	if !isAnthropic(r) {
		writeError(w, err, g.cfg.retryAfter)
		return
	}
	m := newMessagesWriter(w, g.clock, g.cfg.pingInterval, g.log)
	writeError(m, err, g.cfg.retryAfter)
	m.end(false)
}

// isAnthropic reports whether r comes from an Anthropic client: it carries
// the anthropic-version header, which Anthropic's SDKs always send.
func isAnthropic(r *http.Request) bool { return r.Header.Get("anthropic-version") != "" }

// AnthropicModel is a model in Anthropic's shape (GET /v1/models/{id}
// with anthropic-version).
type AnthropicModel struct {
	// Type is "model".
	Type string `json:"type"`
	// ID is the model id, or the alias.
	ID string `json:"id"`
	// DisplayName is the id: the catalogue has no other name.
	DisplayName string `json:"display_name"`
	// CreatedAt is ModelEntry.Created in RFC 3339 (the Unix epoch for a
	// model loaded nowhere).
	CreatedAt string `json:"created_at"`
}

// AnthropicModelList is GET /v1/models in Anthropic's shape. It is always
// one page: HasMore is false, and the paging parameters are ignored.
type AnthropicModelList struct {
	Data    []AnthropicModel `json:"data"`
	HasMore bool             `json:"has_more"`
	// FirstID and LastID are the ids of the first and last entries; null
	// when the list is empty.
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
}

func anthropicModel(e ModelEntry) AnthropicModel {
	return AnthropicModel{Type: "model", ID: e.ID, DisplayName: e.ID,
		CreatedAt: time.Unix(e.Created, 0).UTC().Format(time.RFC3339)}
}

func anthropicModelList(l ModelList) AnthropicModelList {
	out := AnthropicModelList{Data: make([]AnthropicModel, len(l.Data))}
	for i, e := range l.Data {
		out.Data[i] = anthropicModel(e)
	}
	if n := len(out.Data); n > 0 {
		out.FirstID, out.LastID = &out.Data[0].ID, &out.Data[n-1].ID
	}
	return out
}

// Health statuses of GET /health.
const (
	HealthOK           = "ok"
	HealthDegraded     = "degraded"
	HealthUnavailable  = "unavailable"
	HealthShuttingDown = "shutting_down"
)

// HealthReport is the answer of the public GET /health.
type HealthReport struct {
	// Status is HealthOK when every neuron takes work, HealthDegraded when
	// some do, HealthUnavailable when none does (or none is configured),
	// and HealthShuttingDown once Shutdown has begun.
	Status string `json:"status"`
	// Neurons counts the configured neurons and those taking work.
	Neurons NeuronCounts `json:"neurons"`
}

// NeuronCounts counts neurons in a HealthReport.
type NeuronCounts struct {
	Total   int `json:"total"`
	Healthy int `json:"healthy"`
}

// Health returns the gateway's health as GET /health reports it.
func (g *Gateway) Health() HealthReport {
	f := g.Fleet()
	h := HealthReport{Neurons: NeuronCounts{Total: len(f.Neurons()), Healthy: f.Available()}}
	switch {
	case g.closing.Load():
		h.Status = HealthShuttingDown
	case h.Neurons.Healthy == 0:
		h.Status = HealthUnavailable
	case h.Neurons.Healthy < h.Neurons.Total:
		h.Status = HealthDegraded
	default:
		h.Status = HealthOK
	}
	return h
}

// serveHealth answers GET /health: 200 when ok or degraded, 503 when
// unavailable or shutting down, so that a load balancer skips the gateway.
func (g *Gateway) serveHealth(w http.ResponseWriter, r *http.Request) {
	h := g.Health()
	status := http.StatusOK
	if h.Status == HealthUnavailable || h.Status == HealthShuttingDown {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// resolvedVRAM returns the VRAM the profile of id needs: 0 for a model
// the fleet does not know.
func resolvedVRAM(f *route.Fleet, id string) uint64 {
	p, _ := f.Resolve(id)
	return p.VRAMMB
}
