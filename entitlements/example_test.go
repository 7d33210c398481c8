package entitlements_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// The gateway's side of the protocol: resolve the key, reserve the worst
// case before routing, settle what the request really cost.
func ExampleLocal() {
	cfg, err := entitlements.ParseConfig([]byte(`
[[keys]]
key = "sk-alice"
account_id = "acme"
hard_cap = 1000
`))
	if err != nil {
		panic(err)
	}
	ledger, err := entitlements.NewLocal(cfg)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	p, err := ledger.Resolve(ctx, "sk-alice")
	if err != nil {
		panic(err)
	}
	fmt.Println("principal:", p.AccountID, p.KeyID, p.Unit)

	r, err := ledger.Reserve(ctx, p, 600) // prompt estimate + max_tokens
	if err != nil {
		panic(err)
	}
	s, _ := ledger.Snapshot(ctx, p)
	fmt.Println("while serving: spent", s.Spent, "reserved", s.Reserved)

	// A second request does not fit next to the first one.
	_, err = ledger.Reserve(ctx, p, 500)
	var be *entitlements.BudgetError
	if errors.As(err, &be) {
		fmt.Println("refused:", be.Kind, "available", be.Available)
	}

	if err := r.Settle(ctx, 420); err != nil { // real usage
		panic(err)
	}
	s, _ = ledger.Snapshot(ctx, p)
	remaining, _ := s.Remaining()
	fmt.Println("after settle: spent", s.Spent, "reserved", s.Reserved, "remaining", remaining)

	fmt.Println("settle again:", r.Settle(ctx, 420))
	// Output:
	// principal: acme acme tokens
	// while serving: spent 0 reserved 600
	// refused: insufficient_quota available 400
	// after settle: spent 420 reserved 0 remaining 580
	// settle again: entitlements: reservation already settled or released
}

// A rolling window refuses with RateLimited and says when to retry; the
// spend is forgotten when the next window begins.
func ExampleWithClock() {
	clk := clocktest.New(time.Date(2026, 1, 1, 12, 0, 45, 0, time.UTC))
	ledger, err := entitlements.NewLocal(entitlements.Config{}, entitlements.WithClock(clk))
	if err != nil {
		panic(err)
	}
	p := entitlements.Principal{AccountID: "acme", KeyID: "acme"}
	err = ledger.AddKey(entitlements.Key{
		Digest:    entitlements.KeyDigest("sk-alice"),
		Principal: p,
		Budget:    entitlements.Budget{HardCap: entitlements.Cap(100), Window: entitlements.Rolling(60)},
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	r, _ := ledger.Reserve(ctx, p, 100)
	_ = r.Settle(ctx, 100)
	_, err = ledger.Reserve(ctx, p, 10)
	var be *entitlements.BudgetError
	if errors.As(err, &be) {
		fmt.Println(be.Kind, "retry after", be.RetryAfter)
	}

	clk.Advance(be.RetryAfter)
	s, _ := ledger.Snapshot(ctx, p)
	fmt.Println("next window: spent", s.Spent, "resets at", s.ResetsAt.Format(time.TimeOnly))
	// Output:
	// rate_limited retry after 15s
	// next window: spent 0 resets at 12:02:00
}

// ParseConfig reports a typo with its line.
func ExampleParseConfig() {
	_, err := entitlements.ParseConfig([]byte(`
[[keys]]
key = "sk-alice"
acount_id = "acme"
`))
	fmt.Println(err)
	// Output:
	// line 4: unknown key "keys.acount_id"
}
