package route_test

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// priorityEvictor unloads the models of the lowest residency priority
// first, the least recently used first among equals, and never a model
// used within Recent: a model in active use stays even when it ranks low.
// Like LRU, it never unloads a model pinned to the neuron, one with
// requests in flight or queued, or one that ranks above the incoming
// model. Like every Evictor it is a pure decision over the snapshot: no
// I/O, no locks, n left as it is.
type priorityEvictor struct {
	Now    func() time.Time // the gateway's clock
	Recent time.Duration    // a model used this recently is never unloaded
}

var _ route.Evictor = priorityEvictor{}

func (e priorityEvictor) Victims(n *route.NeuronState, incoming catalogue.Model, needMB uint64) []string {
	if needMB == 0 {
		return nil
	}
	cutoff := e.Now().Add(-e.Recent)
	var cands []*route.ModelState
	var total uint64
	for i := range n.Models {
		m := &n.Models[i]
		if m.Status != neuron.StatusLoaded || m.ID == incoming.ID || m.VRAMUsedMB == 0 ||
			slices.Contains(m.Profile.PinnedOn, n.Name) || m.Outstanding() > 0 ||
			m.Profile.ResidencyPriority > incoming.ResidencyPriority || m.LastUse().After(cutoff) {
			continue
		}
		cands = append(cands, m)
		total += m.VRAMUsedMB
	}
	if total < needMB {
		return nil // unloading every candidate would not make room: unload none
	}
	slices.SortFunc(cands, func(a, b *route.ModelState) int {
		return cmp.Or(cmp.Compare(a.Profile.ResidencyPriority, b.Profile.ResidencyPriority),
			a.LastUse().Compare(b.LastUse()), cmp.Compare(a.ID, b.ID))
	})
	var victims []string
	for freed := uint64(0); freed < needMB; {
		victims = append(victims, cands[0].ID)
		freed += cands[0].VRAMUsedMB
		cands = cands[1:]
	}
	return victims
}

// A custom Evictor replaces LRU through route.WithEvictor (in a gateway:
// cortex.WithRouterOptions(route.WithEvictor(e))). Here a 24 GiB neuron
// holds three models and a fourth must be loaded. LRU would unload chat,
// the least recently used; the priority Evictor unloads summarize, which
// ranks lowest, and keeps embed, which ranks as low but was used 20
// seconds ago.
func ExampleEvictor() {
	now := time.Unix(1_700_000_000, 0)
	cat, err := catalogue.New([]catalogue.Model{
		{ID: "chat", VRAMMB: 8000, ResidencyPriority: 300},
		{ID: "embed", VRAMMB: 4000, ResidencyPriority: 50},
		{ID: "summarize", VRAMMB: 8000, ResidencyPriority: 50},
		{ID: "code", VRAMMB: 10000, ResidencyPriority: 400},
	}, nil)
	if err != nil {
		panic(err)
	}
	loaded := func(id string, mb uint64) route.ModelState {
		return route.ModelState{ModelInfo: neuron.ModelInfo{ID: id, Status: neuron.StatusLoaded, VRAMUsedMB: mb}}
	}
	snap := &route.Snapshot{At: now, Neurons: []route.NeuronState{{
		Name: "gpu-a", Healthy: true,
		Discovery: &neuron.Discovery{Devices: []neuron.Device{{Index: 0, TotalMB: 24576}}},
		Models:    []route.ModelState{loaded("chat", 8000), loaded("embed", 4000), loaded("summarize", 8000)},
	}}}
	usage := route.NewUsage() // the gateway's: it records each model's last use
	usage.Touch("gpu-a", "chat", now.Add(-time.Hour))
	usage.Touch("gpu-a", "summarize", now.Add(-10*time.Minute))
	usage.Touch("gpu-a", "embed", now.Add(-20*time.Second))
	f, err := route.FromSnapshot(cat, usage, snap)
	if err != nil {
		panic(err)
	}

	for _, ev := range []route.Evictor{route.LRU{}, priorityEvictor{Now: func() time.Time { return now }, Recent: time.Minute}} {
		r, err := route.NewRouter(route.WithEvictor(ev))
		if err != nil {
			panic(err)
		}
		d, err := r.Route(f, &route.Request{Model: "code"})
		if err != nil {
			panic(err)
		}
		fmt.Printf("%T: %s %s on %s, unloading %v\n", ev, d.Action, d.Model.ID, d.Neuron, d.Evict)
	}
	// Output:
	// route.LRU: load code on gpu-a, unloading [chat]
	// route_test.priorityEvictor: load code on gpu-a, unloading [summarize]
}
