package redisledger

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// Renewer is implemented by providers whose reservations are leases that
// expire; *Ledger implements it. The gateway type-asserts its
// entitlements.Provider for Renewer and, while a request runs longer than
// about a third of the lease TTL (a long stream), renews its reservation
// periodically so that the amount stays held until Settle.
//
// Renew sets the lease of r to expire ttl from now (the ledger's default
// TTL when ttl <= 0). It returns ErrLeaseExpired when the lease had already
// expired (the amount is back in the budget; Settle still records the
// spend), entitlements.ErrReservationSettled when r was consumed,
// entitlements.ErrUnknownReservation when the provider did not issue r, and
// an *entitlements.UnavailableError when the ledger cannot be reached.
//
// Concurrency: Renew is safe for concurrent use, also concurrently with
// Settle or Release of the same reservation (then one of them wins
// atomically).
type Renewer interface {
	Renew(ctx context.Context, r entitlements.Reservation, ttl time.Duration) error
}

var _ Renewer = (*Ledger)(nil)

// lease is the Reservation handle of a Ledger: the id of a lease stored in
// Redis, or an unrecorded reservation granted while failing open.
type lease struct {
	ledger *Ledger
	id     string   // random, 128 bits; with amount, the lease's member in Redis
	keys   []string // the account's budget keys (read only)
	p      entitlements.Principal
	amount entitlements.Amount
	budget budgetReply // as Reserve left it; code 0 when unknown
	// unrecorded marks a fail-open reservation that Redis never saw; done
	// makes its Settle/Release exactly-once in this process.
	unrecorded bool
	done       atomic.Bool
}

// Principal implements entitlements.Reservation.
func (r *lease) Principal() entitlements.Principal { return r.p }

// Amount implements entitlements.Reservation.
func (r *lease) Amount() entitlements.Amount { return r.amount }

// Budget implements entitlements.BudgetReporter: the account's budget as
// the Reserve left it. It is unknown for a reservation granted while
// failing open.
func (r *lease) Budget() (entitlements.BudgetSnapshot, bool) {
	if r.budget.code != codeOK {
		return entitlements.BudgetSnapshot{}, false
	}
	return r.budget.snapshot(), true
}

// LeaseID returns the id of the lease in Redis, for logs; "" for a
// reservation granted unrecorded while failing open.
func (r *lease) LeaseID() string {
	if r.unrecorded {
		return ""
	}
	return r.id
}
