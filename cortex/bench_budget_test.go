package cortex_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// BenchmarkEntitlements measures what a key costs on the request path:
// one gateway (Local provider, a Meter) serves the same request
// anonymously and with a capped key that has limits (resolve, limits,
// reserve, snapshot for the headers, settle, meter record).
func BenchmarkEntitlements(b *testing.B) {
	fleet := cortextest.NewFleet(b, cortextest.Spec{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}})
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-bench", AccountID: "bench", HardCap: ptr(int64(1 << 60)), MaxInFlight: 1 << 20, RPM: 1 << 30},
	}})
	if err != nil {
		b.Fatal(err)
	}
	gw, err := cortex.NewGateway(fleet.Configs(), testCatalogue(b), cortex.WithProvider(local), cortex.WithMeter(metering.Discard{}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	if _, err := gw.Poller().(route.Refresher).Refresh(b.Context(), "n1"); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	b.Cleanup(client.CloseIdleConnections)
	body := chatBody("chat-a", `"max_tokens":16`)
	for _, bc := range []struct{ name, key string }{{"anonymous", ""}, {"key", "sk-bench"}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					if bc.key != "" {
						req.Header.Set("Authorization", "Bearer "+bc.key)
					}
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
