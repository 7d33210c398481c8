package entitlements

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrInvalidKey: the API key is unknown (Resolve), or the principal's
	// account is unknown to the provider (Reserve, Snapshot). HTTP 401.
	ErrInvalidKey = errors.New("entitlements: invalid API key")
	// ErrReservationSettled: the reservation was already settled or
	// released; nothing changed.
	ErrReservationSettled = errors.New("entitlements: reservation already settled or released")
	// ErrUnknownReservation: a Resumer cannot read a reservation token, or
	// the provider no longer knows the account of a reservation; nothing
	// changed.
	ErrUnknownReservation = errors.New("entitlements: reservation not issued by this provider")
	// ErrInvalidAmount: an amount is negative, or too large for the ledger;
	// nothing changed.
	ErrInvalidAmount = errors.New("entitlements: invalid amount")
	// ErrDuplicateKey: Local.AddKey was given a digest it already holds.
	ErrDuplicateKey = errors.New("entitlements: duplicate API key")
)

// UnavailableError means the budget authority could not be reached or could
// not answer: not a rejection. The gateway fails closed (HTTP 503 with
// Retry-After) unless it is configured otherwise.
type UnavailableError struct {
	// RetryAfter is a hint of when to retry; 0 when unknown.
	RetryAfter time.Duration
	// Err is the cause.
	Err error
}

// Error implements error.
func (e *UnavailableError) Error() string {
	if e.Err == nil {
		return "entitlements: budget authority unavailable"
	}
	return "entitlements: budget authority unavailable: " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *UnavailableError) Unwrap() error { return e.Err }

// BudgetErrorKind says why a reservation was refused, which picks the HTTP
// answer.
type BudgetErrorKind uint8

// Budget error kinds.
const (
	// RateLimited: a rolling window's cap is reached; retry after
	// BudgetError.RetryAfter. HTTP 429 rate_limit_exceeded + Retry-After.
	RateLimited BudgetErrorKind = iota + 1
	// InsufficientQuota: a balance is spent; retrying does not help.
	// HTTP 429 insufficient_quota.
	InsufficientQuota
)

// String returns "rate_limited" or "insufficient_quota".
func (k BudgetErrorKind) String() string {
	switch k {
	case RateLimited:
		return "rate_limited"
	case InsufficientQuota:
		return "insufficient_quota"
	default:
		return "BudgetErrorKind(" + strconv.Itoa(int(k)) + ")"
	}
}

// BudgetError is Reserve's refusal: the request would take the account over
// its hard cap. Nothing was reserved. A request larger than the whole cap is
// refused the same way (RateLimited for a rolling window) although it can
// never succeed; Available tells the gateway what would fit.
type BudgetError struct {
	Kind BudgetErrorKind
	// Requested is the amount asked for.
	Requested Amount
	// Available is what could have been reserved (cap - spent - reserved,
	// at least 0).
	Available Amount
	// RetryAfter is, for RateLimited, the time until the current window
	// ends, within [1s, window length]; 0 for InsufficientQuota.
	RetryAfter time.Duration
}

// Error implements error.
func (e *BudgetError) Error() string {
	var b strings.Builder
	b.WriteString("entitlements: ")
	b.WriteString(e.Kind.String())
	b.WriteString(": requested ")
	b.WriteString(strconv.FormatInt(int64(e.Requested), 10))
	b.WriteString(", available ")
	b.WriteString(strconv.FormatInt(int64(e.Available), 10))
	if e.RetryAfter > 0 {
		b.WriteString(", retry after ")
		b.WriteString(e.RetryAfter.String())
	}
	return b.String()
}
