package catalogue

// Model is one [[models]] entry of models.toml.
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
	// else 0).
	MinDevices int `toml:"min_devices" json:"min_devices,omitempty"`
	// MinDeviceVRAMMB is the smallest per-device VRAM (MiB) it can use.
	MinDeviceVRAMMB uint64 `toml:"min_device_vram_mb" json:"min_device_vram_mb,omitempty"`
	// PinnedOn names neurons where the model is pinned: placed there first
	// and never evicted there.
	PinnedOn []string `toml:"pinned_on" json:"pinned_on,omitempty"`
	// ResidencyPriority protects a resident model from eviction by a model
	// of lower priority. Default 100, or 1000 when PinnedOn is set.
	ResidencyPriority int `toml:"residency_priority" json:"residency_priority"`
	// Capabilities such as "chat", "completions", "embeddings", "tools", "vision".
	Capabilities []string `toml:"capabilities" json:"capabilities,omitempty"`
	// Limit holds the token limits; zero fields are unknown.
	Limit Limit `toml:"limit" json:"limit,omitzero"`
	// Cost is the price in USD per 1M tokens; nil means "not priced".
	Cost *Cost `toml:"cost" json:"cost,omitempty"`
}

// Limit holds a model's token limits. Zero means unknown.
type Limit struct {
	Context int `toml:"context" json:"context,omitempty"`
	Input   int `toml:"input" json:"input,omitempty"`
	Output  int `toml:"output" json:"output,omitempty"`
}

// Cost is a price in USD per 1M tokens. Zero means free. CacheRead and
// CacheWrite are nil when not priced separately.
type Cost struct {
	Input      float64  `toml:"input" json:"input"`
	Output     float64  `toml:"output" json:"output"`
	CacheRead  *float64 `toml:"cache_read" json:"cache_read,omitempty"`
	CacheWrite *float64 `toml:"cache_write" json:"cache_write,omitempty"`
}
