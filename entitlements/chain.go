package entitlements

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Chain is a Provider made of two: keys are resolved by the primary, and by
// the secondary when the primary answers ErrInvalidKey (for example static
// keys in a Local in front of a shared ledger).
//
// Chain remembers which provider resolved each Principal and sends that
// principal's Reserve and Snapshot there; a principal it has not seen is
// tried on the primary, then on the secondary when the primary answers
// ErrInvalidKey. The memory grows with the number of distinct principals
// resolved, which is bounded by the number of keys. Account ids should be
// disjoint between the two providers: a principal that both resolve belongs
// to whichever resolved it last. A reservation goes back to the provider
// that issued it.
//
// Chain fails closed: when the provider that should answer is unavailable
// (its *UnavailableError, or any error other than ErrInvalidKey) that error is
// returned, never a fallback to the other provider or to anonymous access.
//
// Limits: Chain is a Limiter that forwards to the provider owning the
// principal, or leaves the limits to the gateway when that provider is no
// Limiter.
//
// Resumer: Chain resumes a reservation with the provider that issued it,
// when that provider is a Resumer.
//
// Leases: Chain forwards Renew(ctx, r, ttl) to the provider that issued r
// when that provider has the method (entitlements/redisledger's Ledger
// does) and answers nil otherwise, and its LeaseTTL is the shorter of its
// providers' LeaseTTL methods; so a gateway renews the reservations of a
// leasing provider behind a Chain as it would without one.
//
// A *Chain is safe for concurrent use; its own bookkeeping never blocks.
type Chain struct {
	providers [2]Provider // primary, secondary
	owners    sync.Map    // Principal -> int, an index into providers
}

var _ Provider = (*Chain)(nil)

// chainReservation wraps a reservation with the provider that issued it.
type chainReservation struct {
	Reservation
	chain *Chain
	from  int // index into chain.providers
}

// NewChain returns a Chain over primary and secondary, which must not be
// nil.
func NewChain(primary, secondary Provider) (*Chain, error) {
	if primary == nil || secondary == nil {
		return nil, errors.New("entitlements: NewChain needs two providers")
	}
	return &Chain{providers: [2]Provider{primary, secondary}}, nil
}

// Resolve implements Provider.
func (c *Chain) Resolve(ctx context.Context, apiKey string) (Principal, error) {
	if err := ctx.Err(); err != nil {
		return Principal{}, err
	}
	from := 0
	p, err := c.providers[0].Resolve(ctx, apiKey)
	if errors.Is(err, ErrInvalidKey) {
		from = 1
		p, err = c.providers[1].Resolve(ctx, apiKey)
	}
	if err != nil {
		return Principal{}, err
	}
	if prev, ok := c.owners.Load(p); !ok || prev.(int) != from {
		c.owners.Store(p, from)
	}
	return p, nil
}

// route calls f on the provider that owns p, or on the primary and then the
// secondary when p is unknown.
func route[T any](c *Chain, p Principal, f func(int, Provider) (T, error)) (T, error) {
	if i, ok := c.owners.Load(p); ok {
		return f(i.(int), c.providers[i.(int)])
	}
	v, err := f(0, c.providers[0])
	if !errors.Is(err, ErrInvalidKey) {
		if err == nil {
			c.owners.Store(p, 0)
		}
		return v, err
	}
	v, err = f(1, c.providers[1])
	if err == nil {
		c.owners.Store(p, 1)
	}
	return v, err
}

// Budget implements BudgetReporter for the reservation of a provider
// whose reservations report it.
func (r *chainReservation) Budget() (BudgetSnapshot, bool) {
	if br, ok := r.Reservation.(BudgetReporter); ok {
		return br.Budget()
	}
	return BudgetSnapshot{}, false
}

// Reserve implements Provider.
func (c *Chain) Reserve(ctx context.Context, p Principal, amount Amount) (Reservation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	from := 0
	r, err := route(c, p, func(i int, pr Provider) (Reservation, error) {
		from = i
		return pr.Reserve(ctx, p, amount)
	})
	if err != nil {
		return nil, err
	}
	return &chainReservation{Reservation: r, chain: c, from: from}, nil
}

// Settle implements Provider.
func (c *Chain) Settle(ctx context.Context, r Reservation, actual Amount) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cr, err := c.own(r)
	if err != nil {
		return err
	}
	return c.providers[cr.from].Settle(ctx, cr.Reservation, actual)
}

// Release implements Provider.
func (c *Chain) Release(ctx context.Context, r Reservation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cr, err := c.own(r)
	if err != nil {
		return err
	}
	return c.providers[cr.from].Release(ctx, cr.Reservation)
}

func (c *Chain) own(r Reservation) (*chainReservation, error) {
	cr, ok := r.(*chainReservation)
	if !ok || cr == nil || cr.chain != c {
		return nil, ErrUnknownReservation
	}
	return cr, nil
}

// Snapshot implements Provider.
func (c *Chain) Snapshot(ctx context.Context, p Principal) (BudgetSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return BudgetSnapshot{}, err
	}
	return route(c, p, func(_ int, pr Provider) (BudgetSnapshot, error) {
		return pr.Snapshot(ctx, p)
	})
}

// renewer is a provider whose reservations are leases that it renews.
type renewer interface {
	Renew(ctx context.Context, r Reservation, ttl time.Duration) error
}

// Renew renews r with the provider that issued it, when that provider
// renews leases; for one that does not there is nothing to renew and Renew
// returns nil. It returns ErrUnknownReservation for a reservation that is
// not this Chain's.
func (c *Chain) Renew(ctx context.Context, r Reservation, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cr, err := c.own(r)
	if err != nil {
		return err
	}
	if rn, ok := c.providers[cr.from].(renewer); ok {
		return rn.Renew(ctx, cr.Reservation, ttl)
	}
	return nil
}

// LeaseTTL is the shortest lease TTL of the providers that tell theirs
// (a LeaseTTL() time.Duration method), or 0 when none does.
func (c *Chain) LeaseTTL() time.Duration {
	var ttl time.Duration
	for _, p := range c.providers {
		if t, ok := p.(interface{ LeaseTTL() time.Duration }); ok {
			if d := t.LeaseTTL(); d > 0 && (ttl == 0 || d < ttl) {
				ttl = d
			}
		}
	}
	return ttl
}

// Acquire implements Limiter: it asks the provider that owns p when that
// provider is a Limiter, and otherwise answers a nil Slot, which leaves
// p's limits to the gateway.
func (c *Chain) Acquire(ctx context.Context, p Principal) (Slot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return route(c, p, func(_ int, pr Provider) (Slot, error) {
		if l, ok := pr.(Limiter); ok {
			return l.Acquire(ctx, p)
		}
		return nil, nil
	})
}

var _ Resumer = (*Chain)(nil)

// ReservationToken implements Resumer: the token of r with the provider
// that issued it, prefixed with that provider's place in the chain ("0/"
// or "1/"). ok is false when that provider is not a Resumer.
func (c *Chain) ReservationToken(r Reservation) (string, bool) {
	cr, ok := r.(*chainReservation)
	if !ok || cr.chain != c {
		return "", false
	}
	rs, ok := c.providers[cr.from].(Resumer)
	if !ok {
		return "", false
	}
	tok, ok := rs.ReservationToken(cr.Reservation)
	if !ok {
		return "", false
	}
	return strconv.Itoa(cr.from) + "/" + tok, true
}

// ResumeReservation implements Resumer, with the provider the token names.
func (c *Chain) ResumeReservation(p Principal, token string) (Reservation, error) {
	i, tok, ok := strings.Cut(token, "/")
	from, err := strconv.Atoi(i)
	if !ok || err != nil || from < 0 || from >= len(c.providers) {
		return nil, ErrUnknownReservation
	}
	rs, ok := c.providers[from].(Resumer)
	if !ok {
		return nil, ErrUnknownReservation
	}
	r, err := rs.ResumeReservation(p, tok)
	if err != nil {
		return nil, err
	}
	return &chainReservation{Reservation: r, chain: c, from: from}, nil
}
