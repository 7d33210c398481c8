// Package catalogue is the model catalogue of a helexa fleet: the models
// cortex can serve, what each needs to run, what it costs, and the aliases
// clients may use for them. It reads models.toml, answers "which model is
// this name?" on the request path, and decides whether a neuron's GPUs can
// hold a model.
//
// # File format
//
// models.toml holds an array of [[models]] tables and one [aliases] table
// (testdata/models.toml in the repository is a commented example):
//
//	[[models]]
//	id = "qwen2.5-32b-instruct"        # required, unique
//	engine = "vllm"                    # neuron engine template; "" = default
//	source = "Qwen/Qwen2.5-32B-Instruct-AWQ"  # what the engine loads; "" = id
//	vram_mb = 24576                    # MiB, summed over its devices
//	min_devices = 2                    # default 1 when vram_mb > 0
//	min_device_vram_mb = 16384         # per-device floor (total MiB)
//	pinned_on = ["gpu-01"]             # neuron names
//	residency_priority = 1000          # default 100, 1000 when pinned_on is set
//	capabilities = ["chat", "tools"]
//	idle_unload = "10m"                # cortex unloads it after 10m unused
//	limit = { context = 32768, input = 0, output = 8192 }  # tokens; 0 = unknown
//	cost = { input = 0.40, output = 1.20, cache_read = 0.10, cache_write = 0.50 }
//
//	[aliases]
//	gpt-4o-mini = "qwen2.5-32b-instruct"
//
// Decoding is strict: a key the format does not define is an error that
// gives its line, and so is a value of the wrong type. Parse also rejects
// a model without an id, a duplicate id, a negative number, a price that is
// not a finite number in [0, MaxPrice], a name (id, alias, neuron,
// capability) that is empty or holds white space or control characters, an
// alias to an unknown model, an alias that reuses a model id, and an alias
// to an alias. Each problem is an *Error naming its line and its entry,
// "models[3] (llama-3-8b)" (counting from 0) or "aliases.fast"; Parse
// reports them all, joined, not only the first.
//
// # Decisions
//
// Cost: an absent cost table means "not priced" (Model.Cost is nil); a cost
// table with zero prices means "free". Prices are USD per 1M tokens, and a
// cost in micro-dollars is tokens times that price, exactly (one token at
// $1 per 1M is one micro-dollar), with any fraction rounded up so a budget
// is never under-charged. cache_read and cache_write default to the input
// price. cortex charges the prompt tokens an engine reports it read from
// its prompt (KV) cache (usage.prompt_tokens_details.cached_tokens, as
// OpenAI, vLLM and llama-server report them) at cache_read, the rest of
// the prompt at input; OpenAI-compatible engines report no cache writes,
// so cache_write is for providers that do.
//
// Aliases resolve in one hop: an alias names a model id, never another
// alias, so Resolve is a single map lookup and a chain cannot loop.
//
// Pinning: pinned_on is a placement preference and an eviction protection,
// not a restriction. A pinned model is placed on its pinned neurons first
// (FeasibleOn grades them FitsPinned, above Fits) and is never evicted
// there, but it may run on another neuron when its pinned neurons cannot
// take it (down, full, or too small). Names in pinned_on are not checked
// against the fleet here: the catalogue does not know the fleet.
//
// Defaults: a zero residency_priority is the default, 100, or 1000 for a
// pinned model, so 1 is the lowest priority one can set. A model with
// vram_mb > 0 needs at least one device. Empty capabilities mean unknown:
// Model.Supports then allows everything.
//
// Feasibility: Feasible counts the devices whose VRAM reaches
// min_device_vram_mb, and asks for at least min_devices of them holding
// vram_mb together. It says nothing of the engine's own constraints (vLLM
// wants a power-of-two tensor-parallel size, for example): size vram_mb and
// min_devices for the engine.
//
// # Concurrency
//
// A Catalogue is immutable once built and safe for concurrent use. To
// change the catalogue, build a new one and swap the pointer (for example
// with atomic.Pointer). Resolve does not allocate.
package catalogue
