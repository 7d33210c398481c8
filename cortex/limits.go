package cortex

import (
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// limitRetryInFlight is the Retry-After of a request refused by
// max_in_flight: when a slot frees is unknown, and requests are short.
const limitRetryInFlight = time.Second

// keyLimiter enforces the per-key limits (entitlements.Limits MaxInFlight
// and RPM) of keys whose provider does not (no entitlements.Limiter), in
// this process only: N gateway replicas let such a key have N times its
// limits.
//
//   - max_in_flight counts the key's requests between acquire and release.
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
// A keyLimiter is safe for concurrent use; its critical sections are a few
// arithmetic operations and take no I/O.
type keyLimiter struct {
	now func() time.Time

	mu   sync.Mutex
	keys map[keyRef]*keyState
	ops  int // operations since the last sweep
}

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

func newKeyLimiter(now func() time.Time) *keyLimiter {
	return &keyLimiter{now: now, keys: make(map[keyRef]*keyState)}
}

// limited reports whether p has a limit the limiter enforces.
func limited(p entitlements.Principal) bool {
	return !p.IsAnonymous() && (p.Limits.MaxInFlight > 0 || p.Limits.RPM > 0)
}

// acquire admits one request of p, or returns a *RateLimitError and
// changes nothing. When it returns nil, and p has limits, the caller must
// call release(p) once when the request ends.
func (l *keyLimiter) acquire(p entitlements.Principal) error {
	if !limited(p) {
		return nil
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
		return &RateLimitError{Limit: LimitMaxInFlight, Max: lim.MaxInFlight, RetryAfter: limitRetryInFlight}
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
			return &RateLimitError{Limit: LimitRPM, Max: lim.RPM, RetryAfter: early}
		}
		s.tat = tat.Add(interval)
	}
	s.inFlight++
	return nil
}

// release ends a request admitted by acquire.
func (l *keyLimiter) release(p entitlements.Principal) {
	if !limited(p) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.keys[keyRef{p.AccountID, p.KeyID}]; s != nil && s.inFlight > 0 {
		s.inFlight--
	}
}

// inFlight returns the requests of p between acquire and release; 0 for a
// key without limits (the limiter does not count those).
func (l *keyLimiter) inFlight(p entitlements.Principal) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.keys[keyRef{p.AccountID, p.KeyID}]; s != nil {
		return s.inFlight
	}
	return 0
}

// sweep deletes the entries at rest, once enough operations have passed.
// l.mu must be held.
func (l *keyLimiter) sweep(now time.Time) {
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
