package neuron_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// An Agent over the simulated engine, served by an HTTP server and driven
// through its Client: load a model, list it, unload it.
func ExampleNewAgent() {
	harness, err := sim.NewHarness(sim.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	disc := neuron.NewStaticDiscoverer(neuron.Discovery{Hostname: "gpu-01", Devices: []neuron.Device{{Index: 0, Name: "GPU", TotalMB: 24576}}})
	agent, err := neuron.NewAgent(harness, disc, neuron.WithToken("secret"))
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = agent.Start(context.Background())
	srv := httptest.NewServer(agent)
	defer func() {
		srv.Close()
		_ = agent.Shutdown(context.Background())
	}()

	ctx := context.Background()
	client, err := neuron.NewClient(srv.URL, neuron.WithToken("secret"))
	if err != nil {
		fmt.Println(err)
		return
	}
	info, err := client.Load(ctx, neuron.LoadSpec{ModelID: "demo-1b", VRAMMB: 2048})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("loaded:", info.ID, info.Status, info.VRAMUsedMB, "MiB")
	models, _ := client.Models(ctx)
	for _, m := range models {
		fmt.Println("listed:", m.ID, m.Status)
	}
	fmt.Println("unload:", client.Unload(ctx, "demo-1b", false))
	anonymous, err := neuron.NewClient(srv.URL) // no token
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = anonymous.Models(ctx)
	fmt.Println("without the token:", errors.Is(err, neuron.ErrUnauthorized))
	// Output:
	// loaded: demo-1b loaded 2048 MiB
	// listed: demo-1b loaded
	// unload: <nil>
	// without the token: true
}
