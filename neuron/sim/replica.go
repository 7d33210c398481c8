package sim

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// maxLag is how far the scheduler may fall behind real time and still
// catch up by running steps without waiting: past it, on a machine too
// busy to keep the pace, the lost time is dropped rather than made up in a
// burst.
const maxLag = 50 * time.Millisecond

// replica is one engine replica under a GPU model: a scheduler that runs
// engine steps one after the other, as vLLM's engine loop does. A step
// prefills up to PrefillChunk prompt tokens of the requests admitted (in
// arrival order) and runs one decode step of every sequence past its
// prefill; it lasts the sum of their times, so a prefill delays the
// decode of the whole batch. A request is admitted when the batch has room
// for its choices and the step has prefill tokens left; it then looks up
// its cached prefix. A sequence gets its first token at the end of the
// step that finishes its prefill, and one more at the end of each later
// step, until its budget.
//
// The scheduler's arithmetic is plan and apply, which read no clock: run
// is the one goroutine that calls them, waiting the scaled duration of
// each step in between. It runs only while there is work, so that an idle
// replica holds no goroutine.
//
// Concurrency: submit and leave may be called from many goroutines at once.
type replica struct {
	g     GPU // with defaults
	clock Clock

	mu         sync.Mutex
	cache      *kvCache
	waiting    []*seq // arrival order; may hold sequences that left
	prefilling []*seq // admitted, prefill not done, admission order
	decoding   []*seq
	active     int  // weight of prefilling and decoding
	running    bool // run is started
	cur        step // planned, not yet applied
}

// step is the work of one engine step.
type step struct {
	dur     time.Duration
	prefill []prefillWork
	decode  []*seq
}

// prefillWork is n prompt tokens of s prefilled in a step.
type prefillWork struct {
	s *seq
	n int
}

// seq states.
const (
	seqWaiting = iota
	seqPrefilling
	seqDecoding
	seqDone
)

// seq is one request on a replica: its prompts' block chains, its size,
// and the tokens granted to it.
type seq struct {
	chains [][]uint64 // one per prompt
	prompt int        // prompt tokens, all prompts
	weight int        // sequences in the batch: the request's choices
	budget int        // tokens to generate, at least 1

	// Guarded by replica.mu.
	state     int
	hits      []int // cached blocks per prompt
	cached    int   // prompt tokens found cached
	prefilled int   // prompt tokens prefilled, cached ones included
	private   int   // tokens held in the cache outside blocks
	held      bool  // hits were taken; all chains after the prefill
	granted   int

	ready atomic.Int64  // tokens granted, for the request's goroutine
	wake  chan struct{} // a signal after each grant, capacity 1
}

func newReplica(g GPU, clock Clock) *replica {
	g = g.WithDefaults()
	return &replica{g: g, clock: clock, cache: newKVCache(g.BlockTokens, g.CacheTokens)}
}

// newSeq returns a sequence of prompt tokens over chains, weight choices
// and budget tokens (at least 1: a prefill always makes a token).
func newSeq(chains [][]uint64, prompt, weight, budget int) *seq {
	return &seq{chains: chains, prompt: prompt, weight: max(weight, 1), budget: max(budget, 1),
		hits: make([]int, len(chains)), wake: make(chan struct{}, 1)}
}

// submit queues s and starts the scheduler if it is idle.
func (r *replica) submit(s *seq) {
	r.mu.Lock()
	r.waiting = append(r.waiting, s)
	start := !r.running
	r.running = true
	r.mu.Unlock()
	if start {
		go r.run()
	}
}

// leave ends s: its client went away, its answer ended at a stop sequence
// or it got all its tokens. Its batch slot and cache tokens are freed.
func (r *replica) leave(s *seq) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch s.state {
	case seqDone:
		return
	case seqPrefilling:
		r.prefilling = remove(r.prefilling, s)
	case seqDecoding:
		r.decoding = remove(r.decoding, s)
	}
	r.finish(s) // a waiting one stays in r.waiting, skipped when admitted
}

// finish frees what s holds. r.mu must be held.
func (r *replica) finish(s *seq) {
	if s.state == seqPrefilling || s.state == seqDecoding {
		r.active -= s.weight
	}
	if s.held {
		for i, c := range s.chains {
			if s.state == seqDecoding {
				r.cache.release(c)
			} else {
				r.cache.release(c[:s.hits[i]])
			}
		}
	}
	r.cache.private -= s.private
	s.private = 0
	s.state = seqDone
}

func remove(list []*seq, s *seq) []*seq {
	for i, x := range list {
		if x == s {
			copy(list[i:], list[i+1:])
			list[len(list)-1] = nil
			return list[:len(list)-1]
		}
	}
	return list
}

// plan admits what the next step can take, sets r.cur to that step and
// reports whether there is anything to do. r.mu must be held.
func (r *replica) plan() bool {
	g := &r.g
	cur := &r.cur
	cur.prefill, cur.decode = cur.prefill[:0], cur.decode[:0]
	budget := g.PrefillChunk
	if budget < 0 {
		budget = int(^uint(0) >> 1)
	}
	var prefilled, cachedNow int
	take := func(s *seq) {
		n := min(s.prompt-s.prefilled, budget)
		cur.prefill = append(cur.prefill, prefillWork{s, n})
		budget -= n
		prefilled += n
	}
	for _, s := range r.prefilling {
		if budget == 0 {
			break
		}
		take(s)
	}
	for budget > 0 && len(r.waiting) > 0 {
		s := r.waiting[0]
		if s.state == seqDone {
			r.waiting[0] = nil
			r.waiting = r.waiting[1:]
			continue
		}
		if r.active > 0 && r.active+s.weight > g.MaxBatch {
			break
		}
		r.waiting[0] = nil
		r.waiting = r.waiting[1:]
		r.admit(s)
		cachedNow += s.cached
		take(s)
	}
	batch := 0
	for _, s := range r.decoding {
		cur.decode = append(cur.decode, s)
		batch += s.weight
	}
	if len(r.waiting) == 0 {
		r.waiting = nil // let the emptied backing array go
	}
	cur.dur = g.DecodeStepTime(batch) + g.PrefillTime(prefilled, cachedNow)
	return len(cur.prefill) > 0 || len(cur.decode) > 0
}

// admit starts the prefill of s: it looks up the cached prefix of each of
// its prompts and holds those blocks. r.mu must be held.
func (r *replica) admit(s *seq) {
	s.state = seqPrefilling
	r.prefilling = append(r.prefilling, s)
	r.active += s.weight
	for i, c := range s.chains {
		s.hits[i] = r.cache.match(c)
		r.cache.hold(c[:s.hits[i]])
		s.cached += s.hits[i] * r.g.BlockTokens
	}
	s.held = true
	s.prefilled = s.cached
	s.private = s.prompt - s.cached
	r.cache.private += s.private
	r.cache.evict()
}

// apply ends the step planned: prefill progress, the blocks of the
// prefills done into the cache, and one token for each sequence decoded
// and each prefill done. r.mu must be held.
func (r *replica) apply() {
	cur := &r.cur
	grew := 0
	for _, s := range cur.decode {
		if s.state != seqDecoding { // left during the step
			continue
		}
		r.grant(s)
		s.private += s.weight
		grew += s.weight
		if s.granted >= s.budget {
			r.decoding = remove(r.decoding, s)
			r.finish(s)
		}
	}
	r.cache.private += grew
	for _, w := range cur.prefill {
		s := w.s
		if s.state != seqPrefilling {
			continue
		}
		s.prefilled += w.n
		if s.prefilled < s.prompt {
			continue
		}
		r.prefilling = remove(r.prefilling, s)
		s.state = seqDecoding
		moved := 0
		for i, c := range s.chains {
			r.cache.hold(c[s.hits[i]:])
			moved += (len(c) - s.hits[i]) * r.g.BlockTokens
		}
		s.private -= moved
		r.cache.private -= moved
		r.decoding = append(r.decoding, s)
		r.grant(s)
		if s.granted >= s.budget {
			r.decoding = remove(r.decoding, s)
			r.finish(s)
		}
	}
	r.cache.evict()
	clear(cur.prefill)
	clear(cur.decode)
}

// grant gives s one more token and wakes its request. r.mu must be held.
func (r *replica) grant(s *seq) {
	s.granted++
	s.ready.Store(int64(s.granted))
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the scheduler's goroutine: plan a step, wait its scaled time,
// apply it, until there is nothing to do.
func (r *replica) run() {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	due := r.now()
	for {
		r.mu.Lock()
		if !r.plan() {
			r.running = false
			r.mu.Unlock()
			return
		}
		d := r.g.scale(r.cur.dur)
		r.mu.Unlock()

		now := r.now()
		if now.Sub(due) > maxLag {
			due = now.Add(-maxLag)
		}
		due = due.Add(d)
		if wait := due.Sub(now); wait > 0 {
			if r.clock != nil {
				_ = r.clock.Sleep(context.Background(), wait)
			} else if timer == nil {
				timer = time.NewTimer(wait)
				<-timer.C
			} else {
				timer.Reset(wait)
				<-timer.C
			}
		}

		r.mu.Lock()
		r.apply()
		r.mu.Unlock()
	}
}

func (r *replica) now() time.Time {
	if r.clock != nil {
		return r.clock.Now()
	}
	return time.Now()
}

// wait blocks until s has been granted token number step (from 0), or ctx
// ends.
func (s *seq) wait(ctx context.Context, step int) error {
	for s.ready.Load() <= int64(step) {
		select {
		case <-s.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
