package entitlements_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkLocalJournal measures Reserve+Settle pairs that settle 1 (so
// every pair writes a spend record), in memory and with a ledger file
// (OpenLocal, the default sync interval), serially and from parallel
// goroutines each on an account of its own; the file runs report their
// rate over the memory run's just before (file/memory).
// The file runs also report how long a settle waits until its record is in
// the file (the window a crash can lose): the mean and the worst of 200
// settles, each timed until the file has grown past it.
func BenchmarkLocalJournal(b *testing.B) {
	for _, mode := range []string{"serial", "parallel"} {
		var rate [2]float64
		for i, store := range []string{"memory", "file"} {
			b.Run(mode+"/"+store, func(b *testing.B) {
				l, ps := journalLedger(b, store == "file", 64)
				ctx := context.Background()
				b.ReportAllocs()
				if mode == "serial" {
					for b.Loop() {
						settleOne(b, ctx, l, ps[0])
					}
				} else {
					var next atomic.Int64
					b.RunParallel(func(pb *testing.PB) {
						p := ps[int(next.Add(1)-1)%len(ps)]
						for pb.Next() {
							settleOne(b, ctx, l, p)
						}
					})
				}
				rate[i] = float64(b.N) / b.Elapsed().Seconds()
				b.ReportMetric(rate[i], "settles/s")
				if store == "file" {
					mean, worst := toDisk(b, l, ps[0])
					b.ReportMetric(float64(mean.Microseconds())/1000, "ms-to-disk-mean")
					b.ReportMetric(float64(worst.Microseconds())/1000, "ms-to-disk-max")
					if rate[0] > 0 {
						b.ReportMetric(rate[1]/rate[0], "file/memory")
					}
				}
			})
		}
	}
}

func journalLedger(b *testing.B, file bool, n int) (*entitlements.Local, []entitlements.Principal) {
	b.Helper()
	var l *entitlements.Local
	var err error
	if file {
		l, err = entitlements.OpenLocal(entitlements.Config{Local: &entitlements.LocalConfig{Path: filepath.Join(b.TempDir(), "ledger")}})
	} else {
		l, err = entitlements.NewLocal(entitlements.Config{})
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close() })
	ps := make([]entitlements.Principal, n)
	for i := range ps {
		id := "acct-" + strconv.Itoa(i)
		ps[i] = entitlements.Principal{AccountID: id, KeyID: id}
		err := l.AddKey(entitlements.Key{Digest: entitlements.KeyDigest("sk-" + id), Principal: ps[i],
			Budget: entitlements.Budget{HardCap: entitlements.Cap(1 << 60)}})
		if err != nil {
			b.Fatal(err)
		}
	}
	return l, ps
}

func settleOne(b *testing.B, ctx context.Context, l *entitlements.Local, p entitlements.Principal) {
	r, err := l.Reserve(ctx, p, 1)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Settle(ctx, 1); err != nil {
		b.Fatal(err)
	}
}

// toDisk times 200 settles, one at a time, each until the ledger file's
// size has changed (its record written, or the file compacted), and
// returns the mean and the worst.
func toDisk(b *testing.B, l *entitlements.Local, p entitlements.Principal) (mean, worst time.Duration) {
	b.StopTimer()
	defer b.StartTimer()
	ctx := context.Background()
	path := entitlements.LedgerPath(l)
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		return fi.Size()
	}
	const n = 200
	var total time.Duration
	for range n {
		if err := l.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		before := size()
		start := time.Now()
		settleOne(b, ctx, l, p)
		for size() == before {
			if time.Since(start) > 10*time.Second {
				b.Fatal("the spend record was not written within 10s")
			}
			runtime.Gosched()
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
	}
	return total / n, worst
}
