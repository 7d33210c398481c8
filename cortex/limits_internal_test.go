package cortex

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// The limiter forgets keys at rest (nothing in flight, bucket full), so its
// memory is bounded by the keys active within the last minute, and never
// forgets one whose state matters.
func TestKeyLimiterForgetsIdleKeys(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	l := newKeyLimiter(func() time.Time { return now })
	key := func(i int, lim entitlements.Limits) entitlements.Principal {
		return entitlements.Principal{AccountID: "a", KeyID: strconv.Itoa(i), Limits: lim}
	}
	rpm := entitlements.Limits{RPM: 60}
	const keys = 1000
	for i := range keys {
		if err := l.acquire(key(i, rpm)); err != nil {
			t.Fatal(err)
		}
		l.release(key(i, rpm))
	}
	busy := key(-1, entitlements.Limits{MaxInFlight: 1})
	if err := l.acquire(busy); err != nil {
		t.Fatal(err)
	}
	limited := key(-2, entitlements.Limits{RPM: 1})
	if err := l.acquire(limited); err != nil {
		t.Fatal(err)
	}
	if n := l.len(); n < keys {
		t.Fatalf("%d keys held right after use, want %d", n, keys+2)
	}

	// Half a minute on, every rpm-60 bucket is full again, but the rpm-1
	// key's is not: it must still be refused, and the busy key too.
	now = now.Add(30 * time.Second)
	for range keys + minSweep {
		if err := l.acquire(key(0, entitlements.Limits{RPM: 1 << 20})); err != nil {
			t.Fatal(err)
		}
		l.release(key(0, entitlements.Limits{RPM: 1 << 20}))
	}
	if n := l.len(); n > 3 {
		t.Errorf("%d keys held after they came to rest, want at most 3", n)
	}
	var rl *RateLimitError
	if err := l.acquire(limited); !errors.As(err, &rl) || rl.Limit != LimitRPM || rl.RetryAfter != 30*time.Second {
		t.Errorf("the rpm-1 key: %v, want an rpm refusal for 30 s", err)
	}
	if err := l.acquire(busy); !errors.As(err, &rl) || rl.Limit != LimitMaxInFlight {
		t.Errorf("the busy key: %v, want a max_in_flight refusal", err)
	}
	l.release(busy)
	if err := l.acquire(busy); err != nil {
		t.Errorf("the busy key after release: %v", err)
	}
}

// A key without limits, and the anonymous caller, take no state.
func TestKeyLimiterSkipsUnlimitedKeys(t *testing.T) {
	t.Parallel()
	l := newKeyLimiter(time.Now)
	for _, p := range []entitlements.Principal{entitlements.Anonymous(), {AccountID: "a", KeyID: "k"}} {
		for range 10 {
			if err := l.acquire(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := l.len(); n != 0 {
		t.Errorf("%d keys held, want 0", n)
	}
}

// len returns the number of keys with state.
func (l *keyLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}
