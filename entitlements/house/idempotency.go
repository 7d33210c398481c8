package house

import (
	"container/list"
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// DefaultIdempotencyTTL is how long a Handler remembers the answer of a
// call that changed state (10 minutes); WithIdempotency changes it.
const DefaultIdempotencyTTL = 10 * time.Minute

// DefaultIdempotencyEntries bounds the answers a Handler remembers
// (100,000); WithIdempotency changes it.
const DefaultIdempotencyEntries = 100_000

// idemKey names one call: the gateway's name and the id it chose, so that
// two gateways cannot collide, or read each other's answers.
type idemKey struct{ gateway, id string }

// idemEntry is the answer of one call, or the promise of it while the
// first delivery runs.
type idemEntry struct {
	key  idemKey
	sum  [sha256.Size]byte // of the request body: a reuse with another body is a conflict
	done chan struct{}     // closed once status and body are set
	at   time.Time
	elem *list.Element

	status int
	body   []byte
}

// idemTable is the Handler's bounded, TTL'd table of answers: the only
// state the house keeps besides the leases of a provider without tokens.
type idemTable struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	m     map[idemKey]*idemEntry
	order *list.List // of *idemEntry, oldest first
}

func newIdemTable(ttl time.Duration, max int) *idemTable {
	return &idemTable{ttl: ttl, max: max, m: make(map[idemKey]*idemEntry), order: list.New()}
}

// begin looks up k. A new call (first true) must be answered with finish
// or forget. A duplicate waits for the first answer, which it returns.
// conflict is true when k was used with another body.
func (t *idemTable) begin(ctx context.Context, k idemKey, sum [sha256.Size]byte, now time.Time) (e *idemEntry, first, conflict bool, err error) {
	t.mu.Lock()
	t.expire(now)
	e, ok := t.m[k]
	if !ok {
		e = &idemEntry{key: k, sum: sum, done: make(chan struct{}), at: now}
		e.elem = t.order.PushBack(e)
		t.m[k] = e
		for t.order.Len() > t.max {
			t.drop(t.order.Front().Value.(*idemEntry))
		}
		t.mu.Unlock()
		return e, true, false, nil
	}
	t.mu.Unlock()
	if e.sum != sum {
		return nil, false, true, nil
	}
	select {
	case <-e.done:
		return e, false, false, nil
	case <-ctx.Done():
		return nil, false, false, ctx.Err()
	}
}

// finish records the answer of a first delivery and wakes its duplicates.
func (t *idemTable) finish(e *idemEntry, status int, body []byte) {
	e.status, e.body = status, body
	close(e.done)
}

// forget answers the waiting duplicates of a first delivery with its
// answer, then forgets it, so that a later retry runs the call again:
// for answers that changed nothing (a 5xx).
func (t *idemTable) forget(e *idemEntry, status int, body []byte) {
	t.mu.Lock()
	if t.m[e.key] == e {
		t.drop(e)
	}
	t.mu.Unlock()
	t.finish(e, status, body)
}

// expire drops the entries older than the TTL; t.mu is held.
func (t *idemTable) expire(now time.Time) {
	for f := t.order.Front(); f != nil; f = t.order.Front() {
		e := f.Value.(*idemEntry)
		if now.Sub(e.at) < t.ttl {
			return
		}
		t.drop(e)
	}
}

func (t *idemTable) drop(e *idemEntry) {
	delete(t.m, e.key)
	t.order.Remove(e.elem)
}
