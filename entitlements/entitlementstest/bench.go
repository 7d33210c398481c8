package entitlementstest

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// BenchFactory returns a provider holding n accounts with window w, each
// capped far above what a benchmark spends, and their principals.
type BenchFactory func(b *testing.B, n int, w entitlements.CapWindow) (entitlements.Provider, []entitlements.Principal)

// BenchmarkReserveSettle measures Reserve+Settle pairs (amount 1, settled
// at 0) against any Provider, for a balance and a 60-second rolling window:
// serial, in parallel on one account, and in parallel with an account per
// goroutine (out of ownAccounts). Each sub-benchmark reports pairs/s.
func BenchmarkReserveSettle(b *testing.B, newProvider BenchFactory, ownAccounts int) {
	for _, w := range []entitlements.CapWindow{entitlements.Balance(), entitlements.Rolling(60)} {
		b.Run("serial/"+w.Kind.String(), func(b *testing.B) {
			p, ps := newProvider(b, 1, w)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				reserveSettle(b, ctx, p, ps[0])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
		})
		b.Run("parallel-one-account/"+w.Kind.String(), func(b *testing.B) {
			p, ps := newProvider(b, 1, w)
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					reserveSettle(b, ctx, p, ps[0])
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
		})
		b.Run("parallel-own-account/"+w.Kind.String(), func(b *testing.B) {
			p, ps := newProvider(b, ownAccounts, w)
			ctx := context.Background()
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				pr := ps[int(next.Add(1)-1)%len(ps)]
				for pb.Next() {
					reserveSettle(b, ctx, p, pr)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
		})
	}
}

func reserveSettle(b *testing.B, ctx context.Context, p entitlements.Provider, pr entitlements.Principal) {
	r, err := p.Reserve(ctx, pr, 1)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Settle(ctx, 0); err != nil {
		b.Fatal(err)
	}
}
