package route

import "github.com/helexa-ai/helexa-go/internal/fingerprint"

// Prefix fingerprint sizes.
const (
	// PrefixBlockBytes is the bytes of prompt text in one block of a
	// Prefix: about 64 tokens of English text.
	PrefixBlockBytes = fingerprint.BlockBytes
	// MaxPrefixBlocks is the most leading blocks a Prefix fingerprints.
	MaxPrefixBlocks = fingerprint.MaxBlocks
)

// Prefix fingerprints the leading blocks of a request's prompt, so that a
// Router can send requests that share a prefix (a system prompt, the
// earlier turns of one conversation) to the replica whose engine already
// holds it in its KV cache.
//
// Block i's hash is the 64-bit FNV-1a of the prompt's text from its start
// to the end of block i: two prompts that share their first k blocks share
// their first k hashes, and one hash names a whole prefix, not one block.
// The text is the strings of the body's "system", each message's content
// (a string, or the "text" of its parts), "prompt" and "input", in the
// order the body gives them, as their raw JSON contents (escapes are not
// decoded). Only whole blocks count: a prompt of fewer than
// PrefixBlockBytes bytes has an empty Prefix. The hash is fixed and
// unseeded, so every gateway replica computes the same fingerprint for the
// same body.
//
// The gateway computes it once per request, while it reads the body,
// without allocating. The zero Prefix is empty.
type Prefix struct {
	n    uint8
	sums [MaxPrefixBlocks]uint64
}

// NewPrefix returns the Prefix of the given block hashes (at most
// MaxPrefixBlocks are kept), as a gateway that computes them itself
// passes them.
func NewPrefix(blocks []uint64) Prefix {
	var p Prefix
	p.n = uint8(copy(p.sums[:], blocks))
	return p
}

// PrefixOf returns the Prefix of a prompt's text, as the gateway computes
// it from a body: for tests of a Router and for a gateway of one's own.
func PrefixOf(text []byte) Prefix {
	var h fingerprint.Hasher
	h.Write(text)
	return NewPrefix(h.Sums[:h.N])
}

// Len returns the number of whole blocks fingerprinted.
func (p *Prefix) Len() int { return int(p.n) }

// Block returns the hash of the prompt's text through block i, for
// 0 ≤ i < Len.
func (p *Prefix) Block(i int) uint64 { return p.sums[:p.n][i] }
