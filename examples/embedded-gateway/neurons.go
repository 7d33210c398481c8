package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// startFleet starts two neurons, gpu-a and gpu-b, over the simulated
// engine on free loopback ports, each with model loaded, and waits until
// the gateway could route to them. In production the neurons are the
// neuron daemons of cortex.toml's [[neurons]].
func startFleet(ctx context.Context, model string) ([]cortex.NeuronConfig, func(), error) {
	var (
		cfgs  []cortex.NeuronConfig
		stops []func()
	)
	stop := func() {
		for _, s := range stops {
			s()
		}
	}
	for _, name := range []string{"gpu-a", "gpu-b"} {
		harness, err := sim.NewHarness(sim.Config{TokensPerSecond: 200})
		if err != nil {
			stop()
			return nil, nil, err
		}
		disc := neuron.NewStaticDiscoverer(neuron.Discovery{Hostname: name, Devices: []neuron.Device{{Index: 0, Name: "Simulated GPU", TotalMB: 24576}}})
		agent, err := neuron.NewAgent(harness, disc, neuron.WithDefaultModels([]neuron.LoadSpec{{ModelID: model, VRAMMB: 2048}}))
		if err != nil {
			stop()
			return nil, nil, errors.Join(err, harness.Close(context.Background()))
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			return nil, nil, err
		}
		srv := &http.Server{Handler: agent, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		stops = append(stops, func() {
			_ = agent.Shutdown(context.Background())
			_ = srv.Shutdown(context.Background())
		})
		if err := agent.Start(ctx); err != nil {
			stop()
			return nil, nil, err
		}
		url := "http://" + ln.Addr().String()
		if err := waitLoaded(ctx, url, model); err != nil {
			stop()
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		cfgs = append(cfgs, cortex.NeuronConfig{Name: name, Endpoint: url})
	}
	return cfgs, stop, nil
}

// waitLoaded polls the neuron until model is loaded.
func waitLoaded(ctx context.Context, url, model string) error {
	c, err := neuron.NewClient(url)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		models, err := c.Models(ctx)
		for _, m := range models {
			if err == nil && m.ID == model && m.Status == neuron.StatusLoaded {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// demo sends one request through the gateway, once it has polled the
// fleet, and prints which neuron served it.
func demo(ctx context.Context, gw *cortex.Gateway, base string, out io.Writer) {
	for _, n := range gw.Fleet().Neurons() {
		if r, ok := gw.Poller().(route.Refresher); ok {
			_, _ = r.Refresh(ctx, n.Name)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions",
		strings.NewReader(`{"model":"demo","messages":[{"role":"user","content":"Hello!"}],"max_tokens":8}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(out, "request failed:", err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	served := "?"
	for _, n := range gw.Fleet().Neurons() {
		if !gw.Usage().Counter(n.Name, "demo-1b").LastUsed().IsZero() {
			served = n.Name
		}
	}
	fmt.Fprintf(out, "status %d, served by %s: %s\n", resp.StatusCode, served, strings.TrimSpace(string(body)))
}
