package route

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
)

// Prefix affinity defaults.
const (
	// DefaultAffinityDepth is the default PrefixAffinity.Depth: 8 blocks,
	// 2 KiB of prompt text, about 512 tokens.
	DefaultAffinityDepth = 8
	// DefaultAffinityBound is the default PrefixAffinity.Bound.
	DefaultAffinityBound = 1.25
	// DefaultAffinityWeight is the default PrefixAffinity.Weight.
	DefaultAffinityWeight = 2.0
	// DefaultAffinityRemember is the default PrefixAffinity.Remember.
	DefaultAffinityRemember = 4096
)

// PrefixAffinity sends requests whose prompts share a prefix to the same
// replica, whose engine then finds the prefix in its KV cache and skips
// most of its prefill (llama-server's cache_prompt, vLLM's automatic
// prefix caching, SGLang's radix cache).
//
// The replica is chosen by rendezvous hashing: each loaded replica of the
// model weighs hash(prefix, neuron name), and the heaviest wins. It needs
// no shared state, so every cortex replica in front of the same fleet
// picks the same replica for the same prefix, and a replica that comes or
// goes moves only the prefixes it wins. Loads are bounded, as in
// consistent hashing with bounded loads (Mirrokni, Thorup and
// Zadimoghaddam, 2016): a replica whose work would pass Bound × the mean
// work of the model's replicas is full, and the prefix spills to the next
// replica in its order, so a hot prefix spreads instead of melting one
// GPU.
//
// The chosen replica scores Weight among the replica scorers (WithScorers);
// the others score 0, so with the default weights it wins over the
// least-loaded score, and the other scorers rank the rest when it cannot
// serve (tried, filtered, ejected). A request with fewer than Depth whole
// blocks of prompt has no prefix worth keeping: it is routed without
// affinity.
//
// A Router remembers the last prefixes it saw (Remember), each with the
// replica it last sent it to. A prefix seen for the first time is held to
// a tighter bound: it goes to its replica only while that replica is one
// of the least busy; else to the heaviest, for the prefix, of those that
// are. Prompts that share nothing (each unique) are then routed as
// least-loaded routing routes them, ties broken by their hashes, instead
// of being scattered by their hashes under the looser bound, which leaves
// the replicas less even. A prefix seen before goes back to the replica
// it went to last, whose cache holds it (and, for a conversation, its
// latest turn), while that one is within Bound of the mean; else to its
// own replica, then down its order as above. So a recurring prefix starts
// on its own replica whenever that one is among the least busy (an idle
// fleet, a fleet evenly busy), on every gateway alike, and otherwise
// stays where it started rather than paying a second cache miss to move
// to its own. (Sending a conversation's second turn to its own replica,
// away from the one its first turn warmed, cost about 4× the mean TTFT of
// staying in the fleet benchmark's conversations.)
type PrefixAffinity struct {
	// Depth is the prefix, in blocks of PrefixBlockBytes, that decides the
	// replica: prompts that share their first Depth blocks go to the same
	// replica. About the length of a shared system prompt groups requests
	// by it; longer separates conversations that share one. At most
	// MaxPrefixBlocks. Default DefaultAffinityDepth (8).
	Depth int
	// Bound caps a replica's work at Bound × the mean of the model's
	// replicas (at least 1). Default DefaultAffinityBound (1.25).
	Bound float64
	// Weight is the chosen replica's score. Default DefaultAffinityWeight
	// (2), above LeastLoaded's 1.
	Weight float64
	// Remember is how many recent prefixes the Router remembers (a table
	// of that many slots, rounded up to a power of two, 8 bytes each; a
	// newer prefix may take an older one's slot). A prefix not among them
	// is held to the tighter bound. -1 holds every prefix to Bound alone.
	// Default DefaultAffinityRemember (4096).
	Remember int

	seen []atomic.Uint64 // the prefixes remembered; nil with Remember -1
}

// WithPrefixAffinity turns prefix affinity on (see PrefixAffinity); zero
// fields take their defaults. Default off.
func WithPrefixAffinity(a PrefixAffinity) RouterOption {
	return routerOptionFunc(func(r *DefaultRouter) {
		if a.Depth == 0 {
			a.Depth = DefaultAffinityDepth
		}
		if a.Bound == 0 {
			a.Bound = DefaultAffinityBound
		}
		if a.Weight == 0 {
			a.Weight = DefaultAffinityWeight
		}
		if a.Remember == 0 {
			a.Remember = DefaultAffinityRemember
		}
		if a.Remember > 0 && a.Remember <= maxRemember {
			n := 1
			for n < a.Remember {
				n <<= 1
			}
			a.seen = make([]atomic.Uint64, n)
		}
		r.affinity = &a
	})
}

// unseenSlack is how much busier than the least busy replica the replica
// of a prefix seen for the first time may be and still take it: none, so
// that unique prompts are routed as least-loaded routing does, ties broken
// by their hashes (a slack of one cost unique prompts 1.2–1.6x the p99
// TTFT of least-loaded routing in the fleet benchmark).
const unseenSlack = 0

// maxRemember bounds PrefixAffinity.Remember: 8 MiB of table.
const maxRemember = 1 << 20

// A slot of the table of remembered prefixes holds the prefix's key in
// its high bits and, in its low whereBits, the low bits of the name hash
// of the neuron the prefix last went to: one atomic word, so that a slot
// is never read half written.
const (
	whereBits = 20
	whereMask = 1<<whereBits - 1
)

// recall reports whether the Router saw key recently and, if so, the
// replica it last sent it to (the low whereBits of its neuron's name
// hash). With Remember -1 every prefix counts as seen, and none has a
// replica: it goes by rendezvous alone. The table is shared by every
// Route call, through atomic loads and stores: a race between two
// requests of one prefix at most sends both where the first of them
// would go.
func (a *PrefixAffinity) recall(key uint64) (where uint64, seen, placed bool) {
	if a.seen == nil {
		return 0, true, false
	}
	v := a.seen[key&uint64(len(a.seen)-1)].Load()
	if v == 0 || v&^whereMask != key&^whereMask {
		return 0, false, false
	}
	return v & whereMask, true, true
}

// remember records that key went to the replica on the neuron whose name
// hash is nameHash.
func (a *PrefixAffinity) remember(key, nameHash uint64) {
	if a.seen != nil {
		a.seen[key&uint64(len(a.seen)-1)].Store(key&^whereMask | nameHash&whereMask)
	}
}

func (a *PrefixAffinity) validate() error {
	var errs []error
	if a.Depth < 1 || a.Depth > MaxPrefixBlocks {
		errs = append(errs, fmt.Errorf("prefix affinity depth %d is not in [1, %d]", a.Depth, MaxPrefixBlocks))
	}
	if !(a.Bound >= 1) || math.IsInf(a.Bound, 0) {
		errs = append(errs, fmt.Errorf("prefix affinity bound %v is not at least 1", a.Bound))
	}
	if !(a.Weight > 0) || math.IsInf(a.Weight, 0) {
		errs = append(errs, fmt.Errorf("prefix affinity weight %v is not positive", a.Weight))
	}
	if a.Remember < -1 || a.Remember > maxRemember {
		errs = append(errs, fmt.Errorf("prefix affinity remember %d is not -1 or in [1, %d]", a.Remember, maxRemember))
	}
	return errors.Join(errs...)
}

// prefer returns the replica the request's prefix goes to, or nil when
// the request has no prefix worth keeping or no replica it may go to. One
// walk over the ready replicas finds the heaviest and the mean work; a
// second, only when the heaviest is full, finds the heaviest that is not.
// It does not allocate.
func (r *DefaultRouter) prefer(f *Fleet, req *Request, mi *modelIndex) *readyReplica {
	a := r.affinity
	if req.Prefix.Len() < a.Depth {
		return nil
	}
	key := req.Prefix.Block(a.Depth - 1)
	where, seen, placed := a.recall(key)
	plain := len(r.filters) == 0 && len(req.Tried) == 0
	var top, least, last *readyReplica
	var topWeight uint64
	topLoad, leastLoad, lastLoad, total, n := 0, 0, 0, 0, 0
	for i := range mi.ready {
		rr := &mi.ready[i]
		if rr.ej.Active(f.at) || !plain && !r.eligible(f, req, rr) {
			continue
		}
		load := rr.base + rr.live.InFlight()
		total += load
		n++
		if least == nil || load < leastLoad {
			least, leastLoad = rr, load
		}
		if w := rendezvous(key, rr.n.nameHash); top == nil || w > topWeight {
			top, topWeight, topLoad = rr, w, load
		}
		if placed && rr.n.nameHash&whereMask == where {
			last, lastLoad = rr, load
		}
	}
	if n == 0 {
		return nil
	}
	// A replica may take the request while its work, this request
	// included, stays within the bound of the mean; a prefix not seen
	// before, only while it is one of the least busy. A prefix seen
	// before goes back to the replica it went to last, which holds it in
	// its cache, then to its own replica.
	capacity := int(math.Ceil(a.Bound * float64(total+1) / float64(n)))
	if !seen {
		capacity = leastLoad + 1 + unseenSlack
	}
	best := top
	switch {
	case last != nil && lastLoad+1 <= capacity:
		best = last
	case topLoad+1 > capacity:
		best = r.spill(f, req, mi, key, capacity, plain, least)
	}
	a.remember(key, best.n.nameHash)
	return best
}

// spill returns the heaviest replica for key whose work, with one more
// request, stays within capacity; least when every one is full.
func (r *DefaultRouter) spill(f *Fleet, req *Request, mi *modelIndex, key uint64, capacity int, plain bool, least *readyReplica) *readyReplica {
	var best *readyReplica
	var bestWeight uint64
	for i := range mi.ready {
		rr := &mi.ready[i]
		if rr.ej.Active(f.at) || !plain && !r.eligible(f, req, rr) {
			continue
		}
		if rr.base+rr.live.InFlight()+1 > capacity {
			continue
		}
		if w := rendezvous(key, rr.n.nameHash); best == nil || w > bestWeight {
			best, bestWeight = rr, w
		}
	}
	if best == nil {
		best = least // every replica full: the least busy one
	}
	return best
}

// eligible reports whether the request may be served by rr, ejections
// aside: not tried, and kept by the filters.
func (r *DefaultRouter) eligible(f *Fleet, req *Request, rr *readyReplica) bool {
	if _, t := req.tried(rr.n.Name); t {
		return false
	}
	return len(r.filters) == 0 || r.keep(f, req, Candidate{Neuron: rr.n, Model: rr.m, Action: ActionServe, Profile: &rr.m.Profile})
}

// rendezvous is the weight of a neuron for a prefix: a 64-bit mix of the
// two hashes (the finaliser of splitmix64), so that every neuron's order
// for a prefix is independent of the others'.
func rendezvous(key, neuron uint64) uint64 {
	z := key ^ (neuron * 0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// fnv64 is the 64-bit FNV-1a hash of s.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}
