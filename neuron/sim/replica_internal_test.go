package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// driver runs a replica's scheduler in the test's goroutine, in model
// time, without its goroutine and without a clock: the arithmetic of the
// GPU model is plan and apply alone.
type driver struct {
	t     *testing.T
	r     *replica
	now   time.Duration   // model time
	steps []time.Duration // the duration of each step run
	first map[*seq]time.Duration
}

func newDriver(t *testing.T, g GPU) *driver {
	r := newReplica(g, nil)
	r.running = true // submit must not start the scheduler's goroutine
	return &driver{t: t, r: r, first: make(map[*seq]time.Duration)}
}

// submit queues a request of prompt text (4 bytes a token), one choice
// and budget tokens.
func (d *driver) submit(text string, budget int) *seq {
	return d.submitN(text, 1, budget)
}

func (d *driver) submitN(text string, weight, budget int) *seq {
	tokens := (len(text) + 3) / 4
	chain := blockChain(nil, []byte(text), tokens, d.r.g.BlockTokens)
	s := newSeq([][]uint64{chain}, tokens, weight, budget)
	d.r.submit(s)
	return s
}

// step runs one engine step and reports whether there was one.
func (d *driver) step() bool {
	r := d.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.plan() {
		return false
	}
	before := make(map[*seq]int)
	for _, w := range r.cur.prefill {
		before[w.s] = w.s.granted
	}
	d.now += r.cur.dur
	d.steps = append(d.steps, r.cur.dur)
	r.apply()
	for s, g := range before {
		if g == 0 && s.granted > 0 {
			d.first[s] = d.now
		}
	}
	return true
}

// drain runs steps until the replica is idle.
func (d *driver) drain() {
	for d.step() {
		if len(d.steps) > 100_000 {
			d.t.Fatal("the scheduler never goes idle")
		}
	}
}

const ms = time.Millisecond

// testGPU is a model with round numbers.
var testGPU = GPU{
	BlockTokens:     16,
	CacheTokens:     100_000,
	PrefillPerToken: 100 * time.Microsecond,
	PrefillChunk:    -1,
	DecodeBase:      10 * ms,
	DecodePerSeq:    time.Millisecond,
	MaxBatch:        8,
}

func TestGPUDefaults(t *testing.T) {
	g := DefaultGPU()
	want := GPU{BlockTokens: 16, CacheTokens: 400_000, PrefillPerToken: 125 * time.Microsecond, PrefillChunk: 8192,
		DecodeBase: 10 * ms, DecodePerSeq: 150 * time.Microsecond, MaxBatch: 256, TimeScale: 1}
	if diff := cmp.Diff(g, want); diff != "" {
		t.Errorf("DefaultGPU (-got +want):\n%s", diff)
	}
	if got := (GPU{}).DecodeStepTime(64); got != 10*ms+64*150*time.Microsecond {
		t.Errorf("default decode step at batch 64: %v", got)
	}
	if got := (GPU{TimeScale: 0.01}).WithDefaults().scale(10 * ms); got != 100*time.Microsecond {
		t.Errorf("10 ms at TimeScale 0.01 is %v", got)
	}
}

// TestPrefillThenDecode: one request's first token comes after its
// prefill, uncached tokens × PrefillPerToken, and each next one after a
// decode step of a batch of one.
func TestPrefillThenDecode(t *testing.T) {
	d := newDriver(t, testGPU)
	s := d.submit(strings.Repeat("a", 400), 4) // 100 tokens
	d.drain()
	want := []time.Duration{10 * ms, 11 * ms, 11 * ms, 11 * ms}
	if diff := cmp.Diff(d.steps, want); diff != "" {
		t.Errorf("steps (-got +want):\n%s", diff)
	}
	if s.cached != 0 || s.granted != 4 || s.state != seqDone {
		t.Errorf("cached %d, granted %d, state %d", s.cached, s.granted, s.state)
	}
	if d.r.cache.private != 0 || d.r.active != 0 {
		t.Errorf("after the request: %d private tokens, %d active", d.r.cache.private, d.r.active)
	}
}

// TestRepeatedPromptIsCached: the second request of a prompt finds its
// whole blocks cached, bar the last token, and prefills only the rest.
func TestRepeatedPromptIsCached(t *testing.T) {
	d := newDriver(t, testGPU)
	text := strings.Repeat("b", 400) // 100 tokens: 6 whole blocks in the first 99
	d.submit(text, 1)
	d.drain()
	s := d.submit(text, 1)
	d.drain()
	if s.cached != 96 {
		t.Errorf("cached %d tokens, want 96", s.cached)
	}
	if got, want := d.steps[1], testGPU.PrefillTime(100-96, 96); got != want || got != 400*time.Microsecond {
		t.Errorf("second prefill took %v, want %v", got, want)
	}
	// A prompt of exactly 6 blocks is never wholly cached: the last block,
	// holding its last token, is computed again.
	d.submit(strings.Repeat("c", 384), 1)
	d.drain()
	s = d.submit(strings.Repeat("c", 384), 1)
	d.drain()
	if s.cached != 80 {
		t.Errorf("a repeated 96-token prompt: cached %d, want 80", s.cached)
	}
}

// TestSharedPrefix: prompts that share a leading text share the blocks
// wholly inside it, whatever follows.
func TestSharedPrefix(t *testing.T) {
	d := newDriver(t, testGPU)
	system := strings.Repeat("s", 1000) // 15 whole blocks of 64 bytes, then 40 bytes
	d.submit(system+"first question", 1)
	d.drain()
	s := d.submit(system+"another one, longer", 1)
	d.drain()
	if s.cached != 15*16 {
		t.Errorf("cached %d, want %d", s.cached, 15*16)
	}
	// A block's key depends on all the text before it: the same block after
	// a different start is not shared.
	s = d.submit("x"+system, 1)
	d.drain()
	if s.cached != 0 {
		t.Errorf("a shifted prompt: cached %d, want 0", s.cached)
	}
}

// TestDecodeStepGrowsWithBatch: requests decoded together pay one step of
// DecodeBase + b × DecodePerSeq each, b counting their choices.
func TestDecodeStepGrowsWithBatch(t *testing.T) {
	d := newDriver(t, testGPU)
	d.submit(strings.Repeat("d", 40), 3)     // 10 tokens
	d.submitN(strings.Repeat("e", 40), 2, 3) // n = 2
	d.drain()
	want := []time.Duration{
		2 * ms,       // both prefills, 20 tokens
		10*ms + 3*ms, // a batch of three sequences
		10*ms + 3*ms, // the last tokens
	}
	if diff := cmp.Diff(d.steps, want); diff != "" {
		t.Errorf("steps (-got +want):\n%s", diff)
	}
	if got := testGPU.DecodeStepTime(5); got != 15*ms {
		t.Errorf("DecodeStepTime(5) = %v", got)
	}
}

// TestQueuePastMaxBatch: a request that does not fit in the batch waits,
// in arrival order, until a sequence ends.
func TestQueuePastMaxBatch(t *testing.T) {
	g := testGPU
	g.MaxBatch = 2
	d := newDriver(t, g)
	a := d.submit(strings.Repeat("a", 40), 2)
	b := d.submit(strings.Repeat("b", 40), 4)
	c := d.submit(strings.Repeat("c", 40), 1)
	d.drain()
	// Step 1: a and b prefill (2 ms). Step 2: decode a, b (12 ms); a ends.
	// Step 3: c prefills (1 ms) while b decodes (11 ms), c ends. Step 4:
	// b's last token (11 ms).
	want := []time.Duration{2 * ms, 12 * ms, 12 * ms, 11 * ms}
	if diff := cmp.Diff(d.steps, want); diff != "" {
		t.Errorf("steps (-got +want):\n%s", diff)
	}
	if got := d.first[c]; got != 26*ms {
		t.Errorf("c's first token at %v, want 26ms", got)
	}
	if d.first[a] != 2*ms || d.first[b] != 2*ms {
		t.Errorf("first tokens of a and b at %v and %v", d.first[a], d.first[b])
	}
}

// TestPrefillDelaysDecode: a prefill holds the engine step, so the
// decoding sequences wait for it; chunked, it spreads over several steps.
func TestPrefillDelaysDecode(t *testing.T) {
	d := newDriver(t, testGPU)
	d.submit(strings.Repeat("a", 40), 3)
	d.step() // a prefilled: 1 ms
	d.submit(strings.Repeat("b", 4000), 1)
	d.drain()
	// a's second token waits for b's 1000-token prefill in the same step.
	want := []time.Duration{1 * ms, 11*ms + 100*ms, 11 * ms}
	if diff := cmp.Diff(d.steps, want); diff != "" {
		t.Errorf("unchunked steps (-got +want):\n%s", diff)
	}

	g := testGPU
	g.PrefillChunk = 400
	d = newDriver(t, g)
	d.submit(strings.Repeat("a", 40), 4)
	d.step()
	b := d.submit(strings.Repeat("b", 4000), 1)
	d.drain()
	want = []time.Duration{1 * ms, 11*ms + 40*ms, 11*ms + 40*ms, 11*ms + 20*ms}
	if diff := cmp.Diff(d.steps, want); diff != "" {
		t.Errorf("chunked steps (-got +want):\n%s", diff)
	}
	if got := d.first[b]; got != 1*ms+51*ms+51*ms+31*ms {
		t.Errorf("b's first token at %v", got)
	}
}

// TestLeaveFreesTheSlot: a request that leaves (client gone, stop
// sequence) frees its batch slot and its tokens at once.
func TestLeaveFreesTheSlot(t *testing.T) {
	g := testGPU
	g.MaxBatch = 1
	d := newDriver(t, g)
	a := d.submit(strings.Repeat("a", 40), 100)
	b := d.submit(strings.Repeat("b", 40), 1)
	d.step()
	d.step()
	d.r.leave(a)
	d.drain()
	if a.granted != 2 || b.granted != 1 {
		t.Errorf("granted a %d, b %d", a.granted, b.granted)
	}
	if want := []time.Duration{1 * ms, 11 * ms, 1 * ms}; !cmp.Equal(d.steps, want) {
		t.Errorf("steps %v, want %v", d.steps, want)
	}
	if d.r.cache.private != 0 || d.r.active != 0 || len(d.r.decoding) != 0 {
		t.Errorf("after both: %d private tokens, %d active, %d decoding", d.r.cache.private, d.r.active, len(d.r.decoding))
	}
}

// TestLRUEviction: past its capacity the cache drops the least recently
// used blocks, the tail of a prefix before its head, and never a block a
// running sequence holds.
func TestLRUEviction(t *testing.T) {
	c := newKVCache(16, 64) // four blocks
	a := []uint64{1, 2, 3}
	b := []uint64{4, 5}
	c.hold(a)
	c.release(a)
	c.hold(b)
	c.release(b)
	c.evict()
	if got := c.match(a); got != 2 {
		t.Errorf("after b, a matches %d blocks, want 2 (its tail evicted)", got)
	}
	if got := c.match(b); got != 2 {
		t.Errorf("b matches %d blocks, want 2", got)
	}
	// Held blocks stay even over capacity.
	c.hold(b)
	c.private += 100
	c.evict()
	if c.match(b) != 2 || c.match(a) != 0 {
		t.Errorf("with b held and the cache full: b %d, a %d", c.match(b), c.match(a))
	}
	c.private -= 100
	c.release(b)

	// Through the scheduler: a cache of 8 blocks holds one 6-block prompt;
	// a second prompt evicts most of it.
	g := testGPU
	g.CacheTokens = 128
	d := newDriver(t, g)
	p1, p2 := strings.Repeat("1", 400), strings.Repeat("2", 400)
	d.submit(p1, 1)
	d.drain()
	d.submit(p2, 1) // 100 tokens in prefill: 128 - 100 leaves one block of p1
	d.drain()
	s := d.submit(p1, 1)
	d.drain()
	if s.cached != 16 {
		t.Errorf("p1 after p2: cached %d, want 16 (its first block)", s.cached)
	}
}

func TestBlockChain(t *testing.T) {
	text := []byte(strings.Repeat("z", 200))
	if got := blockChain(nil, text, 50, 16); len(got) != 3 {
		t.Errorf("200 bytes, 50 tokens: %d blocks, want 3", len(got))
	}
	// The token count caps the blocks: a prompt of 16 tokens has none.
	if got := blockChain(nil, text[:64], 16, 16); len(got) != 0 {
		t.Errorf("16 tokens: %d blocks, want 0", len(got))
	}
	a := blockChain(nil, []byte(strings.Repeat("y", 128)+"aaaa"), 33, 16)
	b := blockChain(nil, []byte(strings.Repeat("y", 128)+"bbbb"), 33, 16)
	if !cmp.Equal(a, b) || len(a) != 2 || a[0] == a[1] {
		t.Errorf("chains %x and %x", a, b)
	}
}
