package entitlements

import (
	"context"
	"errors"
	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"strconv"
	"testing"
	"time"
)

// len returns the number of keys with state.
func (l *KeyLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// The limiter forgets keys at rest (nothing in flight, bucket full), so its
// memory is bounded by the keys active within the last minute, and never
// forgets one whose state matters.
func TestKeyLimiterForgetsIdleKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := clocktest.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	l := NewKeyLimiter(clk)
	key := func(i int, lim Limits) Principal {
		return Principal{AccountID: "a", KeyID: strconv.Itoa(i), Limits: lim}
	}
	use := func(p Principal) {
		t.Helper()
		s, err := l.Acquire(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rpm := Limits{RPM: 60}
	const keys = 1000
	for i := range keys {
		use(key(i, rpm))
	}
	busy := key(-1, Limits{MaxInFlight: 1})
	busySlot, err := l.Acquire(ctx, busy)
	if err != nil {
		t.Fatal(err)
	}
	limited := key(-2, Limits{RPM: 1})
	if _, err := l.Acquire(ctx, limited); err != nil {
		t.Fatal(err)
	}
	if n := l.len(); n < keys {
		t.Fatalf("%d keys held right after use, want %d", n, keys+2)
	}

	// Half a minute on, every rpm-60 bucket is full again, but the rpm-1
	// key's is not: it must still be refused, and the busy key too.
	clk.Advance(30 * time.Second)
	for range keys + minSweep {
		use(key(0, Limits{RPM: 1 << 20}))
	}
	if n := l.len(); n > 3 {
		t.Errorf("%d keys held after they came to rest, want at most 3", n)
	}
	var le *LimitError
	if _, err := l.Acquire(ctx, limited); !errors.As(err, &le) || le.Limit != LimitRPM || le.RetryAfter != 30*time.Second {
		t.Errorf("the rpm-1 key: %v, want an rpm refusal for 30 s", err)
	}
	if _, err := l.Acquire(ctx, busy); !errors.As(err, &le) || le.Limit != LimitMaxInFlight {
		t.Errorf("the busy key: %v, want a max_in_flight refusal", err)
	}
	if n := l.InFlight(busy); n != 1 {
		t.Errorf("InFlight(busy) = %d, want 1", n)
	}
	if err := busySlot.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := busySlot.Release(ctx); err != nil { // a second Release does nothing
		t.Fatal(err)
	}
	if n := l.InFlight(busy); n != 0 {
		t.Errorf("InFlight(busy) after release = %d, want 0", n)
	}
	if _, err := l.Acquire(ctx, busy); err != nil {
		t.Errorf("the busy key after release: %v", err)
	}
}

// A key without limits, and the anonymous caller, take no state.
func TestKeyLimiterSkipsUnlimitedKeys(t *testing.T) {
	t.Parallel()
	l := NewKeyLimiter(nil)
	for _, p := range []Principal{Anonymous(), {AccountID: "a", KeyID: "k"}} {
		for range 10 {
			s, err := l.Acquire(context.Background(), p)
			if err != nil || s == nil {
				t.Fatalf("Acquire(%+v) = %v, %v; want a slot", p, s, err)
			}
		}
	}
	if n := l.len(); n != 0 {
		t.Errorf("%d keys held, want 0", n)
	}
}
