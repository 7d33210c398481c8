package redisledger

import (
	"context"
	"errors"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// Sentinel errors of the ledger. Callers test them with errors.Is. The
// provider methods also return the sentinel and typed errors of package
// entitlements.
var (
	// ErrLeaseExpired: the reservation's lease expired before the call, so
	// its amount already returned to the budget. Release and Renew return
	// it (Release still consumes the reservation); Settle does not, since it
	// records the spend anyway.
	ErrLeaseExpired = errors.New("redisledger: reservation lease expired")
	// ErrUnknownAccount is entitlements.ErrUnknownAccount.
	ErrUnknownAccount = entitlements.ErrUnknownAccount
	// ErrUnknownKey is entitlements.ErrUnknownKey.
	ErrUnknownKey = entitlements.ErrUnknownKey
	// ErrAccountMismatch is entitlements.ErrAccountMismatch.
	ErrAccountMismatch = entitlements.ErrAccountMismatch
	// ErrNotBalance is entitlements.ErrNotBalance.
	ErrNotBalance = entitlements.ErrNotBalance
)

// retryAfter is the Retry-After hint of an UnavailableError.
const retryAfter = time.Second

// fail turns the error of a Redis call into the ledger's answer: ctx.Err()
// when ctx ended, else an *entitlements.UnavailableError.
func fail(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return &entitlements.UnavailableError{RetryAfter: retryAfter, Err: err}
}

// unavailable reports whether err is an *entitlements.UnavailableError.
func unavailable(err error) bool {
	var ue *entitlements.UnavailableError
	return errors.As(err, &ue)
}
