package entitlements

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Errors of key and account management (Local's CreateKey, TopUp, ...;
// entitlements/redisledger's methods of the same names return the same
// values).
var (
	// ErrUnknownAccount: the account has no budget in the ledger.
	ErrUnknownAccount = errors.New("entitlements: unknown account")
	// ErrUnknownKey: no key with that digest (or key id) is in the ledger.
	ErrUnknownKey = errors.New("entitlements: unknown key")
	// ErrAccountMismatch: a key's unit or budget differs from its existing
	// account's. Change an account's budget with SetCap or TopUp.
	ErrAccountMismatch = errors.New("entitlements: key differs from its account")
	// ErrNotBalance: TopUp of an account that is not a capped balance.
	ErrNotBalance = errors.New("entitlements: account is not a capped balance")
)

// KeyInfo is what a ledger stores about one API key: never the secret.
type KeyInfo struct {
	// Digest is the SHA-256 digest of the secret.
	Digest [sha256.Size]byte
	// Principal is what Resolve returns for the key while it is active.
	Principal Principal
	// CreatedAt is when the key was added to the ledger.
	CreatedAt time.Time
	// RevokedAt is when the key was revoked; zero while it is active.
	RevokedAt time.Time
}

// Revoked reports whether the key is revoked.
func (k KeyInfo) Revoked() bool { return !k.RevokedAt.IsZero() }

// DigestHex returns the digest in lower-case hex, as the configuration's
// key_sha256 and ParseDigest write it.
func (k KeyInfo) DigestHex() string { return hex.EncodeToString(k.Digest[:]) }

// ParseDigest parses the 64 hex digits of a SHA-256 key digest (either
// case), as KeyInfo.DigestHex and key_sha256 write it.
func ParseDigest(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(d) {
		return d, fmt.Errorf("entitlements: %q is not a hex SHA-256 digest (64 hex digits)", s)
	}
	copy(d[:], b)
	return d, nil
}

// Account is an account's budget and keys.
type Account struct {
	// ID is the account id.
	ID string
	// Unit is what the account's amounts count.
	Unit Unit
	// Budget is the current state of the account's budget.
	Budget BudgetSnapshot
	// ExpiredLeases counts the reservations whose leases expired before
	// their gateway settled them, for a ledger with leases
	// (entitlements/redisledger); always 0 for Local.
	ExpiredLeases int64
	// Keys are the account's keys, revoked ones included, ordered by key
	// id then creation time.
	Keys []KeyInfo
}

// NewKey describes a key for CreateKey.
type NewKey struct {
	// Principal is what the key resolves to. AccountID is required; an
	// empty KeyID defaults to the AccountID. Unit must be the account's.
	Principal Principal
	// Budget is the account's budget. It is required when the account is
	// new; when the account exists it may be nil, else it must equal the
	// account's (change a budget with SetCap or TopUp).
	Budget *Budget
}
