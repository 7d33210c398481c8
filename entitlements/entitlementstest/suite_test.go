package entitlementstest_test

import (
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
)

// TestNarrowProvider: a provider that caps keys only over rolling windows
// claims Windows and passes the core and that group; the suite never hands
// it a balance or an uncapped key.
func TestNarrowProvider(t *testing.T) {
	entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
		cfg := entitlements.Config{}
		for _, k := range keys {
			if k.Budget.HardCap == nil || k.Budget.Window.Kind != entitlements.WindowRolling {
				t.Fatalf("the suite gave a rolling-only provider the key %q with budget %+v", k.Secret, k.Budget)
			}
			cfg.Keys = append(cfg.Keys, entitlements.KeyConfig{
				Key: k.Secret, AccountID: k.Principal.AccountID, KeyID: k.Principal.KeyID,
				HardCap: (*int64)(k.Budget.HardCap), Window: entitlements.WindowConfig{Kind: "rolling", Seconds: k.Budget.Window.Seconds},
			})
		}
		l, err := entitlements.NewLocal(cfg, entitlements.WithClock(clock))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}, entitlementstest.Windows)
}
