package entitlements

import (
	"context"
	"fmt"
	"time"
)

// Limiter is an optional Provider capability: the provider enforces the
// per-key request limits of its principals (Limits.MaxInFlight and
// Limits.RPM) itself, for every gateway that shares it, so that N gateway
// replicas do not let a key have N times its limits.
// entitlements/redisledger's Ledger is one; Chain forwards to the provider
// that owns the principal.
//
// A gateway whose Provider is a Limiter calls Acquire for each request of
// a principal with limits, before anything else of the request, and
// releases the Slot once when the request ends. Otherwise it counts the
// limits in its own process.
type Limiter interface {
	// Acquire admits one request of p. It returns a *LimitError when one of
	// p's limits refuses the request (and then changes nothing), an
	// *UnavailableError when the limits cannot be checked, and a nil Slot
	// and nil error when it leaves p's limits to the gateway (a Chain whose
	// provider of p is no Limiter).
	Acquire(ctx context.Context, p Principal) (Slot, error)
}

// Slot is one request admitted by a Limiter.
//
// Release ends it; later calls do nothing. A slot whose gateway dies
// without releasing it is given back by the Limiter after some time (for
// redisledger, its lease TTL), and a gateway serving a longer request
// renews it when the Slot has a Renew(ctx, ttl) error method.
type Slot interface {
	Release(ctx context.Context) error
}

// Names of the per-key limits in a LimitError.
const (
	LimitMaxInFlight = "max_in_flight"
	LimitRPM         = "rpm"
)

// LimitError is a request refused by one of its key's limits.
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
