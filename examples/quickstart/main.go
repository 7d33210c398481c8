// Command quickstart runs a neuron and a cortex gateway in one program: a
// neuron over the simulated engine (swap in package neuron/engine and a
// real llama-server to serve a real model), and a gateway over it with a
// catalogue of one model. It prints a curl command to try.
//
//	go run ./examples/quickstart [--listen 127.0.0.1:31313]
//
// --listen sets the address the gateway listens on (default
// cortex.DefaultListen, 127.0.0.1:31313; port 0 picks a free one).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

func main() {
	listen, err := parseFlags(os.Args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		return
	case err != nil:
		os.Exit(2) // the flag package has printed the error and the usage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, listen, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// parseFlags parses the command line; --listen is the gateway's address.
func parseFlags(args []string) (listen string, err error) {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.StringVar(&listen, "listen", cortex.DefaultListen, "the `address` the gateway listens on")
	err = fs.Parse(args)
	return listen, err
}

// run serves the gateway on listen until ctx ends.
func run(ctx context.Context, listen string, out io.Writer) (err error) {
	// The neuron: one host, one simulated 24 GiB GPU. A model takes half
	// a second to load and streams 50 tokens a second.
	harness, err := sim.NewHarness(sim.Config{LoadTime: 500 * time.Millisecond, TokensPerSecond: 50})
	if err != nil {
		return err
	}
	disc := neuron.NewStaticDiscoverer(neuron.Discovery{Hostname: "gpu-01", Devices: []neuron.Device{{Index: 0, Name: "Simulated GPU", TotalMB: 24576}}})
	agent, err := neuron.NewAgent(harness, disc)
	if err != nil {
		return errors.Join(err, harness.Close(context.Background()))
	}
	var stops []func(context.Context) error // run in reverse order at the end
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := len(stops) - 1; i >= 0; i-- {
			err = errors.Join(err, stops[i](sctx))
		}
	}()
	stops = append(stops, agent.Shutdown)
	if err := agent.Start(ctx); err != nil {
		return err
	}
	neuronURL, stopNeuron, err := serve(agent, "127.0.0.1:0")
	if err != nil {
		return err
	}
	stops = append(stops, stopNeuron)

	// The gateway: the catalogue says what can be loaded and how big it is.
	cat, err := catalogue.New([]catalogue.Model{{ID: "demo-1b", VRAMMB: 2048, Limit: catalogue.Limit{Context: 8192}}},
		map[string]string{"demo": "demo-1b"})
	if err != nil {
		return err
	}
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "gpu-01", Endpoint: neuronURL}}, cat)
	if err != nil {
		return err
	}
	stops = append(stops, gw.Shutdown)
	// Poll once before serving, then keep polling until ctx ends.
	if _, err := gw.Poller().(route.Refresher).Refresh(ctx, "gpu-01"); err != nil {
		return err
	}
	var polling sync.WaitGroup
	polling.Go(func() { _ = gw.Run(ctx) })
	stops = append(stops, func(context.Context) error { polling.Wait(); return nil })
	base, stopGateway, err := serve(gw, listen)
	if err != nil {
		return err
	}
	stops = append(stops, stopGateway)

	fmt.Fprintf(out, "gateway %s, status page %s/status\n\n", base, base)
	fmt.Fprintf(out, "curl -sS %s/v1/chat/completions -H 'Content-Type: application/json' -d '%s'\n",
		base, `{"model":"demo","messages":[{"role":"user","content":"Hello!"}]}`)
	<-ctx.Done()
	return nil
}

// serve serves h on addr and returns its base URL and its graceful stop.
func serve(h http.Handler, addr string) (string, func(context.Context) error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), srv.Shutdown, nil
}
