package entitlements

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"time"
)

// Reloading the keys of a Local: what a gateway does when its
// configuration is read again (cortex's SIGHUP and POST /admin/reload).

// SetKeys makes keys, and only keys, the keys of an in-memory Local
// (NewLocal), in one step, while it serves: a key whose digest and
// principal (account, key id, unit, limits) are unchanged stays as it is;
// a key whose principal changed resolves to the new one from now on; a
// key that is not in keys any more stops resolving (ErrInvalidKey); a new
// key is added. A key revoked with RevokeKey stays revoked.
//
// Spend belongs to accounts, which SetKeys never removes: an account keeps
// its spend and its reservations whatever happens to its keys, and a
// reservation made before SetKeys is settled or released as usual. An
// account's new hard cap applies at once (as SetCap); its unit and its
// window cannot change while it holds spend (an error wrapping
// ErrAccountMismatch).
//
// keys are validated first (as AddKey does, and as Config.APIKeys does
// across keys: one budget and unit per account, one principal per key id);
// when one is refused, SetKeys returns the error and changes nothing. A
// durable Local (OpenLocal) keeps its keys in its ledger file, which is
// their source of truth: SetKeys refuses it (use Seed). It returns
// ctx.Err() when ctx is already done, and otherwise does not block.
func (l *Local) SetKeys(ctx context.Context, keys []Key) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if l.j != nil {
		return errors.New("entitlements: SetKeys: a durable Local's keys are in its ledger file: use Seed, and \"cortex keys\" to revoke or change")
	}
	type acctCfg struct {
		unit   Unit
		budget Budget
	}
	accts := make(map[string]acctCfg)
	byID := make(map[[2]string]Principal)
	digests := make(map[[sha256.Size]byte]bool, len(keys))
	norm := make([]Key, len(keys))
	for i, k := range keys {
		p := k.Principal
		if p.KeyID == "" {
			p.KeyID = p.AccountID
		}
		if msg := checkKey(k.Digest, p, k.Budget); msg != "" {
			return fmt.Errorf("entitlements: keys[%d] (account %q): %s", i, p.AccountID, msg)
		}
		if digests[k.Digest] {
			return fmt.Errorf("entitlements: keys[%d] (account %q): %w", i, p.AccountID, ErrDuplicateKey)
		}
		digests[k.Digest] = true
		if a, ok := accts[p.AccountID]; ok && (a.unit != p.Unit || !sameBudget(a.budget, k.Budget)) {
			return fmt.Errorf("%w: keys[%d]: account %q has another unit or budget in an earlier key", ErrAccountMismatch, i, p.AccountID)
		}
		accts[p.AccountID] = acctCfg{unit: p.Unit, budget: k.Budget}
		id := [2]string{p.AccountID, p.KeyID}
		if prev, ok := byID[id]; ok && prev != p {
			return fmt.Errorf("entitlements: keys[%d]: limits differ from key id %q's", i, p.KeyID)
		}
		byID[id] = p
		norm[i] = Key{Digest: k.Digest, Principal: p, Budget: k.Budget}
	}
	created := time.UnixMilli(l.now().UnixMilli()).UTC()

	l.mu.Lock()
	defer l.mu.Unlock()
	for id, c := range accts {
		a := l.accounts[id]
		if a == nil {
			continue
		}
		if a.unit != c.unit || a.window != c.budget.Window {
			return fmt.Errorf("%w: account %q: its unit (%s) and window (%s) cannot change while it holds spend; the configuration has %s, %s",
				ErrAccountMismatch, id, a.unit, a.window, c.unit, c.budget.Window)
		}
	}
	// Nothing can fail from here on.
	for id, c := range accts {
		a := l.accounts[id]
		if a == nil {
			a = &account{id: id, unit: c.unit, window: c.budget.Window, win: math.MinInt64}
			l.accounts[id] = a
		}
		a.mu.Lock()
		a.capped = c.budget.HardCap != nil
		a.cap = 0
		if a.capped {
			a.cap = *c.budget.HardCap
		}
		a.mu.Unlock()
	}
	next := make(map[[sha256.Size]byte]*KeyInfo, len(norm))
	for _, k := range norm {
		if cur, ok := l.keys[k.Digest]; ok && (cur.Principal == k.Principal || cur.Revoked()) {
			next[k.Digest] = cur
			continue
		}
		next[k.Digest] = &KeyInfo{Digest: k.Digest, Principal: k.Principal, CreatedAt: created}
	}
	l.keys = next
	l.keyIDs = byID
	return nil
}

// Seed adds the keys the Local does not hold, as OpenLocal does with the
// keys of its configuration, and describes those it holds differently
// (another principal or budget, a revoked key): the Local's version is
// kept. It is how a durable Local takes the keys of a configuration read
// again: its ledger file stays the source of truth, and keys are revoked
// or changed with RevokeKey, SetCap and the like. It returns ctx.Err()
// when ctx is already done, and otherwise does not block.
func (l *Local) Seed(ctx context.Context, keys []Key) (conflicts []string, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return l.seed(keys), nil
}
