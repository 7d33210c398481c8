// Package entitlementstest is the conformance suite of entitlements
// Providers, and the manual Clock it runs on.
//
// A provider's tests call Run with a factory that builds a fresh provider
// holding the given keys and reading time from the given Clock, and the
// capabilities the provider claims:
//
//	func TestConformance(t *testing.T) {
//		entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
//			p := newMyProvider(t, clock.Now)
//			for _, k := range keys {
//				p.Add(entitlements.KeyDigest(k.Secret), k.Principal, k.Budget)
//			}
//			return p
//		}, entitlementstest.Balances, entitlementstest.Windows)
//	}
//
// The suite checks the contract documented on entitlements.Provider,
// entitlements.Reservation, the optional capabilities and in the
// entitlements package documentation: a core every Provider must pass, and
// a group per Capability a provider claims (balances, rolling windows,
// uncapped keys, key details, leases, per-key limits), so that a narrow
// provider passes exactly what it claims. See Run.
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
// claims: a narrow provider (one that only counts requests per minute, say)
// claims Uncapped and Limits and passes exactly those.
type Capability uint

// The capabilities.
const (
	// Balances: caps over a balance that never resets
	// (entitlements.Balance).
	Balances Capability = 1 << iota
	// Windows: caps over epoch-aligned rolling windows
	// (entitlements.Rolling).
	Windows
	// Uncapped: keys without a hard cap, whose spend is metered.
	Uncapped
	// KeyDetails: a principal's Limits and Unit come back from Resolve as
	// they were seeded, whatever the budget of its account.
	KeyDetails
	// Leases: the provider is an entitlements.Leaser and its reservations
	// are entitlements.Renewers: a lease not renewed within its TTL frees
	// its amount, a renewed one keeps it, and a Settle after the lease
	// expired still records the spend.
	Leases
	// Limits: the provider is an entitlements.Limiter that counts the
	// per-key limits (max_in_flight, rpm) of the principals it resolves.
	Limits

	// Budgets is the whole budget model: Balances, Windows, Uncapped and
	// KeyDetails. entitlements.Local has it.
	Budgets = Balances | Windows | Uncapped | KeyDetails
)

// Run runs the conformance suite against the providers newProvider builds:
// its core, which every Provider must pass, then the group of each of caps.
// A provider holds budgets of at least one kind, so caps must include
// Balances, Windows or Uncapped: the core seeds its keys with the first of
// them (a large balance, a large cap per 60 s rolling window, or no cap).
//
// The core: resolution, the reserve/settle protocol and its accounting,
// accounts shared by keys, exactly-once consumption of reservations,
// independent providers, invalid amounts, cancelled contexts, overspend
// recording, and exact accounting under heavy concurrency. The Balances
// and Windows groups add refusals at the cap, the cap to the unit,
// refusals after an overspend and the cap invariant under heavy
// concurrency, for their kind of window.
func Run(t *testing.T, newProvider Factory, caps ...Capability) {
	t.Helper()
	var c Capability
	for _, x := range caps {
		c |= x
	}
	var core entitlements.Budget
	switch {
	case c&Balances != 0:
		core = capped(coreCap, entitlements.Balance())
	case c&Windows != 0:
		core = capped(coreCap, entitlements.Rolling(60))
	case c&Uncapped != 0:
	default:
		t.Fatal("entitlementstest: Run needs Balances, Windows or Uncapped: the kinds of budget the provider holds")
	}
	type test struct {
		name string
		need Capability
		run  func(*testing.T, *env)
	}
	tests := []test{
		{"Resolve", 0, testResolve},
		{"UnknownKey", 0, testUnknownKey},
		{"UnknownPrincipal", 0, testUnknownPrincipal},
		{"ReserveSettle", 0, testReserveSettle},
		{"ReserveRelease", 0, testReserveRelease},
		{"SharedAccount", 0, testSharedAccount},
		{"ConsumedOnce", 0, testConsumedOnce},
		{"TwoProviders", 0, testTwoProviders},
		{"InvalidAmount", 0, testInvalidAmount},
		{"CancelledContext", 0, testCancelledContext},
		{"Overspend", 0, testOverspend},
		{"Concurrent", 0, testConcurrent},
		{"BalanceOverCap", Balances, testBalanceOverCap},
		{"BalanceNeverResets", Balances, testBalanceNeverResets},
		{"RollingOverCap", Windows, testRollingOverCap},
		{"RollingRetryAfterAtLeastOneSecond", Windows, testRollingRetryAfterMin},
		{"RollingWindowResets", Windows, testRollingWindowResets},
		{"RollingSettleAfterRollover", Windows, testRollingSettleAfterRollover},
		{"Uncapped", Uncapped, testUncapped},
		{"ResolveDetails", KeyDetails, testResolveDetails},
		{"LeaseRenewer", Leases, testLeaseRenewer},
		{"LeaseExpires", Leases, testLeaseExpires},
		{"LeaseRenewed", Leases, testLeaseRenewed},
		{"LeaseRenewConsumed", Leases, testLeaseRenewConsumed},
		{"LimitMaxInFlight", Limits, testLimitMaxInFlight},
		{"LimitRPM", Limits, testLimitRPM},
		{"LimitPerKey", Limits, testLimitPerKey},
		{"LimitNone", Limits, testLimitNone},
		{"LimitCancelledContext", Limits, testLimitCancelled},
	}
	// The cap tests run for each kind of window claimed.
	for _, k := range []struct {
		name   string
		need   Capability
		window entitlements.CapWindow
	}{
		{"Balance", Balances, entitlements.Balance()},
		{"Rolling", Windows, entitlements.Rolling(60)},
	} {
		w := k.window
		tests = append(tests,
			test{k.name + "SharedCap", k.need, func(t *testing.T, e *env) { testSharedCap(t, e, w) }},
			test{k.name + "WholeCap", k.need, func(t *testing.T, e *env) { testWholeCap(t, e, w) }},
			test{k.name + "OverspendRefuses", k.need, func(t *testing.T, e *env) { testOverspendRefuses(t, e, w) }},
			test{k.name + "ConcurrentCap", k.need, func(t *testing.T, e *env) { testConcurrentCap(t, e, w) }},
		)
	}
	for _, tt := range tests {
		if c&tt.need != tt.need {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, &env{newProvider: newProvider, budget: core, caps: c})
		})
	}
}

// coreCap is the cap of the core's capped keys: more than any core test
// reserves, so that the core never meets it.
const coreCap = 1 << 40

// env builds providers for one subtest.
type env struct {
	newProvider Factory
	clock       *Clock
	budget      entitlements.Budget // of the core's keys
	caps        Capability          // claimed
}

// spentKind is the kind of BudgetError a spent cap over w gives.
func spentKind(w entitlements.CapWindow) entitlements.BudgetErrorKind {
	if w.Kind == entitlements.WindowRolling {
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

func settle(t *testing.T, r entitlements.Reservation, actual entitlements.Amount) {
	t.Helper()
	if err := r.Settle(t.Context(), actual); err != nil {
		t.Fatalf("Settle(%d): %v", actual, err)
	}
}

func release(t *testing.T, r entitlements.Reservation) {
	t.Helper()
	if err := r.Release(t.Context()); err != nil {
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

// want is the snapshot of an account with budget b, spent and reserved.
func want(b entitlements.Budget, spent, reserved entitlements.Amount) entitlements.BudgetSnapshot {
	return entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: spent, Reserved: reserved, Window: b.Window}
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
		{Secret: "sk-a", Principal: principal("acme", "acme-prod"), Budget: e.budget},
		{Secret: "sk-b", Principal: principal("acme", "acme-ci"), Budget: e.budget},
		{Secret: "sk-c", Principal: principal("globex", "globex"), Budget: e.budget},
	}
	checkResolve(t, e.provider(t, keys...), keys)
}

func checkResolve(t *testing.T, pr entitlements.Provider, keys []KeySpec) {
	t.Helper()
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

// testResolveDetails seeds keys with limits and units, one per kind of
// budget the provider claims.
func testResolveDetails(t *testing.T, e *env) {
	models, err := entitlements.NewModelAllowList("llama-*", "org/*", "exact-model")
	if err != nil {
		t.Fatal(err)
	}
	keys := []KeySpec{
		{Secret: "sk-a", Principal: principal("acme", "acme-prod"), Budget: e.budget},
		{Secret: "sk-b", Principal: entitlements.Principal{
			AccountID: "acme", KeyID: "acme-ci",
			Limits: entitlements.Limits{ClampMaxTokens: true, MaxInFlight: 4, RPM: 60, Models: models},
		}, Budget: e.budget},
		{Secret: "sk-usd", Principal: entitlements.Principal{
			AccountID: "globex", KeyID: "globex", Unit: entitlements.UnitMicroUSD,
		}, Budget: e.budget},
	}
	if e.caps&Balances != 0 {
		keys = append(keys, KeySpec{Secret: "sk-balance", Principal: principal("hooli", "hooli"), Budget: capped(1000, entitlements.Balance())})
	}
	if e.caps&Windows != 0 {
		keys = append(keys, KeySpec{Secret: "sk-rolling", Principal: entitlements.Principal{
			AccountID: "umbrella", KeyID: "umbrella", Unit: entitlements.UnitMicroUSD,
			Limits: entitlements.Limits{RPM: 5},
		}, Budget: capped(5_000_000, entitlements.Rolling(3600))})
	}
	if e.caps&Uncapped != 0 {
		keys = append(keys, KeySpec{Secret: "sk-free", Principal: principal("initech", "initech")})
	}
	checkResolve(t, e.provider(t, keys...), keys)
}

func testUnknownKey(t *testing.T, e *env) {
	pr := e.provider(t, KeySpec{Secret: "sk-known", Principal: principal("a", "a"), Budget: e.budget})
	for _, key := range []string{"sk-unknown", "", "sk-known ", "SK-KNOWN"} {
		p, err := pr.Resolve(t.Context(), key)
		if !errors.Is(err, entitlements.ErrInvalidKey) {
			t.Errorf("Resolve(%q) = %+v, %v; want ErrInvalidKey", key, p, err)
		}
	}
}

func testUnknownPrincipal(t *testing.T, e *env) {
	pr := e.provider(t, KeySpec{Secret: "sk-known", Principal: principal("a", "a"), Budget: e.budget})
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
	b := e.budget
	pr, p := e.one(t, b)
	wantSnapshot(t, pr, p, want(b, 0, 0))

	r := reserve(t, pr, p, 300)
	if got := r.Amount(); got != 300 {
		t.Errorf("Reservation.Amount() = %d, want 300", got)
	}
	if diff := cmp.Diff(r.Principal(), p); diff != "" {
		t.Errorf("Reservation.Principal() mismatch (-got +want):\n%s", diff)
	}
	wantSnapshot(t, pr, p, want(b, 0, 300))

	zero := reserve(t, pr, p, 0)
	settle(t, r, 250)
	wantSnapshot(t, pr, p, want(b, 250, 0))
	settle(t, zero, 0)

	s := snapshot(t, pr, p)
	if got, ok := s.Remaining(); ok != (b.HardCap != nil) || ok && got != *b.HardCap-250 {
		t.Errorf("Remaining() = %d, %t; want the cap less 250", got, ok)
	}
	if b.Window.Kind == entitlements.WindowBalance && !s.ResetsAt.IsZero() {
		t.Errorf("balance ResetsAt = %v, want zero", s.ResetsAt)
	}
	settle(t, reserve(t, pr, p, 750), 750)
	wantSnapshot(t, pr, p, want(b, 1000, 0))
}

func testReserveRelease(t *testing.T, e *env) {
	b := e.budget
	pr, p := e.one(t, b)
	r1 := reserve(t, pr, p, 60)
	r2 := reserve(t, pr, p, 40)
	wantSnapshot(t, pr, p, want(b, 0, 100))
	release(t, r1)
	wantSnapshot(t, pr, p, want(b, 0, 40))
	release(t, r2)
	wantSnapshot(t, pr, p, want(b, 0, 0))
}

// resolveAll resolves the secrets of keys on pr.
func resolveAll(t *testing.T, pr entitlements.Provider, keys ...KeySpec) []entitlements.Principal {
	t.Helper()
	ps := make([]entitlements.Principal, len(keys))
	for i, k := range keys {
		p, err := pr.Resolve(t.Context(), k.Secret)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", k.Secret, err)
		}
		ps[i] = p
	}
	return ps
}

// testSharedAccount: the keys of one account spend one budget, and another
// account's is its own.
func testSharedAccount(t *testing.T, e *env) {
	b := e.budget
	keys := []KeySpec{
		{Secret: "sk-1", Principal: principal("shared", "k1"), Budget: b},
		{Secret: "sk-2", Principal: principal("shared", "k2"), Budget: b},
		{Secret: "sk-other", Principal: principal("other", "other"), Budget: b},
	}
	pr := e.provider(t, keys...)
	ps := resolveAll(t, pr, keys...)
	p1, p2, po := ps[0], ps[1], ps[2]
	r := reserve(t, pr, p1, 60)
	wantSnapshot(t, pr, p2, want(b, 0, 60))
	wantSnapshot(t, pr, po, want(b, 0, 0))
	settle(t, r, 50)
	settle(t, reserve(t, pr, p2, 10), 10)
	wantSnapshot(t, pr, p1, want(b, 60, 0))
	wantSnapshot(t, pr, po, want(b, 0, 0))
}

// testSharedCap: the keys of one account share its cap over w.
func testSharedCap(t *testing.T, e *env, w entitlements.CapWindow) {
	b := capped(100, w)
	keys := []KeySpec{
		{Secret: "sk-1", Principal: principal("shared", "k1"), Budget: b},
		{Secret: "sk-2", Principal: principal("shared", "k2"), Budget: b},
		{Secret: "sk-other", Principal: principal("other", "other"), Budget: b},
	}
	pr := e.provider(t, keys...)
	ps := resolveAll(t, pr, keys...)
	p1, p2, po := ps[0], ps[1], ps[2]
	r := reserve(t, pr, p1, 60)
	_, err := pr.Reserve(t.Context(), p2, 50)
	if be := budgetError(t, err, spentKind(w)); be.Available != 40 {
		t.Errorf("Available = %d, want 40 (the keys share one budget)", be.Available)
	}
	wantSnapshot(t, pr, p2, want(b, 0, 60))
	// Another account is untouched.
	release(t, reserve(t, pr, po, 100))
	settle(t, r, 60)
	wantSnapshot(t, pr, p2, want(b, 60, 0))
}

// testWholeCap: what is left of a cap can be reserved to the unit, and
// released amounts are available again.
func testWholeCap(t *testing.T, e *env, w entitlements.CapWindow) {
	b := capped(1000, w)
	pr, p := e.one(t, b)
	settle(t, reserve(t, pr, p, 300), 250)
	release(t, reserve(t, pr, p, 750))
	settle(t, reserve(t, pr, p, 750), 750)
	wantSnapshot(t, pr, p, want(b, 1000, 0))
	_, err := pr.Reserve(t.Context(), p, 1)
	budgetError(t, err, spentKind(w))
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
	settle(t, r, 60)
	settle(t, reserve(t, pr, p, 40), 40)
	_, err = pr.Reserve(t.Context(), p, 1)
	if be := budgetError(t, err, entitlements.InsufficientQuota); be.Available != 0 || be.RetryAfter != 0 {
		t.Errorf("BudgetError = %+v, want Available 0 and RetryAfter 0", be)
	}
}

func testBalanceNeverResets(t *testing.T, e *env) {
	b := capped(100, entitlements.Balance())
	pr, p := e.one(t, b)
	settle(t, reserve(t, pr, p, 100), 100)
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
	settle(t, reserve(t, pr, p, 100), 70)
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
	release(t, r)
}

func testRollingRetryAfterMin(t *testing.T, e *env) {
	b := capped(10, entitlements.Rolling(60))
	pr, p := e.one(t, b)
	s := snapshot(t, pr, p)
	// Half a second before the window ends.
	e.clock.Advance(s.ResetsAt.Sub(e.clock.Now()) - 500*time.Millisecond)
	settle(t, reserve(t, pr, p, 10), 10)
	_, err := pr.Reserve(t.Context(), p, 1)
	be := budgetError(t, err, entitlements.RateLimited)
	if be.RetryAfter < time.Second || be.RetryAfter > time.Minute {
		t.Fatalf("RetryAfter = %v, want within [1s, 60s]", be.RetryAfter)
	}
	e.clock.Advance(be.RetryAfter)
	release(t, reserve(t, pr, p, 10))
}

func testRollingWindowResets(t *testing.T, e *env) {
	b := capped(100, entitlements.Rolling(60))
	pr, p := e.one(t, b)
	settle(t, reserve(t, pr, p, 100), 100)
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
	settle(t, reserve(t, pr, p, 100), 30)

	// Many windows later the spend is forgotten too.
	e.clock.Advance(90 * time.Minute)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Window: b.Window})
	release(t, reserve(t, pr, p, 100))
}

func testRollingSettleAfterRollover(t *testing.T, e *env) {
	b := capped(100, entitlements.Rolling(60))
	pr, p := e.one(t, b)
	settle(t, reserve(t, pr, p, 30), 30)
	inflight := reserve(t, pr, p, 50)
	e.clock.Advance(time.Minute)
	// The reservation still holds its amount in the new window.
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Reserved: 50, Window: b.Window})
	_, err := pr.Reserve(t.Context(), p, 51)
	if be := budgetError(t, err, entitlements.RateLimited); be.Available != 50 {
		t.Errorf("Available = %d, want 50 (in-flight reservations carry over)", be.Available)
	}
	// Its actual spend counts in the window current at settle time.
	settle(t, inflight, 45)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 45, Window: b.Window})

	// The same when Settle is the first call to see the new window.
	inflight = reserve(t, pr, p, 20)
	e.clock.Advance(time.Minute)
	settle(t, inflight, 15)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: 15, Window: b.Window})
}

func testUncapped(t *testing.T, e *env) {
	pr, p := e.one(t, entitlements.Budget{})
	const big = entitlements.Amount(1) << 40
	r1 := reserve(t, pr, p, big)
	r2 := reserve(t, pr, p, big)
	wantSnapshot(t, pr, p, entitlements.BudgetSnapshot{Reserved: 2 * big})
	settle(t, r1, big)
	release(t, r2)
	s := snapshot(t, pr, p)
	if diff := cmp.Diff(s, entitlements.BudgetSnapshot{Spent: big}); diff != "" {
		t.Errorf("Snapshot mismatch (-got +want):\n%s", diff)
	}
	if got, ok := s.Remaining(); ok || got != 0 {
		t.Errorf("Remaining() = %d, %t; want 0, false (uncapped)", got, ok)
	}
}

func settleWith(actual entitlements.Amount) func(context.Context, entitlements.Reservation) error {
	return func(ctx context.Context, r entitlements.Reservation) error {
		return r.Settle(ctx, actual)
	}
}

func releaseIt(ctx context.Context, r entitlements.Reservation) error { return r.Release(ctx) }

func testConsumedOnce(t *testing.T, e *env) {
	b := e.budget
	tests := []struct {
		name         string
		first        func(context.Context, entitlements.Reservation) error
		second       func(context.Context, entitlements.Reservation) error
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
			if err := tt.first(t.Context(), r); err != nil {
				t.Fatalf("first call: %v", err)
			}
			want := want(b, tt.wantSpentNow, 100)
			wantSnapshot(t, pr, p, want)
			if err := tt.second(t.Context(), r); !errors.Is(err, entitlements.ErrReservationSettled) {
				t.Errorf("second call = %v, want ErrReservationSettled", err)
			}
			wantSnapshot(t, pr, p, want)
			release(t, other)
		})
	}
}

// testTwoProviders: two providers built by the factory hold separate
// ledgers, and a reservation consumes only the ledger of the provider that
// issued it.
func testTwoProviders(t *testing.T, e *env) {
	b := e.budget
	keys := []KeySpec{{Secret: "sk-one", Principal: principal("acct", "acct-key"), Budget: b}}
	prA := e.provider(t, keys...)
	prB := e.provider(t, keys...)
	p := resolveAll(t, prA, keys...)[0]
	resolveAll(t, prB, keys...)
	own := reserve(t, prA, p, 5)
	other := reserve(t, prB, p, 10)
	wantSnapshot(t, prA, p, want(b, 0, 5))
	wantSnapshot(t, prB, p, want(b, 0, 10))
	settle(t, other, 10)
	wantSnapshot(t, prA, p, want(b, 0, 5))
	wantSnapshot(t, prB, p, want(b, 10, 0))
	settle(t, own, 5)
	wantSnapshot(t, prA, p, want(b, 5, 0))
}

func testInvalidAmount(t *testing.T, e *env) {
	b := e.budget
	pr, p := e.one(t, b)
	if r, err := pr.Reserve(t.Context(), p, -1); !errors.Is(err, entitlements.ErrInvalidAmount) {
		t.Errorf("Reserve(-1) = %v, %v; want ErrInvalidAmount", r, err)
	}
	r := reserve(t, pr, p, 10)
	if err := r.Settle(t.Context(), -5); !errors.Is(err, entitlements.ErrInvalidAmount) {
		t.Errorf("Settle(-5) = %v, want ErrInvalidAmount", err)
	}
	wantSnapshot(t, pr, p, want(b, 0, 10))
	settle(t, r, 5) // a refused Settle does not consume the reservation
	wantSnapshot(t, pr, p, want(b, 5, 0))
}

func testCancelledContext(t *testing.T, e *env) {
	b := e.budget
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
	if err := r.Settle(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Settle = %v, want context.Canceled", err)
	}
	if err := r.Release(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Release = %v, want context.Canceled", err)
	}
	if got, err := pr.Snapshot(ctx, p); !errors.Is(err, context.Canceled) {
		t.Errorf("Snapshot = %+v, %v; want context.Canceled", got, err)
	}
	// Nothing changed: the cancelled Reserve holds nothing and r is open.
	wantSnapshot(t, pr, p, want(b, 0, 10))
	settle(t, r, 10)
	wantSnapshot(t, pr, p, want(b, 10, 0))
}

// testOverspend: a Settle above the amount reserved records the whole
// actual spend.
func testOverspend(t *testing.T, e *env) {
	b := e.budget
	pr, p := e.one(t, b)
	settle(t, reserve(t, pr, p, 10), 500)
	wantSnapshot(t, pr, p, want(b, 500, 0))
}

// testOverspendRefuses: an overspend past the cap shows, leaves nothing
// to reserve, and is never hidden.
func testOverspendRefuses(t *testing.T, e *env, w entitlements.CapWindow) {
	b := capped(100, w)
	pr, p := e.one(t, b)
	settle(t, reserve(t, pr, p, 10), 500)
	s := snapshot(t, pr, p)
	s.ResetsAt = time.Time{} // the rolling tests check it
	if diff := cmp.Diff(s, want(b, 500, 0)); diff != "" {
		t.Errorf("Snapshot mismatch (-got +want):\n%s", diff)
	}
	if got, ok := s.Remaining(); !ok || got != 0 {
		t.Errorf("Remaining() = %d, %t; want 0, true", got, ok)
	}
	_, err := pr.Reserve(t.Context(), p, 1)
	if be := budgetError(t, err, spentKind(w)); be.Available != 0 {
		t.Errorf("Available = %d, want 0", be.Available)
	}
}

// watchSnapshots takes snapshots of p until the returned func is called,
// checking each with check; the func reports the first failure.
func watchSnapshots(t *testing.T, pr entitlements.Provider, p entitlements.Principal, check func(entitlements.BudgetSnapshot) error) func() {
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		var n int
		for {
			select {
			case <-stop:
				if n == 0 {
					done <- errors.New("no snapshot was taken")
				} else {
					done <- nil
				}
				return
			default:
			}
			s, err := pr.Snapshot(context.Background(), p)
			if err != nil {
				done <- fmt.Errorf("concurrent snapshot: %w", err)
				return
			}
			if err := check(s); err != nil {
				done <- fmt.Errorf("snapshot %d: %w", n, err)
				return
			}
			n++
		}
	}()
	return func() {
		t.Helper()
		close(stop)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// testConcurrent releases 1000 goroutines together to reserve, then
// settle or release, while snapshots are taken, and checks that the
// accounts add up exactly.
func testConcurrent(t *testing.T, e *env) {
	const workers = 1000
	b := e.budget
	pr, p := e.one(t, b)
	ctx := t.Context()
	defer watchSnapshots(t, pr, p, func(s entitlements.BudgetSnapshot) error {
		if s.Spent < 0 || s.Reserved < 0 {
			return fmt.Errorf("spent %d, reserved %d: negative", s.Spent, s.Reserved)
		}
		return nil
	})()

	reservations := make([]entitlements.Reservation, workers)
	var total entitlements.Amount
	startGate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		total += entitlements.Amount(i % 7)
		wg.Go(func() {
			<-startGate
			r, err := pr.Reserve(ctx, p, entitlements.Amount(i%7))
			if err != nil {
				t.Errorf("worker %d: Reserve: %v", i, err)
			}
			reservations[i] = r
		})
	}
	close(startGate)
	wg.Wait()
	if t.Failed() {
		return
	}
	wantSnapshot(t, pr, p, want(b, 0, total))

	var spent entitlements.Amount
	for i := range workers {
		if i%3 != 0 {
			spent += entitlements.Amount(i % 5)
		}
	}
	startGate = make(chan struct{})
	for i, r := range reservations {
		wg.Go(func() {
			<-startGate
			var err error
			if i%3 == 0 {
				err = r.Release(ctx)
			} else {
				err = r.Settle(ctx, entitlements.Amount(i%5))
			}
			if err != nil {
				t.Errorf("worker %d: settle: %v", i, err)
			}
		})
	}
	close(startGate)
	wg.Wait()
	wantSnapshot(t, pr, p, want(b, spent, 0))
}

// testConcurrentCap releases 1000 goroutines together to reserve random
// amounts against one cap over w while snapshots are taken, then settles
// them concurrently, and checks the cap invariant throughout.
func testConcurrentCap(t *testing.T, e *env, w entitlements.CapWindow) {
	const (
		workers = 1000
		hardCap = 10_000
	)
	b := capped(hardCap, w)
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
	defer watchSnapshots(t, pr, p, func(s entitlements.BudgetSnapshot) error {
		if s.Spent+s.Reserved > hardCap || s.Spent < 0 || s.Reserved < 0 {
			return fmt.Errorf("spent %d + reserved %d exceeds cap %d", s.Spent, s.Reserved, hardCap)
		}
		return nil
	})()

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
		if !errors.As(err, &be) || be.Kind != spentKind(w) || be.Requested != amounts[i] {
			t.Fatalf("worker %d: Reserve(%d) = %v, want a %v BudgetError", i, amounts[i], err, spentKind(w))
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
	wantSnapshot(t, pr, p, want(b, 0, admitted))

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
					err = r.Release(ctx)
				} else {
					err = r.Settle(ctx, actuals[i])
				}
				if err != nil {
					t.Errorf("worker %d: settle: %v", i, err)
				}
			}
			if r, err := pr.Reserve(ctx, p, extra[i]); err == nil {
				if err := r.Release(ctx); err != nil {
					t.Errorf("worker %d: Release: %v", i, err)
				}
			}
		})
	}
	close(startGate)
	wg.Wait()
	wantSnapshot(t, pr, p, want(b, spent, 0))
}
