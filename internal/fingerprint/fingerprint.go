// Package fingerprint hashes the leading blocks of a prompt's text, for
// routing by prompt prefix (route.Prefix documents the contract). The
// request scanner feeds it the text as it reads the body, so the
// fingerprint costs one pass over at most MaxBlocks × BlockBytes bytes and
// no allocation.
package fingerprint

// Block sizes.
const (
	// BlockBytes is the bytes of prompt text in one block: about 64
	// tokens of English text.
	BlockBytes = 256
	// MaxBlocks is the most leading blocks hashed.
	MaxBlocks = 16
)

// FNV-1a, 64 bit: stable across processes and versions, so that gateway
// replicas agree on a prompt's fingerprint without sharing anything.
const (
	offset64 = 14695981039346656037
	prime64  = 1099511628211
)

// Hasher accumulates a prompt's text. Sums[i] is the hash of the text from
// its start to the end of block i, for the N whole blocks seen; a partial
// last block is not counted. The zero Hasher is ready to use.
type Hasher struct {
	N    int
	Sums [MaxBlocks]uint64

	h    uint64
	fill int
	used bool
}

// Write adds text. It stops hashing once MaxBlocks blocks are complete.
func (h *Hasher) Write(b []byte) {
	if h.N == MaxBlocks {
		return
	}
	if !h.used {
		h.h, h.used = offset64, true
	}
	for _, c := range b {
		h.h = (h.h ^ uint64(c)) * prime64
		h.fill++
		if h.fill == BlockBytes {
			h.Sums[h.N] = h.h
			h.N++
			h.fill = 0
			if h.N == MaxBlocks {
				return
			}
		}
	}
}
