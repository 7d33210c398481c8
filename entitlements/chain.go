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
// principal's Reserve, Snapshot and Acquire there; a principal it has not seen is
// tried on the primary, then on the secondary when the primary answers
// ErrInvalidKey. The memory grows with the number of distinct principals
// resolved, which is bounded by the number of keys. Account ids should be
// disjoint between the two providers: a principal that both resolve belongs
// to whichever resolved it last. A reservation goes back to the provider
// that issued it: a Chain's reservation settles, releases and renews
// through the one it wraps.
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
// Leases: a reservation of the Chain is a Renewer exactly when the one it
// wraps is (entitlements/redisledger's are), and a BudgetReporter that
// reports what the wrapped one does; the Chain is a Leaser whose LeaseTTL
// is the shorter of its providers'. So a gateway renews the reservations
// of a leasing provider behind a Chain as it would without one, and no
// others.
//
// A *Chain is safe for concurrent use; its own bookkeeping never blocks.
type Chain struct {
	providers [2]Provider // primary, secondary
	owners    sync.Map    // Principal -> int, an index into providers
}

var _ Provider = (*Chain)(nil)

// chainReservation wraps a reservation with the provider that issued it;
// Settle and Release are the wrapped reservation's.
type chainReservation struct {
	Reservation
	chain *Chain
	from  int // index into chain.providers
}

// chainLease is a chainReservation whose reservation is a Renewer.
type chainLease struct{ *chainReservation }

// Renew implements Renewer, with the wrapped reservation.
func (r chainLease) Renew(ctx context.Context, ttl time.Duration) error {
	return r.Reservation.(Renewer).Renew(ctx, ttl)
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
	return c.wrap(r, from), nil
}

// wrap returns r, issued by provider from, as a reservation of c: a
// Renewer exactly when r is one.
func (c *Chain) wrap(r Reservation, from int) Reservation {
	cr := &chainReservation{Reservation: r, chain: c, from: from}
	if _, ok := r.(Renewer); ok {
		return chainLease{cr}
	}
	return cr
}

// unwrap returns r as a reservation of c, or nil.
func (c *Chain) unwrap(r Reservation) *chainReservation {
	var cr *chainReservation
	switch r := r.(type) {
	case *chainReservation:
		cr = r
	case chainLease:
		cr = r.chainReservation
	}
	if cr == nil || cr.chain != c {
		return nil
	}
	return cr
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

var _ Leaser = (*Chain)(nil)

// LeaseTTL implements Leaser: the shortest lease TTL of its providers that
// are Leasers, or 0 when neither is (then no reservation of the Chain is a
// lease).
func (c *Chain) LeaseTTL() time.Duration {
	var ttl time.Duration
	for _, p := range c.providers {
		if l, ok := p.(Leaser); ok {
			if d := l.LeaseTTL(); d > 0 && (ttl == 0 || d < ttl) {
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
	cr := c.unwrap(r)
	if cr == nil {
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
	return c.wrap(r, from), nil
}
