package route_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// exampleSnapshot is two 24 GiB neurons, each with llama-8b loaded.
func exampleSnapshot() *route.Snapshot {
	gpu := &neuron.Discovery{Devices: []neuron.Device{{Index: 0, TotalMB: 24576}}}
	llama := route.ModelState{ModelInfo: neuron.ModelInfo{ID: "llama-8b", Status: neuron.StatusLoaded, VRAMUsedMB: 8000}}
	return &route.Snapshot{At: time.Unix(1_700_000_000, 0), Neurons: []route.NeuronState{
		{Name: "gpu-a", Healthy: true, Discovery: gpu, Models: []route.ModelState{llama}},
		{Name: "gpu-b", Healthy: true, Discovery: gpu, Models: []route.ModelState{llama}},
	}}
}

// The default Router serves from the least busy loaded replica. The
// gateway's Usage is linked into the Fleet, so a request started after the
// snapshot was taken steers the next one away at once.
func ExampleNewRouter() {
	cat, err := catalogue.New([]catalogue.Model{{ID: "llama-8b", VRAMMB: 8000}}, map[string]string{"llama": "llama-8b"})
	if err != nil {
		panic(err)
	}
	usage := route.NewUsage()
	f, err := route.FromSnapshot(cat, usage, exampleSnapshot())
	if err != nil {
		panic(err)
	}
	r, err := route.NewRouter()
	if err != nil {
		panic(err)
	}
	d, _ := r.Route(f, &route.Request{Model: "llama"})
	fmt.Println(d.Action, d.Neuron, d.Model.ID)
	usage.Add("gpu-a", "llama-8b") // the gateway proxies a request to gpu-a
	d, _ = r.Route(f, &route.Request{Model: "llama"})
	fmt.Println(d.Action, d.Neuron, d.Model.ID)
	// Output:
	// serve gpu-a llama-8b
	// serve gpu-b llama-8b
}

// drainingPoller wraps a Poller and publishes the named neuron as shutting
// down, so that the Router sends it no new work while it finishes what it
// has. It publishes neuron states only: the gateway adds its Usage and
// catalogue. It builds one drained copy per snapshot of the Poller it
// wraps, so Snapshot returns the same pointer until there is news.
type drainingPoller struct {
	route.Poller
	drain string

	mu       sync.Mutex
	src, out *route.Snapshot
}

func (p *drainingPoller) Snapshot() *route.Snapshot {
	s := p.Poller.Snapshot()
	p.mu.Lock()
	defer p.mu.Unlock()
	if s != p.src {
		out := &route.Snapshot{At: s.At, Neurons: slices.Clone(s.Neurons)}
		for i := range out.Neurons {
			if n := &out.Neurons[i]; n.Name == p.drain {
				h := neuron.Health{Status: "shutting_down"}
				if n.Health != nil {
					h = *n.Health
					h.Status = "shutting_down"
				}
				n.Health = &h
			}
		}
		p.src, p.out = s, out
	}
	return p.out
}

// staticPoller publishes one snapshot.
type staticPoller struct{ s *route.Snapshot }

func (p staticPoller) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (p staticPoller) Snapshot() *route.Snapshot     { return p.s }

// A Poller that drains a neuron: it wraps another Poller (in a gateway,
// the default route.FleetPoller) and changes the states it publishes.
func ExamplePoller_drain() {
	var p route.Poller = &drainingPoller{Poller: staticPoller{exampleSnapshot()}, drain: "gpu-a"}
	// What the gateway does with each new snapshot.
	f, err := route.FromSnapshot(nil, route.NewUsage(), p.Snapshot())
	if err != nil {
		panic(err)
	}
	r, err := route.NewRouter()
	if err != nil {
		panic(err)
	}
	d, _ := r.Route(f, &route.Request{Model: "llama-8b"})
	fmt.Println("draining:", f.Neuron("gpu-a").Draining(), "serve on", d.Neuron)
	// Output: draining: true serve on gpu-b
}
