package redisledger

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/redis/go-redis/v9"
)

// Redis key layout; see the package documentation.

// budgetKeys are the keys of an account's budget: its hash, its live leases
// by expiry and its expired leases by purge time. The account id is the
// hash tag, so all three share one Cluster slot.
func (l *Ledger) budgetKeys(account string) []string {
	base := l.prefix + "acct:{" + escape(account) + "}"
	return []string{base, base + ":leases", base + ":expired"}
}

// keyRecord is the hash of one key, by the hex SHA-256 digest of its secret.
func (l *Ledger) keyRecord(digestHex string) string { return l.keyRecordPrefix() + digestHex }

func (l *Ledger) keyRecordPrefix() string { return l.prefix + "{dir}:key:" }

// accountKeys is the set of the digests of an account's keys.
func (l *Ledger) accountKeys(account string) string {
	return l.prefix + "{dir}:acct:" + escape(account)
}

// accountSet is the set of the ids of every account that has keys.
func (l *Ledger) accountSet() string { return l.prefix + "{dir}:accounts" }

// escape percent-encodes the characters of an account id that would end or
// confuse a hash tag.
func escape(s string) string {
	if !strings.ContainsAny(s, "%{}") {
		return s
	}
	return strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D").Replace(s)
}

// KeyInfo is what the ledger stores about one API key: never the secret.
type KeyInfo = entitlements.KeyInfo

// ParseDigest parses the 64 hex digits of a SHA-256 key digest (either
// case), as KeyInfo.DigestHex and key_sha256 write it.
func ParseDigest(s string) ([sha256.Size]byte, error) { return entitlements.ParseDigest(s) }

// Account is an account's budget and keys.
type Account = entitlements.Account

// NewKey describes a key for CreateKey.
type NewKey = entitlements.NewKey

// CreateKey generates a new random API key (256 bits, "sk-" followed by 43
// URL-safe base64 characters), stores its digest with nk and returns the
// secret, which the ledger never stores: the only copy is the one returned.
// Errors are those of AddKey, and ErrUnknownAccount when the account does not
// exist and nk.Budget is nil.
func (l *Ledger) CreateKey(ctx context.Context, nk NewKey) (secret string, info KeyInfo, err error) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails
	secret = "sk-" + base64.RawURLEncoding.EncodeToString(b[:])
	info, err = l.addKey(ctx, entitlements.KeyDigest(secret), nk.Principal, nk.Budget)
	if err != nil {
		return "", KeyInfo{}, err
	}
	return secret, info, nil
}

// AddKey stores a key given by its digest (build k.Digest with
// entitlements.KeyDigest). An empty KeyID defaults to the AccountID. The
// first key of an account creates the account with k.Budget, at zero spend;
// later keys must carry the account's unit and budget (else
// ErrAccountMismatch), and keys sharing an (account, key id) pair the same
// limits. It returns entitlements.ErrDuplicateKey when the digest is already
// stored (revoked or not), an error describing an invalid key, and
// ctx.Err() or an *entitlements.UnavailableError.
//
// Writing a key takes two atomic steps (create the account if missing, then
// write the key record and its indexes); an interruption between them
// leaves at most an account without keys.
func (l *Ledger) AddKey(ctx context.Context, k entitlements.Key) error {
	b := k.Budget
	_, err := l.addKey(ctx, k.Digest, k.Principal, &b)
	return err
}

func (l *Ledger) addKey(ctx context.Context, d [sha256.Size]byte, p entitlements.Principal, b *entitlements.Budget) (KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return KeyInfo{}, err
	}
	if p.KeyID == "" {
		p.KeyID = p.AccountID
	}
	if err := checkKey(d, p, b); err != nil {
		return KeyInfo{}, err
	}
	if err := l.ensureAccount(ctx, p, b); err != nil {
		return KeyInfo{}, err
	}
	code, other, err := l.writeKey(ctx, d, p)
	if err != nil {
		return KeyInfo{}, err
	}
	switch code {
	case 0:
		return KeyInfo{}, entitlements.ErrDuplicateKey
	case 2:
		return KeyInfo{}, fmt.Errorf("redisledger: key of account %q: limits differ from key %s, which has the same key id %q", p.AccountID, other, p.KeyID)
	}
	return l.Key(ctx, d)
}

// checkKey returns what is wrong with a key, as Local does.
func checkKey(d [sha256.Size]byte, p entitlements.Principal, b *entitlements.Budget) error {
	msg := ""
	switch {
	case d == sha256.Sum256(nil):
		msg = "empty secret"
	case p.AccountID == "":
		msg = "empty account id"
	case p.Unit != entitlements.UnitTokens && p.Unit != entitlements.UnitMicroUSD:
		msg = "unknown unit " + p.Unit.String()
	case p.Limits.MaxInFlight < 0 || p.Limits.RPM < 0:
		msg = "negative limit"
	case b != nil:
		msg = checkBudget(*b)
	}
	if msg != "" {
		return fmt.Errorf("redisledger: key of account %q: %s", p.AccountID, msg)
	}
	return nil
}

func checkBudget(b entitlements.Budget) string {
	switch w := b.Window; {
	case b.HardCap != nil && *b.HardCap < 0:
		return "negative hard cap"
	case b.HardCap != nil && *b.HardCap > MaxAmount:
		return fmt.Sprintf("hard cap over the ledger's maximum %d", MaxAmount)
	case b.HardCap != nil && *b.HardCap == 0 && w.Kind == entitlements.WindowRolling:
		return "hard cap 0 with a rolling window"
	case w.Kind == entitlements.WindowBalance && w.Seconds != 0:
		return "a balance window takes no seconds"
	case w.Kind == entitlements.WindowRolling && w.Seconds <= 0:
		return "a rolling window needs seconds > 0"
	case w.Kind == entitlements.WindowRolling && w.Seconds > math.MaxInt64/int64(time.Second):
		return "rolling window seconds too large"
	case w.Kind != entitlements.WindowBalance && w.Kind != entitlements.WindowRolling:
		return "unknown window kind " + w.Kind.String()
	}
	return ""
}

// storedAccount is an existing account's unit and budget as Redis holds it.
type storedAccount struct {
	unit   string
	budget entitlements.Budget
}

// ensureAccount creates p's account with budget b when it is missing (b
// nil: ErrUnknownAccount), or checks that the existing account matches p's
// unit and b.
func (l *Ledger) ensureAccount(ctx context.Context, p entitlements.Principal, b *entitlements.Budget) error {
	cur, created, err := l.createAccount(ctx, p.AccountID, p.Unit, b)
	if err != nil || created {
		return err
	}
	if cur.unit != p.Unit.String() {
		return fmt.Errorf("%w: key of account %q: unit %s differs from the account's %s", ErrAccountMismatch, p.AccountID, p.Unit, cur.unit)
	}
	if b != nil && !sameBudget(cur.budget, *b) {
		return fmt.Errorf("%w: key of account %q: budget %s differs from the account's %s", ErrAccountMismatch, p.AccountID, budgetString(*b), budgetString(cur.budget))
	}
	return nil
}

// createAccount runs the account script: it creates the account when it is
// missing and b is given, else returns the stored account.
func (l *Ledger) createAccount(ctx context.Context, account string, u entitlements.Unit, b *entitlements.Budget) (storedAccount, bool, error) {
	args := []any{l.nowArg(), "0", u.String(), "b", "0", ""}
	if b != nil {
		args[1] = "1"
		if b.Window.Kind == entitlements.WindowRolling {
			args[3], args[4] = "r", strconv.FormatInt(b.Window.Seconds, 10)
		}
		if b.HardCap != nil {
			args[5] = strconv.FormatInt(int64(*b.HardCap), 10)
		}
	}
	v, err := l.sc.ensureAccount.Run(ctx, l.client, l.budgetKeys(account)[:1], args...).Slice()
	if err != nil {
		return storedAccount{}, false, fail(ctx, err)
	}
	l.reachable()
	code, _ := v[0].(int64)
	switch {
	case code == 1:
		return storedAccount{}, true, nil
	case code == 0:
		return storedAccount{}, false, fmt.Errorf("%w %q: give a budget to create it", ErrUnknownAccount, account)
	case code == 2 && len(v) == 5:
		s := make([]string, 4)
		for i := range s {
			s[i], _ = v[i+1].(string)
		}
		cur := storedAccount{unit: s[0]}
		if s[1] == "r" {
			secs, _ := strconv.ParseInt(s[2], 10, 64)
			cur.budget.Window = entitlements.Rolling(secs)
		}
		if s[3] != "" {
			c, err := strconv.ParseInt(s[3], 10, 64)
			if err != nil {
				return storedAccount{}, false, fmt.Errorf("redisledger: account %q: bad cap %q", account, s[3])
			}
			cur.budget.HardCap = entitlements.Cap(entitlements.Amount(c))
		}
		return cur, false, nil
	}
	return storedAccount{}, false, fmt.Errorf("redisledger: unexpected account script reply %v", v)
}

func sameBudget(a, b entitlements.Budget) bool {
	if a.Window != b.Window || (a.HardCap == nil) != (b.HardCap == nil) {
		return false
	}
	return a.HardCap == nil || *a.HardCap == *b.HardCap
}

func budgetString(b entitlements.Budget) string {
	c := "uncapped"
	if b.HardCap != nil {
		c = "cap " + strconv.FormatInt(int64(*b.HardCap), 10)
	}
	return c + " over " + b.Window.String()
}

// writeKey runs the key script. It answers 1 (added), 0 (duplicate) or 2
// and the digest of the key whose limits differ.
func (l *Ledger) writeKey(ctx context.Context, d [sha256.Size]byte, p entitlements.Principal) (int64, string, error) {
	dh := hex.EncodeToString(d[:])
	keys := []string{l.keyRecord(dh), l.accountKeys(p.AccountID), l.accountSet()}
	v, err := l.sc.addKey.Run(ctx, l.client, keys, l.nowArg(), dh, p.AccountID, p.KeyID, p.Unit.String(),
		boolString(p.Limits.ClampMaxTokens), strconv.Itoa(p.Limits.MaxInFlight), strconv.Itoa(p.Limits.RPM),
		l.keyRecordPrefix(), p.Limits.Models.String()).Slice()
	if err != nil {
		return 0, "", fail(ctx, err)
	}
	l.reachable()
	code, _ := v[0].(int64)
	other := ""
	if len(v) > 1 {
		other, _ = v[1].(string)
	}
	return code, other, nil
}

func boolString(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// parseKey turns a key record into a KeyInfo.
func parseKey(d [sha256.Size]byte, m map[string]string) (KeyInfo, error) {
	k := KeyInfo{Digest: d}
	bad := func(field string) (KeyInfo, error) {
		return KeyInfo{}, fmt.Errorf("redisledger: key %x: bad %s %q", d, field, m[field])
	}
	k.Principal.AccountID, k.Principal.KeyID = m["account"], m["key_id"]
	if k.Principal.AccountID == "" {
		return bad("account")
	}
	switch m["unit"] {
	case entitlements.UnitTokens.String():
		k.Principal.Unit = entitlements.UnitTokens
	case entitlements.UnitMicroUSD.String():
		k.Principal.Unit = entitlements.UnitMicroUSD
	default:
		return bad("unit")
	}
	k.Principal.Limits.ClampMaxTokens = m["clamp"] == "1"
	var err error
	if k.Principal.Limits.MaxInFlight, err = strconv.Atoi(m["inflight"]); err != nil {
		return bad("inflight")
	}
	if k.Principal.Limits.RPM, err = strconv.Atoi(m["rpm"]); err != nil {
		return bad("rpm")
	}
	if k.Principal.Limits.Models, err = entitlements.ParseModelAllowList(m["models"]); err != nil {
		return bad("models")
	}
	ms, err := strconv.ParseInt(m["created"], 10, 64)
	if err != nil {
		return bad("created")
	}
	k.CreatedAt = time.UnixMilli(ms).UTC()
	if s := m["revoked"]; s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad("revoked")
		}
		k.RevokedAt = time.UnixMilli(ms).UTC()
	}
	return k, nil
}

// Key returns the key with digest d, revoked or not; ErrUnknownKey when
// there is none.
func (l *Ledger) Key(ctx context.Context, d [sha256.Size]byte) (KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return KeyInfo{}, err
	}
	m, err := l.client.HGetAll(ctx, l.keyRecord(hex.EncodeToString(d[:]))).Result()
	if err != nil {
		return KeyInfo{}, fail(ctx, err)
	}
	if len(m) == 0 {
		return KeyInfo{}, fmt.Errorf("%w: %x", ErrUnknownKey, d)
	}
	return parseKey(d, m)
}

// Keys returns every key in the ledger, revoked ones included, ordered by
// account id, key id and creation time.
func (l *Ledger) Keys(ctx context.Context) ([]KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	accounts, err := l.client.SMembers(ctx, l.accountSet()).Result()
	if err != nil {
		return nil, fail(ctx, err)
	}
	return l.keysOf(ctx, accounts)
}

// keysOf returns the keys of the given accounts, sorted.
func (l *Ledger) keysOf(ctx context.Context, accounts []string) ([]KeyInfo, error) {
	sets := make([]*redis.StringSliceCmd, len(accounts))
	_, err := l.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, a := range accounts {
			sets[i] = p.SMembers(ctx, l.accountKeys(a))
		}
		return nil
	})
	if err != nil {
		return nil, fail(ctx, err)
	}
	var digests [][sha256.Size]byte
	for _, s := range sets {
		for _, h := range s.Val() {
			d, err := ParseDigest(h)
			if err != nil {
				return nil, err
			}
			digests = append(digests, d)
		}
	}
	recs := make([]*redis.MapStringStringCmd, len(digests))
	_, err = l.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, d := range digests {
			recs[i] = p.HGetAll(ctx, l.keyRecord(hex.EncodeToString(d[:])))
		}
		return nil
	})
	if err != nil {
		return nil, fail(ctx, err)
	}
	keys := make([]KeyInfo, 0, len(digests))
	for i, r := range recs {
		if len(r.Val()) == 0 {
			continue // indexed but not written: an interrupted AddKey
		}
		k, err := parseKey(digests[i], r.Val())
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b KeyInfo) int {
		return cmp.Or(
			strings.Compare(a.Principal.AccountID, b.Principal.AccountID),
			strings.Compare(a.Principal.KeyID, b.Principal.KeyID),
			a.CreatedAt.Compare(b.CreatedAt),
			strings.Compare(a.DigestHex(), b.DigestHex()),
		)
	})
	return keys, nil
}

// Account returns an account's budget (after reclaiming its expired leases
// and rolling its window) and its keys; ErrUnknownAccount when the ledger
// has no budget for it.
func (l *Ledger) Account(ctx context.Context, id string) (Account, error) {
	if err := ctx.Err(); err != nil {
		return Account{}, err
	}
	r, err := l.budget(ctx, l.sc.snapshot, id)
	if err != nil {
		return Account{}, err
	}
	if r.code == codeNoAccount {
		return Account{}, fmt.Errorf("%w %q", ErrUnknownAccount, id)
	}
	unit, err := l.client.HGet(ctx, l.budgetKeys(id)[0], "unit").Result()
	if err != nil {
		return Account{}, fail(ctx, err)
	}
	a := Account{ID: id, Budget: r.snapshot(), ExpiredLeases: r.x}
	if unit == entitlements.UnitMicroUSD.String() {
		a.Unit = entitlements.UnitMicroUSD
	}
	if a.Keys, err = l.keysOf(ctx, []string{id}); err != nil {
		return Account{}, err
	}
	return a, nil
}

// RevokeKey revokes the key with digest d: Resolve answers
// entitlements.ErrInvalidKey for it from then on, on every replica (a replica
// failing open may still accept it until Redis is back). The record stays,
// marked revoked, so Keys and Key still show it and its digest cannot be
// added again. Revoking a revoked key changes nothing. It returns the key,
// or ErrUnknownKey.
func (l *Ledger) RevokeKey(ctx context.Context, d [sha256.Size]byte) (KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return KeyInfo{}, err
	}
	v, err := l.sc.revoke.Run(ctx, l.client, []string{l.keyRecord(hex.EncodeToString(d[:]))}, l.nowArg()).Int64Slice()
	if err != nil {
		return KeyInfo{}, fail(ctx, err)
	}
	l.reachable()
	if len(v) == 0 || v[0] == 0 {
		return KeyInfo{}, fmt.Errorf("%w: %x", ErrUnknownKey, d)
	}
	return l.Key(ctx, d)
}

// RevokeKeyID revokes every active key of account with the given key id
// (all secrets of a key being rotated) and returns them; ErrUnknownKey when
// the account has no key with that id. Each revocation is atomic, the set of
// them is not.
func (l *Ledger) RevokeKeyID(ctx context.Context, account, keyID string) ([]KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keys, err := l.keysOf(ctx, []string{account})
	if err != nil {
		return nil, err
	}
	var out []KeyInfo
	found := false
	for _, k := range keys {
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

// TopUp adds amount (> 0) to a prepaid balance by raising the account's cap;
// spent is left alone, so it stays the account's lifetime spend, a true
// meter, and Remaining grows by amount. It applies to capped balance
// accounts only (ErrNotBalance otherwise: change a rolling cap with SetCap).
// It returns the budget after the top-up, ErrUnknownAccount, or
// entitlements.ErrInvalidAmount when amount is not positive or the cap would
// pass MaxAmount.
func (l *Ledger) TopUp(ctx context.Context, account string, amount entitlements.Amount) (entitlements.BudgetSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return entitlements.BudgetSnapshot{}, err
	}
	if amount <= 0 || amount > MaxAmount {
		return entitlements.BudgetSnapshot{}, fmt.Errorf("%w: top-up %d", entitlements.ErrInvalidAmount, amount)
	}
	r, err := l.budget(ctx, l.sc.topUp, account, int64(amount))
	if err != nil {
		return entitlements.BudgetSnapshot{}, err
	}
	switch r.code {
	case codeOK:
		return r.snapshot(), nil
	case codeNoAccount:
		return entitlements.BudgetSnapshot{}, fmt.Errorf("%w %q", ErrUnknownAccount, account)
	case codeRolling:
		return entitlements.BudgetSnapshot{}, fmt.Errorf("%w: account %q has a rolling window", ErrNotBalance, account)
	case codeUncapped:
		return entitlements.BudgetSnapshot{}, fmt.Errorf("%w: account %q is uncapped", ErrNotBalance, account)
	case codeOverflow:
		return entitlements.BudgetSnapshot{}, fmt.Errorf("%w: top-up %d takes the cap over %d", entitlements.ErrInvalidAmount, amount, MaxAmount)
	}
	return entitlements.BudgetSnapshot{}, r.unexpected("top-up")
}

// SetCap sets an account's hard cap (per window, or the total balance), or
// removes it when hardCap is nil. A cap below what is spent and reserved is
// allowed: reservations in flight keep their amounts and new ones are
// refused until the window frees. The window itself is fixed when the
// account is created. It returns the budget after the change,
// ErrUnknownAccount, or entitlements.ErrInvalidAmount for a negative cap, a
// cap over MaxAmount, or a cap of 0 on a rolling window.
func (l *Ledger) SetCap(ctx context.Context, account string, hardCap *entitlements.Amount) (entitlements.BudgetSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return entitlements.BudgetSnapshot{}, err
	}
	arg := ""
	if hardCap != nil {
		if *hardCap < 0 || *hardCap > MaxAmount {
			return entitlements.BudgetSnapshot{}, fmt.Errorf("%w: hard cap %d", entitlements.ErrInvalidAmount, *hardCap)
		}
		arg = strconv.FormatInt(int64(*hardCap), 10)
	}
	r, err := l.budget(ctx, l.sc.setCap, account, arg)
	if err != nil {
		return entitlements.BudgetSnapshot{}, err
	}
	switch r.code {
	case codeOK:
		return r.snapshot(), nil
	case codeNoAccount:
		return entitlements.BudgetSnapshot{}, fmt.Errorf("%w %q", ErrUnknownAccount, account)
	case codeZeroCap:
		return entitlements.BudgetSnapshot{}, fmt.Errorf("%w: a rolling window cannot have cap 0 (use a balance of 0 to disable an account)", entitlements.ErrInvalidAmount)
	}
	return entitlements.BudgetSnapshot{}, r.unexpected("set-cap")
}

// SeedReport says what Seed did.
type SeedReport struct {
	// Added counts the keys written to Redis.
	Added int
	// Present counts the keys already in Redis exactly as configured.
	Present int
	// Conflicts describe keys and accounts that Redis holds differently
	// from the configuration (another budget or limits, a revoked key); Redis
	// was kept. Keys of an account whose budget differs are still added
	// (they spend the account's budget as Redis holds it); keys of an account
	// whose unit differs are not.
	Conflicts []string
}

// Seed writes the configured keys (entitlements.Config.APIKeys) that Redis
// does not hold yet, creating their accounts with the configured budgets. It
// is meant to run at every gateway start, on every replica, so it only adds:
// once a key or an account is in Redis, Redis is the source of truth (a
// top-up, a new cap or a revocation made with the key management API
// survives a restart), and a configuration that differs is reported in
// SeedReport.Conflicts. An invalid key is an error and stops Seed, as does a
// Redis error; the report counts what was done before.
func (l *Ledger) Seed(ctx context.Context, keys []entitlements.Key) (SeedReport, error) {
	var rep SeedReport
	unitOK := make(map[string]bool) // account -> its unit is the configured one
	for i, k := range keys {
		p := k.Principal
		if p.KeyID == "" {
			p.KeyID = p.AccountID
		}
		b := k.Budget
		if err := checkKey(k.Digest, p, &b); err != nil {
			return rep, fmt.Errorf("keys[%d]: %w", i, err)
		}
		ok, seen := unitOK[p.AccountID]
		if !seen {
			cur, created, err := l.createAccount(ctx, p.AccountID, p.Unit, &b)
			if err != nil {
				return rep, err
			}
			ok = created || cur.unit == p.Unit.String()
			unitOK[p.AccountID] = ok
			if !created && (!ok || !sameBudget(cur.budget, b)) {
				rep.Conflicts = append(rep.Conflicts, fmt.Sprintf("account %q: Redis has unit %s, %s; configuration has unit %s, %s",
					p.AccountID, cur.unit, budgetString(cur.budget), p.Unit, budgetString(b)))
			}
		}
		if !ok {
			rep.Conflicts = append(rep.Conflicts, fmt.Sprintf("key %q of account %q: unit differs from the account's; not added", p.KeyID, p.AccountID))
			continue
		}
		code, other, err := l.writeKey(ctx, k.Digest, p)
		if err != nil {
			return rep, err
		}
		switch code {
		case 1:
			rep.Added++
			continue
		case 2:
			rep.Conflicts = append(rep.Conflicts, fmt.Sprintf("key %q of account %q: limits differ from key %s with the same key id; not added", p.KeyID, p.AccountID, other))
			continue
		}
		cur, err := l.Key(ctx, k.Digest)
		if errors.Is(err, ErrUnknownKey) {
			return rep, fmt.Errorf("keys[%d]: key record vanished during seeding", i)
		}
		if err != nil {
			return rep, err
		}
		switch {
		case cur.Principal != p:
			rep.Conflicts = append(rep.Conflicts, fmt.Sprintf("key %q of account %q: Redis has %+v", p.KeyID, p.AccountID, cur.Principal))
		case cur.Revoked():
			rep.Conflicts = append(rep.Conflicts, fmt.Sprintf("key %q of account %q: revoked in Redis at %s", p.KeyID, p.AccountID, cur.RevokedAt.Format(time.RFC3339)))
		default:
			rep.Present++
		}
	}
	return rep, nil
}
