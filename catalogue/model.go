package catalogue

import (
	"maps"
	"slices"
	"time"
)

// Model is one [[models]] entry of models.toml.
//
// A Model from a Catalogue shares its slices and its Cost with the
// catalogue: treat it as read-only, or Clone it first.
type Model struct {
	// ID is the canonical model id clients send in "model". Required.
	ID string `toml:"id" json:"id"`
	// Engine names the neuron engine template that runs it (empty: the
	// neuron's default).
	Engine string `toml:"engine" json:"engine,omitempty"`
	// Source is what the engine loads (path, repository); empty means ID.
	Source string `toml:"source" json:"source,omitempty"`
	// VRAMMB is the VRAM the model needs in MiB, summed over its devices.
	VRAMMB uint64 `toml:"vram_mb" json:"vram_mb"`
	// MinDevices is the number of GPUs it needs (default 1 when VRAMMB > 0,
	// else 0; set in a Catalogue). A model may spread over more devices.
	MinDevices int `toml:"min_devices" json:"min_devices,omitempty"`
	// MinDeviceVRAMMB is the smallest per-device VRAM (MiB) it can use:
	// a device with less total VRAM does not count toward MinDevices.
	// Default 0, any device.
	MinDeviceVRAMMB uint64 `toml:"min_device_vram_mb" json:"min_device_vram_mb,omitempty"`
	// PinnedOn names neurons where the model is pinned: placed there first
	// and never evicted there. It is a preference, not a restriction: the
	// model may run on other neurons when its pinned ones cannot take it.
	PinnedOn []string `toml:"pinned_on" json:"pinned_on,omitempty"`
	// ResidencyPriority protects a resident model from eviction by a model
	// of lower priority. Zero means the default: 100, or 1000 when PinnedOn
	// is set; use 1 for the lowest priority. Always set in a Catalogue.
	ResidencyPriority int `toml:"residency_priority" json:"residency_priority"`
	// Capabilities such as "chat", "completions", "embeddings", "tools",
	// "vision". Empty means unknown: Supports then allows everything.
	Capabilities []string `toml:"capabilities" json:"capabilities,omitempty"`
	// Limit holds the token limits; zero fields are unknown. Limit.Context
	// is also the context cortex asks the neuron to start the engine with.
	Limit Limit `toml:"limit" json:"limit,omitzero"`
	// EngineArgs are the model's own engine arguments, added to and
	// overriding its engine template's command on the neuron.
	EngineArgs EngineArgs `toml:"engine_args" json:"engine_args,omitzero"`
	// Cost is the price in USD per 1M tokens; nil means "not priced".
	Cost *Cost `toml:"cost" json:"cost,omitempty"`
	// IdleUnload, when positive, has cortex unload the model from a
	// neuron where it has served nothing for that long (counted from its
	// load when it has served nothing yet); never on a neuron where it is
	// pinned. Written idle_unload = "10m" in models.toml; 0 (the default)
	// keeps the model loaded until something evicts it.
	IdleUnload time.Duration `toml:"-" json:"idle_unload_ns,omitempty"`
	// MinReplicas is how many replicas of the model cortex keeps loaded
	// over the fleet: it places them when it starts and never scales in
	// below it. 0 (the default) keeps none loaded.
	MinReplicas int `toml:"min_replicas" json:"min_replicas,omitempty"`
	// MaxReplicas is the most replicas cortex scales the model out to
	// when its replicas are busy; 0 (the default) means MinReplicas. A
	// model with neither set is never scaled: it is loaded where a request
	// needs it, as one replica (see Scaled).
	MaxReplicas int `toml:"max_replicas" json:"max_replicas,omitempty"`
}

// Scaled reports whether cortex scales the model's replicas: MinReplicas
// or MaxReplicas is set.
func (m Model) Scaled() bool { return m.MinReplicas > 0 || m.MaxReplicas > 0 }

// ReplicaBounds returns the fewest and the most replicas of the model
// cortex keeps: MinReplicas, and MaxReplicas or, when it is 0,
// MinReplicas.
func (m Model) ReplicaBounds() (lo, hi int) {
	return m.MinReplicas, max(m.MaxReplicas, m.MinReplicas)
}

// Limit holds a model's token limits. Zero means unknown.
type Limit struct {
	// Context is the context window in tokens: prompt and output together.
	Context int `toml:"context" json:"context,omitempty"`
	// Input is the most prompt tokens the model accepts.
	Input int `toml:"input" json:"input,omitempty"`
	// Output is the most tokens the model generates in one answer.
	Output int `toml:"output" json:"output,omitempty"`
}

// EngineArgs are a model's own engine arguments, [models.engine_args] in
// models.toml (see the package documentation). Each value is one argv
// element, passed to the engine as written: no shell, no placeholders.
type EngineArgs struct {
	// Extra are arguments appended to the template's command, in order.
	Extra []string `toml:"extra" json:"extra,omitempty"`
	// Set maps a flag of the template's command to a new value; a flag the
	// template lacks is appended with its value.
	Set map[string]string `toml:"set" json:"set,omitempty"`
}

// IsZero reports whether a holds no argument.
func (a EngineArgs) IsZero() bool { return len(a.Extra) == 0 && len(a.Set) == 0 }

// Cost is a price in USD per 1M tokens. Zero means free. CacheRead and
// CacheWrite are nil when not priced separately.
//
// Catalogues accept prices from 0 to MaxPrice; the pricing methods clamp
// anything else into that range (NaN counts as MaxPrice), so a hand-built
// Cost can never under-charge through a bad value.
type Cost struct {
	// Input is the price of a prompt token.
	Input float64 `toml:"input" json:"input"`
	// Output is the price of a generated token.
	Output float64 `toml:"output" json:"output"`
	// CacheRead is the price of a prompt token read from the prompt cache;
	// nil means Input.
	CacheRead *float64 `toml:"cache_read" json:"cache_read,omitempty"`
	// CacheWrite is the price of a prompt token written to the prompt
	// cache; nil means Input.
	CacheWrite *float64 `toml:"cache_write" json:"cache_write,omitempty"`
}

// PinnedTo reports whether the model is pinned on the named neuron.
func (m Model) PinnedTo(neuron string) bool {
	return slices.Contains(m.PinnedOn, neuron)
}

// Supports reports whether the model lists the capability, or lists no
// capabilities at all (unknown, so not restricted).
func (m Model) Supports(capability string) bool {
	return len(m.Capabilities) == 0 || slices.Contains(m.Capabilities, capability)
}

// MicroUSD prices a request in micro-dollars, as Cost.MicroUSD does. ok is
// false when the model is not priced (Cost is nil).
func (m Model) MicroUSD(inputTokens, outputTokens int64) (microUSD int64, ok bool) {
	if m.Cost == nil {
		return 0, false
	}
	return m.Cost.MicroUSD(inputTokens, outputTokens), true
}

// Clone returns a deep copy of m that shares nothing with it.
func (m Model) Clone() Model {
	m.PinnedOn = slices.Clone(m.PinnedOn)
	m.Capabilities = slices.Clone(m.Capabilities)
	m.EngineArgs.Extra = slices.Clone(m.EngineArgs.Extra)
	m.EngineArgs.Set = maps.Clone(m.EngineArgs.Set)
	if m.Cost != nil {
		c := m.Cost.clone()
		m.Cost = &c
	}
	return m
}

// clone returns a copy of c that shares no pointer with it.
func (c Cost) clone() Cost {
	if c.CacheRead != nil {
		v := *c.CacheRead
		c.CacheRead = &v
	}
	if c.CacheWrite != nil {
		v := *c.CacheWrite
		c.CacheWrite = &v
	}
	return c
}
