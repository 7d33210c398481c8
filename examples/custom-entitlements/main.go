// Command custom-entitlements is a gateway whose API keys and budgets live
// in the embedder's own store: a Provider (store.go) adapts the store to
// helexa's entitlements.Provider, and passes the conformance suite
// (entitlementstest) in its test. The fleet is one in-process neuron over
// the simulated engine.
//
//	go run ./examples/custom-entitlements [--listen 127.0.0.1:31313]
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
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
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
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// parseFlags parses the command line; --listen is the gateway's address.
func parseFlags(args []string) (listen string, err error) {
	fs := flag.NewFlagSet("custom-entitlements", flag.ContinueOnError)
	fs.StringVar(&listen, "listen", cortex.DefaultListen, "the `address` the gateway listens on")
	err = fs.Parse(args)
	return listen, err
}

// run serves a gateway over the store's keys on listen until ctx ends,
// after one request with a customer's key.
func run(ctx context.Context, listen string, out io.Writer) error {
	store := NewStore(time.Now)
	customer := entitlements.Principal{AccountID: "acme", KeyID: "acme-web"}
	store.AddKey("sk-acme", customer, entitlements.Budget{HardCap: entitlements.Cap(10_000)})
	provider := &Provider{store: store}

	neuronURL, stopNeuron, err := startNeuron()
	if err != nil {
		return err
	}
	defer stopNeuron()
	cat, err := catalogue.New([]catalogue.Model{{ID: "demo-1b", VRAMMB: 2048}}, nil)
	if err != nil {
		return err
	}
	gw, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "gpu-01", Endpoint: neuronURL}}, cat,
		cortex.WithProvider(provider), cortex.WithRequireAuth(true))
	if err != nil {
		return err
	}
	if _, err := gw.Poller().(route.Refresher).Refresh(ctx, "gpu-01"); err != nil {
		return err
	}
	go func() { _ = gw.Run(ctx) }()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		_ = gw.Shutdown(context.Background())
		_ = srv.Shutdown(context.Background())
	}()

	base := "http://" + ln.Addr().String()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions",
		strings.NewReader(`{"model":"demo-1b","messages":[{"role":"user","content":"Hello!"}],"max_tokens":8}`))
	req.Header.Set("Authorization", "Bearer sk-acme")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	snap, err := provider.Snapshot(ctx, customer)
	if err != nil {
		return err
	}
	left, _ := snap.Remaining()
	fmt.Fprintf(out, "gateway on %s: status %d, acme spent %d tokens, %d left\n", base, resp.StatusCode, snap.Spent, left)
	<-ctx.Done()
	return nil
}

// startNeuron starts a neuron over the simulated engine, with one 24 GiB
// GPU, on a free loopback port.
func startNeuron() (url string, stop func(), err error) {
	harness, err := sim.NewHarness(sim.Config{})
	if err != nil {
		return "", nil, err
	}
	disc := neuron.NewStaticDiscoverer(neuron.Discovery{Devices: []neuron.Device{{Index: 0, Name: "Simulated GPU", TotalMB: 24576}}})
	agent, err := neuron.NewAgent(harness, disc)
	if err != nil {
		return "", nil, errors.Join(err, harness.Close(context.Background()))
	}
	if err := agent.Start(context.Background()); err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, errors.Join(err, agent.Shutdown(context.Background()))
	}
	srv := &http.Server{Handler: agent, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() {
		_ = agent.Shutdown(context.Background())
		_ = srv.Shutdown(context.Background())
	}, nil
}
