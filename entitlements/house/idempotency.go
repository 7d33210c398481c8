package house

import (
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
	key        idemKey
	sum        [sha256.Size]byte // of the request body: a reuse with another body is a conflict
	at         time.Time
	prev, next *idemEntry // in the table's order, oldest first

	// Set under the table's lock: done is made by the first duplicate
	// that has to wait, and closed by finish.
	finished bool
	done     chan struct{}

	status int
	body   []byte
}

// idemTable is the Handler's bounded, TTL'd table of answers: the only
// state the house keeps besides the leases of a provider without tokens.
type idemTable struct {
	ttl time.Duration
	max int

	mu           sync.Mutex
	m            map[idemKey]*idemEntry
	oldest, last *idemEntry
	n            int
}

func newIdemTable(ttl time.Duration, max int) *idemTable {
	return &idemTable{ttl: ttl, max: max, m: make(map[idemKey]*idemEntry)}
}

// begin looks up k. A new call (first true) must be answered with finish
// or forget. A duplicate waits for the first answer, which it returns.
// conflict is true when k was used with another body.
func (t *idemTable) begin(ctx context.Context, k idemKey, sum [sha256.Size]byte, now time.Time) (e *idemEntry, first, conflict bool, err error) {
	t.mu.Lock()
	t.expire(now)
	e, ok := t.m[k]
	if !ok {
		e = &idemEntry{key: k, sum: sum, at: now}
		t.push(e)
		t.m[k] = e
		for t.n > t.max {
			t.drop(t.oldest)
		}
		t.mu.Unlock()
		return e, true, false, nil
	}
	if e.sum != sum {
		t.mu.Unlock()
		return nil, false, true, nil
	}
	if e.finished {
		t.mu.Unlock()
		return e, false, false, nil
	}
	if e.done == nil {
		e.done = make(chan struct{})
	}
	done := e.done
	t.mu.Unlock()
	select {
	case <-done:
		return e, false, false, nil
	case <-ctx.Done():
		return nil, false, false, ctx.Err()
	}
}

// finish records the answer of a first delivery and wakes its duplicates.
func (t *idemTable) finish(e *idemEntry, status int, body []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.settle(e, status, body)
}

// settle sets e's answer and wakes its duplicates; t.mu is held.
func (t *idemTable) settle(e *idemEntry, status int, body []byte) {
	e.status, e.body, e.finished = status, body, true
	if e.done != nil {
		close(e.done)
	}
}

// forget answers the waiting duplicates of a first delivery with its
// answer, then forgets it, so that a later retry runs the call again:
// for answers that changed nothing (a 5xx).
func (t *idemTable) forget(e *idemEntry, status int, body []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[e.key] == e {
		t.drop(e)
	}
	t.settle(e, status, body)
}

// expire drops the entries older than the TTL; t.mu is held.
func (t *idemTable) expire(now time.Time) {
	for t.oldest != nil && now.Sub(t.oldest.at) >= t.ttl {
		t.drop(t.oldest)
	}
}

// push appends e to the order; t.mu is held.
func (t *idemTable) push(e *idemEntry) {
	e.prev = t.last
	if t.last != nil {
		t.last.next = e
	} else {
		t.oldest = e
	}
	t.last = e
	t.n++
}

// drop removes e from the table and the order; t.mu is held.
func (t *idemTable) drop(e *idemEntry) {
	delete(t.m, e.key)
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		t.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		t.last = e.prev
	}
	e.prev, e.next = nil, nil
	t.n--
}
