package fingerprint

import (
	"bytes"
	"hash/fnv"
	"testing"
)

func TestHasher(t *testing.T) {
	text := bytes.Repeat([]byte("abcdefgh"), BlockBytes) // 8 blocks
	var whole, pieces Hasher
	whole.Write(text)
	for i := 0; i < len(text); i += 7 {
		pieces.Write(text[i:min(i+7, len(text))])
	}
	if whole.N != 8 || whole != pieces {
		t.Fatalf("whole %d blocks, pieces %d: %v", whole.N, pieces.N, whole == pieces)
	}
	// A prompt that shares the first 3 blocks shares 3 sums, and no more.
	other := bytes.Clone(text)
	other[3*BlockBytes+5] = 'X'
	var o Hasher
	o.Write(other)
	for i := range 8 {
		if same := o.Sums[i] == whole.Sums[i]; same != (i < 3) {
			t.Errorf("block %d: same sum %v", i, same)
		}
	}
	// A partial block is not counted; the hashing stops at MaxBlocks.
	var short, long Hasher
	short.Write(text[:BlockBytes-1])
	long.Write(bytes.Repeat(text, 3))
	if short.N != 0 || long.N != MaxBlocks {
		t.Errorf("short %d blocks, long %d", short.N, long.N)
	}
	// The algorithm is FNV-1a over the whole prefix, fixed: gateway
	// replicas must agree across versions.
	std := fnv.New64a()
	std.Write(text[:2*BlockBytes])
	if whole.Sums[1] != std.Sum64() {
		t.Errorf("sum of 2 blocks = %#x, FNV-1a says %#x", whole.Sums[1], std.Sum64())
	}
}
