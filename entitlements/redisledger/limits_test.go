package redisledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
)

// limitsEnv is two replicas on one ledger sharing a manual clock, and a
// key with the given limits.
type limitsEnv struct {
	clock *entitlementstest.Clock
	a, b  *redisledger.Ledger
	p     entitlements.Principal
}

func newLimitsEnv(t *testing.T, lim entitlements.Limits) *limitsEnv {
	t.Helper()
	addr := sharedRedis(t).addr
	e := &limitsEnv{clock: entitlementstest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))}
	opts := []redisledger.Option{
		redisledger.WithKeyPrefix(uniquePrefix(t)),
		redisledger.WithClock(e.clock),
		redisledger.WithLeaseTTL(time.Minute),
	}
	e.a = newLedger(t, newClient(t, addr), opts...)
	e.b = newLedger(t, newClient(t, addr), opts...)
	e.p = addKey(t, e.a, "sk-limits", entitlements.Principal{AccountID: "acme", KeyID: "k1", Limits: lim}, entitlements.Budget{})
	return e
}

func (e *limitsEnv) acquire(t *testing.T, l *redisledger.Ledger) entitlements.Slot {
	t.Helper()
	s, err := l.Acquire(t.Context(), e.p)
	if err != nil || s == nil {
		t.Fatalf("Acquire = %v, %v; want a slot", s, err)
	}
	return s
}

// refused checks that Acquire on l is refused by limit, with retryAfter.
func (e *limitsEnv) refused(t *testing.T, l *redisledger.Ledger, limit string, retryAfter time.Duration) {
	t.Helper()
	s, err := l.Acquire(t.Context(), e.p)
	var le *entitlements.LimitError
	if !errors.As(err, &le) || le.Limit != limit || le.RetryAfter != retryAfter {
		t.Fatalf("Acquire = %v, %v; want a LimitError of %s, retry after %v", s, err, limit, retryAfter)
	}
}

// TestMaxInFlightAcrossReplicas: a key's requests in flight are counted
// over every replica, and a release frees a slot for any of them.
func TestMaxInFlightAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := newLimitsEnv(t, entitlements.Limits{MaxInFlight: 2})
	s1 := e.acquire(t, e.a)
	s2 := e.acquire(t, e.b)
	e.refused(t, e.a, entitlements.LimitMaxInFlight, time.Second)
	e.refused(t, e.b, entitlements.LimitMaxInFlight, time.Second)
	if err := s1.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s1.Release(t.Context()); err != nil {
		t.Errorf("second Release = %v, want nil", err)
	}
	s3 := e.acquire(t, e.b)
	e.refused(t, e.a, entitlements.LimitMaxInFlight, time.Second)
	for _, s := range []entitlements.Slot{s2, s3} {
		if err := s.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	e.acquire(t, e.a)
}

// TestRPMAcrossReplicas: a key's rate is one bucket over every replica: a
// burst of rpm, then one every minute / rpm, and a refusal takes nothing.
func TestRPMAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := newLimitsEnv(t, entitlements.Limits{RPM: 3})
	e.acquire(t, e.a)
	e.acquire(t, e.b)
	e.acquire(t, e.a)
	e.refused(t, e.b, entitlements.LimitRPM, 20*time.Second)
	e.clock.Advance(5 * time.Second)
	e.refused(t, e.a, entitlements.LimitRPM, 15*time.Second)
	e.clock.Advance(15 * time.Second)
	e.acquire(t, e.b)
	e.refused(t, e.a, entitlements.LimitRPM, 20*time.Second)
}

// TestSlotLease: a slot its replica never releases is given back after the
// lease TTL; a renewed one is held on.
func TestSlotLease(t *testing.T) {
	t.Parallel()
	e := newLimitsEnv(t, entitlements.Limits{MaxInFlight: 1})
	e.acquire(t, e.a) // the replica "crashes" holding it
	e.clock.Advance(time.Minute - time.Millisecond)
	e.refused(t, e.b, entitlements.LimitMaxInFlight, time.Second)
	e.clock.Advance(time.Millisecond)
	s := e.acquire(t, e.b)

	r, ok := s.(interface {
		Renew(context.Context, time.Duration) error
	})
	if !ok {
		t.Fatalf("slot %T has no Renew", s)
	}
	e.clock.Advance(50 * time.Second)
	if err := r.Renew(t.Context(), 0); err != nil { // the lease TTL
		t.Fatal(err)
	}
	e.clock.Advance(50 * time.Second) // 100 s after Acquire, 50 s after Renew
	e.refused(t, e.a, entitlements.LimitMaxInFlight, time.Second)
	e.clock.Advance(10 * time.Second)
	e.acquire(t, e.a)
	if err := r.Renew(t.Context(), 0); !errors.Is(err, entitlements.ErrReservationSettled) {
		t.Errorf("Renew of an expired slot = %v, want ErrReservationSettled", err)
	}
	if err := s.Release(t.Context()); err != nil {
		t.Errorf("Release of an expired slot = %v, want nil", err)
	}
}

// TestAcquireWithoutLimits: a key without limits, and the anonymous
// principal, get a slot that counts nothing.
func TestAcquireWithoutLimits(t *testing.T) {
	t.Parallel()
	e := newLimitsEnv(t, entitlements.Limits{})
	for _, p := range []entitlements.Principal{e.p, {}} {
		for range 3 {
			s, err := e.a.Acquire(t.Context(), p)
			if err != nil || s == nil {
				t.Fatalf("Acquire(%+v) = %v, %v; want a slot", p, s, err)
			}
			if err := s.Release(t.Context()); err != nil {
				t.Errorf("Release = %v", err)
			}
		}
	}
}

// TestAcquireFailClosedAndOpen: with Redis gone Acquire is unavailable,
// unless the ledger fails open; then it admits and counts.
func TestAcquireFailClosedAndOpen(t *testing.T) {
	t.Parallel()
	srv := privateRedis(t)
	closed := newLedger(t, newClient(t, srv.addr))
	open := newLedger(t, newClient(t, srv.addr), redisledger.WithFailOpen(true))
	p := addKey(t, closed, "sk-lim", entitlements.Principal{AccountID: "acme", Limits: entitlements.Limits{MaxInFlight: 1}}, entitlements.Budget{})
	srv.stop()
	_, err := closed.Acquire(t.Context(), p)
	wantUnavailable(t, "Acquire with Redis gone", err)
	for range 2 {
		s, err := open.Acquire(t.Context(), p)
		if err != nil || s == nil {
			t.Fatalf("Acquire while failing open = %v, %v; want a slot", s, err)
		}
		if err := s.Release(t.Context()); err != nil {
			t.Errorf("Release of an unrecorded slot = %v, want nil", err)
		}
	}
	if got := open.Stats().FailOpenAcquires; got != 2 {
		t.Errorf("FailOpenAcquires = %d, want 2", got)
	}
}
