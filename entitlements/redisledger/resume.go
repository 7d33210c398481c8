package redisledger

import (
	"strconv"
	"strings"

	"github.com/helexa-ai/helexa-go/entitlements"
)

var _ entitlements.Resumer = (*Ledger)(nil)

// ReservationToken implements entitlements.Resumer: the token of a lease
// is its member in Redis, "id:amount" (the random 128-bit id and the
// amount reserved). A reservation granted unrecorded while failing open
// has none (its Settle does nothing anyway), nor has a handle of another
// Ledger.
func (l *Ledger) ReservationToken(r entitlements.Reservation) (string, bool) {
	lr, err := l.own(r)
	if err != nil || lr.unrecorded {
		return "", false
	}
	return lr.id + ":" + strconv.FormatInt(int64(lr.amount), 10), true
}

// ResumeReservation implements entitlements.Resumer: a handle on the lease
// the token names in p's account, in this Ledger's key prefix, that
// Settle, Release and Renew accept. The lease may be live, expired (a
// Settle still records its spend while the ledger remembers it, see
// ExpiredLeaseRetention) or consumed (ErrReservationSettled).
func (l *Ledger) ResumeReservation(p entitlements.Principal, token string) (entitlements.Reservation, error) {
	id, amt, ok := strings.Cut(token, ":")
	if !ok || id == "" || p.IsAnonymous() || strings.ContainsAny(id, ": \t\r\n") {
		return nil, entitlements.ErrUnknownReservation
	}
	n, err := strconv.ParseInt(amt, 10, 64)
	if err != nil || n < 0 || entitlements.Amount(n) > MaxAmount {
		return nil, entitlements.ErrUnknownReservation
	}
	return &lease{ledger: l, id: id, keys: l.budgetKeys(p.AccountID), p: p, amount: entitlements.Amount(n)}, nil
}
