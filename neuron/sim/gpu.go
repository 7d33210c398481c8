package sim

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// The defaults of GPU, a Llama-3.1-8B-Instruct in BF16 served by vLLM on
// one A100 80 GB; the package documentation gives the reasoning.
const (
	// DefaultBlockTokens is GPU.BlockTokens when zero: vLLM's block size.
	DefaultBlockTokens = 16
	// DefaultCacheTokens is GPU.CacheTokens when zero: the KV cache an A100
	// 80 GB holds for an 8B model after its weights.
	DefaultCacheTokens = 400_000
	// DefaultPrefillPerToken is GPU.PrefillPerToken when zero: 8,000
	// prompt tokens per second.
	DefaultPrefillPerToken = 125 * time.Microsecond
	// DefaultPrefillChunk is GPU.PrefillChunk when zero: vLLM's token
	// budget per step (max_num_batched_tokens) for its API server on an
	// 80 GB GPU.
	DefaultPrefillChunk = 8192
	// DefaultDecodeBase is GPU.DecodeBase when zero: a decode step of one
	// sequence, bound by reading the weights.
	DefaultDecodeBase = 10 * time.Millisecond
	// DefaultDecodePerSeq is GPU.DecodePerSeq when zero: what each further
	// sequence adds to a decode step.
	DefaultDecodePerSeq = 150 * time.Microsecond
	// DefaultMaxBatch is GPU.MaxBatch when zero: vLLM's max_num_seqs.
	DefaultMaxBatch = 256
)

// GPU is the performance model of one engine replica on one GPU: a prefix
// cache of KV blocks, prefill at a cost per uncached prompt token, and
// continuous batching of decode steps whose time grows with the batch. A
// Config with a GPU paces every generation request by this model instead
// of by TTFT and TokensPerSecond, and reports the prompt tokens it found
// cached in its usage (see the package documentation).
//
// Every field's zero value stands for its default (the Default*
// constants); CachedPerToken defaults to 0.
type GPU struct {
	// BlockTokens is the size in tokens of a KV block, the unit the prefix
	// cache keys, stores and evicts. Default DefaultBlockTokens (16).
	BlockTokens int
	// CacheTokens is the KV cache's capacity in tokens: the blocks of
	// cached prefixes plus the tokens of the sequences running. When it is
	// full, the least recently used block that no running sequence holds
	// is evicted. Default DefaultCacheTokens (400,000).
	CacheTokens int
	// PrefillPerToken is the time to prefill one uncached prompt token.
	// Default DefaultPrefillPerToken (125 µs: 8,000 tokens/s).
	PrefillPerToken time.Duration
	// CachedPerToken is the time per prompt token found in the cache.
	// Default 0.
	CachedPerToken time.Duration
	// PrefillChunk is how many prompt tokens one engine step prefills at
	// most (chunked prefill): a longer prompt is prefilled over several
	// steps, each also running one decode step of the batch. Default
	// DefaultPrefillChunk (8192); -1 prefills every prompt in one step.
	PrefillChunk int
	// DecodeBase and DecodePerSeq give the time of one decode step of a
	// batch of b sequences: DecodeBase + b × DecodePerSeq. Defaults
	// DefaultDecodeBase (10 ms) and DefaultDecodePerSeq (150 µs).
	DecodeBase   time.Duration
	DecodePerSeq time.Duration
	// MaxBatch is the most sequences (choices of the requests admitted,
	// prefilling or decoding) the engine runs at once; requests past it
	// wait in a first-in first-out queue. Default DefaultMaxBatch (256).
	MaxBatch int
	// TimeScale multiplies every duration the model computes, so that a
	// benchmark of minutes of GPU time runs in seconds: 0.01 runs 100
	// times faster. Default 1.
	TimeScale float64
}

// DefaultGPU returns the GPU model with every default filled in.
func DefaultGPU() GPU { return GPU{}.WithDefaults() }

// Validate reports whether the model is usable: no negative sizes or
// durations (PrefillChunk may be -1) and a finite, non-negative TimeScale.
func (g GPU) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{{"BlockTokens", g.BlockTokens}, {"CacheTokens", g.CacheTokens}, {"MaxBatch", g.MaxBatch}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("negative %s %d", f.name, f.v))
		}
	}
	if g.PrefillChunk < -1 {
		errs = append(errs, fmt.Errorf("PrefillChunk %d below -1", g.PrefillChunk))
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"PrefillPerToken", g.PrefillPerToken}, {"CachedPerToken", g.CachedPerToken},
		{"DecodeBase", g.DecodeBase}, {"DecodePerSeq", g.DecodePerSeq}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("negative %s %v", f.name, f.v))
		}
	}
	if g.TimeScale < 0 || math.IsNaN(g.TimeScale) || math.IsInf(g.TimeScale, 0) {
		errs = append(errs, fmt.Errorf("invalid TimeScale %v", g.TimeScale))
	}
	return errors.Join(errs...)
}

// WithDefaults returns g with its zero fields replaced by the defaults.
func (g GPU) WithDefaults() GPU {
	if g.BlockTokens == 0 {
		g.BlockTokens = DefaultBlockTokens
	}
	if g.CacheTokens == 0 {
		g.CacheTokens = DefaultCacheTokens
	}
	if g.PrefillPerToken == 0 {
		g.PrefillPerToken = DefaultPrefillPerToken
	}
	if g.PrefillChunk == 0 {
		g.PrefillChunk = DefaultPrefillChunk
	}
	if g.DecodeBase == 0 {
		g.DecodeBase = DefaultDecodeBase
	}
	if g.DecodePerSeq == 0 {
		g.DecodePerSeq = DefaultDecodePerSeq
	}
	if g.MaxBatch == 0 {
		g.MaxBatch = DefaultMaxBatch
	}
	if g.TimeScale == 0 {
		g.TimeScale = 1
	}
	return g
}

// PrefillTime is the model time (before TimeScale) of prefilling uncached
// prompt tokens and finding cached ones in the cache, zero fields standing
// for their defaults.
func (g GPU) PrefillTime(uncached, cached int) time.Duration {
	g = g.WithDefaults()
	return time.Duration(uncached)*g.PrefillPerToken + time.Duration(cached)*g.CachedPerToken
}

// DecodeStepTime is the model time (before TimeScale) of one decode step
// of a batch of b sequences, zero fields standing for their defaults; 0
// for an empty batch.
func (g GPU) DecodeStepTime(b int) time.Duration {
	if b <= 0 {
		return 0
	}
	g = g.WithDefaults()
	return g.DecodeBase + time.Duration(b)*g.DecodePerSeq
}

// scale returns the real duration of model time d.
func (g GPU) scale(d time.Duration) time.Duration {
	if g.TimeScale == 1 {
		return d
	}
	return time.Duration(float64(d) * g.TimeScale)
}
