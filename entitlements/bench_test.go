package entitlements_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements"
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

func reserveSettle(b *testing.B, ctx context.Context, l *entitlements.Local, p entitlements.Principal) {
	r, err := l.Reserve(ctx, p, 1)
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Settle(ctx, r, 0); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReserveSettle measures one Reserve+Settle pair per op.
func BenchmarkReserveSettle(b *testing.B) {
	for _, w := range []entitlements.CapWindow{entitlements.Balance(), entitlements.Rolling(60)} {
		b.Run("serial/"+w.Kind.String(), func(b *testing.B) {
			l, ps := benchLedger(b, 1, w)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				reserveSettle(b, ctx, l, ps[0])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
		})
		b.Run("parallel-one-account/"+w.Kind.String(), func(b *testing.B) {
			l, ps := benchLedger(b, 1, w)
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					reserveSettle(b, ctx, l, ps[0])
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
		})
		b.Run("parallel-own-account/"+w.Kind.String(), func(b *testing.B) {
			l, ps := benchLedger(b, 256, w)
			ctx := context.Background()
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				p := ps[int(next.Add(1)-1)%len(ps)]
				for pb.Next() {
					reserveSettle(b, ctx, l, p)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
		})
	}
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
