package entitlementstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// The Leases and Limits groups: capabilities a provider has as
// entitlements' optional interfaces.

// leaser returns pr as a Leaser and its lease TTL, failing the test when
// it is none.
func leaser(t *testing.T, pr entitlements.Provider) time.Duration {
	t.Helper()
	l, ok := pr.(entitlements.Leaser)
	if !ok {
		t.Fatalf("the provider (%T) claims Leases but is no entitlements.Leaser", pr)
	}
	ttl := l.LeaseTTL()
	if ttl <= 0 {
		t.Fatalf("LeaseTTL() = %v, want > 0", ttl)
	}
	return ttl
}

// renewer returns r as a Renewer, failing the test when it is none.
func renewer(t *testing.T, r entitlements.Reservation) entitlements.Renewer {
	t.Helper()
	rn, ok := r.(entitlements.Renewer)
	if !ok {
		t.Fatalf("the reservation (%T) of a provider that claims Leases is no entitlements.Renewer", r)
	}
	return rn
}

// testLeaseRenewer: the provider tells its lease TTL, and its reservations
// are Renewers that honour a cancelled context.
func testLeaseRenewer(t *testing.T, e *env) {
	b := e.budget
	pr, p := e.one(t, b)
	leaser(t, pr)
	r := reserve(t, pr, p, 10)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := renewer(t, r).Renew(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Renew with a cancelled context = %v, want context.Canceled", err)
	}
	if err := renewer(t, r).Renew(t.Context(), 0); err != nil {
		t.Errorf("Renew: %v", err)
	}
	wantSnapshot(t, pr, p, want(b, 0, 10))
	settle(t, r, 10)
}

// testLeaseExpires: a lease not renewed within its TTL frees its amount,
// and a Settle after that still records the spend (the work was served).
func testLeaseExpires(t *testing.T, e *env) {
	b := e.budget
	pr, p := e.one(t, b)
	ttl := leaser(t, pr)
	r := reserve(t, pr, p, 10)
	kept := reserve(t, pr, p, 20)
	e.clock.Advance(ttl / 2)
	if err := renewer(t, kept).Renew(t.Context(), 0); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	e.clock.Advance(ttl/2 + time.Second)
	wantSnapshot(t, pr, p, want(b, 0, 20))
	if err := r.Settle(t.Context(), 7); err != nil {
		t.Fatalf("Settle of an expired lease: %v", err)
	}
	wantSnapshot(t, pr, p, want(b, 7, 20))
	if err := r.Settle(t.Context(), 7); !errors.Is(err, entitlements.ErrReservationSettled) {
		t.Errorf("second Settle of an expired lease = %v, want ErrReservationSettled", err)
	}
	release(t, kept)
}

// testLeaseRenewed: renewals keep a lease held for as long as they come,
// with the TTL they give.
func testLeaseRenewed(t *testing.T, e *env) {
	b := e.budget
	pr, p := e.one(t, b)
	ttl := leaser(t, pr)
	r := reserve(t, pr, p, 10)
	rn := renewer(t, r)
	for range 3 {
		e.clock.Advance(ttl * 2 / 3)
		if err := rn.Renew(t.Context(), 0); err != nil {
			t.Fatalf("Renew: %v", err)
		}
	}
	wantSnapshot(t, pr, p, want(b, 0, 10))
	// A longer TTL than the provider's.
	if err := rn.Renew(t.Context(), 2*ttl); err != nil {
		t.Fatalf("Renew(2 TTL): %v", err)
	}
	e.clock.Advance(ttl * 3 / 2)
	wantSnapshot(t, pr, p, want(b, 0, 10))
	settle(t, r, 10)
	wantSnapshot(t, pr, p, want(b, 10, 0))
}

// testLeaseRenewConsumed: a consumed reservation is not renewed.
func testLeaseRenewConsumed(t *testing.T, e *env) {
	b := e.budget
	pr, p := e.one(t, b)
	leaser(t, pr)
	for name, end := range map[string]func(context.Context, entitlements.Reservation) error{
		"settled": settleWith(3), "released": releaseIt,
	} {
		r := reserve(t, pr, p, 10)
		if err := end(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if err := renewer(t, r).Renew(t.Context(), 0); !errors.Is(err, entitlements.ErrReservationSettled) {
			t.Errorf("Renew of a %s reservation = %v, want ErrReservationSettled", name, err)
		}
	}
	wantSnapshot(t, pr, p, want(b, 3, 0))
}

// limiter seeds keys, resolves them and returns pr as a Limiter with the
// principals, failing the test when pr is no Limiter.
func (e *env) limiter(t *testing.T, keys ...KeySpec) (entitlements.Limiter, []entitlements.Principal) {
	t.Helper()
	for i := range keys {
		keys[i].Budget = e.budget
	}
	pr := e.provider(t, keys...)
	l, ok := pr.(entitlements.Limiter)
	if !ok {
		t.Fatalf("the provider (%T) claims Limits but is no entitlements.Limiter", pr)
	}
	return l, resolveAll(t, pr, keys...)
}

// acquire admits one request of p, failing the test on an error or a nil
// Slot (which leaves the limits to the caller: no provider that claims
// Limits may answer it for a key with limits).
func acquire(t *testing.T, l entitlements.Limiter, p entitlements.Principal) entitlements.Slot {
	t.Helper()
	s, err := l.Acquire(t.Context(), p)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", p.KeyID, err)
	}
	if s == nil {
		t.Fatalf("Acquire(%s) returned a nil Slot: the provider leaves the limits it claims to the caller", p.KeyID)
	}
	return s
}

func releaseSlot(t *testing.T, s entitlements.Slot) {
	t.Helper()
	if err := s.Release(t.Context()); err != nil {
		t.Fatalf("Slot.Release: %v", err)
	}
}

// limitError checks that err is a *LimitError of limit, max.
func limitError(t *testing.T, err error, limit string, max int) *entitlements.LimitError {
	t.Helper()
	var le *entitlements.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want a *LimitError", err)
	}
	if le.Limit != limit || le.Max != max {
		t.Errorf("LimitError = %+v, want Limit %q, Max %d", le, limit, max)
	}
	if le.RetryAfter <= 0 {
		t.Errorf("LimitError.RetryAfter = %v, want > 0", le.RetryAfter)
	}
	return le
}

func limitedKey(secret, account, keyID string, lim entitlements.Limits) KeySpec {
	return KeySpec{Secret: secret, Principal: entitlements.Principal{AccountID: account, KeyID: keyID, Limits: lim}}
}

// testLimitMaxInFlight: max_in_flight admits that many requests at once;
// a refusal takes nothing, and a released slot (released once, however
// often Release is called) makes room for one more.
func testLimitMaxInFlight(t *testing.T, e *env) {
	l, ps := e.limiter(t, limitedKey("sk-busy", "acct", "busy", entitlements.Limits{MaxInFlight: 2}))
	p := ps[0]
	s1, s2 := acquire(t, l, p), acquire(t, l, p)
	_, err := l.Acquire(t.Context(), p)
	limitError(t, err, entitlements.LimitMaxInFlight, 2)
	releaseSlot(t, s1)
	releaseSlot(t, s1)
	s3 := acquire(t, l, p)
	_, err = l.Acquire(t.Context(), p)
	limitError(t, err, entitlements.LimitMaxInFlight, 2)
	releaseSlot(t, s2)
	releaseSlot(t, s3)
	releaseSlot(t, acquire(t, l, p))
}

// testLimitRPM: rpm admits a burst of rpm requests, then one every 60/rpm
// seconds; a refusal says when a retry passes and takes nothing.
func testLimitRPM(t *testing.T, e *env) {
	l, ps := e.limiter(t, limitedKey("sk-rpm", "acct", "rpm", entitlements.Limits{RPM: 2}))
	p := ps[0]
	releaseSlot(t, acquire(t, l, p))
	releaseSlot(t, acquire(t, l, p))
	_, err := l.Acquire(t.Context(), p)
	le := limitError(t, err, entitlements.LimitRPM, 2)
	if le.RetryAfter > time.Minute {
		t.Fatalf("RetryAfter = %v, want at most a minute", le.RetryAfter)
	}
	e.clock.Advance(le.RetryAfter)
	releaseSlot(t, acquire(t, l, p))
	_, err = l.Acquire(t.Context(), p)
	limitError(t, err, entitlements.LimitRPM, 2)
}

// testLimitPerKey: limits belong to a key, not to its account.
func testLimitPerKey(t *testing.T, e *env) {
	one := entitlements.Limits{MaxInFlight: 1}
	l, ps := e.limiter(t,
		limitedKey("sk-1", "shared", "k1", one),
		limitedKey("sk-2", "shared", "k2", one),
	)
	s1, s2 := acquire(t, l, ps[0]), acquire(t, l, ps[1])
	_, err := l.Acquire(t.Context(), ps[0])
	limitError(t, err, entitlements.LimitMaxInFlight, 1)
	releaseSlot(t, s1)
	releaseSlot(t, s2)
}

// testLimitNone: a key without limits is always admitted.
func testLimitNone(t *testing.T, e *env) {
	l, ps := e.limiter(t, limitedKey("sk-free", "acct", "free", entitlements.Limits{}))
	for range 100 {
		s, err := l.Acquire(t.Context(), ps[0])
		if err != nil {
			t.Fatalf("Acquire of a key without limits: %v", err)
		}
		if s != nil {
			releaseSlot(t, s)
		}
	}
}

// testLimitCancelled: Acquire with a done context changes nothing.
func testLimitCancelled(t *testing.T, e *env) {
	l, ps := e.limiter(t, limitedKey("sk-one", "acct", "one", entitlements.Limits{MaxInFlight: 1, RPM: 1}))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if s, err := l.Acquire(ctx, ps[0]); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v, %v; want context.Canceled", s, err)
	}
	releaseSlot(t, acquire(t, l, ps[0]))
}
