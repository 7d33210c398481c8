package redisledger_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
)

// ExampleOpen shows a gateway's use of the ledger: open it from the
// [entitlements.redis] table, seed the configured keys, then reserve before a
// request, renew while it streams and settle after. (It needs a Redis
// server, so it is compiled but not run.)
func ExampleOpen() {
	ctx := context.Background()
	cfg := entitlements.Config{
		Keys:  []entitlements.KeyConfig{{Key: "sk-demo", AccountID: "demo", HardCap: new(int64(100_000))}},
		Redis: &entitlements.RedisConfig{URL: "redis://127.0.0.1:6379/0?dial_timeout=1s&read_timeout=1s", KeyPrefix: "helexa:"},
	}
	keys, err := cfg.APIKeys()
	if err != nil {
		log.Fatal(err)
	}
	ledger, err := redisledger.Open(*cfg.Redis)
	if err != nil {
		log.Fatal(err)
	}
	defer ledger.Close()
	if _, err := ledger.Seed(ctx, keys); err != nil {
		log.Fatal(err)
	}

	var provider entitlements.Provider = ledger
	p, err := provider.Resolve(ctx, "sk-demo")
	if err != nil {
		log.Fatal(err)
	}
	r, err := provider.Reserve(ctx, p, 4096)
	var ue *entitlements.UnavailableError
	if errors.As(err, &ue) {
		fmt.Println("503, retry after", ue.RetryAfter)
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	// A long stream renews its lease now and then.
	if rn, ok := r.(entitlements.Renewer); ok {
		_ = rn.Renew(ctx, 2*time.Minute)
	}
	if err := r.Settle(ctx, 1234); err != nil {
		log.Fatal(err)
	}
}

// ExampleLedger_CreateKey shows the key management API behind
// `cortex keys add`: the secret is returned once and only its digest is
// stored.
func ExampleLedger_CreateKey() {
	ctx := context.Background()
	ledger, err := redisledger.Open(entitlements.RedisConfig{URL: "redis://127.0.0.1:6379/0"})
	if err != nil {
		log.Fatal(err)
	}
	defer ledger.Close()
	secret, info, err := ledger.CreateKey(ctx, redisledger.NewKey{
		Principal: entitlements.Principal{AccountID: "acme", KeyID: "acme-prod"},
		Budget:    &entitlements.Budget{HardCap: entitlements.Cap(5_000_000), Window: entitlements.Rolling(86400)},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("key (shown once):", secret)
	fmt.Println("sha256:", info.DigestHex())
}
