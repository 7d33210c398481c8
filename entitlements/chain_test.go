package entitlements_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
)

// TestChainConformance runs the suite against a Chain whose accounts are
// split between two Locals: the first account seen goes to the primary, the
// next to the secondary, and so on.
func TestChainConformance(t *testing.T) {
	t.Parallel()
	entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
		var split [2][]entitlementstest.KeySpec
		side := map[string]int{}
		for _, k := range keys {
			i, ok := side[k.Principal.AccountID]
			if !ok {
				i = len(side) % 2
				side[k.Principal.AccountID] = i
			}
			split[i] = append(split[i], k)
		}
		c, err := entitlements.NewChain(newLocal(t, clock, split[0]), newLocal(t, clock, split[1]))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}, entitlementstest.Budgets)
}

// fakeProvider is a Provider whose methods are func fields; it records the
// calls it gets.
type fakeProvider struct {
	name    string
	resolve func(ctx context.Context, key string) (entitlements.Principal, error)
	reserve func(ctx context.Context, p entitlements.Principal, a entitlements.Amount) (entitlements.Reservation, error)
	leases  bool // its reservations are fakeLeases

	mu    sync.Mutex
	calls []string
}

// fakeHandle is a fakeProvider's reservation; it records its calls on
// the provider.
type fakeHandle struct {
	f *fakeProvider
	p entitlements.Principal
	a entitlements.Amount
}

func (h *fakeHandle) Principal() entitlements.Principal { return h.p }
func (h *fakeHandle) Amount() entitlements.Amount       { return h.a }

func (h *fakeHandle) Settle(context.Context, entitlements.Amount) error {
	h.f.record("Settle")
	return nil
}

func (h *fakeHandle) Release(context.Context) error {
	h.f.record("Release")
	return nil
}

// fakeLease is the reservation of a leasingProvider.
type fakeLease struct{ *fakeHandle }

func (h fakeLease) Renew(_ context.Context, ttl time.Duration) error {
	h.f.record("Renew " + ttl.String())
	return nil
}

func (f *fakeProvider) record(call string) {
	f.mu.Lock()
	f.calls = append(f.calls, f.name+"."+call)
	f.mu.Unlock()
}

func (f *fakeProvider) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeProvider) Resolve(ctx context.Context, key string) (entitlements.Principal, error) {
	f.record("Resolve")
	if f.resolve == nil {
		return entitlements.Principal{}, entitlements.ErrInvalidKey
	}
	return f.resolve(ctx, key)
}

func (f *fakeProvider) Reserve(ctx context.Context, p entitlements.Principal, a entitlements.Amount) (entitlements.Reservation, error) {
	f.record("Reserve")
	if f.reserve == nil {
		return nil, entitlements.ErrInvalidKey
	}
	r, err := f.reserve(ctx, p, a)
	h, ok := r.(*fakeHandle)
	if !ok {
		return r, err
	}
	h.f = f
	if f.leases {
		return fakeLease{h}, err
	}
	return h, err
}

func (f *fakeProvider) Snapshot(context.Context, entitlements.Principal) (entitlements.BudgetSnapshot, error) {
	f.record("Snapshot")
	return entitlements.BudgetSnapshot{}, nil
}

func resolvesTo(key string, p entitlements.Principal) func(context.Context, string) (entitlements.Principal, error) {
	return func(_ context.Context, k string) (entitlements.Principal, error) {
		if k != key {
			return entitlements.Principal{}, entitlements.ErrInvalidKey
		}
		return p, nil
	}
}

func fails(err error) func(context.Context, string) (entitlements.Principal, error) {
	return func(context.Context, string) (entitlements.Principal, error) { return entitlements.Principal{}, err }
}

func admits(_ context.Context, p entitlements.Principal, a entitlements.Amount) (entitlements.Reservation, error) {
	return &fakeHandle{p: p, a: a}, nil
}

func TestChainResolve(t *testing.T) {
	t.Parallel()
	alice := entitlements.Principal{AccountID: "alice", KeyID: "alice"}
	bob := entitlements.Principal{AccountID: "bob", KeyID: "bob"}
	down := &entitlements.UnavailableError{RetryAfter: 2 * time.Second, Err: errors.New("connection refused")}
	tests := []struct {
		name      string
		primary   func(context.Context, string) (entitlements.Principal, error)
		secondary func(context.Context, string) (entitlements.Principal, error)
		key       string
		want      entitlements.Principal
		wantErr   error
		wantCalls []string
	}{
		{
			name: "primary knows the key", primary: resolvesTo("sk-a", alice), secondary: resolvesTo("sk-b", bob),
			key: "sk-a", want: alice, wantCalls: []string{"primary.Resolve"},
		},
		{
			name: "secondary knows the key", primary: resolvesTo("sk-a", alice), secondary: resolvesTo("sk-b", bob),
			key: "sk-b", want: bob, wantCalls: []string{"primary.Resolve", "secondary.Resolve"},
		},
		{
			name: "nobody knows the key", primary: resolvesTo("sk-a", alice), secondary: resolvesTo("sk-b", bob),
			key: "sk-c", wantErr: entitlements.ErrInvalidKey, wantCalls: []string{"primary.Resolve", "secondary.Resolve"},
		},
		{
			name: "secondary unavailable fails closed", primary: resolvesTo("sk-a", alice), secondary: fails(down),
			key: "sk-b", wantErr: down, wantCalls: []string{"primary.Resolve", "secondary.Resolve"},
		},
		{
			name: "primary unavailable fails closed", primary: fails(down), secondary: resolvesTo("sk-b", bob),
			key: "sk-b", wantErr: down, wantCalls: []string{"primary.Resolve"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			primary := &fakeProvider{name: "primary", resolve: tt.primary}
			secondary := &fakeProvider{name: "secondary", resolve: tt.secondary}
			c, err := entitlements.NewChain(primary, secondary)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Resolve(t.Context(), tt.key)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Resolve = %+v, %v; want error %v", got, err, tt.wantErr)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Resolve mismatch (-got +want):\n%s", diff)
			}
			calls := append(primary.Calls(), secondary.Calls()...)
			if diff := cmp.Diff(calls, tt.wantCalls); diff != "" {
				t.Errorf("calls mismatch (-got +want):\n%s", diff)
			}
			var ue *entitlements.UnavailableError
			if tt.wantErr == down && (!errors.As(err, &ue) || ue.RetryAfter != 2*time.Second) {
				t.Errorf("err = %v, want the *UnavailableError with its RetryAfter", err)
			}
		})
	}
}

// TestChainRoutesToOwner checks that a resolved principal's calls go to the
// provider that resolved it, without asking the other, and that a
// reservation goes back to its issuer.
func TestChainRoutesToOwner(t *testing.T) {
	t.Parallel()
	bob := entitlements.Principal{AccountID: "bob", KeyID: "bob"}
	primary := &fakeProvider{name: "primary", reserve: admits}
	secondary := &fakeProvider{name: "secondary", resolve: resolvesTo("sk-b", bob), reserve: admits}
	c, err := entitlements.NewChain(primary, secondary)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := c.Resolve(ctx, "sk-b"); err != nil {
		t.Fatal(err)
	}
	r1, err := c.Reserve(ctx, bob, 10)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Amount() != 10 || r1.Principal() != bob {
		t.Errorf("reservation = (%+v, %d), want (%+v, 10)", r1.Principal(), r1.Amount(), bob)
	}
	r2, err := c.Reserve(ctx, bob, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := r1.Settle(ctx, 8); err != nil {
		t.Fatal(err)
	}
	if err := r2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Snapshot(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(primary.Calls(), []string{"primary.Resolve"}); diff != "" {
		t.Errorf("primary calls mismatch (-got +want):\n%s", diff)
	}
	want := []string{"secondary.Resolve", "secondary.Reserve", "secondary.Reserve", "secondary.Settle", "secondary.Release", "secondary.Snapshot"}
	if diff := cmp.Diff(secondary.Calls(), want); diff != "" {
		t.Errorf("secondary calls mismatch (-got +want):\n%s", diff)
	}
	// The inner handle is not a Chain handle.
	if tok, ok := c.ReservationToken(&fakeHandle{f: secondary, p: bob}); ok {
		t.Errorf("ReservationToken(inner handle) = %q, want none", tok)
	}
}

// TestChainUnseenPrincipal checks that a principal the chain never resolved
// is tried on the primary, then on the secondary, and then remembered.
func TestChainUnseenPrincipal(t *testing.T) {
	t.Parallel()
	carol := entitlements.Principal{AccountID: "carol", KeyID: "carol"}
	primary := &fakeProvider{name: "primary"} // knows nobody
	secondary := &fakeProvider{name: "secondary", reserve: admits}
	c, err := entitlements.NewChain(primary, secondary)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Reserve(t.Context(), carol, 1); err != nil {
			t.Fatal(err)
		}
	}
	calls := append(primary.Calls(), secondary.Calls()...)
	want := []string{"primary.Reserve", "secondary.Reserve", "secondary.Reserve"}
	if diff := cmp.Diff(calls, want); diff != "" {
		t.Errorf("calls mismatch (-got +want):\n%s", diff)
	}
}

func TestNewChainNil(t *testing.T) {
	t.Parallel()
	p := &fakeProvider{}
	for _, pair := range [][2]entitlements.Provider{{nil, p}, {p, nil}, {nil, nil}} {
		if c, err := entitlements.NewChain(pair[0], pair[1]); err == nil {
			t.Errorf("NewChain(%v, %v) = %v, nil; want an error", pair[0], pair[1], c)
		}
	}
}

// leasingProvider is a fakeProvider whose reservations are leases.
type leasingProvider struct {
	*fakeProvider
	ttl time.Duration
}

func (f *leasingProvider) LeaseTTL() time.Duration { return f.ttl }

// TestChainRenew: a Chain's reservation is a Renewer whose Renew reaches
// the reservation it wraps exactly when that one is a lease; LeaseTTL is
// the leasing providers' shortest.
func TestChainRenew(t *testing.T) {
	t.Parallel()
	alice := entitlements.Principal{AccountID: "alice", KeyID: "alice"}
	bob := entitlements.Principal{AccountID: "bob", KeyID: "bob"}
	local := &fakeProvider{name: "local", resolve: resolvesTo("sk-a", alice), reserve: admits}
	shared := &leasingProvider{fakeProvider: &fakeProvider{name: "shared", resolve: resolvesTo("sk-b", bob), reserve: admits, leases: true}, ttl: time.Minute}
	c, err := entitlements.NewChain(local, shared)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.LeaseTTL(); got != time.Minute {
		t.Errorf("LeaseTTL = %v, want 1m", got)
	}
	ctx := t.Context()
	for _, key := range []string{"sk-a", "sk-b"} {
		if _, err := c.Resolve(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	ra, err := c.Reserve(ctx, alice, 1)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := c.Reserve(ctx, bob, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ra.(entitlements.Renewer); ok {
		t.Errorf("the reservation of a non-leasing provider is a Renewer")
	}
	rn, ok := rb.(entitlements.Renewer)
	if !ok {
		t.Fatalf("the reservation of a leasing provider is no Renewer")
	}
	if err := rn.Renew(ctx, 30*time.Second); err != nil {
		t.Errorf("Renew = %v, want nil", err)
	}
	if err := rb.Settle(ctx, 1); err != nil {
		t.Errorf("Settle = %v, want nil", err)
	}
	if got, want := shared.Calls(), []string{"shared.Resolve", "shared.Reserve", "shared.Renew 30s", "shared.Settle"}; !slices.Equal(got, want) {
		t.Errorf("shared calls = %v, want %v", got, want)
	}
	if tok, ok := c.ReservationToken(rb); ok {
		t.Errorf("ReservationToken of a lease of a provider that does not resume = %q, want none", tok)
	}
	if got := (&entitlements.Chain{}).LeaseTTL(); got != 0 {
		t.Errorf("LeaseTTL without leasing providers = %v, want 0", got)
	}
}

// limitingProvider is a fakeProvider that enforces its principals' limits.
type limitingProvider struct{ *fakeProvider }

type fakeSlot struct{}

func (fakeSlot) Release(context.Context) error { return nil }

func (f *limitingProvider) Acquire(_ context.Context, p entitlements.Principal) (entitlements.Slot, error) {
	f.record("Acquire " + p.KeyID)
	return fakeSlot{}, nil
}

// TestChainAcquire: Acquire reaches the provider that owns the principal
// when it limits, and leaves the limits to the gateway (a nil Slot)
// otherwise.
func TestChainAcquire(t *testing.T) {
	t.Parallel()
	alice := entitlements.Principal{AccountID: "alice", KeyID: "alice"}
	bob := entitlements.Principal{AccountID: "bob", KeyID: "bob"}
	local := &fakeProvider{name: "local", resolve: resolvesTo("sk-a", alice), reserve: admits}
	shared := &limitingProvider{&fakeProvider{name: "shared", resolve: resolvesTo("sk-b", bob), reserve: admits}}
	c, err := entitlements.NewChain(local, shared)
	if err != nil {
		t.Fatal(err)
	}
	var _ entitlements.Limiter = c
	ctx := t.Context()
	for _, key := range []string{"sk-a", "sk-b"} {
		if _, err := c.Resolve(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := c.Acquire(ctx, alice); s != nil || err != nil {
		t.Errorf("Acquire of a non-limiting provider's principal = %v, %v; want nil, nil", s, err)
	}
	if s, err := c.Acquire(ctx, bob); s == nil || err != nil {
		t.Errorf("Acquire = %v, %v; want the shared provider's slot", s, err)
	}
	if got, want := shared.Calls(), []string{"shared.Resolve", "shared.Acquire bob"}; !slices.Equal(got, want) {
		t.Errorf("shared calls = %v, want %v", got, want)
	}
}

// reportingHandle is a reservation that reports its budget.
type reportingHandle struct{ *fakeHandle }

func (reportingHandle) Budget() (entitlements.BudgetSnapshot, bool) {
	return entitlements.BudgetSnapshot{Spent: 7}, true
}

// TestChainBudget: a Chain reservation reports the budget of the provider's
// reservation when that one does, and nothing otherwise.
func TestChainBudget(t *testing.T) {
	t.Parallel()
	bob := entitlements.Principal{AccountID: "bob", KeyID: "bob"}
	for _, reports := range []bool{false, true} {
		reserve := admits
		if reports {
			reserve = func(_ context.Context, p entitlements.Principal, a entitlements.Amount) (entitlements.Reservation, error) {
				return reportingHandle{&fakeHandle{p: p, a: a}}, nil
			}
		}
		c, err := entitlements.NewChain(&fakeProvider{name: "p", resolve: resolvesTo("sk-b", bob), reserve: reserve}, &fakeProvider{name: "s"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Resolve(t.Context(), "sk-b"); err != nil {
			t.Fatal(err)
		}
		r, err := c.Reserve(t.Context(), bob, 1)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := r.(entitlements.BudgetReporter).Budget()
		if ok != reports || ok && s.Spent != 7 {
			t.Errorf("provider reports %v: Budget() = %+v, %v", reports, s, ok)
		}
	}
}

// resumingProvider is a fakeProvider whose reservations can be resumed:
// the token is the amount.
type resumingProvider struct{ *fakeProvider }

func (f *resumingProvider) ReservationToken(r entitlements.Reservation) (string, bool) {
	h, ok := r.(*fakeHandle)
	if !ok {
		return "", false
	}
	return strconv.FormatInt(int64(h.a), 10), true
}

func (f *resumingProvider) ResumeReservation(p entitlements.Principal, token string) (entitlements.Reservation, error) {
	n, err := strconv.ParseInt(token, 10, 64)
	if err != nil {
		return nil, entitlements.ErrUnknownReservation
	}
	return &fakeHandle{f: f.fakeProvider, p: p, a: entitlements.Amount(n)}, nil
}

// TestChainResume: a reservation is resumed with the provider that issued
// it, when that provider resumes.
func TestChainResume(t *testing.T) {
	t.Parallel()
	alice := entitlements.Principal{AccountID: "alice", KeyID: "alice"}
	bob := entitlements.Principal{AccountID: "bob", KeyID: "bob"}
	local := &fakeProvider{name: "local", resolve: resolvesTo("sk-a", alice), reserve: admits}
	shared := &resumingProvider{&fakeProvider{name: "shared", resolve: resolvesTo("sk-b", bob), reserve: admits}}
	c, err := entitlements.NewChain(local, shared)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, key := range []string{"sk-a", "sk-b"} {
		if _, err := c.Resolve(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	ra, err := c.Reserve(ctx, alice, 3)
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := c.ReservationToken(ra); ok {
		t.Errorf("ReservationToken of a provider that does not resume = %q, want none", tok)
	}
	rb, err := c.Reserve(ctx, bob, 7)
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := c.ReservationToken(rb)
	if !ok || tok != "1/7" {
		t.Fatalf("ReservationToken = %q, %v; want 1/7", tok, ok)
	}
	r, err := c.ResumeReservation(bob, tok)
	if err != nil {
		t.Fatal(err)
	}
	if r.Amount() != 7 || r.Principal() != bob {
		t.Errorf("resumed %v of %v, want 7 of bob", r.Amount(), r.Principal())
	}
	if err := r.Settle(ctx, 5); err != nil {
		t.Errorf("Settle of the resumed reservation: %v", err)
	}
	if got, want := shared.Calls(), []string{"shared.Resolve", "shared.Reserve", "shared.Settle"}; !slices.Equal(got, want) {
		t.Errorf("shared calls = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "7", "0/7", "2/7", "x/7", "1/x"} {
		if _, err := c.ResumeReservation(bob, bad); !errors.Is(err, entitlements.ErrUnknownReservation) {
			t.Errorf("ResumeReservation(%q) = %v, want ErrUnknownReservation", bad, err)
		}
	}
}
