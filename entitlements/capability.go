package entitlements

import (
	"context"
	"fmt"
	"time"
)

// This file declares the optional capabilities: what some ledgers have and
// others do not. A gateway finds each by a type assertion, on the Provider
// (Limiter, Leaser, Resumer) or on what it returned (Renewer on a
// Reservation or a Slot, BudgetReporter on a Reservation), and does without
// it otherwise. entitlementstest has a group for each that a provider can
// claim.

// Limiter is an optional Provider capability: the provider enforces the
// per-key request limits of its principals (Limits.MaxInFlight and
// Limits.RPM). KeyLimiter is the in-process one, which a gateway uses for
// a provider that is no Limiter (and which any Provider may embed);
// entitlements/redisledger's Ledger counts the limits for every gateway
// that shares it, so that N gateway replicas do not let a key have N times
// its limits; Chain forwards to the provider that owns the principal.
//
// A gateway calls Acquire for each request of a principal with limits,
// before anything else of the request, and releases the Slot once when the
// request ends.
type Limiter interface {
	// Acquire admits one request of p. It returns a *LimitError when one of
	// p's limits refuses the request (and then changes nothing), an
	// *UnavailableError when the limits cannot be checked, ctx.Err() when
	// ctx is done, and a nil Slot and nil error when it leaves p's limits
	// to the caller (a Chain whose provider of p is no Limiter).
	Acquire(ctx context.Context, p Principal) (Slot, error)
}

// Slot is one request admitted by a Limiter.
//
// Release ends it; later calls do nothing. A slot whose gateway dies
// without releasing it is given back by the Limiter after some time (for
// redisledger, its lease TTL); such a slot is a Renewer, which a gateway
// serving a longer request renews with the request's reservation.
type Slot interface {
	Release(ctx context.Context) error
}

// Names of the per-key limits in a LimitError.
const (
	LimitMaxInFlight = "max_in_flight"
	LimitRPM         = "rpm"
)

// LimitError is a request refused by one of its key's limits. A gateway
// answers it with HTTP 429 rate_limit_exceeded and Retry-After.
type LimitError struct {
	// Limit names the limit: LimitMaxInFlight or LimitRPM.
	Limit string
	// Max is the key's configured limit.
	Max int
	// RetryAfter is when a retry may pass: the time until the RPM bucket
	// holds a request again, or a guess for max_in_flight.
	RetryAfter time.Duration
}

// Error implements error.
func (e *LimitError) Error() string {
	if e.Limit == LimitRPM {
		return fmt.Sprintf("entitlements: the key's limit of %d requests per minute is reached", e.Max)
	}
	return fmt.Sprintf("entitlements: the key's limit of %d requests in flight is reached", e.Max)
}

// Renewer is an optional capability of a Reservation or a Slot that is a
// lease: it expires unless renewed, so that what a dead gateway held comes
// back by itself (entitlements/redisledger's reservations and slots are
// leases; Chain's reservations are Renewers exactly when the reservation
// they wrap is). While a request holds a lease, a gateway renews it every
// third of its provider's lease TTL (Leaser), so that a long stream keeps
// its amount held until Settle, and stops when the request ends.
//
// Renew sets the lease to expire ttl from now (the provider's lease TTL
// when ttl <= 0). It returns ErrReservationSettled when the reservation was
// consumed (or the slot released), ErrUnknownReservation when the provider
// no longer knows its account, an *UnavailableError when the ledger cannot
// be reached, and a provider's own error when the lease had already
// expired (its amount is back in the budget; a Settle still records the
// spend).
//
// Concurrency: Renew is safe for concurrent use, also concurrently with
// the Settle or Release of the same reservation (one of them wins), and
// returns when ctx ends.
type Renewer interface {
	Renew(ctx context.Context, ttl time.Duration) error
}

// Leaser is an optional Provider capability: its reservations (and slots)
// are leases, Renewers that expire LeaseTTL after they were taken or last
// renewed. A gateway renews them every third of LeaseTTL unless told
// another TTL.
type Leaser interface {
	// LeaseTTL returns the TTL of new leases and of renewals with ttl <= 0;
	// it is > 0.
	LeaseTTL() time.Duration
}

// BudgetReporter is an optional Reservation capability: the budget as the
// Reserve that made the reservation left it (this reservation included),
// so that a gateway needs no Snapshot call for the rate limit headers of
// the request. ok is false when it is not known. redisledger's
// reservations have it (a Snapshot is a round trip to Redis); Chain's
// forward it.
type BudgetReporter interface {
	Budget() (s BudgetSnapshot, ok bool)
}

// Resumer is an optional Provider capability: its reservations have a
// durable identity, so that a process other than the one that reserved
// (a gateway restarted after a crash or a clean shutdown) can still settle
// or release them. A gateway with a settle outbox writes the token of a
// reservation down when it reserves and before it settles, and after a
// restart resumes the settles that had not landed.
// entitlements/redisledger's Ledger has it; Chain forwards it.
//
// A resumed handle is the same reservation as far as the provider is
// concerned: Settle and Release of either handle consume it exactly once,
// and the other then answers ErrReservationSettled. So re-issuing a settle
// that may already have landed is safe.
//
// Concurrency: both methods are safe for concurrent use; they do no I/O
// and do not block.
type Resumer interface {
	// ReservationToken returns the durable identity of r: a short string
	// of printable ASCII without spaces, meaningful only to this provider.
	// ok is false when r cannot be resumed: a handle this provider did
	// not issue, or one it never recorded (such as a reservation granted
	// while failing open).
	ReservationToken(r Reservation) (token string, ok bool)
	// ResumeReservation returns a handle on the reservation that token
	// names, held for p (the principal it was reserved for), with every
	// method and capability of the handle Reserve returned. It does not
	// check that the reservation is still open: a consumed one is
	// ErrReservationSettled at Settle or Release. It returns
	// ErrUnknownReservation for a token it cannot read.
	ResumeReservation(p Principal, token string) (Reservation, error)
}
