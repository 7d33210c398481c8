package entitlements

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Key and account management of a Local: the same methods, with the same
// errors, as entitlements/redisledger's Ledger, so that one tool ("cortex
// keys") manages either. On a durable Local (OpenLocal) every change is
// written to the ledger file. Each method returns ctx.Err() when ctx is
// already done, and otherwise does not block.

// CreateKey generates a new random API key (256 bits, "sk-" followed by 43
// URL-safe base64 characters), adds its digest with nk and returns the
// secret, which the Local never stores: the only copy is the one returned.
// Errors are those of AddKey, and ErrUnknownAccount when the account does
// not exist and nk.Budget is nil.
func (l *Local) CreateKey(ctx context.Context, nk NewKey) (secret string, info KeyInfo, err error) {
	if err := ctx.Err(); err != nil {
		return "", KeyInfo{}, err
	}
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails
	secret = "sk-" + base64.RawURLEncoding.EncodeToString(b[:])
	info, err = l.addKey(KeyDigest(secret), nk.Principal, nk.Budget)
	if err != nil {
		return "", KeyInfo{}, err
	}
	return secret, info, nil
}

// Key returns the key with digest d, revoked or not; ErrUnknownKey when
// there is none.
func (l *Local) Key(ctx context.Context, d [sha256.Size]byte) (KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return KeyInfo{}, err
	}
	l.mu.RLock()
	k, ok := l.keys[d]
	var info KeyInfo
	if ok {
		info = *k
	}
	l.mu.RUnlock()
	if !ok {
		return KeyInfo{}, fmt.Errorf("%w: %x", ErrUnknownKey, d)
	}
	return info, nil
}

// Keys returns every key, revoked ones included, ordered by account id,
// key id and creation time.
func (l *Local) Keys(ctx context.Context) ([]KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return l.keysOf(""), nil
}

// keysOf returns the keys of account (every key when ""), sorted.
func (l *Local) keysOf(account string) []KeyInfo {
	l.mu.RLock()
	keys := make([]KeyInfo, 0, len(l.keys))
	for _, k := range l.keys {
		if account == "" || k.Principal.AccountID == account {
			keys = append(keys, *k)
		}
	}
	l.mu.RUnlock()
	slices.SortFunc(keys, func(a, b KeyInfo) int {
		return cmp.Or(
			strings.Compare(a.Principal.AccountID, b.Principal.AccountID),
			strings.Compare(a.Principal.KeyID, b.Principal.KeyID),
			a.CreatedAt.Compare(b.CreatedAt),
			strings.Compare(a.DigestHex(), b.DigestHex()),
		)
	})
	return keys
}

// Account returns an account's budget (after rolling its window) and its
// keys; ErrUnknownAccount when there is no such account.
func (l *Local) Account(ctx context.Context, id string) (Account, error) {
	if err := ctx.Err(); err != nil {
		return Account{}, err
	}
	a := l.account(id)
	if a == nil {
		return Account{}, fmt.Errorf("%w %q", ErrUnknownAccount, id)
	}
	return Account{ID: id, Unit: a.unit, Budget: l.snapshot(a), Keys: l.keysOf(id)}, nil
}

// RevokeKey revokes the key with digest d: Resolve answers ErrInvalidKey
// for it from then on. The key stays, marked revoked, so Keys and Key
// still show it and its digest cannot be added again. Revoking a revoked
// key changes nothing. It returns the key, or ErrUnknownKey.
func (l *Local) RevokeKey(ctx context.Context, d [sha256.Size]byte) (KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return KeyInfo{}, err
	}
	now := time.UnixMilli(l.now().UnixMilli()).UTC()
	l.mu.Lock()
	defer l.mu.Unlock()
	k, ok := l.keys[d]
	if !ok {
		return KeyInfo{}, fmt.Errorf("%w: %x", ErrUnknownKey, d)
	}
	if !k.Revoked() {
		k.RevokedAt = now
		if l.j != nil {
			l.j.key(*k)
		}
	}
	return *k, nil
}

// RevokeKeyID revokes every active key of account with the given key id
// (all secrets of a key being rotated) and returns them; ErrUnknownKey when
// the account has no key with that id.
func (l *Local) RevokeKeyID(ctx context.Context, account, keyID string) ([]KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []KeyInfo
	found := false
	for _, k := range l.keysOf(account) {
		if k.Principal.KeyID != keyID {
			continue
		}
		found = true
		if k.Revoked() {
			continue
		}
		k, err := l.RevokeKey(ctx, k.Digest)
		if err != nil {
			return out, err
		}
		out = append(out, k)
	}
	if !found {
		return nil, fmt.Errorf("%w: account %q has no key id %q", ErrUnknownKey, account, keyID)
	}
	return out, nil
}

// TopUp adds amount (> 0) to a prepaid balance by raising the account's
// cap; spent is left alone, so it stays the account's lifetime spend, and
// Remaining grows by amount. It applies to capped balance accounts only
// (ErrNotBalance otherwise: change a rolling cap with SetCap). It returns
// the budget after the top-up, ErrUnknownAccount, or ErrInvalidAmount when
// amount is not positive or the cap would overflow.
func (l *Local) TopUp(ctx context.Context, account string, amount Amount) (BudgetSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return BudgetSnapshot{}, err
	}
	if amount <= 0 {
		return BudgetSnapshot{}, fmt.Errorf("%w: top-up %d", ErrInvalidAmount, amount)
	}
	a := l.account(account)
	if a == nil {
		return BudgetSnapshot{}, fmt.Errorf("%w %q", ErrUnknownAccount, account)
	}
	if a.window.Kind == WindowRolling {
		return BudgetSnapshot{}, fmt.Errorf("%w: account %q has a rolling window", ErrNotBalance, account)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case !a.capped:
		return BudgetSnapshot{}, fmt.Errorf("%w: account %q is uncapped", ErrNotBalance, account)
	case amount > math.MaxInt64-a.cap:
		return BudgetSnapshot{}, fmt.Errorf("%w: top-up %d overflows the cap", ErrInvalidAmount, amount)
	}
	a.cap += amount
	if l.j != nil {
		l.j.setCap(a.id, Cap(a.cap))
	}
	return a.snapshotLocked(), nil
}

// SetCap sets an account's hard cap (per window, or the total balance), or
// removes it when hardCap is nil. A cap below what is spent and reserved is
// allowed: reservations in flight keep their amounts and new ones are
// refused until the window frees. The window itself is fixed when the
// account is created. It returns the budget after the change,
// ErrUnknownAccount, or ErrInvalidAmount for a negative cap or a cap of 0
// on a rolling window.
func (l *Local) SetCap(ctx context.Context, account string, hardCap *Amount) (BudgetSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return BudgetSnapshot{}, err
	}
	a := l.account(account)
	if a == nil {
		return BudgetSnapshot{}, fmt.Errorf("%w %q", ErrUnknownAccount, account)
	}
	if hardCap != nil {
		switch {
		case *hardCap < 0:
			return BudgetSnapshot{}, fmt.Errorf("%w: hard cap %d", ErrInvalidAmount, *hardCap)
		case *hardCap == 0 && a.window.Kind == WindowRolling:
			return BudgetSnapshot{}, fmt.Errorf("%w: a rolling window cannot have cap 0 (use a balance of 0 to disable an account)", ErrInvalidAmount)
		}
	}
	now := l.clock(a)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.roll(now)
	a.capped, a.cap = hardCap != nil, 0
	var c *Amount
	if hardCap != nil {
		a.cap = *hardCap
		c = Cap(a.cap)
	}
	if l.j != nil {
		l.j.setCap(a.id, c)
	}
	return a.snapshotLocked(), nil
}
