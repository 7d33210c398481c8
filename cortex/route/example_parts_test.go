package route_test

import (
	"fmt"
	"hash/fnv"
	"net/http"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// A custom Router from the default's parts: a filter that pins tenant
// "acme" to its own neurons, and a scorer that sends each session (the
// X-Session-Id header) to one replica, weighed above the default
// least-loaded scorer, so a session stays on its replica even when that
// one is busier. Everything else (joins, placement, eviction, ejections,
// retries) is the default Router's.
func ExampleNewRouter_filterAndScorer() {
	acmeNeurons := map[string]bool{"gpu-c": true}
	pinAcme := route.FilterFunc(func(_ *route.Fleet, r *route.Request, c route.Candidate) bool {
		return r.Account != "acme" || acmeNeurons[c.Neuron.Name]
	})
	// The session's replica is the one its hash picks among the model's
	// ready replicas: stable while the replicas are. (A real one would
	// use consistent hashing, so that a change of replicas moves few
	// sessions.)
	sticky := route.ScorerFunc(func(f *route.Fleet, r *route.Request, c route.Candidate) float64 {
		session := r.Header.Get("X-Session-Id")
		if session == "" || c.Model == nil {
			return 0
		}
		var ready []string
		for _, n := range f.Neurons() {
			if m := n.Model(c.Model.ID); m != nil && m.Status == neuron.StatusLoaded && n.Available() {
				ready = append(ready, n.Name)
			}
		}
		h := fnv.New32a()
		h.Write([]byte(session))
		if ready[h.Sum32()%uint32(len(ready))] == c.Neuron.Name {
			return 1
		}
		return 0
	})
	r, err := route.NewRouter(
		route.WithFilters(pinAcme),
		route.WithScorers(route.Weighted{Scorer: route.LeastLoaded, Weight: 1}, route.Weighted{Scorer: sticky, Weight: 2}),
	)
	if err != nil {
		panic(err)
	}

	cat, err := catalogue.New([]catalogue.Model{{ID: "llama-8b", VRAMMB: 8000}}, nil)
	if err != nil {
		panic(err)
	}
	gpu := &neuron.Discovery{Devices: []neuron.Device{{Index: 0, TotalMB: 24576}}}
	llama := route.ModelState{ModelInfo: neuron.ModelInfo{ID: "llama-8b", Status: neuron.StatusLoaded, VRAMUsedMB: 8000}}
	busy := llama
	busy.InFlight = 3
	f, err := route.NewFleet(cat, nil, time.Now(), []route.NeuronState{
		{Name: "gpu-a", Healthy: true, Discovery: gpu, Models: []route.ModelState{busy}},
		{Name: "gpu-b", Healthy: true, Discovery: gpu, Models: []route.ModelState{llama}},
		{Name: "gpu-c", Healthy: true, Discovery: gpu},
	})
	if err != nil {
		panic(err)
	}
	for _, req := range []*route.Request{
		{Model: "llama-8b"},
		{Model: "llama-8b", Header: http.Header{"X-Session-Id": {"s-1"}}},
		{Model: "llama-8b", Header: http.Header{"X-Session-Id": {"s-1"}}},
		{Model: "llama-8b", Header: http.Header{"X-Session-Id": {"s-2"}}},
		{Model: "llama-8b", Account: "acme"},
	} {
		d, err := r.Route(f, req)
		if err != nil {
			panic(err)
		}
		fmt.Println(d.Action, d.Neuron)
	}
	// Output:
	// serve gpu-b
	// serve gpu-a
	// serve gpu-a
	// serve gpu-b
	// load gpu-c
}
