package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// The fleet's model.
const (
	modelID     = "fleet-8b"
	modelVRAMMB = 16384
	deviceMB    = 81920
	contextLen  = 32768
)

var catalogueTOML = fmt.Sprintf(`[[models]]
id = %q
engine = "sim"
vram_mb = %d
limit = { context = %d, output = 1024 }
`, modelID, modelVRAMMB, contextLen)

// scaledCatalogue is catalogueTOML with the model's replica bounds.
func scaledCatalogue(lo, hi int) string {
	return catalogueTOML + fmt.Sprintf("min_replicas = %d\nmax_replicas = %d\n", lo, hi)
}

// fleet is one cell's stack: neurons, each a sim Harness with one replica
// of the model behind a neuron Agent, and gateways in front of them all.
type fleet struct {
	agents   []*neuron.Agent
	servers  []*http.Server
	gateways []*cortex.Gateway
	urls     []string // of the gateways
	cancel   context.CancelFunc
	runs     chan error
}

// startFleet starts n neurons and one gateway per router (polling the
// neurons every poll; 0: the default), and returns once every gateway
// sees every replica loaded. With sc, the model has sc's replica bounds,
// only the first sc.preload neurons load it, loads take burstLoadTime,
// and each gateway scales it with the bench's Scaler (newBurstScaler).
func startFleet(ctx context.Context, n int, gpu sim.GPU, poll time.Duration, routers []route.Router, sc *scaling) (f *fleet, err error) {
	f = &fleet{runs: make(chan error, len(routers))}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	catText, preload := catalogueTOML, n
	if sc != nil {
		catText, preload = scaledCatalogue(sc.min, sc.max), sc.preload
	}
	cat, err := catalogue.Parse([]byte(catText))
	if err != nil {
		return f, err
	}
	errLog := log.New(io.Discard, "", 0)
	var configs []cortex.NeuronConfig
	for i := range n {
		name := fmt.Sprintf("gpu-%02d", i+1)
		g := gpu
		simCfg := sim.Config{GPU: &g, ContextLength: contextLen}
		if sc != nil && i >= preload {
			// Loads take time where the Scaler loads; the preloaded
			// neurons load at once, so that a fleet starts in seconds.
			simCfg.LoadTime = burstLoadTime
		}
		h, err := sim.NewHarness(simCfg)
		if err != nil {
			return f, err
		}
		disc := neuron.NewStaticDiscoverer(neuron.Discovery{Hostname: name, Devices: []neuron.Device{
			{Index: 0, Name: "Simulated GPU", UUID: "GPU-" + name, TotalMB: deviceMB}}})
		a, err := neuron.NewAgent(h, disc, neuron.WithHostname(name),
			neuron.WithAdmission(neuron.AdmissionConfig{MaxInFlight: 4096, MaxQueue: 4096}),
			neuron.WithDrainTimeout(time.Second))
		if err != nil {
			return f, errors.Join(err, h.Close(ctx))
		}
		if err := a.Start(ctx); err != nil {
			return f, err
		}
		f.agents = append(f.agents, a)
		url, err := f.serve(a, errLog)
		if err != nil {
			return f, err
		}
		configs = append(configs, cortex.NeuronConfig{Name: name, Endpoint: url})
		if i >= preload {
			continue
		}
		c, err := neuron.NewClient(url)
		if err != nil {
			return f, err
		}
		if _, err := c.Load(ctx, neuron.LoadSpec{ModelID: modelID, Engine: "sim", VRAMMB: modelVRAMMB}); err != nil {
			return f, fmt.Errorf("loading on %s: %w", name, err)
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	for _, r := range routers {
		opts := []cortex.GatewayOption{cortex.WithRouter(r)}
		if poll > 0 {
			opts = append(opts, cortex.WithPollerOptions(route.WithInterval(poll)))
		}
		if sc != nil {
			s, err := newBurstScaler()
			if err != nil {
				return f, err
			}
			opts = append(opts, cortex.WithScaler(s))
		}
		gw, err := cortex.NewGateway(configs, cat, opts...)
		if err != nil {
			return f, err
		}
		f.gateways = append(f.gateways, gw)
		go func() { f.runs <- gw.Run(rctx) }()
		url, err := f.serve(gw, errLog)
		if err != nil {
			return f, err
		}
		f.urls = append(f.urls, url)
	}
	for _, gw := range f.gateways {
		if err := waitReady(ctx, gw, preload); err != nil {
			return f, err
		}
	}
	return f, nil
}

// serve serves h on a new loopback listener and returns its base URL.
func (f *fleet) serve(h http.Handler, errLog *log.Logger) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	f.servers = append(f.servers, srv)
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// waitReady waits until gw's fleet has n loaded replicas of the model.
func waitReady(ctx context.Context, gw *cortex.Gateway, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		ready := 0
		if fl := gw.Fleet(); fl != nil {
			for _, ns := range fl.Neurons() {
				if m := ns.Model(modelID); ns.Available() && m != nil && m.Status == neuron.StatusLoaded {
					ready++
				}
			}
		}
		if ready == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the gateway sees %d of %d replicas ready: %w", ready, n, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// inFlight returns each neuron's requests in flight and queued for the
// model, as its GET /health reports them.
func (f *fleet) inFlight(ctx context.Context, into []int) []int {
	into = into[:0]
	for _, a := range f.agents {
		load := 0
		for _, m := range a.Health(ctx).Models {
			load += m.InFlight + m.QueueDepth
		}
		into = append(into, load)
	}
	return into
}

// close stops the gateways, then the neurons (and their engines).
func (f *fleet) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, gw := range f.gateways {
		_ = gw.Shutdown(ctx)
	}
	if f.cancel != nil {
		f.cancel()
		for range f.gateways {
			<-f.runs
		}
	}
	for _, srv := range f.servers {
		_ = srv.Close()
	}
	for _, a := range f.agents {
		_ = a.Shutdown(ctx)
	}
}
