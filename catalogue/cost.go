package catalogue

import (
	"math"
	"math/bits"
)

// MaxPrice is the highest price, in USD per 1M tokens, that a catalogue
// accepts. Prices are kept to 1e-9 USD per 1M tokens.
const MaxPrice = 1e9

// nanoPerUSD scales a price in USD per 1M tokens to integer units of
// 1e-9 USD per 1M tokens. One such unit per token is 1e-9 micro-dollars.
const nanoPerUSD = 1e9

// Usage counts the tokens of one request for pricing. The counts are
// disjoint: Input excludes the tokens in CacheRead and CacheWrite.
// Negative counts count as zero.
type Usage struct {
	// Input counts prompt tokens neither read from nor written to the
	// prompt cache.
	Input int64
	// Output counts generated tokens.
	Output int64
	// CacheRead counts prompt tokens read from the prompt cache.
	CacheRead int64
	// CacheWrite counts prompt tokens written to the prompt cache.
	CacheWrite int64
}

// MicroUSD is the price of inputTokens prompt tokens and outputTokens
// generated tokens in micro-dollars (1e-6 USD): tokens times USD per 1M
// tokens, so one token at $1 per 1M is 1 micro-dollar. A fraction of a
// micro-dollar rounds up, so a budget is never under-charged; a result
// beyond math.MaxInt64 is math.MaxInt64. Negative counts count as zero.
func (c Cost) MicroUSD(inputTokens, outputTokens int64) int64 {
	return c.Charge(Usage{Input: inputTokens, Output: outputTokens})
}

// Charge is the price of u in micro-dollars, rounded up and saturated as
// in MicroUSD. Cached tokens are priced at CacheRead and CacheWrite when
// set, else at Input.
func (c Cost) Charge(u Usage) int64 {
	in := nanoPrice(c.Input)
	read, write := in, in
	if c.CacheRead != nil {
		read = nanoPrice(*c.CacheRead)
	}
	if c.CacheWrite != nil {
		write = nanoPrice(*c.CacheWrite)
	}
	var hi, lo uint64
	for _, t := range [...]struct{ n, p uint64 }{
		{count(u.Input), in},
		{count(u.Output), nanoPrice(c.Output)},
		{count(u.CacheRead), read},
		{count(u.CacheWrite), write},
	} {
		h, l := bits.Mul64(t.n, t.p)
		var carry uint64
		lo, carry = bits.Add64(lo, l, 0)
		hi, _ = bits.Add64(hi, h, carry) // each term < 2^123: no overflow
	}
	if hi >= nanoPerUSD {
		return math.MaxInt64
	}
	q, r := bits.Div64(hi, lo, nanoPerUSD)
	if r > 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// OutputTokensFor is the most generated tokens that microUSD pays for:
// the largest n with MicroUSD(0, n) <= microUSD. It is math.MaxInt64 when
// output is free, and 0 when microUSD <= 0 and output is not free. Use it
// to clamp max_tokens to what a remaining budget covers.
func (c Cost) OutputTokensFor(microUSD int64) int64 {
	p := nanoPrice(c.Output)
	if p == 0 {
		return math.MaxInt64
	}
	if microUSD <= 0 {
		return 0
	}
	// ceil(n*p/1e9) <= b  <=>  n*p <= b*1e9, as b is an integer.
	hi, lo := bits.Mul64(uint64(microUSD), nanoPerUSD)
	if hi >= p {
		return math.MaxInt64
	}
	n, _ := bits.Div64(hi, lo, p)
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

// nanoPrice converts a price in USD per 1M tokens to units of 1e-9 USD
// per 1M tokens, clamped to [0, MaxPrice]; NaN counts as MaxPrice.
func nanoPrice(usdPer1M float64) uint64 {
	switch {
	case usdPer1M >= 0 && usdPer1M <= MaxPrice:
		return uint64(math.Round(usdPer1M * nanoPerUSD))
	case usdPer1M < 0:
		return 0
	default: // above MaxPrice, +Inf, NaN
		return MaxPrice * nanoPerUSD
	}
}

// count clamps a token count to zero or more.
func count(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}
