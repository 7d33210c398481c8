package redisledger_test

import (
	"context"
	"fmt"
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
func benchLedger(b *testing.B, n int, w entitlements.CapWindow, opts ...redisledger.Option) (*redisledger.Ledger, []entitlements.Principal) {
	b.Helper()
	l := newLedger(b, newClient(b, sharedRedis(b).addr), opts...)
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

// BenchmarkResolve measures a key lookup (one HGETALL), alone and from 16
// goroutines, pipelined (the default) and not.
func BenchmarkResolve(b *testing.B) {
	for _, pipelines := range []int{redisledger.DefaultPipelines, 0} {
		l, _ := benchLedger(b, 1, entitlements.Balance(), redisledger.WithPipelines(pipelines))
		ctx := context.Background()
		b.Run(fmt.Sprintf("alone/pipelines=%d", pipelines), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Resolve(ctx, "sk-acct-0"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("parallel16/pipelines=%d", pipelines), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8) // 16 goroutines on two processors
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Resolve(ctx, "sk-acct-0"); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resolves/s")
		})
	}
}

// BenchmarkReserveSettleParallel16 measures Reserve+Settle pairs from 16
// goroutines of one process against a local redis-server (server clock,
// balance window), each goroutine on its own account or all on one, with
// the default pipelining and with one round trip per call (pipelines=0),
// side by side. It reports pairs/s and the mean latency of a pair as one
// goroutine sees it (us/pair), of which Reserve takes us/reserve.
//
//	go test -run '^$' -bench ReserveSettleParallel16 -benchtime 3s ./entitlements/redisledger/
//
// On a machine where the client and redis-server share few cores, compare
// with -cpu 1 as well: it keeps the client to one core and leaves the
// others to Redis, as on a gateway host of its own.
func BenchmarkReserveSettleParallel16(b *testing.B) {
	const workers = 16
	for _, pipelines := range []int{redisledger.DefaultPipelines, 0} {
		for _, accounts := range []int{workers, 1} {
			name := fmt.Sprintf("pipelines=%d/own-account", pipelines)
			if accounts == 1 {
				name = fmt.Sprintf("pipelines=%d/one-account", pipelines)
			}
			b.Run(name, func(b *testing.B) {
				l, ps := benchLedger(b, accounts, entitlements.Balance(), redisledger.WithPipelines(pipelines))
				parallelPairs(b, l, ps, workers)
			})
		}
	}
}

// BenchmarkReserveSettleAlone measures the latency of a Reserve+Settle pair
// with nothing else in flight, pipelined (the default) and not: batching
// must cost a lone caller nothing measurable.
func BenchmarkReserveSettleAlone(b *testing.B) {
	for _, pipelines := range []int{redisledger.DefaultPipelines, 0} {
		b.Run(fmt.Sprintf("pipelines=%d", pipelines), func(b *testing.B) {
			l, ps := benchLedger(b, 1, entitlements.Balance(), redisledger.WithPipelines(pipelines))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				r, err := l.Reserve(ctx, ps[0], 1)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Settle(ctx, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/pair")
		})
	}
}

// parallelPairs runs b.N Reserve+Settle pairs from workers goroutines, the
// i-th on ps[i%len(ps)], and reports pairs/s, us/pair and us/reserve.
func parallelPairs(b *testing.B, l *redisledger.Ledger, ps []entitlements.Principal, workers int) {
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
				if err := r.Settle(ctx, 0); err != nil {
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
}
