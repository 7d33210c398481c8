package redisledger_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
)

// mgmtLedger returns a ledger on the shared server with a manual clock.
func mgmtLedger(t *testing.T) (*redisledger.Ledger, *entitlementstest.Clock) {
	t.Helper()
	clock := entitlementstest.NewClock(time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC))
	return newLedger(t, newClient(t, sharedRedis(t).addr), redisledger.WithClock(clock)), clock
}

func TestCreateKey(t *testing.T) {
	t.Parallel()
	l, clock := mgmtLedger(t)
	ctx := t.Context()
	budget := &entitlements.Budget{HardCap: entitlements.Cap(1000), Window: entitlements.Rolling(3600)}

	if _, _, err := l.CreateKey(ctx, redisledger.NewKey{Principal: entitlements.Principal{AccountID: "acme"}}); !errors.Is(err, redisledger.ErrUnknownAccount) {
		t.Errorf("CreateKey for a new account without a budget = %v, want ErrUnknownAccount", err)
	}
	p := entitlements.Principal{AccountID: "acme", Limits: entitlements.Limits{MaxInFlight: 4, RPM: 60, ClampMaxTokens: true}}
	secret, info, err := l.CreateKey(ctx, redisledger.NewKey{Principal: p, Budget: budget})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if !strings.HasPrefix(secret, "sk-") || len(secret) != 46 {
		t.Errorf("secret = %q, want sk- and 43 characters", secret)
	}
	p.KeyID = "acme" // defaulted
	want := redisledger.KeyInfo{Digest: entitlements.KeyDigest(secret), Principal: p, CreatedAt: clock.Now()}
	if diff := cmp.Diff(info, want); diff != "" {
		t.Errorf("KeyInfo mismatch (-got +want):\n%s", diff)
	}
	got, err := l.Resolve(ctx, secret)
	if err != nil || got != p {
		t.Errorf("Resolve(new secret) = %+v, %v; want %+v", got, err, p)
	}

	// A second key of the account takes the account's budget.
	clock.Advance(time.Second)
	ci := entitlements.Principal{AccountID: "acme", KeyID: "ci"}
	secret2, info2, err := l.CreateKey(ctx, redisledger.NewKey{Principal: ci})
	if err != nil {
		t.Fatalf("CreateKey(second key): %v", err)
	}
	if secret2 == secret {
		t.Fatal("two generated secrets are equal")
	}

	keys, err := l.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(keys, []redisledger.KeyInfo{info, info2}); diff != "" {
		t.Errorf("Keys mismatch (-got +want):\n%s", diff)
	}
	shown, err := l.Key(ctx, info2.Digest)
	if err != nil || shown != info2 {
		t.Errorf("Key = %+v, %v; want %+v", shown, err, info2)
	}
	if _, err := l.Key(ctx, entitlements.KeyDigest("sk-nope")); !errors.Is(err, redisledger.ErrUnknownKey) {
		t.Errorf("Key(unknown) = %v, want ErrUnknownKey", err)
	}
	a, err := l.Account(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	wantAccount := redisledger.Account{
		ID:     "acme",
		Budget: entitlements.BudgetSnapshot{HardCap: budget.HardCap, Window: budget.Window, ResetsAt: time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)},
		Keys:   []redisledger.KeyInfo{info, info2},
	}
	if diff := cmp.Diff(a, wantAccount); diff != "" {
		t.Errorf("Account mismatch (-got +want):\n%s", diff)
	}
	if _, err := l.Account(ctx, "nobody"); !errors.Is(err, redisledger.ErrUnknownAccount) {
		t.Errorf("Account(unknown) = %v, want ErrUnknownAccount", err)
	}
}

func TestAddKeyErrors(t *testing.T) {
	t.Parallel()
	l, _ := mgmtLedger(t)
	ctx := t.Context()
	base := entitlements.Key{
		Digest:    entitlements.KeyDigest("sk-base"),
		Principal: entitlements.Principal{AccountID: "acme", KeyID: "k"},
		Budget:    entitlements.Budget{HardCap: entitlements.Cap(100)},
	}
	if err := l.AddKey(ctx, base); err != nil {
		t.Fatal(err)
	}
	with := func(secret string, f func(*entitlements.Key)) entitlements.Key {
		k := base
		k.Digest = entitlements.KeyDigest(secret)
		f(&k)
		return k
	}
	tests := []struct {
		name    string
		in      entitlements.Key
		wantErr error  // checked with errors.Is when set
		wantMsg string // substring; "" with a nil wantErr for success
	}{
		{name: "duplicate digest", in: base, wantErr: entitlements.ErrDuplicateKey},
		{name: "same account other key id", in: with("sk-2", func(k *entitlements.Key) { k.Principal.KeyID = "k2" })},
		{name: "rotation: same key id same limits", in: with("sk-3", func(*entitlements.Key) {})},
		{name: "same key id other limits", in: with("sk-4", func(k *entitlements.Key) { k.Principal.Limits.RPM = 5 }), wantMsg: "limits differ"},
		{name: "other cap same account", in: with("sk-5", func(k *entitlements.Key) { k.Budget.HardCap = entitlements.Cap(7) }), wantErr: redisledger.ErrAccountMismatch},
		{name: "uncapped same account", in: with("sk-6", func(k *entitlements.Key) { k.Budget.HardCap = nil }), wantErr: redisledger.ErrAccountMismatch},
		{name: "other window same account", in: with("sk-7", func(k *entitlements.Key) { k.Budget.Window = entitlements.Rolling(60) }), wantErr: redisledger.ErrAccountMismatch},
		{name: "other unit same account", in: with("sk-8", func(k *entitlements.Key) { k.Principal.Unit = entitlements.UnitMicroUSD }), wantMsg: "unit usd differs"},
		{name: "empty account", in: with("sk-9", func(k *entitlements.Key) { k.Principal.AccountID = "" }), wantMsg: "empty account id"},
		{name: "empty secret", in: with("", func(k *entitlements.Key) { k.Principal.AccountID = "x" }), wantMsg: "empty secret"},
		{name: "negative cap", in: with("sk-10", func(k *entitlements.Key) { k.Principal.AccountID = "y"; k.Budget.HardCap = entitlements.Cap(-1) }), wantMsg: "negative hard cap"},
		{name: "cap over the maximum", in: with("sk-10b", func(k *entitlements.Key) {
			k.Principal.AccountID = "y"
			k.Budget.HardCap = entitlements.Cap(redisledger.MaxAmount + 1)
		}), wantMsg: "over the ledger's maximum"},
		{name: "rolling without seconds", in: with("sk-11", func(k *entitlements.Key) { k.Principal.AccountID = "y"; k.Budget.Window = entitlements.Rolling(0) }), wantMsg: "seconds > 0"},
		{name: "zero cap rolling", in: with("sk-12", func(k *entitlements.Key) {
			k.Principal.AccountID = "y"
			k.Budget = entitlements.Budget{HardCap: entitlements.Cap(0), Window: entitlements.Rolling(60)}
		}), wantMsg: "hard cap 0"},
		{name: "unknown unit", in: with("sk-13", func(k *entitlements.Key) { k.Principal.AccountID = "y"; k.Principal.Unit = 9 }), wantMsg: "unknown unit"},
		{name: "negative limit", in: with("sk-14", func(k *entitlements.Key) { k.Principal.AccountID = "y"; k.Principal.Limits.MaxInFlight = -1 }), wantMsg: "negative limit"},
		{name: "account id with hash-tag characters", in: with("sk-15", func(k *entitlements.Key) {
			k.Principal = entitlements.Principal{AccountID: "a{b}%7D:c", KeyID: "x"}
		})},
	}
	for _, tt := range tests { // sequential: the cases share one ledger
		err := l.AddKey(ctx, tt.in)
		switch {
		case tt.wantErr != nil:
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%s: AddKey = %v, want %v", tt.name, err, tt.wantErr)
			}
		case tt.wantMsg != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("%s: AddKey = %v, want an error containing %q", tt.name, err, tt.wantMsg)
			}
		case err != nil:
			t.Errorf("%s: AddKey = %v, want nil", tt.name, err)
		}
	}
	// A refused key is not resolvable; the one with odd characters is, and
	// its account is apart from "a".
	if _, err := l.Resolve(ctx, "sk-4"); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("Resolve(refused key) = %v, want ErrInvalidKey", err)
	}
	p, err := l.Resolve(ctx, "sk-15")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, p, 70); err != nil {
		t.Errorf("Reserve on the odd account: %v", err)
	}
	if a, err := l.Account(ctx, "a{b}%7D:c"); err != nil || len(a.Keys) != 1 || a.Budget.Reserved != 70 {
		t.Errorf("Account(odd id) = %+v, %v; want one key and 70 reserved", a, err)
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	l, clock := mgmtLedger(t)
	ctx := t.Context()
	b := entitlements.Budget{HardCap: entitlements.Cap(100)}
	p := addKey(t, l, "sk-old", entitlements.Principal{AccountID: "acme", KeyID: "prod"}, b)
	addKey(t, l, "sk-new", p, b)
	addKey(t, l, "sk-other", entitlements.Principal{AccountID: "acme", KeyID: "ci"}, b)

	clock.Advance(time.Minute)
	info, err := l.RevokeKey(ctx, entitlements.KeyDigest("sk-old"))
	if err != nil {
		t.Fatal(err)
	}
	if !info.Revoked() || !info.RevokedAt.Equal(clock.Now()) {
		t.Errorf("RevokedAt = %v, want %v", info.RevokedAt, clock.Now())
	}
	if _, err := l.Resolve(ctx, "sk-old"); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("Resolve(revoked) = %v, want ErrInvalidKey", err)
	}
	if got, err := l.Resolve(ctx, "sk-new"); err != nil || got != p {
		t.Errorf("Resolve(the other secret of the key id) = %+v, %v; want %+v", got, err, p)
	}
	clock.Advance(time.Minute)
	again, err := l.RevokeKey(ctx, entitlements.KeyDigest("sk-old"))
	if err != nil || !again.RevokedAt.Equal(info.RevokedAt) {
		t.Errorf("second RevokeKey = %+v, %v; want the first revocation time kept", again, err)
	}
	if err := l.AddKey(ctx, entitlements.Key{Digest: entitlements.KeyDigest("sk-old"), Principal: p, Budget: b}); !errors.Is(err, entitlements.ErrDuplicateKey) {
		t.Errorf("AddKey(revoked digest) = %v, want ErrDuplicateKey", err)
	}
	if _, err := l.RevokeKey(ctx, entitlements.KeyDigest("sk-nope")); !errors.Is(err, redisledger.ErrUnknownKey) {
		t.Errorf("RevokeKey(unknown) = %v, want ErrUnknownKey", err)
	}

	revoked, err := l.RevokeKeyID(ctx, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(revoked) != 1 || revoked[0].Digest != entitlements.KeyDigest("sk-new") {
		t.Errorf("RevokeKeyID revoked %+v, want only sk-new (sk-old was revoked already)", revoked)
	}
	if _, err := l.Resolve(ctx, "sk-new"); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("Resolve(revoked by key id) = %v, want ErrInvalidKey", err)
	}
	if _, err := l.Resolve(ctx, "sk-other"); err != nil {
		t.Errorf("Resolve(another key id) = %v", err)
	}
	if _, err := l.RevokeKeyID(ctx, "acme", "nope"); !errors.Is(err, redisledger.ErrUnknownKey) {
		t.Errorf("RevokeKeyID(unknown) = %v, want ErrUnknownKey", err)
	}
	keys, err := l.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var active []string
	for _, k := range keys {
		if !k.Revoked() {
			active = append(active, k.Principal.KeyID)
		}
	}
	if len(keys) != 3 || cmp.Diff(active, []string{"ci"}) != "" {
		t.Errorf("Keys = %+v, want 3 keys of which only ci is active", keys)
	}
}

func TestTopUpAndSetCap(t *testing.T) {
	t.Parallel()
	l, _ := mgmtLedger(t)
	ctx := t.Context()
	p := addKey(t, l, "sk-bal", entitlements.Principal{AccountID: "bal"}, entitlements.Budget{HardCap: entitlements.Cap(100)})
	addKey(t, l, "sk-roll", entitlements.Principal{AccountID: "roll"}, entitlements.Budget{HardCap: entitlements.Cap(100), Window: entitlements.Rolling(60)})
	addKey(t, l, "sk-free", entitlements.Principal{AccountID: "free"}, entitlements.Budget{})

	r, err := l.Reserve(ctx, p, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Settle(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, p, 1); !isBudgetError(err) {
		t.Fatalf("Reserve on a spent balance = %v, want a BudgetError", err)
	}
	s, err := l.TopUp(ctx, "bal", 50)
	if err != nil {
		t.Fatal(err)
	}
	want := entitlements.BudgetSnapshot{HardCap: entitlements.Cap(150), Spent: 100, Window: entitlements.Balance()}
	if diff := cmp.Diff(s, want); diff != "" {
		t.Errorf("TopUp snapshot mismatch (-got +want):\n%s", diff)
	}
	if _, err := l.Reserve(ctx, p, 50); err != nil {
		t.Errorf("Reserve after the top-up: %v", err)
	}

	topUps := []struct {
		name    string
		account string
		amount  entitlements.Amount
		wantErr error
	}{
		{name: "rolling", account: "roll", amount: 1, wantErr: redisledger.ErrNotBalance},
		{name: "uncapped", account: "free", amount: 1, wantErr: redisledger.ErrNotBalance},
		{name: "unknown account", account: "nobody", amount: 1, wantErr: redisledger.ErrUnknownAccount},
		{name: "zero", account: "bal", amount: 0, wantErr: entitlements.ErrInvalidAmount},
		{name: "over the maximum", account: "bal", amount: redisledger.MaxAmount, wantErr: entitlements.ErrInvalidAmount},
	}
	for _, tt := range topUps {
		if _, err := l.TopUp(ctx, tt.account, tt.amount); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: TopUp = %v, want %v", tt.name, err, tt.wantErr)
		}
	}

	// Lowering a cap below what is held refuses new reservations only.
	s, err = l.SetCap(ctx, "bal", entitlements.Cap(120))
	if err != nil {
		t.Fatal(err)
	}
	want = entitlements.BudgetSnapshot{HardCap: entitlements.Cap(120), Spent: 100, Reserved: 50, Window: entitlements.Balance()}
	if diff := cmp.Diff(s, want); diff != "" {
		t.Errorf("SetCap snapshot mismatch (-got +want):\n%s", diff)
	}
	if _, err := l.Reserve(ctx, p, 0); !isBudgetError(err) {
		t.Errorf("Reserve over a lowered cap = %v, want a BudgetError", err)
	}
	if s, err = l.SetCap(ctx, "bal", nil); err != nil || s.HardCap != nil {
		t.Errorf("SetCap(nil) = %+v, %v; want uncapped", s, err)
	}
	if _, err := l.Reserve(ctx, p, 1<<40); err != nil {
		t.Errorf("Reserve on an uncapped account: %v", err)
	}
	setCaps := []struct {
		name    string
		account string
		cap     *entitlements.Amount
		wantErr error
	}{
		{name: "zero on rolling", account: "roll", cap: entitlements.Cap(0), wantErr: entitlements.ErrInvalidAmount},
		{name: "negative", account: "bal", cap: entitlements.Cap(-1), wantErr: entitlements.ErrInvalidAmount},
		{name: "unknown account", account: "nobody", cap: entitlements.Cap(1), wantErr: redisledger.ErrUnknownAccount},
	}
	for _, tt := range setCaps {
		if _, err := l.SetCap(ctx, tt.account, tt.cap); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: SetCap = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	if s, err := l.SetCap(ctx, "roll", entitlements.Cap(10)); err != nil || *s.HardCap != 10 || s.Window != entitlements.Rolling(60) {
		t.Errorf("SetCap(rolling, 10) = %+v, %v", s, err)
	}
}

const seedTOML = `
[[keys]]
key = "sk-alice"
account_id = "acme"
hard_cap = 1000

[[keys]]
# sha256("sk-bob")
key_sha256 = "%x"
account_id = "acme"
key_id = "bob"
hard_cap = 1000
max_in_flight = 2

[[keys]]
key = "sk-usd"
account_id = "globex"
unit = "usd"
hard_cap_usd = 2.5
window = { kind = "rolling", seconds = 3600 }

[redis]
url = "redis://%s/0"
key_prefix = "%s"
lease_ttl = "5m"
`

// TestSeedFromConfig seeds keys from a parsed configuration through a
// Ledger built by Open from the same configuration, twice, as replicas do at
// start, and checks that Redis stays the source of truth.
func TestSeedFromConfig(t *testing.T) {
	t.Parallel()
	srv := sharedRedis(t)
	cfg, err := entitlements.ParseConfig(fmt.Appendf(nil, seedTOML, entitlements.KeyDigest("sk-bob"), srv.addr, uniquePrefix(t)))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	keys, err := cfg.APIKeys()
	if err != nil {
		t.Fatal(err)
	}
	l, err := redisledger.Open(*cfg.Redis)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	if l.LeaseTTL() != 5*time.Minute {
		t.Errorf("LeaseTTL = %v, want 5m from the configuration", l.LeaseTTL())
	}
	ctx := t.Context()
	if err := l.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	rep, err := l.Seed(ctx, keys)
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if diff := cmp.Diff(rep, redisledger.SeedReport{Added: 3}); diff != "" {
		t.Errorf("first Seed mismatch (-got +want):\n%s", diff)
	}
	resolves := []struct {
		name string
		key  string
		want entitlements.Principal
		cap  entitlements.Amount
	}{
		{name: "plaintext key", key: "sk-alice", want: entitlements.Principal{AccountID: "acme", KeyID: "acme"}, cap: 1000},
		{name: "digest key", key: "sk-bob", want: entitlements.Principal{AccountID: "acme", KeyID: "bob", Limits: entitlements.Limits{MaxInFlight: 2}}, cap: 1000},
		{name: "usd", key: "sk-usd", want: entitlements.Principal{AccountID: "globex", KeyID: "globex", Unit: entitlements.UnitMicroUSD}, cap: 2_500_000},
	}
	for _, tt := range resolves {
		got, err := l.Resolve(ctx, tt.key)
		if err != nil {
			t.Errorf("%s: Resolve: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(got, tt.want); diff != "" {
			t.Errorf("%s: Resolve mismatch (-got +want):\n%s", tt.name, diff)
		}
		s, err := l.Snapshot(ctx, got)
		if err != nil || s.HardCap == nil || *s.HardCap != tt.cap {
			t.Errorf("%s: Snapshot = %+v, %v; want cap %d", tt.name, s, err, tt.cap)
		}
	}

	// A second replica starting with the same configuration adds nothing.
	l2, err := redisledger.Open(*cfg.Redis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l2.Close() })
	rep, err = l2.Seed(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rep, redisledger.SeedReport{Present: 3}); diff != "" {
		t.Errorf("second Seed mismatch (-got +want):\n%s", diff)
	}

	// Changes made through the key management API survive a restart.
	if _, err := l.TopUp(ctx, "acme", 500); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RevokeKey(ctx, entitlements.KeyDigest("sk-bob")); err != nil {
		t.Fatal(err)
	}
	rep, err = l2.Seed(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Added != 0 || rep.Present != 2 || len(rep.Conflicts) != 2 ||
		!strings.Contains(rep.Conflicts[0], `account "acme"`) || !strings.Contains(rep.Conflicts[1], "revoked") {
		t.Errorf("Seed after changes = %+v, want 2 present and conflicts for the account and the revoked key", rep)
	}
	if _, err := l.Resolve(ctx, "sk-bob"); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("Resolve(revoked, reseeded) = %v, want ErrInvalidKey", err)
	}
	a, err := l.Account(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if *a.Budget.HardCap != 1500 {
		t.Errorf("cap after reseeding = %d, want the topped-up 1500", *a.Budget.HardCap)
	}

	// A key whose unit is not its account's is not added.
	tokensKey := []entitlements.Key{{Digest: entitlements.KeyDigest("sk-usd-2"), Principal: entitlements.Principal{AccountID: "globex"}}}
	rep, err = l.Seed(ctx, tokensKey)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Added != 0 || len(rep.Conflicts) != 2 || !strings.Contains(rep.Conflicts[1], "not added") {
		t.Errorf("Seed(key in another unit) = %+v, want two conflicts and nothing added", rep)
	}
	if _, err := l.Resolve(ctx, "sk-usd-2"); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("Resolve(key not added) = %v, want ErrInvalidKey", err)
	}

	bad := []entitlements.Key{{Digest: entitlements.KeyDigest("sk-x"), Principal: entitlements.Principal{AccountID: "x"}, Budget: entitlements.Budget{HardCap: entitlements.Cap(-1)}}}
	if _, err := l.Seed(ctx, bad); err == nil || !strings.Contains(err.Error(), "keys[0]") {
		t.Errorf("Seed(invalid key) = %v, want an error naming keys[0]", err)
	}
}

// TestKeysSorted checks the order of Keys over several accounts.
func TestKeysSorted(t *testing.T) {
	t.Parallel()
	l, clock := mgmtLedger(t)
	b := entitlements.Budget{}
	for _, k := range []struct{ secret, account, keyID string }{
		{"sk-1", "zeta", "a"}, {"sk-2", "alpha", "b"}, {"sk-3", "alpha", "a"}, {"sk-4", "mid", "x"},
	} {
		clock.Advance(time.Second)
		addKey(t, l, k.secret, entitlements.Principal{AccountID: k.account, KeyID: k.keyID}, b)
	}
	keys, err := l.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.Principal.AccountID+"/"+k.Principal.KeyID)
	}
	if diff := cmp.Diff(got, []string{"alpha/a", "alpha/b", "mid/x", "zeta/a"}); diff != "" {
		t.Errorf("Keys order mismatch (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(keys[0].Digest, entitlements.KeyDigest("sk-3"), cmpopts.EquateComparable()); diff != "" {
		t.Errorf("first digest mismatch (-got +want):\n%s", diff)
	}
}

func TestParseDigest(t *testing.T) {
	t.Parallel()
	d := entitlements.KeyDigest("sk")
	tests := []struct {
		name    string
		in      string
		want    [32]byte
		wantErr bool
	}{
		{name: "lower", in: fmt.Sprintf("%x", d), want: d},
		{name: "upper", in: fmt.Sprintf("%X", d), want: d},
		{name: "short", in: "abcd", wantErr: true},
		{name: "not hex", in: strings.Repeat("z", 64), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := redisledger.ParseDigest(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseDigest(%q) = %v, want error %t", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseDigest(%q) = %x, want %x", tt.in, got, tt.want)
			}
		})
	}
}
