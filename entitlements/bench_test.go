package entitlements_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
)

// benchLedger returns a Local with n capped accounts whose caps are never
// reached by Reserve+Settle pairs of amount 1 settled at 0.
func benchLedger(b *testing.B, n int, w entitlements.CapWindow) (*entitlements.Local, []entitlements.Principal) {
	b.Helper()
	l, err := entitlements.NewLocal(entitlements.Config{})
	if err != nil {
		b.Fatal(err)
	}
	ps := make([]entitlements.Principal, n)
	for i := range ps {
		id := "acct-" + strconv.Itoa(i)
		ps[i] = entitlements.Principal{AccountID: id, KeyID: id}
		err := l.AddKey(entitlements.Key{
			Digest:    entitlements.KeyDigest("sk-" + id),
			Principal: ps[i],
			Budget:    entitlements.Budget{HardCap: entitlements.Cap(1 << 40), Window: w},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return l, ps
}

// BenchmarkReserveSettle measures one Reserve+Settle pair per op.
func BenchmarkReserveSettle(b *testing.B) {
	entitlementstest.BenchmarkReserveSettle(b, func(b *testing.B, n int, w entitlements.CapWindow) (entitlements.Provider, []entitlements.Principal) {
		return benchLedger(b, n, w)
	}, 256)
}

// BenchmarkResolve measures a key lookup (SHA-256 of the key + map lookup).
func BenchmarkResolve(b *testing.B) {
	l, _ := benchLedger(b, 1000, entitlements.Balance())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Resolve(ctx, "sk-acct-500"); err != nil {
			b.Fatal(err)
		}
	}
}
