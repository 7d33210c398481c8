package redisledger

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

var _ entitlements.Leaser = (*Ledger)(nil)

// lease is the Reservation handle of a Ledger: the id of a lease stored in
// Redis, or an unrecorded reservation granted while failing open. It is
// an entitlements.Renewer and an entitlements.BudgetReporter.
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

// Settle implements entitlements.Reservation: one script deletes the lease
// and applies the spend, so a retried Settle finds no lease and returns
// entitlements.ErrReservationSettled without counting twice. When the lease
// had expired (its amount already returned to the budget) Settle still
// records actual, since the work was served, and returns nil; Stats counts
// it. An actual over MaxAmount counts as MaxAmount.
//
// After an *entitlements.UnavailableError or a ctx error the spend may or may
// not have been applied; retrying is safe and a retry that answers
// ErrReservationSettled means the first attempt was applied.
func (r *lease) Settle(ctx context.Context, actual entitlements.Amount) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if actual < 0 {
		return fmt.Errorf("%w: settle %d", entitlements.ErrInvalidAmount, actual)
	}
	return r.ledger.finish(ctx, r, min(actual, MaxAmount), true)
}

// Release implements entitlements.Reservation. When the lease had expired
// it consumes the reservation and returns ErrLeaseExpired; Stats counts it.
func (r *lease) Release(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.ledger.finish(ctx, r, 0, false)
}

// Renew implements entitlements.Renewer: it sets the lease to expire ttl
// from now (the ledger's LeaseTTL when ttl <= 0). It returns
// ErrLeaseExpired when the lease had already expired (the amount is back
// in the budget; Settle still records the spend),
// entitlements.ErrReservationSettled when the reservation was consumed,
// entitlements.ErrUnknownReservation when its account is no longer in the
// ledger, and an *entitlements.UnavailableError when Redis cannot be
// reached. A reservation granted unrecorded while failing open has nothing
// to renew.
func (r *lease) Renew(ctx context.Context, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.unrecorded {
		if r.done.Load() {
			return entitlements.ErrReservationSettled
		}
		return nil
	}
	l := r.ledger
	if ttl <= 0 {
		ttl = l.ttl
	}
	ms := max((ttl+time.Millisecond-1)/time.Millisecond, 1)
	v, err := l.b.run(ctx, l.sc.renew, r.keys, l.nowArg(), retentionMS, r.id, int64(r.amount), int64(ms)).Int64Slice()
	if err != nil {
		return fail(ctx, err)
	}
	l.reachable()
	res, err := parseBudget(v)
	if err != nil {
		return err
	}
	switch res.code {
	case codeOK:
		return nil
	case codeExpired:
		return ErrLeaseExpired
	case codeGone:
		return entitlements.ErrReservationSettled
	case codeNoAccount:
		return fmt.Errorf("%w: account %q is no longer in the ledger", entitlements.ErrUnknownReservation, r.p.AccountID)
	}
	return res.unexpected("renew")
}
