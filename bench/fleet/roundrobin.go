package main

import (
	"sync/atomic"

	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// roundRobin is the round-robin policy: a Router that sends each request
// to the next neuron, in the fleet's order, among the available ones with
// the model loaded and not yet tried by the request. Anything else (no
// such neuron, a model to load) goes to the fallback Router.
type roundRobin struct {
	next     atomic.Uint64
	fallback route.Router
}

// Route picks the next ready replica in turn. It does not allocate.
func (r *roundRobin) Route(f *route.Fleet, req *route.Request) (route.Decision, error) {
	p, ok := f.Resolve(req.Model)
	if !ok {
		return r.fallback.Route(f, req)
	}
	n := 0
	for _, ns := range f.Neurons() {
		if rrReady(ns, p.ID, req) {
			n++
		}
	}
	if n == 0 {
		return r.fallback.Route(f, req)
	}
	k := int((r.next.Add(1) - 1) % uint64(n))
	for _, ns := range f.Neurons() {
		if !rrReady(ns, p.ID, req) {
			continue
		}
		if k == 0 {
			return route.Decision{Neuron: ns.Name, Model: ns.Model(p.ID).Profile, Action: route.ActionServe}, nil
		}
		k--
	}
	return r.fallback.Route(f, req) // not reached: the fleet is immutable
}

// rrReady reports whether ns may serve model now: available, the model
// loaded there, and not tried by req.
func rrReady(ns *route.NeuronState, model string, req *route.Request) bool {
	if !ns.Available() {
		return false
	}
	m := ns.Model(model)
	if m == nil || m.Status != neuron.StatusLoaded {
		return false
	}
	for _, a := range req.Tried {
		if a.Neuron == ns.Name {
			return false
		}
	}
	return true
}
