package sim

// kvCache is the KV cache of one replica: the blocks of the prompts it has
// prefilled, keyed by their chain hash, and the tokens of the sequences
// running that are in no block (a prompt's last partial block, its
// uncached part while it is prefilled, the tokens generated). A block that
// a running sequence holds (refs > 0) cannot be evicted; the others are on
// a least-recently-used list, from which the oldest is evicted while the
// cache is over its capacity. When every block is held, the cache runs
// over its capacity rather than stop a sequence (a real engine would
// preempt one).
//
// Concurrency: not safe for concurrent use; the replica's mutex guards it.
type kvCache struct {
	blockTokens int
	capacity    int // tokens
	blocks      map[uint64]*kvBlock
	// lru is the sentinel of the circular list of unheld blocks: lru.next
	// is the most recently used, lru.prev the next to evict.
	lru     kvBlock
	private int // tokens of running sequences outside the blocks
}

// kvBlock is one cached block.
type kvBlock struct {
	key        uint64
	refs       int // running sequences holding it
	prev, next *kvBlock
}

func newKVCache(blockTokens, capacity int) *kvCache {
	c := &kvCache{blockTokens: blockTokens, capacity: capacity, blocks: make(map[uint64]*kvBlock)}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	return c
}

// used is the number of tokens the cache holds.
func (c *kvCache) used() int { return len(c.blocks)*c.blockTokens + c.private }

// match returns how many leading blocks of chain are cached.
func (c *kvCache) match(chain []uint64) int {
	for i, k := range chain {
		if c.blocks[k] == nil {
			return i
		}
	}
	return len(chain)
}

// hold takes a reference to each block of chain, adding those missing.
func (c *kvCache) hold(chain []uint64) {
	for _, k := range chain {
		b := c.blocks[k]
		if b == nil {
			b = &kvBlock{key: k}
			c.blocks[k] = b
		} else if b.refs == 0 {
			b.unlink()
		}
		b.refs++
	}
}

// release drops a reference to each block of chain. The blocks no longer
// held go to the front of the LRU list last block first, so that a chain's
// tail is evicted before its head: a cached prefix shrinks from its end
// and stays usable.
func (c *kvCache) release(chain []uint64) {
	for i := len(chain) - 1; i >= 0; i-- {
		b := c.blocks[chain[i]]
		if b == nil || b.refs == 0 { // not held: cannot happen
			continue
		}
		if b.refs--; b.refs == 0 {
			b.prev, b.next = &c.lru, c.lru.next
			b.prev.next, b.next.prev = b, b
		}
	}
}

// evict drops least recently used blocks until the cache is within its
// capacity or no block is left to drop.
func (c *kvCache) evict() {
	for c.used() > c.capacity && c.lru.prev != &c.lru {
		b := c.lru.prev
		b.unlink()
		delete(c.blocks, b.key)
	}
}

// unlink takes b off the LRU list.
func (b *kvBlock) unlink() {
	b.prev.next, b.next.prev = b.next, b.prev
	b.prev, b.next = nil, nil
}

// blockChain appends to chain the keys of the full blocks of a prompt,
// text (its bytes, about 4 per token, in order) of tokens tokens, blocks of
// blockTokens tokens, and returns it. Block i's key hashes the text of
// blocks 0 to i, so two prompts share a block only when they share all the
// text up to its end. Only the blocks within the first tokens-1 tokens
// count: as in vLLM, the last prompt token is always computed, so a prompt
// is never wholly cached.
func blockChain(chain []uint64, text []byte, tokens, blockTokens int) []uint64 {
	size := 4 * blockTokens
	n := min(len(text)/size, max(tokens-1, 0)/blockTokens)
	h := fnvOffset
	for i := range n {
		for _, c := range text[i*size : (i+1)*size] {
			h ^= uint64(c)
			h *= fnvPrime
		}
		chain = append(chain, mix(h))
	}
	return chain
}
