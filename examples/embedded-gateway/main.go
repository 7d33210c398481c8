// Command embedded-gateway composes a helexa gateway in an embedder's own
// program, with a custom Router: requests go to a loaded replica in the
// preferred zone when there is one, else wherever the default Router
// sends them (which also places cold loads). neurons.go starts the demo
// fleet: two in-process neurons over the simulated engine.
//
//	go run ./examples/embedded-gateway [--listen 127.0.0.1:31313]
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
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
)

// newZoneRouter returns the default Router with one more scorer: a
// neuron of the preferred zone scores 1, any other 0. Weighed at 2, above
// the default LeastLoaded (at most 1), it sends requests to the zone's
// replicas, and loads models there, while the zone has a neuron the
// request may go to; elsewhere otherwise. The zones come from the
// embedder's inventory. Like every Scorer it is a pure decision over the
// snapshot: no I/O, no locks.
func newZoneRouter(zones map[string]string, prefer string) (*route.DefaultRouter, error) {
	inZone := route.ScorerFunc(func(_ *route.Fleet, _ *route.Request, c route.Candidate) float64 {
		if zones[c.Neuron.Name] == prefer {
			return 1
		}
		return 0
	})
	return route.NewRouter(
		route.WithScorers(route.Weighted{Scorer: route.LeastLoaded, Weight: 1}, route.Weighted{Scorer: inZone, Weight: 2}),
		route.WithPlacementScorers(route.Weighted{Scorer: route.FreeVRAM, Weight: 1}, route.Weighted{Scorer: inZone, Weight: 2}),
	)
}

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
	fs := flag.NewFlagSet("embedded-gateway", flag.ContinueOnError)
	fs.StringVar(&listen, "listen", cortex.DefaultListen, "the `address` the gateway listens on")
	err = fs.Parse(args)
	return listen, err
}

// run serves the gateway on listen until ctx ends.
func run(ctx context.Context, listen string, out io.Writer) error {
	neurons, stopFleet, err := startFleet(ctx, "demo-1b") // [{gpu-a ...} {gpu-b ...}]
	if err != nil {
		return err
	}
	defer stopFleet()
	cat, err := catalogue.New([]catalogue.Model{{ID: "demo-1b", VRAMMB: 2048}}, map[string]string{"demo": "demo-1b"})
	if err != nil {
		return err
	}
	router, err := newZoneRouter(map[string]string{"gpu-a": "us", "gpu-b": "eu"}, "eu")
	if err != nil {
		return err
	}
	gw, err := cortex.NewGateway(neurons, cat, cortex.WithRouter(router))
	if err != nil {
		return err
	}
	go func() { _ = gw.Run(ctx) }()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(out, "gateway on http://%s (status page: /status)\n", ln.Addr())
	demo(ctx, gw, "http://"+ln.Addr().String(), out)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = gw.Shutdown(sctx)
	return srv.Shutdown(sctx)
}
