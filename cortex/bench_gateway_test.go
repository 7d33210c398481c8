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
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// BenchmarkGateway measures a request through the gateway to a neuron
// running the simulated engine at full speed, both in process over
// loopback HTTP: the gateway's cost is the difference with "direct", the
// same request sent straight to the neuron.
func BenchmarkGateway(b *testing.B) {
	fleet := cortextest.NewFleet(b, cortextest.Spec{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}})
	gw, err := cortex.NewGateway(fleet.Configs(), testCatalogue(b))
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
	for _, bc := range []struct {
		name, base, body string
	}{
		{"direct/chat", fleet.Neuron("n1").URL(), chatBody("chat-a", `"max_tokens":16`)},
		{"gateway/chat", srv.URL, chatBody("fast", `"max_tokens":16`)},
		{"direct/stream", fleet.Neuron("n1").URL(), chatBody("chat-a", `"max_tokens":16`, `"stream":true`, `"stream_options":{"include_usage":true}`)},
		{"gateway/stream", srv.URL, chatBody("fast", `"max_tokens":16`, `"stream":true`)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Post(bc.base+"/v1/chat/completions", "application/json", strings.NewReader(bc.body))
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
