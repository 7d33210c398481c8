package cortex_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// The status of a fleet of one neuron after a cold load: what GET
// /status.json and the status page show.
func ExampleGateway_Status() {
	harness, err := sim.NewHarness(sim.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	disc := neuron.NewStaticDiscoverer(neuron.Discovery{Hostname: "host-1", Devices: []neuron.Device{{Index: 0, Name: "GPU", TotalMB: 24576}}})
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

	cat, err := catalogue.New([]catalogue.Model{
		{ID: "small", VRAMMB: 2048},
		{ID: "huge", VRAMMB: 81920},
	}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "gpu-01", Endpoint: neuronSrv.URL}}, cat)
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
	resp, err := http.Post(srv.URL+"/v1/completions", "application/json", strings.NewReader(`{"model":"small","prompt":"hi","max_tokens":1}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()

	st := gw.Status(context.Background(), false)
	fmt.Println("health:", st.Health.Status)
	for _, n := range st.Neurons {
		fmt.Printf("neuron %s (%s): %s, %d GPU, %d MiB\n", n.Name, n.Hostname, n.State, len(n.GPUs), n.TotalVRAMMB)
		for _, m := range n.Models {
			fmt.Printf("  %s %s %d MiB\n", m.ID, m.Status, m.VRAMMB)
		}
	}
	for _, m := range st.Models {
		fmt.Printf("model %s: %s, feasible on %v\n", m.ID, m.State, m.FeasibleOn)
	}
	for _, e := range st.Events {
		fmt.Println("event:", e.Kind, e.Model, "on", e.Neuron)
	}
	// Output:
	// health: ok
	// neuron gpu-01 (host-1): ok, 1 GPU, 24576 MiB
	//   small loaded 2048 MiB
	// model huge: not_deployable, feasible on []
	// model small: loaded, feasible on [gpu-01]
	// event: load small on gpu-01
}
