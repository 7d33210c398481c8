package entitlements

import (
	"context"
	"github.com/helexa-ai/helexa-go/clock"
	"sync"
	"sync/atomic"
	"time"
)

// limitRetryInFlight is the RetryAfter of a request refused by
// max_in_flight: when a slot frees is unknown, and requests are short.
const limitRetryInFlight = time.Second

// KeyLimiter is the in-process Limiter: it counts the per-key limits
// (Limits.MaxInFlight and Limits.RPM) of the principals it is given in the
// memory of one process. A gateway uses one for a Provider that is no
// Limiter; a Provider may embed one to be a Limiter itself. N gateway
// replicas, each with its own KeyLimiter, let a key have N times its
// limits; entitlements/redisledger's Ledger shares them.
//
//   - max_in_flight counts the key's requests between Acquire and the
//     Release of their Slot.
//   - rpm is a token bucket holding up to rpm requests, refilled at rpm per
//     minute: a key may send a burst of rpm requests, then one every
//     60/rpm seconds. A refused request takes nothing from the bucket. It is
//     kept as GCRA (one theoretical arrival time per key, in integer time),
//     so the arithmetic is exact.
//
// State is kept per (account, key id) and only while it differs from a
// fresh key's: an entry with nothing in flight and a full bucket is
// deleted by the next sweep, which runs after as many operations as there
// are entries (amortised O(1)). Memory is bounded by the keys that sent a
// request within the last minute or have one in flight.
//
// A *KeyLimiter is safe for concurrent use; its critical sections are a few
// arithmetic operations and take no I/O. Build one with NewKeyLimiter.
type KeyLimiter struct {
	now func() time.Time

	mu   sync.Mutex
	keys map[keyRef]*keyState
	ops  int // operations since the last sweep
}

var _ Limiter = (*KeyLimiter)(nil)

// keyRef names a key: its account and key id.
type keyRef struct{ account, key string }

// keyState is the live state of one key.
type keyState struct {
	inFlight int
	// tat is the theoretical arrival time of GCRA: the bucket is full at
	// tat and every admitted request moves it one interval (a minute /
	// rpm) later. The zero time is a full bucket.
	tat time.Time
}

// minSweep is the fewest operations between two sweeps.
const minSweep = 64

// NewKeyLimiter returns a KeyLimiter reading time from clk
// (clock.System when nil), as the gateway does from its own clock.
func NewKeyLimiter(clk clock.Clock) *KeyLimiter {
	if clk == nil {
		clk = clock.System{}
	}
	return &KeyLimiter{now: clk.Now, keys: make(map[keyRef]*keyState)}
}

// Limited reports whether p has a per-key limit to count: it is not
// anonymous and has MaxInFlight or RPM set.
func Limited(p Principal) bool {
	return !p.IsAnonymous() && (p.Limits.MaxInFlight > 0 || p.Limits.RPM > 0)
}

// freeSlot is the Slot of a request of a key without limits: it holds
// nothing.
type freeSlot struct{}

func (freeSlot) Release(context.Context) error { return nil }

// keySlot is a Slot of a key with limits, counted in its requests in
// flight.
type keySlot struct {
	l    *KeyLimiter
	p    Principal
	done atomic.Bool
}

// Release implements Slot.
func (s *keySlot) Release(context.Context) error {
	if s.done.CompareAndSwap(false, true) {
		s.l.release(s.p)
	}
	return nil
}

// Acquire implements Limiter: it admits one request of p, or returns a
// *LimitError and changes nothing. It never returns a nil Slot without an
// error: a principal without limits gets a Slot that holds nothing.
func (l *KeyLimiter) Acquire(ctx context.Context, p Principal) (Slot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !Limited(p) {
		return freeSlot{}, nil
	}
	lim := p.Limits
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	k := keyRef{p.AccountID, p.KeyID}
	s := l.keys[k]
	if s == nil {
		s = &keyState{}
		l.keys[k] = s
	}
	if lim.MaxInFlight > 0 && s.inFlight >= lim.MaxInFlight {
		return nil, &LimitError{Limit: LimitMaxInFlight, Max: lim.MaxInFlight, RetryAfter: limitRetryInFlight}
	}
	if lim.RPM > 0 {
		// GCRA: admit when the bucket, full at tat, has room for one more
		// by now; the burst tolerance is rpm-1 intervals.
		interval := time.Minute / time.Duration(lim.RPM)
		tat := s.tat
		if tat.Before(now) {
			tat = now
		}
		if early := tat.Sub(now) - interval*time.Duration(lim.RPM-1); early > 0 {
			return nil, &LimitError{Limit: LimitRPM, Max: lim.RPM, RetryAfter: early}
		}
		s.tat = tat.Add(interval)
	}
	s.inFlight++
	return &keySlot{l: l, p: p}, nil
}

// release ends a request of p admitted by Acquire.
func (l *KeyLimiter) release(p Principal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.keys[keyRef{p.AccountID, p.KeyID}]; s != nil && s.inFlight > 0 {
		s.inFlight--
	}
}

// InFlight returns the requests of p between Acquire and the Release of
// their Slot; 0 for a key without limits (the limiter does not count
// those).
func (l *KeyLimiter) InFlight(p Principal) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.keys[keyRef{p.AccountID, p.KeyID}]; s != nil {
		return s.inFlight
	}
	return 0
}

// sweep deletes the entries at rest, once enough operations have passed.
// l.mu must be held.
func (l *KeyLimiter) sweep(now time.Time) {
	l.ops++
	if l.ops < max(len(l.keys), minSweep) {
		return
	}
	l.ops = 0
	for k, s := range l.keys {
		if s.inFlight == 0 && !s.tat.After(now) {
			delete(l.keys, k) // at rest: a fresh key's state
		}
	}
}
