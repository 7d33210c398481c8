package house

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// DefaultLeaseTTL is the TTL of the leases the house keeps itself, over a
// provider whose reservations have no token (10 minutes, as
// entitlements/redisledger's); WithLeaseTTL changes it.
const DefaultLeaseTTL = 10 * time.Minute

// held is a reservation the house keeps in memory, for a provider whose
// reservations have no durable token (entitlements.Local): the house
// leases it, so that what a dead gateway reserved comes back.
type held struct {
	id      string
	gateway string
	res     entitlements.Reservation
	p       entitlements.Principal
	expires time.Time
	state   heldState
	index   int // in the heap; -1 once out
}

type heldState uint8

const (
	heldOpen     heldState = iota
	heldExpired            // released by the house at expiry: a Settle still records the spend
	heldConsumed           // settled or released by the gateway; kept to answer ErrReservationSettled
)

// leaseTable holds the held reservations, by id and by expiry.
type leaseTable struct {
	mu   sync.Mutex
	byID map[string]*held
	heap heldHeap
}

func newLeaseTable() *leaseTable { return &leaseTable{byID: make(map[string]*held)} }

func (t *leaseTable) add(h *held) {
	t.mu.Lock()
	t.byID[h.id] = h
	heap.Push(&t.heap, h)
	t.mu.Unlock()
}

// due takes the reservations whose leases expired by now out of the open
// ones (to be released by the caller, outside the lock), keeps each as a
// tombstone for retention, and forgets the tombstones older than that.
func (t *leaseTable) due(now time.Time, retention time.Duration) []*held {
	var out []*held
	t.mu.Lock()
	for len(t.heap) > 0 && !t.heap[0].expires.After(now) {
		h := t.heap[0]
		switch h.state {
		case heldOpen:
			h.state = heldExpired
			out = append(out, h)
			h.expires = h.expires.Add(retention)
			heap.Fix(&t.heap, 0)
		default:
			heap.Pop(&t.heap)
			delete(t.byID, h.id)
		}
	}
	t.mu.Unlock()
	return out
}

// lookup returns the reservation id names for gateway, or nil.
func (t *leaseTable) lookup(id, gateway string) *held {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.byID[id]
	if h == nil || h.gateway != gateway {
		return nil
	}
	return h
}

// take marks h consumed and returns its state before, so that of two
// racing finishes of an expired reservation one wins.
func (t *leaseTable) take(h *held, retention time.Duration, now time.Time) heldState {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := h.state
	if s == heldOpen || s == heldExpired {
		h.state = heldConsumed
		if h.index >= 0 {
			h.expires = now.Add(retention)
			heap.Fix(&t.heap, h.index)
		}
	}
	return s
}

// untake reopens h after its provider refused the finish without
// consuming it (an invalid amount, a cancelled call).
func (t *leaseTable) untake(h *held, s heldState) {
	t.mu.Lock()
	h.state = s
	t.mu.Unlock()
}

// renew moves h's expiry when it is open; it returns h's state.
func (t *leaseTable) renew(h *held, expires time.Time) heldState {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h.state != heldOpen {
		return h.state
	}
	h.expires = expires
	if h.index >= 0 {
		heap.Fix(&t.heap, h.index)
	}
	return heldOpen
}

// lateSettle records the spend of a reservation whose lease the house had
// released: a fresh reservation of what the account has room for (Settle
// records above it), settled with actual. It fails, recording nothing,
// only when the account is already over its cap.
func lateSettle(ctx context.Context, p entitlements.Provider, pr entitlements.Principal, actual entitlements.Amount) error {
	r, err := p.Reserve(ctx, pr, actual)
	if be, ok := err.(*entitlements.BudgetError); ok {
		r, err = p.Reserve(ctx, pr, be.Available)
	}
	if err != nil {
		return err
	}
	return r.Settle(ctx, actual)
}

type heldHeap []*held

func (h heldHeap) Len() int           { return len(h) }
func (h heldHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h heldHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *heldHeap) Push(x any) {
	e := x.(*held)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *heldHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
