package entitlements_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
)

// newLocal builds a Local seeded through AddKey, as the suite asks.
func newLocal(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) *entitlements.Local {
	t.Helper()
	l, err := entitlements.NewLocal(entitlements.Config{}, entitlements.WithClock(clock))
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}
	for _, k := range keys {
		if err := l.AddKey(entitlements.Key{Digest: entitlements.KeyDigest(k.Secret), Principal: k.Principal, Budget: k.Budget}); err != nil {
			t.Fatalf("AddKey(%+v): %v", k.Principal, err)
		}
	}
	return l
}

func TestLocalConformance(t *testing.T) {
	t.Parallel()
	entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
		return newLocal(t, clock, keys)
	}, entitlementstest.Budgets)
}

func TestNewLocalFromConfig(t *testing.T) {
	t.Parallel()
	cfg, err := entitlements.ParseConfig([]byte(`
[[keys]]
key = "sk-alice"
account_id = "acme"
hard_cap = 1000

[[keys]]
# sha256("sk-bob")
key_sha256 = "` + strings.ToUpper(hexDigest("sk-bob")) + `"
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
`))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	l, err := entitlements.NewLocal(cfg)
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}
	tests := []struct {
		name string
		key  string
		want entitlements.Principal
		cap  entitlements.Amount
	}{
		{"plaintext key, key_id defaults to account", "sk-alice", entitlements.Principal{AccountID: "acme", KeyID: "acme"}, 1000},
		{"digest key", "sk-bob", entitlements.Principal{AccountID: "acme", KeyID: "bob", Limits: entitlements.Limits{MaxInFlight: 2}}, 1000},
		{"usd cap in micro-dollars", "sk-usd", entitlements.Principal{AccountID: "globex", KeyID: "globex", Unit: entitlements.UnitMicroUSD}, 2_500_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := l.Resolve(t.Context(), tt.key)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Resolve mismatch (-got +want):\n%s", diff)
			}
			s, err := l.Snapshot(t.Context(), got)
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if s.HardCap == nil || *s.HardCap != tt.cap {
				t.Errorf("HardCap = %v, want %d", s.HardCap, tt.cap)
			}
		})
	}
}

func TestNewLocalInvalidConfig(t *testing.T) {
	t.Parallel()
	_, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{{Key: "sk"}}})
	var ce *entitlements.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "account_id is required") {
		t.Fatalf("NewLocal = %v, want a ConfigError about account_id", err)
	}
}

func TestLocalAddKey(t *testing.T) {
	t.Parallel()
	base := entitlements.Key{
		Digest:    entitlements.KeyDigest("sk-base"),
		Principal: entitlements.Principal{AccountID: "acme", KeyID: "k"},
		Budget:    entitlements.Budget{HardCap: entitlements.Cap(100)},
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
		wantErr string // substring; "" for success
	}{
		{"duplicate digest", base, "duplicate API key"},
		{"same account other key id", with("sk-2", func(k *entitlements.Key) { k.Principal.KeyID = "k2" }), ""},
		{"rotation: same key id same limits", with("sk-3", func(*entitlements.Key) {}), ""},
		{"same key id other limits", with("sk-4", func(k *entitlements.Key) { k.Principal.Limits.RPM = 5 }), "limits differ"},
		{"other cap same account", with("sk-5", func(k *entitlements.Key) { k.Budget.HardCap = entitlements.Cap(7) }), "budget differs"},
		{"uncapped same account", with("sk-6", func(k *entitlements.Key) { k.Budget.HardCap = nil }), "budget differs"},
		{"other window same account", with("sk-7", func(k *entitlements.Key) { k.Budget.Window = entitlements.Rolling(60) }), "budget differs"},
		{"other unit same account", with("sk-8", func(k *entitlements.Key) { k.Principal.Unit = entitlements.UnitMicroUSD }), "unit usd differs"},
		{"empty account", with("sk-9", func(k *entitlements.Key) { k.Principal.AccountID = "" }), "empty account id"},
		{"empty secret", with("", func(k *entitlements.Key) { k.Principal.AccountID = "x" }), "empty secret"},
		{"negative cap", with("sk-10", func(k *entitlements.Key) { k.Principal.AccountID = "y"; k.Budget.HardCap = entitlements.Cap(-1) }), "negative hard cap"},
		{"rolling without seconds", with("sk-11", func(k *entitlements.Key) { k.Principal.AccountID = "y"; k.Budget.Window = entitlements.Rolling(0) }), "seconds > 0"},
		{"zero cap rolling", with("sk-12", func(k *entitlements.Key) {
			k.Principal.AccountID = "y"
			k.Budget = entitlements.Budget{HardCap: entitlements.Cap(0), Window: entitlements.Rolling(60)}
		}), "hard cap 0"},
		{"unknown unit", with("sk-13", func(k *entitlements.Key) { k.Principal.AccountID = "y"; k.Principal.Unit = 9 }), "unknown unit"},
		{"negative limit", with("sk-14", func(k *entitlements.Key) { k.Principal.AccountID = "y"; k.Principal.Limits.MaxInFlight = -1 }), "negative limit"},
		{"new account, key id defaults", with("sk-15", func(k *entitlements.Key) { k.Principal = entitlements.Principal{AccountID: "z"} }), ""},
	}
	l, err := entitlements.NewLocal(entitlements.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AddKey(base); err != nil {
		t.Fatalf("AddKey(base): %v", err)
	}
	for _, tt := range tests { // sequential: the cases share one provider
		err := l.AddKey(tt.in)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: AddKey = %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: AddKey = %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
	if err := l.AddKey(base); !errors.Is(err, entitlements.ErrDuplicateKey) {
		t.Errorf("AddKey(duplicate) = %v, want ErrDuplicateKey", err)
	}
	p, err := l.Resolve(t.Context(), "sk-15")
	if err != nil || p.KeyID != "z" {
		t.Errorf("Resolve(sk-15) = %+v, %v; want KeyID defaulted to the account id", p, err)
	}
	// A refused key is not resolvable.
	if _, err := l.Resolve(t.Context(), "sk-4"); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("Resolve(refused key) = %v, want ErrInvalidKey", err)
	}
}

func TestLocalAddKeyCopiesCap(t *testing.T) {
	t.Parallel()
	c := entitlements.Cap(100)
	l, err := entitlements.NewLocal(entitlements.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := entitlements.Principal{AccountID: "a"}
	if err := l.AddKey(entitlements.Key{Digest: entitlements.KeyDigest("sk"), Principal: p, Budget: entitlements.Budget{HardCap: c}}); err != nil {
		t.Fatal(err)
	}
	*c = 1
	if _, err := l.Reserve(t.Context(), p, 50); err != nil {
		t.Errorf("Reserve after the caller changed its cap pointer: %v", err)
	}
}

// TestLocalRollingEpochAligned checks the exact window arithmetic of Local:
// windows start at multiples of their length since the Unix epoch.
func TestLocalRollingEpochAligned(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		now            time.Time
		seconds        int64
		wantRetryAfter time.Duration
		wantResetsAt   time.Time
	}{
		{
			name: "mid minute", now: time.Date(2026, 1, 1, 0, 0, 30, 250e6, time.UTC), seconds: 60,
			wantRetryAfter: 29750 * time.Millisecond, wantResetsAt: time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC),
		},
		{
			name: "clamped to one second", now: time.Date(2026, 1, 1, 0, 0, 59, 900e6, time.UTC), seconds: 60,
			wantRetryAfter: time.Second, wantResetsAt: time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC),
		},
		{
			name: "on a boundary", now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), seconds: 3600,
			wantRetryAfter: time.Hour, wantResetsAt: time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC),
		},
		{
			name: "before 1970", now: time.Unix(-90, 0), seconds: 60,
			wantRetryAfter: 30 * time.Second, wantResetsAt: time.Unix(-60, 0).UTC(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := entitlementstest.NewClock(tt.now)
			b := entitlements.Budget{HardCap: entitlements.Cap(10), Window: entitlements.Rolling(tt.seconds)}
			l := newLocal(t, clock, []entitlementstest.KeySpec{{Secret: "sk", Principal: entitlements.Principal{AccountID: "a", KeyID: "a"}, Budget: b}})
			p := entitlements.Principal{AccountID: "a", KeyID: "a"}
			if _, err := l.Reserve(t.Context(), p, 10); err != nil {
				t.Fatal(err)
			}
			_, err := l.Reserve(t.Context(), p, 1)
			want := &entitlements.BudgetError{Kind: entitlements.RateLimited, Requested: 1, Available: 0, RetryAfter: tt.wantRetryAfter}
			var got *entitlements.BudgetError
			if !errors.As(err, &got) {
				t.Fatalf("Reserve = %v, want a BudgetError", err)
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("BudgetError mismatch (-got +want):\n%s", diff)
			}
			s, err := l.Snapshot(t.Context(), p)
			if err != nil {
				t.Fatal(err)
			}
			if !s.ResetsAt.Equal(tt.wantResetsAt) {
				t.Errorf("ResetsAt = %v, want %v", s.ResetsAt, tt.wantResetsAt)
			}
		})
	}
}

// TestLocalClockNeverRollsBack checks that a clock reading older than the
// current window (a caller that read the clock before another rolled the
// window) counts in the current window and does not bring back old spend.
func TestLocalClockNeverRollsBack(t *testing.T) {
	t.Parallel()
	clock := entitlementstest.NewClock(time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC))
	p := entitlements.Principal{AccountID: "a", KeyID: "a"}
	l := newLocal(t, clock, []entitlementstest.KeySpec{{Secret: "sk", Principal: p, Budget: entitlements.Budget{HardCap: entitlements.Cap(100), Window: entitlements.Rolling(60)}}})
	r, err := l.Reserve(t.Context(), p, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Settle(t.Context(), 100); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	r, err = l.Reserve(t.Context(), p, 40)
	if err != nil {
		t.Fatalf("Reserve in the new window: %v", err)
	}
	clock.Advance(-time.Minute) // a stale reading
	if err := r.Settle(t.Context(), 40); err != nil {
		t.Fatal(err)
	}
	s, err := l.Snapshot(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Spent != 40 || s.Reserved != 0 {
		t.Errorf("Snapshot = %+v, want Spent 40, Reserved 0 (the window did not roll back)", s)
	}
	if _, err := l.Reserve(t.Context(), p, 60); err != nil {
		t.Errorf("Reserve(60) with a stale clock: %v", err)
	}
	clock.Advance(time.Minute) // back in the current window: nothing is forgotten
	s, err = l.Snapshot(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Spent != 40 || s.Reserved != 60 {
		t.Errorf("Snapshot = %+v, want Spent 40, Reserved 60", s)
	}
}

func TestLocalUncappedOverflow(t *testing.T) {
	t.Parallel()
	p := entitlements.Principal{AccountID: "a", KeyID: "a"}
	l := newLocal(t, entitlementstest.NewClock(time.Unix(0, 0)), []entitlementstest.KeySpec{{Secret: "sk", Principal: p}})
	const maxAmount = entitlements.Amount(1<<63 - 1)
	r, err := l.Reserve(t.Context(), p, maxAmount)
	if err != nil {
		t.Fatalf("Reserve(max): %v", err)
	}
	if _, err := l.Reserve(t.Context(), p, 1); !errors.Is(err, entitlements.ErrInvalidAmount) {
		t.Errorf("Reserve past the ledger's range = %v, want ErrInvalidAmount", err)
	}
	if err := r.Settle(t.Context(), maxAmount); err != nil {
		t.Fatal(err)
	}
	r, err = l.Reserve(t.Context(), p, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Settle(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	s, err := l.Snapshot(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Spent != maxAmount {
		t.Errorf("Spent = %d, want it saturated at %d", s.Spent, maxAmount)
	}
}
