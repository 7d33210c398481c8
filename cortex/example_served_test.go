package cortex_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// An embedder learns in process which neuron served each request: the
// gateway hands its Meter one metering.Record per finished request, whose
// Neuron names the neuron and whose RequestID is the request's
// X-Request-Id. metering.Func turns a function into a Meter; like every
// Meter it must not block, so this one hands records to a buffered channel
// and drops what does not fit. metering.Multi adds it beside a FileSink.
func ExampleWithMeter() {
	harness, err := sim.NewHarness(sim.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	disc := neuron.NewStaticDiscoverer(neuron.Discovery{Devices: []neuron.Device{{Index: 0, TotalMB: 24576}}})
	agent, err := neuron.NewAgent(harness, disc)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = agent.Start(context.Background())
	neuronSrv := httptest.NewServer(agent)
	defer func() {
		neuronSrv.Close()
		_ = agent.Shutdown(context.Background())
	}()
	cat, err := catalogue.New([]catalogue.Model{{ID: "demo-1b", VRAMMB: 2048}}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}

	served := make(chan metering.Record, 64)
	meter := metering.Func(func(r metering.Record) {
		if r.Kind != metering.KindRequest {
			return // a settle's follow-up record
		}
		select {
		case served <- r:
		default: // full: never block the request path
		}
	})
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "gpu-01", Endpoint: neuronSrv.URL}}, cat,
		cortex.WithMeter(meter))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = gw.Shutdown(context.Background()) }()
	if _, err := gw.Poller().(route.Refresher).Refresh(context.Background(), "gpu-01"); err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()

	body := `{"model":"demo-1b","messages":[{"role":"user","content":"Hello!"}],"max_tokens":4}`
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		fmt.Println(err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "order-4711")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	r := <-served // the record comes once the answer has ended
	fmt.Println(resp.StatusCode, r.RequestID, "served by", r.Neuron, "with", r.Model)
	// Output:
	// 200 order-4711 served by gpu-01 with demo-1b
}
