package entitlements_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/entitlements"
)

func key(secret, account, keyID string, hardCap entitlements.Amount) entitlements.Key {
	return entitlements.Key{
		Digest:    entitlements.KeyDigest(secret),
		Principal: entitlements.Principal{AccountID: account, KeyID: keyID},
		Budget:    entitlements.Budget{HardCap: entitlements.Cap(hardCap)},
	}
}

// SetKeys replaces the keys in one step: an unchanged key keeps resolving,
// a removed one stops, a new one resolves, and the account keeps its spend,
// its reservation and takes its new cap.
func TestLocalSetKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l, err := entitlements.NewLocal(entitlements.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetKeys(ctx, []entitlements.Key{key("sk-a", "acme", "a", 100), key("sk-b", "beta", "b", 50)}); err != nil {
		t.Fatal(err)
	}
	pa, err := l.Resolve(ctx, "sk-a")
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Reserve(ctx, pa, 30)
	if err != nil {
		t.Fatal(err)
	}

	// Remove sk-b, add sk-c to acme with a limit, raise acme's cap.
	c := key("sk-c", "acme", "c", 200)
	c.Principal.Limits.RPM = 7
	if err := l.SetKeys(ctx, []entitlements.Key{key("sk-a", "acme", "a", 200), c}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Resolve(ctx, "sk-b"); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("removed key: Resolve = %v, want ErrInvalidKey", err)
	}
	if p, err := l.Resolve(ctx, "sk-a"); err != nil || p != pa {
		t.Errorf("unchanged key: Resolve = %+v, %v; want %+v", p, err, pa)
	}
	pc, err := l.Resolve(ctx, "sk-c")
	if err != nil || pc.Limits.RPM != 7 {
		t.Errorf("new key: Resolve = %+v, %v; want rpm 7", pc, err)
	}
	if err := res.Settle(ctx, 20); err != nil {
		t.Fatalf("settling a reservation made before SetKeys: %v", err)
	}
	snap, err := l.Snapshot(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{*snap.HardCap, snap.Spent, snap.Reserved}, []any{entitlements.Amount(200), entitlements.Amount(20), entitlements.Amount(0)}); diff != "" {
		t.Errorf("acme's cap, spent, reserved (-got +want):\n%s", diff)
	}
}

// A refused SetKeys changes nothing.
func TestLocalSetKeysRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l, err := entitlements.NewLocal(entitlements.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetKeys(ctx, []entitlements.Key{key("sk-a", "acme", "a", 100)}); err != nil {
		t.Fatal(err)
	}
	usd := key("sk-a", "acme", "a", 100)
	usd.Principal.Unit = entitlements.UnitMicroUSD
	tests := []struct {
		name string
		keys []entitlements.Key
		want error
	}{
		{"unit of an account", []entitlements.Key{usd, key("sk-new", "other", "n", 1)}, entitlements.ErrAccountMismatch},
		{"two budgets for one account", []entitlements.Key{key("sk-new", "acme", "n", 1), key("sk-a", "acme", "a", 100)}, entitlements.ErrAccountMismatch},
		{"duplicate digest", []entitlements.Key{key("sk-new", "x", "n", 1), key("sk-new", "x", "n", 1)}, entitlements.ErrDuplicateKey},
	}
	for _, tt := range tests {
		if err := l.SetKeys(ctx, tt.keys); !errors.Is(err, tt.want) {
			t.Errorf("%s: SetKeys = %v, want %v", tt.name, err, tt.want)
		}
		if _, err := l.Resolve(ctx, "sk-a"); err != nil {
			t.Errorf("%s: the old key stopped resolving: %v", tt.name, err)
		}
		if _, err := l.Resolve(ctx, "sk-new"); err == nil {
			t.Errorf("%s: a key of the refused set resolves", tt.name)
		}
	}
}

// A durable Local keeps its file as the source of truth: SetKeys is
// refused, Seed adds what is missing.
func TestLocalSeedDurable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l, err := entitlements.OpenLocal(entitlements.Config{Local: &entitlements.LocalConfig{Path: filepath.Join(t.TempDir(), "ledger")}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.SetKeys(ctx, []entitlements.Key{key("sk-a", "acme", "a", 100)}); err == nil {
		t.Error("SetKeys on a durable Local: nil error")
	}
	conflicts, err := l.Seed(ctx, []entitlements.Key{key("sk-a", "acme", "a", 100)})
	if err != nil || len(conflicts) != 0 {
		t.Fatalf("Seed = %v, %v", conflicts, err)
	}
	if _, err := l.Resolve(ctx, "sk-a"); err != nil {
		t.Errorf("seeded key: %v", err)
	}
	conflicts, err = l.Seed(ctx, []entitlements.Key{key("sk-a", "acme", "a2", 100)})
	if err != nil || len(conflicts) != 1 {
		t.Errorf("Seed of a changed key = %v, %v; want one conflict", conflicts, err)
	}
}
