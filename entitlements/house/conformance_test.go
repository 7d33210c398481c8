package house_test

import (
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
	"github.com/helexa-ai/helexa-go/entitlements/house"
	"github.com/helexa-ai/helexa-go/internal/redistest"
)

// TestConformanceLocal: a Client, through a Handler over Local, is a
// Provider with Local's whole budget model, and leases that the house
// keeps itself.
func TestConformanceLocal(t *testing.T) {
	t.Parallel()
	entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
		_, url := serve(t, newLocal(t, clock, keys), house.WithClock(clock))
		return client(t, url, gwToken, house.WithClientClock(clock))
	}, entitlementstest.Budgets, entitlementstest.Leases)
}

// TestConformanceRedis: through a Handler over entitlements/redisledger,
// the Client passes what the Ledger passes but the per-key limits, which
// a gateway counts itself; reservation ids carry the Ledger's tokens.
func TestConformanceRedis(t *testing.T) {
	t.Parallel()
	url := redistest.URL(t)
	entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
		l := newLedger(t, url, clock, keys)
		_, hurl := serve(t, l, house.WithClock(clock))
		return client(t, hurl, gwToken, house.WithClientClock(clock))
	}, entitlementstest.Budgets, entitlementstest.Leases)
}
