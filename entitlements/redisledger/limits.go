package redisledger

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

var _ entitlements.Limiter = (*Ledger)(nil)

// limitKeys are the keys of p's per-key limits: its slots in flight and
// its rate limit's GCRA time, in its account's hash slot.
func (l *Ledger) limitKeys(p entitlements.Principal) []string {
	base := l.prefix + "acct:{" + escape(p.AccountID) + "}:"
	k := escape(p.KeyID)
	return []string{base + "inflight:" + k, base + "rpm:" + k}
}

// Acquire implements entitlements.Limiter: one script checks p's
// max_in_flight and rpm against every replica's requests and takes a slot.
// A slot is a lease like a reservation's: it expires after the lease TTL
// unless renewed, so a replica that dies holding slots gives them back.
// While Redis is unreachable Acquire fails closed with an
// *entitlements.UnavailableError, or with WithFailOpen admits the request
// without counting it.
func (l *Ledger) Acquire(ctx context.Context, p entitlements.Principal) (entitlements.Slot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lim := p.Limits
	if p.IsAnonymous() || lim.MaxInFlight <= 0 && lim.RPM <= 0 {
		return &slot{}, nil // nothing to count
	}
	id := rand.Text()
	keys := l.limitKeys(p)
	v, err := l.b.run(ctx, l.sc.acquire, keys, l.nowArg(), lim.MaxInFlight, lim.RPM, id, l.ttl.Milliseconds()).Int64Slice()
	if err != nil {
		if ctx.Err() != nil {
			if !errors.Is(err, errUnsent) { // it may have run
				_ = (&slot{ledger: l, key: keys[0], id: id, counted: true}).Release(context.WithoutCancel(ctx))
			}
			return nil, ctx.Err()
		}
		err = fail(ctx, err)
		if l.failOpen {
			l.stats.failOpenAcquires.Add(1)
			l.outage(err)
			return &slot{}, nil
		}
		return nil, err
	}
	l.reachable()
	if len(v) != 2 {
		return nil, fmt.Errorf("redisledger: unexpected acquire reply %v", v)
	}
	switch v[0] {
	case 0:
		return &slot{ledger: l, key: keys[0], id: id, counted: lim.MaxInFlight > 0}, nil
	case 1:
		return nil, &entitlements.LimitError{Limit: entitlements.LimitMaxInFlight, Max: lim.MaxInFlight, RetryAfter: time.Second}
	case 2:
		wait := time.Duration(v[1]) * time.Microsecond
		return nil, &entitlements.LimitError{Limit: entitlements.LimitRPM, Max: lim.RPM, RetryAfter: max(wait, time.Millisecond)}
	}
	return nil, fmt.Errorf("redisledger: acquire: unexpected reply code %d", v[0])
}

// slot is a Slot of a Ledger, and an entitlements.Renewer: a member of a
// key's slots in flight, or, when not counted, nothing to give back (a key
// without max_in_flight, or one admitted while failing open).
type slot struct {
	ledger  *Ledger
	key, id string // the key's slots and this slot's member
	counted bool
	done    atomic.Bool
}

// Release implements entitlements.Slot: it takes the slot out of the key's
// slots in flight. Later calls do nothing.
func (s *slot) Release(ctx context.Context) error {
	if !s.counted || !s.done.CompareAndSwap(false, true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, abandonTimeout)
	defer cancel()
	if err := s.ledger.client.ZRem(ctx, s.key, s.id).Err(); err != nil {
		return fail(ctx, err)
	}
	return nil
}

// Renew implements entitlements.Renewer: it moves the slot's expiry to
// ttl from now (the ledger's lease TTL when ttl <= 0), for a request that
// runs longer than the TTL. It returns entitlements.ErrReservationSettled
// when the slot was released or had expired.
func (s *slot) Renew(ctx context.Context, ttl time.Duration) error {
	if !s.counted {
		return nil
	}
	if s.done.Load() {
		return entitlements.ErrReservationSettled
	}
	l := s.ledger
	if ttl <= 0 {
		ttl = l.ttl
	}
	ms := max((ttl+time.Millisecond-1)/time.Millisecond, 1)
	n, err := l.b.run(ctx, l.sc.renewSlot, []string{s.key}, l.nowArg(), s.id, int64(ms)).Int64()
	if err != nil {
		return fail(ctx, err)
	}
	if n == 0 {
		return entitlements.ErrReservationSettled
	}
	return nil
}
