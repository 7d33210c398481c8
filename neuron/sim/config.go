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
	// DefaultMaxTokens is the token limit of a request that sets none.
	DefaultMaxTokens = 16
	// DefaultAnswerTokens is the median length of the answers the simulated
	// model ends by itself when Config.AnswerTokens is 0. See AnswerTokens
	// for where it comes from.
	DefaultAnswerTokens = 150
	// DefaultAnswerSpread is the spread of those lengths when
	// Config.AnswerSpread is 0.
	DefaultAnswerSpread = 0.85
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
	// AnswerTokens is the median length, in tokens, of the answers the
	// simulated model ends by itself, as a model does when it generates its
	// end-of-sequence token: each answer (each choice) has a natural length
	// drawn from a log-normal distribution of median AnswerTokens and
	// spread AnswerSpread, deterministically from its seed (so from the
	// prompt, like its text), and ends there with finish_reason "stop"
	// unless its token limit is lower (then "length"). Default
	// DefaultAnswerTokens (150): with DefaultAnswerSpread (0.85), a mean of
	// about 215 tokens, the mean answer length of the 1M real conversations
	// of LMSYS-Chat-1M (Zheng et al., 2023: 214.5 tokens per response); the
	// log-normal shape is the usual model of such lengths, long-tailed
	// (10% of answers over 450 tokens, 10% under 50). A request with
	// "ignore_eos": true (as vLLM and llama-server accept it) runs to its
	// token limit regardless, and so does every request with IgnoreEOS.
	AnswerTokens int
	// AnswerSpread is the standard deviation of the natural logarithm of
	// the answer lengths: 0.85 (the default, DefaultAnswerSpread) puts
	// the middle 80% of answers between a third of AnswerTokens and three
	// times it. A negative spread is invalid.
	AnswerSpread float64
	// IgnoreEOS turns the natural end off: every answer runs to its token
	// limit (or the end of the context), as if each request set
	// "ignore_eos": true. Benchmarks that want answers of a fixed length
	// set it, or send ignore_eos.
	IgnoreEOS bool
	// GPU, when set, paces the generation requests by a model of one
	// engine replica on one GPU (a prefix cache, prefill, continuous
	// batching; see GPU) instead of by TTFT and TokensPerSecond, which
	// must then be 0, and reports the prompt tokens it found cached in
	// usage. Each Engine, and each model a Harness loads, is one replica
	// with its own cache. nil (the default) is the plain pacing.
	GPU *GPU
	// LlamaServerConnections makes the server of NewServer (so a Harness
	// and helexa-sim) handle connections the way llama.cpp's llama-server
	// does: every answer announces "Keep-Alive: timeout=N, max=100" (N
	// the IdleTimeout in whole seconds, rounded up), yet the connection
	// is closed right after each streamed answer; the 100th answer on a
	// connection says "Connection: close" and closes it; an idle
	// connection is closed after IdleTimeout, 5 s by default. A client
	// that reuses a pooled connection after any of these must send its
	// request again on a new one. An Engine served by another server is
	// not affected.
	LlamaServerConnections bool
	// IdleTimeout is how long the server of NewServer keeps an idle
	// connection open. 0 (the default) is 5 s with
	// LlamaServerConnections (llama-server's), 2 minutes otherwise.
	IdleTimeout time.Duration
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
	if c.AnswerTokens < 0 {
		errs = append(errs, fmt.Errorf("negative AnswerTokens %d", c.AnswerTokens))
	}
	if c.AnswerSpread < 0 || math.IsNaN(c.AnswerSpread) || math.IsInf(c.AnswerSpread, 0) {
		errs = append(errs, fmt.Errorf("invalid AnswerSpread %v", c.AnswerSpread))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative IdleTimeout %v", c.IdleTimeout))
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
	if c.AnswerTokens == 0 {
		c.AnswerTokens = DefaultAnswerTokens
	}
	if c.AnswerSpread == 0 {
		c.AnswerSpread = DefaultAnswerSpread
	}
	return c
}

// answerLength returns the natural length of the answer seeded by seed: a
// draw from the log-normal distribution of median c.AnswerTokens and
// spread c.AnswerSpread, at least 1. c must have its defaults.
func (c *Config) answerLength(seed uint64) int {
	// A uniform in (0, 1), from bits of the seed that the words do not
	// use, turned into a standard normal by the inverse of its CDF.
	u := (float64(mix(seed^0x5851f42d4c957f2d)>>11) + 0.5) / (1 << 53)
	z := math.Sqrt2 * math.Erfinv(2*u-1)
	n := math.Round(float64(c.AnswerTokens) * math.Exp(c.AnswerSpread*z))
	if n > unbounded {
		return unbounded
	}
	return max(int(n), 1)
}

// interval is the time between two tokens after the first.
func (c Config) interval() time.Duration {
	if c.TokensPerSecond <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / c.TokensPerSecond)
}
