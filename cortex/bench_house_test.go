package cortex_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/house"
	"github.com/helexa-ai/helexa-go/neuron"
)

// BenchmarkHouseGateway compares a gateway whose budgets are on the
// Local provider in process with one whose budgets are at a clearing
// house on loopback, spent through credit grants (house.WithGrants), in
// front of the same simulated neuron. "house" reports its time per
// request as a ratio to the "local" run just before it (x-local): the
// grants' promise is that it stays within 1.05. serial is one request at
// a time (latency), parallel as many as RunParallel sends (throughput).
func BenchmarkHouseGateway(b *testing.B) {
	fleet := cortextest.NewFleet(b, cortextest.Spec{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}})
	keys := entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-bench", AccountID: "bench", HardCap: ptr(int64(1 << 60)), MaxInFlight: 1 << 20, RPM: 1 << 30},
	}}
	newLocal := func() *entitlements.Local {
		l, err := entitlements.NewLocal(keys)
		if err != nil {
			b.Fatal(err)
		}
		return l
	}

	// The house: its own Local, on loopback.
	const token = "gw-bench-token"
	h, err := house.NewHandler(newLocal(), house.WithGateway(house.Gateway{Name: "bench", TokenSHA256: entitlements.KeyDigest(token)}))
	if err != nil {
		b.Fatal(err)
	}
	hsrv := httptest.NewServer(h)
	b.Cleanup(hsrv.Close)
	hc, err := house.NewClient(hsrv.URL, token, house.WithGrants(house.GrantConfig{}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = hc.Close(context.Background()) })

	gateway := func(p entitlements.Provider) string {
		gw, err := cortex.NewGateway(fleet.Configs(), testCatalogue(b), cortex.WithProvider(p), cortex.WithMeter(metering.Discard{}))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
		if _, err := gw.Poller().(route.Refresher).Refresh(b.Context(), "n1"); err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(gw)
		b.Cleanup(srv.Close)
		return srv.URL
	}
	local, remote := gateway(newLocal()), gateway(hc)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	b.Cleanup(client.CloseIdleConnections)
	body := chatBody("chat-a", `"max_tokens":16`)
	send := func(b *testing.B, base string) bool {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer sk-bench")
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Errorf("status %d", resp.StatusCode)
			return false
		}
		return true
	}
	// Warm the house's gateway: resolve cached, the account busy, a
	// first grant taken.
	for range 64 {
		if !send(b, remote) {
			return
		}
	}
	if err := hc.Flush(b.Context(), false); err != nil {
		b.Fatal(err)
	}

	// Each iteration sends one request to each gateway, in turns (which
	// goes first alternates), and times each: both see the same machine
	// at the same moments, so that the ratio holds under noise.
	measure := func(b *testing.B, parallel bool) {
		b.ReportAllocs()
		var localNS, houseNS atomic.Int64
		pair := func(i int) bool {
			bases := [2]string{local, remote}
			for j := range 2 {
				k := (i + j) % 2
				t0 := time.Now()
				if !send(b, bases[k]) {
					return false
				}
				d := time.Since(t0).Nanoseconds()
				if k == 0 {
					localNS.Add(d)
				} else {
					houseNS.Add(d)
				}
			}
			return true
		}
		if parallel {
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					if !pair(i) {
						return
					}
				}
			})
		} else {
			for i := 0; b.Loop(); i++ {
				if !pair(i) {
					return
				}
			}
		}
		l, h := float64(localNS.Load())/float64(b.N), float64(houseNS.Load())/float64(b.N)
		b.ReportMetric(l, "local-ns/req")
		b.ReportMetric(h, "house-ns/req")
		b.ReportMetric(h/l, "house/local")
	}
	b.Run("serial", func(b *testing.B) { measure(b, false) })
	b.Run("parallel", func(b *testing.B) { measure(b, true) })
}
