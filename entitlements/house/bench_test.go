package house_test

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
	"github.com/helexa-ai/helexa-go/entitlements/house"
)

// benchHouse is a house over Local on loopback, with an uncapped account.
func benchHouse(b *testing.B) string {
	l := newLocal(b, clock.System{}, []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme}})
	_, url := serve(b, l)
	return url
}

// benchPairs runs reserve+settle pairs of c, parallelism goroutines per
// CPU, and reports pairs/s and round trips to the house per pair.
func benchPairs(b *testing.B, c *house.Client, doer *countingDoer, parallelism int) {
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	start := doer.n.Load()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := b.Context()
		for pb.Next() {
			r, err := c.Reserve(ctx, acme, 10)
			if err != nil {
				b.Error(err)
				return
			}
			if err := r.Settle(ctx, 7); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
	b.ReportMetric(float64(doer.n.Load()-start)/float64(b.N), "roundtrips/pair")
}

func transport() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
}

// BenchmarkDirectPairs: reserve+settle pairs from one gateway over
// loopback, each a round trip to the house (2 per pair).
func BenchmarkDirectPairs(b *testing.B) {
	doer := &countingDoer{d: transport()}
	c := client(b, benchHouse(b), gwToken, house.WithDoer(doer))
	benchPairs(b, c, doer, 8)
}

// BenchmarkDirectPairs32: the same with 32 goroutines per CPU, as a busy
// gateway has many requests in flight, each with its reserve or settle.
func BenchmarkDirectPairs32(b *testing.B) {
	doer := &countingDoer{d: transport()}
	c := client(b, benchHouse(b), gwToken, house.WithDoer(doer))
	benchPairs(b, c, doer, 32)
}

// BenchmarkGrantPairs: the same pairs inside credit grants: decided
// locally, the spend reported every 10 ms.
func BenchmarkGrantPairs(b *testing.B) { benchGrantPairs(b, "") }

// BenchmarkGrantPairsJournal: the same with a journal: each settle waits
// for an fsync, which concurrent settles share.
func BenchmarkGrantPairsJournal(b *testing.B) {
	benchGrantPairs(b, filepath.Join(b.TempDir(), "grants.journal"))
}

func benchGrantPairs(b *testing.B, journal string) {
	doer := &countingDoer{d: transport()}
	c := client(b, benchHouse(b), gwToken, house.WithDoer(doer),
		house.WithGrants(house.GrantConfig{FlushInterval: 10 * time.Millisecond, MinCredit: 1, Journal: journal}))
	// Warm up: make the account busy and take a first grant.
	for range 8 {
		r, err := c.Reserve(b.Context(), acme, 1000)
		if err != nil {
			b.Fatal(err)
		}
		_ = r.Settle(b.Context(), 1000)
	}
	if err := c.Flush(b.Context(), false); err != nil {
		b.Fatal(err)
	}
	benchPairs(b, c, doer, 8)
}

// BenchmarkLocalPairs is the baseline: the same pairs on Local in
// process.
func BenchmarkLocalPairs(b *testing.B) {
	l := newLocal(b, clock.System{}, []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme}})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, _ := l.Reserve(b.Context(), acme, 10)
			_ = r.Settle(b.Context(), 7)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}

var _ entitlements.Provider = (*house.Client)(nil)
