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
	"github.com/helexa-ai/helexa-go/neuron"
)

// zoneRouter prefers loaded replicas on neurons of one zone; the zones
// come from the embedder's inventory. Like every Router it is a pure
// decision over the snapshot: no I/O, no locks.
type zoneRouter struct {
	next   route.Router
	zones  map[string]string // neuron name -> zone
	prefer string
}

func (r zoneRouter) Route(f *route.Fleet, model string, hint route.RouteHint) (route.Decision, error) {
	d, err := r.next.Route(f, model, hint)
	if err != nil || d.Action != route.ActionServe || r.zones[d.Neuron] == r.prefer {
		return d, err
	}
	for _, n := range f.Neurons() {
		if m := n.Model(d.Model.ID); r.zones[n.Name] == r.prefer && n.Available() && m != nil && m.Status == neuron.StatusLoaded {
			return route.Decision{Neuron: n.Name, Model: d.Model, Action: route.ActionServe}, nil
		}
	}
	return d, nil
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
	def, err := route.NewRouter()
	if err != nil {
		return err
	}
	router := zoneRouter{next: def, zones: map[string]string{"gpu-a": "us", "gpu-b": "eu"}, prefer: "eu"}
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
