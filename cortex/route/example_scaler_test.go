package route_test

import (
	"fmt"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// A model with min_replicas 1 and max_replicas 3 is busy on its one
// replica: past the window, the default Scaler loads a second one on the
// neuron with free VRAM.
func ExampleNewScaler() {
	cat, _ := catalogue.New([]catalogue.Model{
		{ID: "llama", VRAMMB: 8000, MinReplicas: 1, MaxReplicas: 3},
	}, nil)
	gpu := &neuron.Discovery{Devices: []neuron.Device{{TotalMB: 24000}}}
	busy := route.ModelState{ModelInfo: neuron.ModelInfo{ID: "llama", Status: neuron.StatusLoaded, VRAMUsedMB: 8000}, InFlight: 8, QueueDepth: 6}
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	fleet := func(at time.Time) *route.Fleet {
		f, _ := route.NewFleet(cat, nil, at, []route.NeuronState{
			{Name: "gpu-01", Healthy: true, Discovery: gpu, Models: []route.ModelState{busy}},
			{Name: "gpu-02", Healthy: true, Discovery: gpu},
		})
		return f
	}
	s, err := route.NewScaler(route.WithTargetWork(4), route.WithScaleWindow(10*time.Second))
	if err != nil {
		panic(err)
	}
	for _, at := range []time.Duration{0, 5 * time.Second, 10 * time.Second} {
		now := t0.Add(at)
		for _, d := range s.Scale(fleet(now), &route.Demand{Now: now}) {
			fmt.Printf("%v: scale %s %s on %s: %s\n", at, d.Direction, d.Model.ID, d.Neuron, d.Reason)
		}
	}
	// Output:
	// 10s: scale out llama on gpu-02: work per replica 14.0 >= 4 for 10s
}
