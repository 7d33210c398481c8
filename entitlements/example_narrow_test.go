package entitlements_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
)

// quota is a narrow Provider: a per-minute request quota per key and
// nothing more. Its accounts have no cap (what they spend is only
// metered), and it counts each key's Limits.RPM (and MaxInFlight) with an
// embedded entitlements.KeyLimiter, which makes it an entitlements.Limiter.
// In entitlementstest it claims Uncapped, KeyDetails and Limits, and
// passes exactly those (TestQuotaConformance).
type quota struct {
	*entitlements.KeyLimiter
	keys map[[sha256.Size]byte]entitlements.Principal

	mu       sync.Mutex
	accounts map[string]*usage
}

// usage is what an account has spent and holds reserved.
type usage struct{ spent, reserved entitlements.Amount }

// newQuota returns a quota over keys (secret -> principal, whose
// Limits.RPM is the quota), reading time from clk.
func newQuota(clk clock.Clock, keys map[string]entitlements.Principal) *quota {
	q := &quota{
		KeyLimiter: entitlements.NewKeyLimiter(clk),
		keys:       make(map[[sha256.Size]byte]entitlements.Principal),
		accounts:   make(map[string]*usage),
	}
	for secret, p := range keys {
		q.keys[entitlements.KeyDigest(secret)] = p
		q.accounts[p.AccountID] = &usage{}
	}
	return q
}

func (q *quota) Resolve(ctx context.Context, apiKey string) (entitlements.Principal, error) {
	if err := ctx.Err(); err != nil {
		return entitlements.Principal{}, err
	}
	p, ok := q.keys[entitlements.KeyDigest(apiKey)]
	if !ok || apiKey == "" {
		return entitlements.Principal{}, entitlements.ErrInvalidKey
	}
	return p, nil
}

func (q *quota) Reserve(ctx context.Context, p entitlements.Principal, amount entitlements.Amount) (entitlements.Reservation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if amount < 0 {
		return nil, entitlements.ErrInvalidAmount
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	u := q.accounts[p.AccountID]
	if u == nil || p.IsAnonymous() {
		return nil, entitlements.ErrInvalidKey
	}
	if amount > math.MaxInt64-u.reserved {
		return nil, entitlements.ErrInvalidAmount
	}
	u.reserved += amount
	return &held{q: q, u: u, p: p, amount: amount}, nil
}

func (q *quota) Snapshot(ctx context.Context, p entitlements.Principal) (entitlements.BudgetSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return entitlements.BudgetSnapshot{}, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	u := q.accounts[p.AccountID]
	if u == nil || p.IsAnonymous() {
		return entitlements.BudgetSnapshot{}, entitlements.ErrInvalidKey
	}
	return entitlements.BudgetSnapshot{Spent: u.spent, Reserved: u.reserved}, nil
}

// held is a reservation of a quota.
type held struct {
	q      *quota
	u      *usage
	p      entitlements.Principal
	amount entitlements.Amount
	done   bool // guarded by q.mu
}

func (r *held) Principal() entitlements.Principal { return r.p }
func (r *held) Amount() entitlements.Amount       { return r.amount }

func (r *held) Settle(ctx context.Context, actual entitlements.Amount) error {
	if actual < 0 {
		return entitlements.ErrInvalidAmount
	}
	return r.finish(ctx, actual)
}

func (r *held) Release(ctx context.Context) error { return r.finish(ctx, 0) }

func (r *held) finish(ctx context.Context, actual entitlements.Amount) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.q.mu.Lock()
	defer r.q.mu.Unlock()
	if r.done {
		return entitlements.ErrReservationSettled
	}
	r.done = true
	r.u.reserved -= r.amount
	r.u.spent = min(r.u.spent, math.MaxInt64-actual) + actual
	return nil
}

// A narrow Provider: a per-minute request quota per key, built on
// entitlements.KeyLimiter, with no budget caps. A gateway given it
// (cortex.WithProvider) asks it for each request's slot, as below, and
// answers a refusal with 429 rate_limit_exceeded and Retry-After. Its
// conformance test, TestQuotaConformance, runs entitlementstest with the
// groups it claims.
func Example_narrowProvider() {
	ctx := context.Background()
	q := newQuota(clocktest.New(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)), map[string]entitlements.Principal{
		"sk-demo": {AccountID: "demo", KeyID: "demo", Limits: entitlements.Limits{RPM: 2}},
	})
	var provider entitlements.Provider = q

	p, err := provider.Resolve(ctx, "sk-demo")
	if err != nil {
		fmt.Println(err)
		return
	}
	limiter := provider.(entitlements.Limiter) // what a gateway checks
	for i := range 3 {
		slot, err := limiter.Acquire(ctx, p)
		var le *entitlements.LimitError
		if errors.As(err, &le) {
			fmt.Printf("request %d: refused by %s, retry after %v\n", i+1, le.Limit, le.RetryAfter)
			continue
		}
		r, err := provider.Reserve(ctx, p, 100)
		if err != nil {
			fmt.Println(err)
			return
		}
		_ = r.Settle(ctx, 42) // the request's usage
		_ = slot.Release(ctx)
		fmt.Printf("request %d: served\n", i+1)
	}
	s, _ := provider.Snapshot(ctx, p)
	_, capped := s.Remaining()
	fmt.Println("spent:", s.Spent, "capped:", capped)
	// Output:
	// request 1: served
	// request 2: served
	// request 3: refused by rpm, retry after 30s
	// spent: 84 capped: false
}

// TestQuotaConformance: the narrow provider of Example_narrowProvider
// passes the core of the suite and the groups it claims; the suite gives
// it only uncapped keys.
func TestQuotaConformance(t *testing.T) {
	t.Parallel()
	entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
		m := make(map[string]entitlements.Principal, len(keys))
		for _, k := range keys {
			if k.Budget.HardCap != nil {
				t.Fatalf("the suite gave an uncapped-only provider the key %q with budget %+v", k.Secret, k.Budget)
			}
			m[k.Secret] = k.Principal
		}
		return newQuota(clock, m)
	}, entitlementstest.Uncapped, entitlementstest.KeyDetails, entitlementstest.Limits)
}
