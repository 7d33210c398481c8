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
	// ErrUnknownAccount: the account has no budget in the ledger.
	ErrUnknownAccount = errors.New("redisledger: unknown account")
	// ErrUnknownKey: no key with that digest (or key id) is in the ledger.
	ErrUnknownKey = errors.New("redisledger: unknown key")
	// ErrAccountMismatch: a key's unit or budget differs from its existing
	// account's. Change an account's budget with SetCap or TopUp.
	ErrAccountMismatch = errors.New("redisledger: key differs from its account")
	// ErrNotBalance: TopUp of an account that is not a capped balance.
	ErrNotBalance = errors.New("redisledger: account is not a capped balance")
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
