// Package entitlementstest is the conformance suite every
// entitlements.Provider must pass, and the manual Clock it runs on.
//
// A provider's tests call Run with a factory that builds a fresh provider
// holding the given keys and reading time from the given Clock:
//
//	func TestConformance(t *testing.T) {
//		entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
//			p := newMyProvider(t, clock.Now)
//			for _, k := range keys {
//				p.Add(entitlements.KeyDigest(k.Secret), k.Principal, k.Budget)
//			}
//			return p
//		})
//	}
//
// The suite checks the contract documented on entitlements.Provider and in
// the entitlements package documentation: a core every Provider must pass,
// and a group per Capability a provider claims (balances, rolling windows,
// uncapped keys, key details), so that a narrow provider passes exactly
// what it claims. See Run.
package entitlementstest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// KeySpec is one key a factory must seed its provider with.
type KeySpec struct {
	// Secret is the API key in plain text (entitlements.KeyDigest gives its
	// digest).
	Secret string
	// Principal is exactly what Resolve(Secret) must return.
	Principal entitlements.Principal
	// Budget is the policy of the principal's account. Keys of one account
	// in a spec list always carry the same Budget.
	Budget entitlements.Budget
}

// Factory builds a fresh provider for one subtest, holding keys and reading
// time only from clock. Subtests run in parallel and each calls the factory
// (some twice, for two independent providers), so providers must not share
// state: a ledger backed by a server should use a key prefix per call.
// The factory registers its cleanup with t.Cleanup.
type Factory func(t *testing.T, clock *Clock, keys []KeySpec) entitlements.Provider

// startTime is the time every subtest's Clock starts at: 30.25 s into a
// minute, so that no window boundary falls on it.
func startTime() time.Time { return time.Date(2026, time.January, 1, 0, 0, 30, 250_000_000, time.UTC) }

// Capability is a group of the suite beyond its core, for a Provider that
// has what the group tests. A Provider passes the core and each group it
// claims: a narrow provider (a per-minute rate limit, say) claims only
// Rolling and passes exactly that.
type Capability uint

// The capabilities.
const (
	// Balances: caps over a balance that never resets
	// (entitlements.Balance).
	Balances Capability = 1 << iota
	// Rolling: caps over epoch-aligned rolling windows
	// (entitlements.Rolling).
	Rolling
	// Uncapped: keys without a hard cap.
	Uncapped
	// KeyDetails: a principal's Limits and Unit come back from Resolve as
	// they were seeded, for keys of every window and uncapped ones; its
	// group runs only with Balances, Rolling and Uncapped.
	KeyDetails

	// All is every capability: what the providers of this module have.
	All = Balances | Rolling | Uncapped | KeyDetails
)

// Run runs the conformance suite against the providers newProvider builds:
// its core, which every Provider must pass, then the group of each of caps
// (All when none is given). The core caps keys with a balance when the
// provider claims Balances, else with a 60 s rolling window (Rolling);
// claim at least one of the two.
//
// The core: resolution, the reserve/settle protocol, accounts shared by
// keys, exactly-once consumption of reservations, foreign handles, invalid
// amounts, cancelled contexts, overspend reporting, and the cap invariant
// under heavy concurrency.
func Run(t *testing.T, newProvider Factory, caps ...Capability) {
	t.Helper()
	var c Capability
	for _, x := range caps {
		c |= x
	}
	if len(caps) == 0 {
		c = All
	}
	if c&(Balances|Rolling) == 0 {
		t.Fatal("entitlementstest: Run needs Balances or Rolling: the core caps its keys with one of them")
	}
	tests := []struct {
		name string
		need Capability
		run  func(*testing.T, *env)
	}{
		{"Resolve", 0, testResolve},
		{"UnknownKey", 0, testUnknownKey},
		{"UnknownPrincipal", 0, testUnknownPrincipal},
		{"ReserveSettle", 0, testReserveSettle},
		{"ReserveRelease", 0, testReserveRelease},
		{"SharedAccount", 0, testSharedAccount},
		{"ConsumedOnce", 0, testConsumedOnce},
		{"ForeignReservation", 0, testForeignReservation},
		{"InvalidAmount", 0, testInvalidAmount},
		{"CancelledContext", 0, testCancelledContext},
		{"Overspend", 0, testOverspend},
		{"ConcurrentCap", 0, testConcurrentCap},
		{"BalanceOverCap", Balances, testBalanceOverCap},
		{"BalanceNeverResets", Balances, testBalanceNeverResets},
		{"RollingOverCap", Rolling, testRollingOverCap},
		{"RollingRetryAfterAtLeastOneSecond", Rolling, testRollingRetryAfterMin},
		{"RollingWindowResets", Rolling, testRollingWindowResets},
		{"RollingSettleAfterRollover", Rolling, testRollingSettleAfterRollover},
		{"Uncapped", Uncapped, testUncapped},
		{"ResolveDetails", All, testResolveDetails},
	}
	window := entitlements.Rolling(60)
	if c&Balances != 0 {
		window = entitlements.Balance()
	}
	for _, tt := range tests {
		if c&tt.need != tt.need {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, &env{newProvider: newProvider, window: window})
		})
	}
}

// env builds providers for one subtest.
type env struct {
	newProvider Factory
	clock       *Clock
	window      entitlements.CapWindow // of the core's caps
}

// capped is a budget capped at c over the core's window.
func (e *env) capped(c entitlements.Amount) entitlements.Budget { return capped(c, e.window) }

// spentKind is the kind of BudgetError a spent cap of the core's window
// gives.
func (e *env) spentKind() entitlements.BudgetErrorKind {
	if e.window.Kind == entitlements.WindowRolling {
		return entitlements.RateLimited
	}
	return entitlements.InsufficientQuota
}

func (e *env) provider(t *testing.T, keys ...KeySpec) entitlements.Provider {
	t.Helper()
	if e.clock == nil {
		e.clock = NewClock(startTime())
	}
	p := e.newProvider(t, e.clock, keys)
	if p == nil {
		t.Fatal("factory returned a nil provider")
	}
	return p
}

func principal(account, keyID string) entitlements.Principal {
	return entitlements.Principal{AccountID: account, KeyID: keyID}
}

func capped(c entitlements.Amount, w entitlements.CapWindow) entitlements.Budget {
	return entitlements.Budget{HardCap: entitlements.Cap(c), Window: w}
}

// one seeds a single key and returns the provider and the resolved principal.
func (e *env) one(t *testing.T, b entitlements.Budget) (entitlements.Provider, entitlements.Principal) {
	t.Helper()
	pr := e.provider(t, KeySpec{Secret: "sk-one", Principal: principal("acct", "acct-key"), Budget: b})
	p, err := pr.Resolve(t.Context(), "sk-one")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return pr, p
}

func reserve(t *testing.T, pr entitlements.Provider, p entitlements.Principal, amount entitlements.Amount) entitlements.Reservation {
	t.Helper()
	r, err := pr.Reserve(t.Context(), p, amount)
	if err != nil {
		t.Fatalf("Reserve(%d): %v", amount, err)
	}
	if r == nil {
		t.Fatalf("Reserve(%d) returned a nil reservation", amount)
	}
	return r
}

func settle(t *testing.T, pr entitlements.Provider, r entitlements.Reservation, actual entitlements.Amount) {
	t.Helper()
	if err := pr.Settle(t.Context(), r, actual); err != nil {
		t.Fatalf("Settle(%d): %v", actual, err)
	}
}

func release(t *testing.T, pr entitlements.Provider, r entitlements.Reservation) {
	t.Helper()
	if err := pr.Release(t.Context(), r); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func snapshot(t *testing.T, pr entitlements.Provider, p entitlements.Principal) entitlements.BudgetSnapshot {
	t.Helper()
	s, err := pr.Snapshot(t.Context(), p)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return s
}

// wantSnapshot compares the amounts, cap and window of a snapshot (not
// ResetsAt, which the rolling tests check on their own).
func wantSnapshot(t *testing.T, pr entitlements.Provider, p entitlements.Principal, want entitlements.BudgetSnapshot) {
	t.Helper()
	got := snapshot(t, pr, p)
	got.ResetsAt = time.Time{}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Snapshot mismatch (-got +want):\n%s", diff)
	}
}

func budgetError(t *testing.T, err error, want entitlements.BudgetErrorKind) *entitlements.BudgetError {
	t.Helper()
	var be *entitlements.BudgetError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a *BudgetError", err)
	}
	if be.Kind != want {
		t.Errorf("BudgetError.Kind = %v, want %v", be.Kind, want)
	}
	return be
}

func testResolve(t *testing.T, e *env) {
	keys := []KeySpec{
		{Secret: "sk-a", Principal: principal("acme", "acme-prod"), Budget: e.capped(1000)},
		{Secret: "sk-b", Principal: principal("acme", "acme-ci"), Budget: e.capped(1000)},
		{Secret: "sk-c", Principal: principal("globex", "globex"), Budget: e.capped(500)},
	}
	pr := e.provider(t, keys...)
	for _, k := range keys {
		got, err := pr.Resolve(t.Context(), k.Secret)
		if err != nil {
			t.Errorf("Resolve(%q): %v", k.Secret, err)
			continue
		}
		if diff := cmp.Diff(got, k.Principal); diff != "" {
			t.Errorf("Resolve(%q) mismatch (-got +want):\n%s", k.Secret, diff)
		}
		if got.IsAnonymous() {
			t.Errorf("Resolve(%q) returned the anonymous principal", k.Secret)
		}
	}
}

func testResolveDetails(t *testing.T, e *env) {
	keys := []KeySpec{
		{Secret: "sk-a", Principal: principal("acme", "acme-prod"), Budget: capped(1000, entitlements.Balance())},
		{Secret: "sk-b", Principal: entitlements.Principal{
			AccountID: "acme", KeyID: "acme-ci",
			Limits: entitlements.Limits{ClampMaxTokens: true, MaxInFlight: 4, RPM: 60},
		}, Budget: capped(1000, entitlements.Balance())},
		{Secret: "sk-usd", Principal: entitlements.Principal{
			AccountID: "globex", KeyID: "globex", Unit: entitlements.UnitMicroUSD,
		}, Budget: capped(5_000_000, entitlements.Rolling(3600))},
		{Secret: "sk-free", Principal: principal("initech", "initech")},
	}
	pr := e.provider(t, keys...)
	for _, k := range keys {
		got, err := pr.Resolve(t.Context(), k.Secret)
		if err != nil {
			t.Errorf("Resolve(%q): %v", k.Secret, err)
			continue
		}
		if diff := cmp.Diff(got, k.Principal); diff != "" {
			t.Errorf("Resolve(%q) mismatch (-got +want):\n%s", k.Secret, diff)
		}
		if got.IsAnonymous() {
			t.Errorf("Resolve(%q) returned the anonymous principal", k.Secret)
		}
	}
}

func testUnknownKey(t *testing.T, e *env) {
	pr := e.provider(t, KeySpec{Secret: "sk-known", Principal: principal("a", "a"), Budget: e.capped(10)})
	for _, key := range []string{"sk-unknown", "", "sk-known ", "SK-KNOWN"} {
		p, err := pr.Resolve(t.Context(), key)
		if !errors.Is(err, entitlements.ErrInvalidKey) {
			t.Errorf("Resolve(%q) = %+v, %v; want ErrInvalidKey", key, p, err)
		}
	}
}

func testUnknownPrincipal(t *testing.T, e *env) {
	pr := e.provider(t, KeySpec{Secret: "sk-known", Principal: principal("a", "a"), Budget: e.capped(10)})
	for _, p := range []entitlements.Principal{entitlements.Anonymous(), principal("nobody", "nobody")} {
		if r, err := pr.Reserve(t.Context(), p, 1); !errors.Is(err, entitlements.ErrInvalidKey) {
			t.Errorf("Reserve(%+v) = %v, %v; want ErrInvalidKey", p, r, err)
		}
		if s, err := pr.Snapshot(t.Context(), p); !errors.Is(err, entitlements.ErrInvalidKey) {
			t.Errorf("Snapshot(%+v) = %+v, %v; want ErrInvalidKey", p, s, err)
		}
	}
}

func testReserveSettle(t *testing.T, e *env) {
	b := e.capped(1000)
	pr, p := e.one(t, b)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Window: b.Window})

	r := reserve(t, pr, p, 300)
	if got := r.Amount(); got != 300 {
		t.Errorf("Reservation.Amount() = %d, want 300", got)
	}
	if diff := cmp.Diff(r.Principal(), p); diff != "" {
		t.Errorf("Reservation.Principal() mismatch (-got +want):\n%s", diff)
	}
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: 300, Window: b.Window})

	zero := reserve(t, pr, p, 0)
	settle(t, pr, r, 250)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 250, Window: b.Window})
	settle(t, pr, zero, 0)

	s := snapshot(t, pr, p)
	if got, ok := s.Remaining(); !ok || got != 750 {
		t.Errorf("Remaining() = %d, %t; want 750, true", got, ok)
	}
	if e.window.Kind == entitlements.WindowBalance && !s.ResetsAt.IsZero() {
		t.Errorf("balance ResetsAt = %v, want zero", s.ResetsAt)
	}
	// The whole remaining balance can be reserved, to the unit.
	settle(t, pr, reserve(t, pr, p, 750), 750)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 1000, Window: b.Window})
}

func testReserveRelease(t *testing.T, e *env) {
	b := e.capped(100)
	pr, p := e.one(t, b)
	r1 := reserve(t, pr, p, 60)
	r2 := reserve(t, pr, p, 40)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: 100, Window: b.Window})
	release(t, pr, r1)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: 40, Window: b.Window})
	release(t, pr, r2)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Window: b.Window})
	// Released amounts are available again.
	release(t, pr, reserve(t, pr, p, 100))
}

func testSharedAccount(t *testing.T, e *env) {
	b := e.capped(100)
	pr := e.provider(t,
		KeySpec{Secret: "sk-1", Principal: principal("shared", "k1"), Budget: b},
		KeySpec{Secret: "sk-2", Principal: principal("shared", "k2"), Budget: b},
		KeySpec{Secret: "sk-other", Principal: principal("other", "other"), Budget: b},
	)
	p1, err1 := pr.Resolve(t.Context(), "sk-1")
	p2, err2 := pr.Resolve(t.Context(), "sk-2")
	po, err3 := pr.Resolve(t.Context(), "sk-other")
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	r := reserve(t, pr, p1, 60)
	_, err := pr.Reserve(t.Context(), p2, 50)
	if be := budgetError(t, err, e.spentKind()); be.Available != 40 {
		t.Errorf("Available = %d, want 40 (the keys share one budget)", be.Available)
	}
	wantSnapshot(t, pr, p2, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: 60, Window: b.Window})
	// Another account is untouched.
	release(t, pr, reserve(t, pr, po, 100))
	settle(t, pr, r, 60)
	wantSnapshot(t, pr, p2, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 60, Window: b.Window})
}

func testBalanceOverCap(t *testing.T, e *env) {
	b := capped(100, entitlements.Balance())
	pr, p := e.one(t, b)
	r := reserve(t, pr, p, 60)
	got, err := pr.Reserve(t.Context(), p, 50)
	if got != nil {
		t.Errorf("refused Reserve returned a reservation %v", got)
	}
	be := budgetError(t, err, entitlements.InsufficientQuota)
	want := &entitlements.BudgetError{Kind: entitlements.InsufficientQuota, Requested: 50, Available: 40}
	if diff := cmp.Diff(be, want); diff != "" {
		t.Errorf("BudgetError mismatch (-got +want):\n%s", diff)
	}
	// The refusal held nothing.
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: 60, Window: b.Window})
	settle(t, pr, r, 60)
	settle(t, pr, reserve(t, pr, p, 40), 40)
	_, err = pr.Reserve(t.Context(), p, 1)
	if be := budgetError(t, err, entitlements.InsufficientQuota); be.Available != 0 || be.RetryAfter != 0 {
		t.Errorf("BudgetError = %+v, want Available 0 and RetryAfter 0", be)
	}
}

func testBalanceNeverResets(t *testing.T, e *env) {
	b := capped(100, entitlements.Balance())
	pr, p := e.one(t, b)
	settle(t, pr, reserve(t, pr, p, 100), 100)
	e.clock.Advance(400 * 24 * time.Hour)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 100, Window: b.Window})
	_, err := pr.Reserve(t.Context(), p, 1)
	budgetError(t, err, entitlements.InsufficientQuota)
}

// checkResetsAt checks that a rolling snapshot's ResetsAt is the next
// epoch-aligned window boundary after now.
func checkResetsAt(t *testing.T, s entitlements.BudgetSnapshot, now time.Time) {
	t.Helper()
	w := s.Window.Length()
	if !s.ResetsAt.After(now) || s.ResetsAt.Sub(now) > w {
		t.Errorf("ResetsAt = %v, want within (now, now+%v] of now %v", s.ResetsAt, w, now)
	}
	if s.ResetsAt.Nanosecond() != 0 || s.ResetsAt.Unix()%s.Window.Seconds != 0 {
		t.Errorf("ResetsAt = %v, want a multiple of %d s since the Unix epoch", s.ResetsAt, s.Window.Seconds)
	}
}

func testRollingOverCap(t *testing.T, e *env) {
	b := capped(100, entitlements.Rolling(60))
	pr, p := e.one(t, b)
	settle(t, pr, reserve(t, pr, p, 100), 70)
	_, err := pr.Reserve(t.Context(), p, 40)
	be := budgetError(t, err, entitlements.RateLimited)
	if be.Requested != 40 || be.Available != 30 {
		t.Errorf("BudgetError = %+v, want Requested 40, Available 30", be)
	}
	if be.RetryAfter < time.Second || be.RetryAfter > time.Minute {
		t.Fatalf("RetryAfter = %v, want within [1s, 60s]", be.RetryAfter)
	}
	s := snapshot(t, pr, p)
	checkResetsAt(t, s, e.clock.Now())
	if s.Spent != 70 || s.Reserved != 0 {
		t.Errorf("Snapshot = %+v, want Spent 70, Reserved 0 (the refusal held nothing)", s)
	}
	// After RetryAfter enough of the window has freed for the same request.
	e.clock.Advance(be.RetryAfter)
	r := reserve(t, pr, p, 40)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: 40, Window: b.Window})
	release(t, pr, r)
}

func testRollingRetryAfterMin(t *testing.T, e *env) {
	b := capped(10, entitlements.Rolling(60))
	pr, p := e.one(t, b)
	s := snapshot(t, pr, p)
	// Half a second before the window ends.
	e.clock.Advance(s.ResetsAt.Sub(e.clock.Now()) - 500*time.Millisecond)
	settle(t, pr, reserve(t, pr, p, 10), 10)
	_, err := pr.Reserve(t.Context(), p, 1)
	be := budgetError(t, err, entitlements.RateLimited)
	if be.RetryAfter < time.Second || be.RetryAfter > time.Minute {
		t.Fatalf("RetryAfter = %v, want within [1s, 60s]", be.RetryAfter)
	}
	e.clock.Advance(be.RetryAfter)
	release(t, pr, reserve(t, pr, p, 10))
}

func testRollingWindowResets(t *testing.T, e *env) {
	b := capped(100, entitlements.Rolling(60))
	pr, p := e.one(t, b)
	settle(t, pr, reserve(t, pr, p, 100), 100)
	s := snapshot(t, pr, p)
	checkResetsAt(t, s, e.clock.Now())
	first := s.ResetsAt

	e.clock.Advance(time.Minute)
	s = snapshot(t, pr, p)
	if s.Spent != 0 || s.Reserved != 0 {
		t.Errorf("after a full window Snapshot = %+v, want Spent 0, Reserved 0", s)
	}
	checkResetsAt(t, s, e.clock.Now())
	if !s.ResetsAt.Equal(first.Add(time.Minute)) {
		t.Errorf("ResetsAt = %v, want %v", s.ResetsAt, first.Add(time.Minute))
	}
	settle(t, pr, reserve(t, pr, p, 100), 30)

	// Many windows later the spend is forgotten too.
	e.clock.Advance(90 * time.Minute)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Window: b.Window})
	release(t, pr, reserve(t, pr, p, 100))
}

func testRollingSettleAfterRollover(t *testing.T, e *env) {
	b := capped(100, entitlements.Rolling(60))
	pr, p := e.one(t, b)
	settle(t, pr, reserve(t, pr, p, 30), 30)
	inflight := reserve(t, pr, p, 50)
	e.clock.Advance(time.Minute)
	// The reservation still holds its amount in the new window.
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: 50, Window: b.Window})
	_, err := pr.Reserve(t.Context(), p, 51)
	if be := budgetError(t, err, entitlements.RateLimited); be.Available != 50 {
		t.Errorf("Available = %d, want 50 (in-flight reservations carry over)", be.Available)
	}
	// Its actual spend counts in the window current at settle time.
	settle(t, pr, inflight, 45)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 45, Window: b.Window})

	// The same when Settle is the first call to see the new window.
	inflight = reserve(t, pr, p, 20)
	e.clock.Advance(time.Minute)
	settle(t, pr, inflight, 15)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 15, Window: b.Window})
}

func testUncapped(t *testing.T, e *env) {
	pr, p := e.one(t, entitlements.Budget{})
	const big = entitlements.Amount(1) << 40
	r1 := reserve(t, pr, p, big)
	r2 := reserve(t, pr, p, big)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{Reserved: 2 * big})
	settle(t, pr, r1, big)
	release(t, pr, r2)
	s := snapshot(t, pr, p)
	if diff := cmp.Diff(s, entitlements.BudgetSnapshot{Spent: big}); diff != "" {
		t.Errorf("Snapshot mismatch (-got +want):\n%s", diff)
	}
	if got, ok := s.Remaining(); ok || got != 0 {
		t.Errorf("Remaining() = %d, %t; want 0, false (uncapped)", got, ok)
	}
}

func settleWith(actual entitlements.Amount) func(context.Context, entitlements.Provider, entitlements.Reservation) error {
	return func(ctx context.Context, pr entitlements.Provider, r entitlements.Reservation) error {
		return pr.Settle(ctx, r, actual)
	}
}

func releaseIt(ctx context.Context, pr entitlements.Provider, r entitlements.Reservation) error {
	return pr.Release(ctx, r)
}

func testConsumedOnce(t *testing.T, e *env) {
	b := e.capped(1000)
	tests := []struct {
		name         string
		first        func(context.Context, entitlements.Provider, entitlements.Reservation) error
		second       func(context.Context, entitlements.Provider, entitlements.Reservation) error
		wantSpentNow entitlements.Amount
	}{
		{
			name:         "settle twice",
			first:        settleWith(7),
			second:       settleWith(9),
			wantSpentNow: 7,
		},
		{
			name:   "settle after release",
			first:  releaseIt,
			second: settleWith(9),
		},
		{
			name:   "release twice",
			first:  releaseIt,
			second: releaseIt,
		},
		{
			name:         "release after settle",
			first:        settleWith(7),
			second:       releaseIt,
			wantSpentNow: 7,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr, p := e.one(t, b)
			other := reserve(t, pr, p, 100) // stays open: a second call must not touch it
			r := reserve(t, pr, p, 10)
			if err := tt.first(t.Context(), pr, r); err != nil {
				t.Fatalf("first call: %v", err)
			}
			want := entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: tt.wantSpentNow, Reserved: 100, Window: b.Window}
			wantSnapshot(t, pr, p, want)
			if err := tt.second(t.Context(), pr, r); !errors.Is(err, entitlements.ErrReservationSettled) {
				t.Errorf("second call = %v, want ErrReservationSettled", err)
			}
			wantSnapshot(t, pr, p, want)
			release(t, pr, other)
		})
	}
}

// fakeReservation is a handle no provider issued.
type fakeReservation struct{ p entitlements.Principal }

func (f fakeReservation) Principal() entitlements.Principal { return f.p }
func (f fakeReservation) Amount() entitlements.Amount       { return 1 }

func testForeignReservation(t *testing.T, e *env) {
	b := e.capped(1000)
	keys := []KeySpec{{Secret: "sk-one", Principal: principal("acct", "acct-key"), Budget: b}}
	prA := e.provider(t, keys...)
	prB := e.provider(t, keys...)
	p, err := prA.Resolve(t.Context(), "sk-one")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if _, err := prB.Resolve(t.Context(), "sk-one"); err != nil {
		t.Fatalf("Resolve on the second provider: %v", err)
	}
	own := reserve(t, prA, p, 5)
	foreign := reserve(t, prB, p, 10)

	handles := map[string]entitlements.Reservation{
		"other provider": foreign,
		"foreign type":   fakeReservation{p: p},
		"nil":            nil,
	}
	for name, r := range handles {
		if err := prA.Settle(t.Context(), r, 10); !errors.Is(err, entitlements.ErrUnknownReservation) {
			t.Errorf("%s: Settle = %v, want ErrUnknownReservation", name, err)
		}
		if err := prA.Release(t.Context(), r); !errors.Is(err, entitlements.ErrUnknownReservation) {
			t.Errorf("%s: Release = %v, want ErrUnknownReservation", name, err)
		}
	}
	wantSnapshot(t, prA, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: 5, Window: b.Window})
	// The foreign handle is still open on its own provider.
	settle(t, prB, foreign, 10)
	wantSnapshot(t, prB, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 10, Window: b.Window})
	settle(t, prA, own, 5)
}

func testInvalidAmount(t *testing.T, e *env) {
	b := e.capped(100)
	pr, p := e.one(t, b)
	if r, err := pr.Reserve(t.Context(), p, -1); !errors.Is(err, entitlements.ErrInvalidAmount) {
		t.Errorf("Reserve(-1) = %v, %v; want ErrInvalidAmount", r, err)
	}
	r := reserve(t, pr, p, 10)
	if err := pr.Settle(t.Context(), r, -5); !errors.Is(err, entitlements.ErrInvalidAmount) {
		t.Errorf("Settle(-5) = %v, want ErrInvalidAmount", err)
	}
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: 10, Window: b.Window})
	settle(t, pr, r, 5) // a refused Settle does not consume the reservation
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 5, Window: b.Window})
}

func testCancelledContext(t *testing.T, e *env) {
	b := e.capped(100)
	pr, p := e.one(t, b)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := reserve(t, pr, p, 10)

	if got, err := pr.Resolve(ctx, "sk-one"); !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve = %+v, %v; want context.Canceled", got, err)
	}
	if got, err := pr.Reserve(ctx, p, 20); !errors.Is(err, context.Canceled) {
		t.Errorf("Reserve = %v, %v; want context.Canceled", got, err)
	}
	if err := pr.Settle(ctx, r, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Settle = %v, want context.Canceled", err)
	}
	if err := pr.Release(ctx, r); !errors.Is(err, context.Canceled) {
		t.Errorf("Release = %v, want context.Canceled", err)
	}
	if got, err := pr.Snapshot(ctx, p); !errors.Is(err, context.Canceled) {
		t.Errorf("Snapshot = %+v, %v; want context.Canceled", got, err)
	}
	// Nothing changed: the cancelled Reserve holds nothing and r is open.
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: 10, Window: b.Window})
	settle(t, pr, r, 10)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 10, Window: b.Window})
}

func testOverspend(t *testing.T, e *env) {
	b := e.capped(100)
	pr, p := e.one(t, b)
	settle(t, pr, reserve(t, pr, p, 10), 500)
	s := snapshot(t, pr, p)
	s.ResetsAt = time.Time{} // the rolling tests check it
	if diff := cmp.Diff(s, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 500, Window: b.Window}); diff != "" {
		t.Errorf("Snapshot mismatch (-got +want):\n%s", diff)
	}
	if got, ok := s.Remaining(); !ok || got != 0 {
		t.Errorf("Remaining() = %d, %t; want 0, true", got, ok)
	}
	_, err := pr.Reserve(t.Context(), p, 1)
	if be := budgetError(t, err, e.spentKind()); be.Available != 0 {
		t.Errorf("Available = %d, want 0", be.Available)
	}
}

// testConcurrentCap releases 1000 goroutines together to reserve random
// amounts against one cap while snapshots are taken, then settles them
// concurrently, and checks the cap invariant throughout.
func testConcurrentCap(t *testing.T, e *env) {
	const (
		workers = 1000
		hardCap = 10_000
	)
	b := e.capped(hardCap)
	pr, p := e.one(t, b)
	ctx := t.Context()

	rng := rand.New(rand.NewPCG(1, 2))
	amounts := make([]entitlements.Amount, workers)
	actuals := make([]entitlements.Amount, workers)
	extra := make([]entitlements.Amount, workers)
	for i := range amounts {
		amounts[i] = entitlements.Amount(1 + rng.IntN(40)) // ~2x the cap in total
		actuals[i] = entitlements.Amount(rng.IntN(int(amounts[i]) + 1))
		extra[i] = entitlements.Amount(1 + rng.IntN(40))
	}

	// Snapshots run concurrently with both phases.
	stop := make(chan struct{})
	snapDone := make(chan error)
	go func() {
		var n int
		for {
			select {
			case <-stop:
				if n == 0 {
					snapDone <- errors.New("no snapshot was taken")
				} else {
					snapDone <- nil
				}
				return
			default:
			}
			s, err := pr.Snapshot(ctx, p)
			if err != nil {
				snapDone <- fmt.Errorf("concurrent snapshot: %w", err)
				return
			}
			if s.Spent+s.Reserved > hardCap || s.Spent < 0 || s.Reserved < 0 {
				snapDone <- fmt.Errorf("snapshot %d: spent %d + reserved %d exceeds cap %d", n, s.Spent, s.Reserved, hardCap)
				return
			}
			n++
		}
	}()
	defer func() {
		close(stop)
		if err := <-snapDone; err != nil {
			t.Error(err)
		}
	}()

	// Phase 1: reserve only.
	reservations := make([]entitlements.Reservation, workers)
	errs := make([]error, workers)
	startGate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			<-startGate
			reservations[i], errs[i] = pr.Reserve(ctx, p, amounts[i])
		})
	}
	close(startGate)
	wg.Wait()

	var admitted entitlements.Amount
	for i := range workers {
		if errs[i] == nil {
			admitted += amounts[i]
		}
	}
	if admitted > hardCap {
		t.Fatalf("admitted %d in total, over the cap %d", admitted, hardCap)
	}
	var refused int
	for i, err := range errs {
		if err == nil {
			continue
		}
		refused++
		var be *entitlements.BudgetError
		if !errors.As(err, &be) || be.Kind != e.spentKind() || be.Requested != amounts[i] {
			t.Fatalf("worker %d: Reserve(%d) = %v, want an InsufficientQuota BudgetError", i, amounts[i], err)
		}
		// Reserved only grew during the phase, so a refusal means the
		// amount did not fit even in what was left at the end.
		if amounts[i] <= hardCap-admitted {
			t.Errorf("worker %d: Reserve(%d) refused although %d was left", i, amounts[i], hardCap-admitted)
		}
	}
	if refused == 0 {
		t.Fatalf("no reservation was refused; the test needs demand over the cap")
	}
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: admitted, Window: b.Window})

	// Phase 2: settle (or release) every reservation while new
	// reservations come and go.
	var spent entitlements.Amount
	for i, r := range reservations {
		if r != nil && i%3 != 0 {
			spent += actuals[i]
		}
	}
	startGate = make(chan struct{})
	for i := range workers {
		wg.Go(func() {
			<-startGate
			if r := reservations[i]; r != nil {
				var err error
				if i%3 == 0 {
					err = pr.Release(ctx, r)
				} else {
					err = pr.Settle(ctx, r, actuals[i])
				}
				if err != nil {
					t.Errorf("worker %d: settle: %v", i, err)
				}
			}
			if r, err := pr.Reserve(ctx, p, extra[i]); err == nil {
				if err := pr.Release(ctx, r); err != nil {
					t.Errorf("worker %d: Release: %v", i, err)
				}
			}
		})
	}
	close(startGate)
	wg.Wait()
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: spent, Window: b.Window})
}
