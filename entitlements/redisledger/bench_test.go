package redisledger_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
)

// benchLedger returns a Ledger on the shared server (server clock, the
// default) with n accounts whose caps Reserve+Settle pairs of 1 settled at 0
// never reach.
func benchLedger(b *testing.B, n int, w entitlements.CapWindow) (*redisledger.Ledger, []entitlements.Principal) {
	b.Helper()
	l := newLedger(b, newClient(b, sharedRedis(b).addr))
	ps := make([]entitlements.Principal, n)
	for i := range ps {
		id := "acct-" + strconv.Itoa(i)
		ps[i] = addKey(b, l, "sk-"+id, entitlements.Principal{AccountID: id}, entitlements.Budget{HardCap: entitlements.Cap(1 << 40), Window: w})
	}
	return l, ps
}

// BenchmarkReserveSettle measures one Reserve+Settle pair (two script
// round trips) per op against a local redis-server.
func BenchmarkReserveSettle(b *testing.B) {
	entitlementstest.BenchmarkReserveSettle(b, func(b *testing.B, n int, w entitlements.CapWindow) (entitlements.Provider, []entitlements.Principal) {
		return benchLedger(b, n, w)
	}, 64)
}

// BenchmarkResolve measures a key lookup (one HGETALL).
func BenchmarkResolve(b *testing.B) {
	l, _ := benchLedger(b, 1, entitlements.Balance())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Resolve(ctx, "sk-acct-0"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReserveSettleParallel16 measures Reserve+Settle pairs from 16
// goroutines of one process against a local redis-server (server clock,
// balance window), each goroutine on its own account or all on one. It
// reports pairs/s and the mean latency of a pair as one goroutine sees it
// (us/pair), of which Reserve takes us/reserve.
//
//	go test -run '^$' -bench ReserveSettleParallel16 -benchtime 3s ./entitlements/redisledger/
func BenchmarkReserveSettleParallel16(b *testing.B) {
	const workers = 16
	for _, accounts := range []int{workers, 1} {
		name := "own-account"
		if accounts == 1 {
			name = "one-account"
		}
		b.Run(name, func(b *testing.B) {
			l, ps := benchLedger(b, accounts, entitlements.Balance())
			ctx := context.Background()
			var next atomic.Int64
			var pairNS, reserveNS atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range workers {
				p := ps[w%len(ps)]
				wg.Go(func() {
					var pairs, res time.Duration
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						r, err := l.Reserve(ctx, p, 1)
						if err != nil {
							b.Error(err)
							return
						}
						t1 := time.Now()
						if err := l.Settle(ctx, r, 0); err != nil {
							b.Error(err)
							return
						}
						pairs += time.Since(t0)
						res += t1.Sub(t0)
					}
					pairNS.Add(int64(pairs))
					reserveNS.Add(int64(res))
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
			b.ReportMetric(float64(pairNS.Load())/float64(b.N)/1e3, "us/pair")
			b.ReportMetric(float64(reserveNS.Load())/float64(b.N)/1e3, "us/reserve")
		})
	}
}
