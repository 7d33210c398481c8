package sim

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Defaults used where a Config field or a request parameter is zero.
const (
	// DefaultContextLength is the context length when Config.ContextLength is 0.
	DefaultContextLength = 8192
	// DefaultEmbeddingDimensions is the embedding size when
	// Config.EmbeddingDimensions is 0 and the request sets no "dimensions".
	DefaultEmbeddingDimensions = 32
	// DefaultMaxTokens is the answer length when a request sets no token limit.
	DefaultMaxTokens = 16
	// MessageOverhead is the number of prompt tokens counted per chat
	// message on top of the estimate of its text.
	MessageOverhead = 4
	// maxDimensions bounds "dimensions" and Config.EmbeddingDimensions.
	maxDimensions = 65536
	// maxChoices bounds "n" as the OpenAI API does.
	maxChoices = 128
)

// Config sets the behaviour of a simulated engine. The zero value is a fast
// engine: no load time, no time to first token, tokens as fast as possible,
// an 8192-token context and no faults.
type Config struct {
	// TTFT is the time from the request to the first token. Default 0.
	TTFT time.Duration
	// TokensPerSecond paces the tokens after the first one. 0 (the default)
	// sends them as fast as possible. With n > 1 choices, one token of
	// every choice counts as one step.
	TokensPerSecond float64
	// LoadTime is how long a load takes (Harness and helexa-sim only; an
	// Engine is always ready). Default 0.
	LoadTime time.Duration
	// ContextLength is the model's context in tokens. Default
	// DefaultContextLength (8192).
	ContextLength int
	// EmbeddingDimensions is the size of embedding vectors when the request
	// does not set "dimensions". Default DefaultEmbeddingDimensions (32).
	EmbeddingDimensions int
	// CrashAfterTokens, when positive, makes the engine crash once a request
	// has produced that many tokens (per choice): the tokens are sent, then
	// an Engine aborts the connection (panic(http.ErrAbortHandler)), a
	// Harness also marks the model failed and restarts it, and the
	// helexa-sim process exits with status 1. 0 (the default) never crashes.
	CrashAfterTokens int
	// FailLoad makes every load fail (Harness and helexa-sim only).
	FailLoad bool
	// Hang makes a request send its first token and then nothing more,
	// holding the connection open until the client goes away.
	Hang bool
	// GPU, when set, paces the generation requests by a model of one
	// engine replica on one GPU (a prefix cache, prefill, continuous
	// batching; see GPU) instead of by TTFT and TokensPerSecond, which
	// must then be 0, and reports the prompt tokens it found cached in
	// usage. Each Engine, and each model a Harness loads, is one replica
	// with its own cache. nil (the default) is the plain pacing.
	GPU *GPU
}

// Validate reports whether the configuration is usable: no negative
// durations or counts, a finite speed, sizes within bounds.
func (c Config) Validate() error {
	var errs []error
	if c.TTFT < 0 {
		errs = append(errs, fmt.Errorf("negative TTFT %v", c.TTFT))
	}
	if c.TokensPerSecond < 0 || math.IsNaN(c.TokensPerSecond) || math.IsInf(c.TokensPerSecond, 0) {
		errs = append(errs, fmt.Errorf("invalid TokensPerSecond %v", c.TokensPerSecond))
	}
	if c.LoadTime < 0 {
		errs = append(errs, fmt.Errorf("negative LoadTime %v", c.LoadTime))
	}
	if c.ContextLength < 0 {
		errs = append(errs, fmt.Errorf("negative ContextLength %d", c.ContextLength))
	}
	if c.EmbeddingDimensions < 0 || c.EmbeddingDimensions > maxDimensions {
		errs = append(errs, fmt.Errorf("EmbeddingDimensions %d out of range [0, %d]", c.EmbeddingDimensions, maxDimensions))
	}
	if c.CrashAfterTokens < 0 {
		errs = append(errs, fmt.Errorf("negative CrashAfterTokens %d", c.CrashAfterTokens))
	}
	if c.GPU != nil {
		if c.TTFT != 0 || c.TokensPerSecond != 0 {
			errs = append(errs, errors.New("TTFT and TokensPerSecond do not apply with a GPU model"))
		}
		if err := c.GPU.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("GPU: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sim: invalid config: %w", err)
	}
	return nil
}

// withDefaults returns c with its zero sizes replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.ContextLength == 0 {
		c.ContextLength = DefaultContextLength
	}
	if c.EmbeddingDimensions == 0 {
		c.EmbeddingDimensions = DefaultEmbeddingDimensions
	}
	return c
}

// interval is the time between two tokens after the first.
func (c Config) interval() time.Duration {
	if c.TokensPerSecond <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / c.TokensPerSecond)
}
