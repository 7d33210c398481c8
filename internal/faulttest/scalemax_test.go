package faulttest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// preferPlacer places a new replica on the first neuron of its order
// that lists no replica of the model and where this gateway is not
// loading it: gateways with different orders decide different replicas
// over the same snapshot, as gateways over snapshots a poll apart may.
type preferPlacer []string

func (p preferPlacer) Place(f *route.Fleet, r *route.Request, prof catalogue.Model) (route.Decision, error) {
	for _, name := range p {
		n := f.Neuron(name)
		if n == nil || !n.Available() || n.Model(prof.ID) != nil ||
			slices.ContainsFunc(r.Loads, func(l route.Load) bool { return l.Model == prof.ID && l.Neuron == name }) {
			continue
		}
		return route.Decision{Neuron: name, Model: prof, Action: route.ActionLoad}, nil
	}
	return route.Decision{}, route.ErrNoFeasibleNeuron
}

// TestScaleMaxAcrossGateways: three gateways over four neuron processes
// scale one model with max_replicas 2 under load through all three, each
// placing new replicas on a different neuron first, scaling out on every
// step the work allows (target 1, no window, no cool-down). A watcher
// asking the neurons themselves never sees more than two replicas; the
// model reaches two, and every request is served.
func TestScaleMaxAcrossGateways(t *testing.T) {
	suite(t)
	names := []string{"gpu-a", "gpu-b", "gpu-c", "gpu-d"}
	var neurons []*neuronProc
	for _, name := range names {
		neurons = append(neurons, startNeuron(t, name))
	}
	const model = "scaled"
	cat, err := catalogue.New([]catalogue.Model{{ID: model, Engine: "sim-" + modelSlow, VRAMMB: 1000, MinReplicas: 1, MaxReplicas: 2}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	// The watcher counts, every few milliseconds, the neurons that list
	// a replica of the model that is not on its way out.
	var most atomic.Int64
	watch, stopWatch := context.WithCancel(t.Context())
	var watched sync.WaitGroup
	watched.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond) // the watcher's pace
		defer tick.Stop()
		for {
			select {
			case <-watch.Done():
				return
			case <-tick.C:
			}
			n := 0
			for _, np := range neurons {
				ms, err := np.client.Models(watch)
				if err != nil {
					continue
				}
				if slices.ContainsFunc(ms, func(m neuron.ModelInfo) bool {
					return m.ID == model && m.Status != neuron.StatusUnloading && m.Status != neuron.StatusFailed
				}) {
					n++
				}
			}
			if int64(n) > most.Load() {
				most.Store(int64(n))
			}
		}
	})
	t.Cleanup(func() { stopWatch(); watched.Wait() })

	var gws []*stack
	for i := range 3 {
		order := append(slices.Clone(names[i:]), names[:i]...)
		sc, err := route.NewScaler(route.WithTargetWork(1), route.WithScaleWindow(0), route.WithScaleCooldown(0), route.WithPlacer(preferPlacer(order)))
		if err != nil {
			t.Fatal(err)
		}
		gws = append(gws, serveStack(t, neurons, cat, 1<<40, cortex.WithScaler(sc)))
	}

	// Four clients per gateway, each sending streams of 5 tokens (a
	// second each at the engine's 5 tokens per second) for three seconds.
	var wg sync.WaitGroup
	var served, failed atomic.Int64
	deadline := time.Now().Add(3 * time.Second)
	for _, s := range gws {
		for range 4 {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					resp := s.chat(t.Context(), model, 5, true)
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						served.Add(1)
					} else {
						failed.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	stopWatch()
	watched.Wait()

	if failed.Load() > 0 || served.Load() == 0 {
		t.Errorf("%d served, %d failed; want all served", served.Load(), failed.Load())
	}
	if got := most.Load(); got > 2 {
		t.Errorf("the neurons listed %d replicas at once, want at most max_replicas 2", got)
	}
	var outs []string
	for i, s := range gws {
		for _, e := range s.gw.Events() {
			if e.Kind == cortex.EventScaleOut {
				outs = append(outs, fmt.Sprintf("gateway %d: %s on %s", i+1, e.Reason, e.Neuron))
			}
		}
	}
	if len(outs) > 2 {
		t.Errorf("scale-outs %q: more than max_replicas 2", outs)
	}
	r := route.CountReplicas(gws[0].gw.Fleet(), nil, model)
	if r.Count() != 2 {
		t.Errorf("replicas of %s after the load: %+v, want 2 (max_replicas)", model, r)
	}
	t.Logf("%d served; scale-outs %q", served.Load(), outs)
}
