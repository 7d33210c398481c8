package cortex_test

import (
	"context"
	"encoding/json"
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

// A gateway over one neuron running the simulated engine: the first
// request for the model loads it, under its alias.
func ExampleNewGateway() {
	// The neuron: an Agent over the simulated engine, with one 24 GiB GPU.
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

	// The gateway, with a catalogue of one model and an alias.
	cat, err := catalogue.New([]catalogue.Model{{ID: "demo-1b", VRAMMB: 2048}}, map[string]string{"demo": "demo-1b"})
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
	// A server would call gw.Run(ctx) in a goroutine; the example polls once.
	if _, err := gw.Poller().(route.Refresher).Refresh(context.Background(), "gpu-01"); err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()

	body := `{"model":"demo","messages":[{"role":"user","content":"Hello!"}],"max_tokens":4}`
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var answer struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.StatusCode, answer.Model, answer.Choices[0].Message.Content)
	fmt.Println(gw.Fleet().Neuron("gpu-01").Model("demo-1b").Status)
	// Output:
	// 200 demo-1b tower was spring token
	// loaded
}
