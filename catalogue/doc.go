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
//	min_replicas = 1                   # replicas kept loaded over the fleet
//	max_replicas = 4                   # most replicas when busy; 0 = min_replicas
//	limit = { context = 32768, input = 0, output = 8192 }  # tokens; 0 = unknown
//	cost = { input = 0.40, output = 1.20, cache_read = 0.10, cache_write = 0.50 }
//
//	[models.engine_args]               # this model's own engine arguments
//	extra = ["--enforce-eager"]        # appended to the template's command
//	set = { "--gpu-memory-utilization" = "0.85" }  # a template flag's new value
//
//	[aliases]
//	gpt-4o-mini = "qwen2.5-32b-instruct"
//
// Decoding is strict: a key the format does not define is an error that
// gives its line, and so is a value of the wrong type. Parse also rejects
// a model without an id, a duplicate id, a negative number, a price that is
// not a finite number in [0, MaxPrice], a max_replicas under
// min_replicas, a name (id, alias, neuron,
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
// Context: limit.context is the context window of one request, prompt and
// output together. cortex refuses a prompt estimated over it, and starts
// the model's engine with it (the neuron template's {context}; see package
// neuron/engine for how it relates to llama-server's parallel slots). A
// model without one is started on the engine's default, which for
// llama-server and vLLM is the model's whole trained context.
//
// VRAM: vram_mb is everything the engine holds on its GPUs, the KV cache
// of limit.context included: weights, plus KV cache, plus the engine's
// compute buffers. The KV cache of a dense transformer takes, per token,
// 2 (K and V) × layers × KV heads × head dimension × bytes per element
// (2 for f16, 1 for q8_0). Llama 3.1 8B (32 layers, 8 KV heads of 128) in
// f16 takes 2 × 32 × 8 × 128 × 2 = 131,072 bytes, 128 KiB, a token: 1 GiB
// for 8,192 tokens, 4 GiB for 32,768, and 16 GiB for its trained 131,072,
// on top of its 4.6 GiB of Q4_K_M weights. When an engine gives each
// parallel slot its own context (llama-server without --kv-unified and
// --ctx-size set to context × slots), count the KV cache of context ×
// slots tokens. vLLM takes a fixed share of each GPU
// (--gpu-memory-utilization) whatever the context: size vram_mb as that
// share.
//
// Engine arguments: engine_args gives a model its own engine flags, on top
// of its engine template on the neuron. extra is a list of arguments
// appended to the command; set maps a flag to a value that replaces the
// template's value of that flag, or is appended with the flag when the
// template lacks it. Each value is one argv element, passed as written:
// never through a shell, never expanded. Parse refuses, with the line of
// the key (ErrInvalidValue): a NUL byte, a value longer than 16 KiB, more
// than 256 arguments, a placeholder such as {model} in a value, a set key
// that is not a flag ("-x", "--name"), a flag the neuron sets itself
// (--host, --port), and a flag in both extra and set. The neuron checks
// them again, with the flags its template owns (see package neuron/engine).
//
// # Concurrency
//
// A Catalogue is immutable once built and safe for concurrent use. To
// change the catalogue, build a new one and swap the pointer (for example
// with atomic.Pointer). Resolve does not allocate.
package catalogue
