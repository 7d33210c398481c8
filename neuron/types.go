package neuron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/internal/config"
	"github.com/helexa-ai/helexa-go/internal/engineargs"
)

// ModelStatus is the lifecycle state of a model on a neuron.
type ModelStatus string

// Model states. A model is "loading" until its engine answers its ready
// probe, then "loaded". An engine that exits unexpectedly is "failed" with
// the exit status in LastError, then "recovering" while the harness restarts
// it with backoff. "unloading" covers the stop of the engine.
const (
	StatusLoading    ModelStatus = "loading"
	StatusLoaded     ModelStatus = "loaded"
	StatusFailed     ModelStatus = "failed"
	StatusRecovering ModelStatus = "recovering"
	StatusUnloading  ModelStatus = "unloading"
)

// Limit holds a model's token limits. Zero means unknown.
type Limit struct {
	Context int `json:"context,omitempty" toml:"context"`
	Input   int `json:"input,omitempty" toml:"input"`
	Output  int `json:"output,omitempty" toml:"output"`
}

// LoadSpec asks a neuron to load a model. It is the body of POST /models/load.
type LoadSpec struct {
	// ModelID is the id clients use in the "model" field. Required.
	ModelID string `json:"model_id" toml:"model_id"`
	// Engine names an engine template in neuron.toml ("llama-server",
	// "vllm", "sim", ...). Empty means the neuron's default engine.
	Engine string `json:"engine,omitempty" toml:"engine"`
	// Source is what the engine loads: a path, a Hugging Face repo, ...
	// Empty means ModelID.
	Source string `json:"source,omitempty" toml:"source"`
	// Devices are the GPU indexes to run on. Empty lets the neuron choose.
	Devices []int `json:"devices,omitempty" toml:"devices"`
	// VRAMMB is the VRAM the model needs in MiB, summed over its devices.
	VRAMMB uint64 `json:"vram_mb,omitempty" toml:"vram_mb"`
	// Context is the context window of one request, in tokens, that the
	// engine is started with: its template's {context} (0: the engine's
	// default, and a warning in the neuron's log). cortex sends the
	// catalogue's limit.context. See package neuron/engine for how it
	// relates to an engine's parallel slots.
	Context int `json:"context,omitempty" toml:"context"`
	// EngineArgs are the model's own engine arguments, applied to its
	// engine template's command (catalogue engine_args).
	EngineArgs EngineArgs `json:"engine_args,omitzero" toml:"engine_args"`
	// Limit and Capabilities are reported back in ModelInfo.
	Limit        Limit    `json:"limit,omitzero" toml:"limit"`
	Capabilities []string `json:"capabilities,omitempty" toml:"capabilities"`
}

// EngineArgs are per-model engine arguments (catalogue engine_args). They
// are passed to the engine as argv elements, never through a shell and
// never expanded: a value holding a template placeholder is refused.
//
// Set replaces the value of a flag of the template ("--ctx-size" =
// "4096" changes the argument after "--ctx-size", or "--ctx-size=..."),
// and appends the flag and its value when the template has no such flag.
// Extra is appended after the template's arguments and Set's appended
// flags, in order. Neither may name a flag the neuron sets itself
// (--host, --port, and any flag whose template value holds {model}, {id},
// {port}, {host} or {gpus}), nor give one flag in both.
type EngineArgs struct {
	// Extra are arguments appended to the command, as written.
	Extra []string `json:"extra,omitempty" toml:"extra"`
	// Set maps a flag to the value it takes.
	Set map[string]string `json:"set,omitempty" toml:"set"`
}

// IsZero reports whether a holds no argument.
func (a EngineArgs) IsZero() bool { return len(a.Extra) == 0 && len(a.Set) == 0 }

// Validate returns an error wrapping ErrInvalidRequest that lists what is
// wrong with a, or nil: values that are too long, hold a NUL byte or a
// placeholder, a Set key that is not a flag, a flag the neuron owns
// (--host, --port), a flag in both Extra and Set, more than 256
// arguments. The harness checks the flags its template owns on top.
func (a EngineArgs) Validate() error {
	ps := engineargs.Check(a.Extra, a.Set)
	if len(ps) == 0 {
		return nil
	}
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = "engine_args." + p.Error()
	}
	return fmt.Errorf("%w: %s", ErrInvalidRequest, strings.Join(msgs, "; "))
}

// ModelInfo describes one model known to a harness. It is an element of
// GET /models and the answer to POST /models/load.
type ModelInfo struct {
	ID           string      `json:"id"`
	Engine       string      `json:"engine"`
	Status       ModelStatus `json:"status"`
	Devices      []int       `json:"devices,omitempty"`
	VRAMUsedMB   uint64      `json:"vram_used_mb"`
	Limit        Limit       `json:"limit,omitzero"`
	Capabilities []string    `json:"capabilities,omitempty"`
	// LoadedAt is when the model last became loaded (zero while loading).
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// LoadingSince is when the current load or restart began (zero when loaded).
	LoadingSince time.Time `json:"loading_since,omitzero"`
	// LoadingSeconds is how long the current load or restart had been
	// running when GET /models answered, by the neuron's own clock (0 when
	// loaded). A client on another host reads it rather than comparing
	// LoadingSince with its own clock, which may be skewed.
	LoadingSeconds float64 `json:"loading_seconds,omitempty"`
	// Restarts counts the engine restarts begun since the model was first
	// loaded: one after each failure (see Failures).
	Restarts int `json:"restarts,omitempty"`
	// LastError is the most recent failure: its reason and the engine's
	// last log lines. It may hold paths and addresses: it is for
	// operators, not for the clients of the inference API.
	LastError string `json:"last_error,omitempty"`
	// Failures counts the engine's failures since the model was first
	// loaded: exits nobody asked for (FailureCrash) and engines that
	// stopped answering their liveness probes and were killed
	// (FailureUnresponsive). Each is followed by a restart.
	Failures int `json:"failures,omitempty"`
	// LastFailure is the kind of the most recent failure; empty before
	// the first.
	LastFailure FailureKind `json:"last_failure,omitempty"`
	// LastFailureAt is when the most recent failure was seen.
	LastFailureAt time.Time `json:"last_failure_at,omitzero"`
	// LastFailureReason is the most recent failure's reason alone, without
	// the engine's output: "exit status 1", "signal: killed", "3 liveness
	// probes failed in a row (the last: timed out after 3s)".
	LastFailureReason string `json:"last_failure_reason,omitempty"`
	// LivenessFailures is how many liveness probes of the loaded engine
	// have failed in a row by now; 0 while it answers them.
	LivenessFailures int `json:"liveness_failures,omitempty"`
}

// FailureKind says how an engine failed (ModelInfo.LastFailure).
type FailureKind string

// Failure kinds.
const (
	// FailureCrash: the engine exited without being asked to.
	FailureCrash FailureKind = "crash"
	// FailureUnresponsive: the engine stopped answering its liveness
	// probes (hung, stopped, deadlocked) and was killed.
	FailureUnresponsive FailureKind = "unresponsive"
)

// Harness runs models. The Agent calls it to load, unload and find the
// engine behind each model.
//
// Concurrency: every method may be called from many goroutines at once.
// Load blocks until the model is ready (or ctx ends, or the load fails);
// concurrent Loads of one id share one load, and loading an id that is
// already loaded returns its info without starting a second engine. Models
// and Endpoint must not block on a load in progress.
type Harness interface {
	// Load starts the model and waits until it is ready. A cancelled ctx
	// stops the wait, not the load.
	Load(ctx context.Context, spec LoadSpec) (ModelInfo, error)
	// Unload stops the model and frees its devices. ErrModelNotFound when
	// the id is unknown.
	Unload(ctx context.Context, id string) error
	// Models returns a snapshot of every model the harness knows, sorted by id.
	Models() []ModelInfo
	// Endpoint returns the base URL of the engine serving id (for example
	// http://127.0.0.1:40123). ErrModelNotFound when unknown, ErrNotReady
	// while the model is not loaded.
	Endpoint(id string) (*url.URL, error)
}

// LogSource is an optional Harness capability: the recent output of a
// model's engine, served at GET /models/{id}/logs.
type LogSource interface {
	// Logs returns the last lines the engine printed (stdout and stderr),
	// oldest first. ErrModelNotFound when unknown.
	Logs(id string) ([]string, error)
}

// Checker is an optional Harness capability: whether a load could start,
// answered without side effects. The Agent asks it for POST /models/check
// and before each load of a model it does not run, so that a load that
// cannot start (its engine's command does not resolve, its model file does
// not exist) is refused before anything is evicted to make room for it.
//
// Concurrency: Check may be called from many goroutines at once, and
// concurrently with every other method; it must be cheap (no process
// started, nothing downloaded).
type Checker interface {
	// Check returns nil when a Load of spec could start its engine, else
	// an error that wraps ErrCannotStart (or ErrUnknownEngine,
	// ErrInvalidRequest). It does not look at the models already running.
	Check(ctx context.Context, spec LoadSpec) error
}

// HarnessCloser is an optional Harness capability: stop every engine. The
// Agent calls it at the end of Shutdown.
type HarnessCloser interface {
	Close(ctx context.Context) error
}

// Device is the static description of one GPU.
type Device struct {
	Index             int    `json:"index" toml:"index"`
	Name              string `json:"name" toml:"name"`
	UUID              string `json:"uuid" toml:"uuid"`
	TotalMB           uint64 `json:"total_mb" toml:"total_mb"`
	ComputeCapability string `json:"compute_capability,omitempty" toml:"compute_capability"`
}

// DeviceSample is a live reading of one GPU.
type DeviceSample struct {
	Index          int    `json:"index"`
	UsedMB         uint64 `json:"used_mb"`
	FreeMB         uint64 `json:"free_mb"`
	UtilizationPct int    `json:"utilization_pct"`
	TemperatureC   int    `json:"temperature_c"`
}

// Discovery is the static picture of a host: GET /discovery.
type Discovery struct {
	Hostname      string   `json:"hostname"`
	OS            string   `json:"os"`
	Arch          string   `json:"arch"`
	DriverVersion string   `json:"driver_version,omitempty"`
	CUDAVersion   string   `json:"cuda_version,omitempty"`
	Devices       []Device `json:"devices"`
	// GPUUnavailableReason says why no GPU was found (no driver, no
	// library); empty when discovery worked.
	GPUUnavailableReason string `json:"gpu_unavailable_reason,omitempty"`
	// CUDAUnavailableReason is set when GPUs exist but CUDA cannot be used
	// (for example a driver/library version mismatch). Loads are then
	// refused with 503 cuda_unavailable.
	CUDAUnavailableReason string `json:"cuda_unavailable_reason,omitempty"`
}

// Discoverer reports a host's hardware.
//
// Concurrency: both methods may be called concurrently. Discover is called
// once at start; Sample on every GET /health and must be cheap.
type Discoverer interface {
	Discover(ctx context.Context) (Discovery, error)
	Sample(ctx context.Context) ([]DeviceSample, error)
}

// ModelLoad is a model's admission state in GET /health.
type ModelLoad struct {
	ID          string      `json:"id"`
	Status      ModelStatus `json:"status"`
	InFlight    int         `json:"in_flight"`
	QueueDepth  int         `json:"queue_depth"`
	MaxInFlight int         `json:"max_in_flight"`
	MaxQueue    int         `json:"max_queue"`
}

// Activation is the progress of loading the default models at start.
type Activation struct {
	Total   int      `json:"total"`
	Loaded  int      `json:"loaded"`
	Failed  int      `json:"failed"`
	Pending []string `json:"pending,omitempty"`
}

// Health is GET /health.
type Health struct {
	// Status is "ok", or "shutting_down" while draining.
	Status        string         `json:"status"`
	UptimeSeconds float64        `json:"uptime_seconds"`
	Devices       []DeviceSample `json:"devices"`
	Models        []ModelLoad    `json:"models"`
	Activation    Activation     `json:"activation"`
}

// Version is GET /version.
type Version struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
}

// Endpoint is GET /models/{id}/endpoint.
type Endpoint struct {
	URL string `json:"url"`
}

// UnloadRequest is the body of POST /models/unload.
type UnloadRequest struct {
	ModelID string `json:"model_id"`
	// Force unloads even while requests are in flight.
	Force bool `json:"force,omitempty"`
}

// ReplicaClaim asks the neuron that arbitrates a model's replicas for the
// right to load one more on Neuron: the body of POST /replicas/claim. On
// the wire TTL is "ttl_ms", whole milliseconds (a fraction of one is
// rounded up); the other fields are "model", "neuron", "max" and
// "holders".
type ReplicaClaim struct {
	// Model is the model id. Required, at most 256 bytes.
	Model string
	// Neuron names the neuron the caller wants to load a replica on, as
	// the gateway's configuration names it. Required, at most 256 bytes.
	Neuron string
	// Max is the model's max_replicas; at least 1.
	Max int
	// Holders are the neurons where the caller sees a replica of the model,
	// loaded or loading. May be empty; at most 1024, each non-empty and at
	// most 256 bytes. A name given twice counts once.
	Holders []string
	// TTL is how long a granted claim counts, unless released: long enough
	// for the replica to show in every gateway's view. Positive, at most
	// 24h.
	TTL time.Duration
}

// replicaClaimWire is ReplicaClaim as JSON.
type replicaClaimWire struct {
	Model   string   `json:"model"`
	Neuron  string   `json:"neuron"`
	Max     int      `json:"max"`
	Holders []string `json:"holders"`
	TTLMS   int64    `json:"ttl_ms"`
}

// MarshalJSON writes c with its TTL as "ttl_ms", rounded up to a whole
// millisecond, and its holders as an array, empty when there are none.
func (c ReplicaClaim) MarshalJSON() ([]byte, error) {
	ms := int64(c.TTL / time.Millisecond)
	if c.TTL%time.Millisecond > 0 {
		ms++
	}
	holders := c.Holders
	if holders == nil {
		holders = []string{}
	}
	return json.Marshal(replicaClaimWire{Model: c.Model, Neuron: c.Neuron, Max: c.Max, Holders: holders, TTLMS: ms})
}

// UnmarshalJSON reads c from its JSON. A "ttl_ms" beyond what a
// time.Duration holds is an error; the neuron checks the rest.
func (c *ReplicaClaim) UnmarshalJSON(b []byte) error {
	var w replicaClaimWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	const maxMS = math.MaxInt64 / int64(time.Millisecond)
	if w.TTLMS > maxMS || w.TTLMS < -maxMS {
		return fmt.Errorf("ttl_ms %d is out of range", w.TTLMS)
	}
	*c = ReplicaClaim{Model: w.Model, Neuron: w.Neuron, Max: w.Max, Holders: w.Holders,
		TTL: time.Duration(w.TTLMS) * time.Millisecond}
	return nil
}

// ClaimResult is the answer of POST /replicas/claim. A refusal is an
// answer, not an error: Granted false.
type ClaimResult struct {
	// Granted reports whether the caller may load the replica.
	Granted bool `json:"granted"`
	// Holders are the neurons that count against max, sorted: the
	// claim's holders and the neurons with a live claim, and the claim's
	// neuron when granted.
	Holders []string `json:"holders"`
}

// ReplicaRelease gives up a replica claim: the body of POST
// /replicas/release. Model and Neuron are required, at most 256 bytes
// each.
type ReplicaRelease struct {
	Model  string `json:"model"`
	Neuron string `json:"neuron"`
}

// Principal headers: cortex stamps them on requests toward a neuron, which
// uses them for its per-principal admission cap.
const (
	HeaderAccountID = "X-Helexa-Account-Id"
	HeaderKeyID     = "X-Helexa-Key-Id"
)

// The output allowance: cortex sends HeaderMaxOutputTokens with each
// inference request, the most output tokens the request may generate over
// all its sequences (what it reserved). The neuron counts the output of a
// streamed answer as it relays it (one token at least per choice that
// carries output in an event), and cuts the stream, cancelling the engine's
// request, once the count passes the allowance. At the end of every streamed
// answer it sends its count in the trailer TrailerOutputTokens, and
// TrailerOutputCut "true" when it cut the stream, so that the gateway
// settles at least what went out when the engine's usage is missing or
// lower.
const (
	HeaderMaxOutputTokens = "X-Helexa-Max-Output-Tokens"
	TrailerOutputTokens   = "X-Helexa-Output-Tokens"
	TrailerOutputCut      = "X-Helexa-Output-Cut"
)

// Error codes in the neuron's OpenAI error envelopes. Client maps them back
// to the errors below.
const (
	CodeModelNotFound     = "model_not_found"
	CodeModelNotReady     = "model_not_ready"
	CodeModelBusy         = "model_busy"
	CodeInsufficientVRAM  = "insufficient_vram"
	CodeCUDAUnavailable   = "cuda_unavailable"
	CodeUnknownEngine     = "unknown_engine"
	CodeLoadFailed        = "model_load_failed"
	CodeShuttingDown      = "shutting_down"
	CodeInvalidToken      = "invalid_token"
	CodeInvalidBody       = "invalid_request_body"
	CodeAmbiguousRequest  = "ambiguous_request"
	CodeMissingModel      = "missing_model_field"
	CodeQueueFull         = "queue_full"
	CodeQueueTimeout      = "queue_timeout"
	CodeRateLimitExceeded = "rate_limit_exceeded"
	CodeCannotStart       = "model_cannot_start"
	CodeClaimTableFull    = "claim_table_full"
)

// Sentinel errors shared by the Agent, the harnesses and Client.
var (
	ErrModelNotFound    = errors.New("neuron: model not found")
	ErrNotReady         = errors.New("neuron: model not ready")
	ErrModelBusy        = errors.New("neuron: model has requests in flight")
	ErrInsufficientVRAM = errors.New("neuron: insufficient VRAM")
	ErrCUDAUnavailable  = errors.New("neuron: CUDA unavailable")
	ErrUnknownEngine    = errors.New("neuron: unknown engine")
	ErrLoadFailed       = errors.New("neuron: model load failed")
	ErrShuttingDown     = errors.New("neuron: shutting down")
	ErrUnauthorized     = errors.New("neuron: invalid token")
	// ErrClaimTableFull: a replica claim that would add one past the
	// bound of the neuron's claim table, all expired claims swept (503
	// claim_table_full). The gateway then decides without the arbiter.
	ErrClaimTableFull = errors.New("neuron: replica claim table full")
	// ErrCannotStart: a load refused before anything started, because it
	// could not start: its engine's command does not resolve, or the
	// local model file it names does not exist (422 model_cannot_start).
	// errors.Is(err, ErrLoadFailed) is true of it as well.
	ErrCannotStart error = cannotStartError{}
)

type cannotStartError struct{}

func (cannotStartError) Error() string { return "neuron: engine cannot start" }

// Is reports whether target is ErrLoadFailed: a load that cannot start has
// failed.
func (cannotStartError) Is(target error) bool { return target == ErrLoadFailed }

// VRAMError reports a load whose VRAM does not fit the chosen devices.
// errors.Is(err, ErrInsufficientVRAM) is true.
type VRAMError struct {
	FreeMB     uint64 `json:"free_mb"`
	RequiredMB uint64 `json:"required_mb"`
}

func (e *VRAMError) Error() string {
	return fmt.Sprintf("neuron: insufficient VRAM: %d MiB required, %d MiB free", e.RequiredMB, e.FreeMB)
}

// Is reports whether target is ErrInsufficientVRAM.
func (e *VRAMError) Is(target error) bool { return target == ErrInsufficientVRAM }

// EngineConfig is one [[engines]] template in neuron.toml. The process
// harness (package neuron/engine) starts engines from it.
type EngineConfig struct {
	// Name is what LoadSpec.Engine refers to.
	Name string `toml:"name"`
	// Command is the argv template. Placeholders: {model} (LoadSpec.Source,
	// or the id), {id}, {port}, {host}, {gpus} (comma-separated device
	// indexes), {context}.
	Command []string `toml:"command"`
	// Env holds extra environment variables, with the same placeholders.
	Env map[string]string `toml:"env"`
	// ReadyPath is polled every 250 ms until it answers 200 (503 means
	// still loading), then every LivenessInterval while the model is
	// loaded. Default "/health".
	ReadyPath string `toml:"ready_path"`
	// LivenessInterval is how often the ready path of a loaded engine is
	// probed. Default 5s.
	LivenessInterval Duration `toml:"liveness_interval"`
	// LivenessTimeout bounds one liveness probe; a probe that gets no 200
	// within it has failed. Default 3s.
	LivenessTimeout Duration `toml:"liveness_timeout"`
	// LivenessFailures is how many liveness probes in a row must fail
	// before the engine is taken for hung: it is marked failed, killed and
	// restarted as a crashed engine is. An engine that stops answering is
	// thus found within LivenessFailures*max(LivenessInterval,
	// LivenessTimeout) + LivenessTimeout (18s with the defaults). Default 3.
	LivenessFailures int `toml:"liveness_failures"`
	// StartTimeout bounds the wait for readiness without progress. Default 10m.
	StartTimeout Duration `toml:"start_timeout"`
	// StopTimeout is the wait between SIGTERM and SIGKILL. Default 10s.
	StopTimeout Duration `toml:"stop_timeout"`
}

// Duration is a time.Duration written in neuron.toml (and in the JSON of
// the API) as a string that time.ParseDuration accepts, such as "30s". A
// bare number in a configuration file is an error that names its key and
// line, since it has no unit. Convert one with Std or time.Duration(d).
// cortex's configuration uses the same type.
type Duration = config.Duration
