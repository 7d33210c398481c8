package route_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// scaleStep is one call of a Scaler in a scaler test: the fleet and
// demand at t0+at, and the decisions expected, as "out model neuron
// [victims]" or "in model neuron".
type scaleStep struct {
	at      time.Duration
	neurons []route.NeuronState
	loads   []route.Load
	idle    []route.IdleReplica
	backoff []route.Backoff // of the scaled model
	want    []string
}

func formatScale(ds []route.ScaleDecision) []string {
	var out []string
	for _, d := range ds {
		s := fmt.Sprintf("%s %s %s", d.Direction, d.Model.ID, d.Neuron)
		if len(d.Evict) > 0 {
			s += " " + strings.Join(d.Evict, ",")
		}
		out = append(out, s)
	}
	return out
}

func TestDefaultScaler(t *testing.T) {
	t.Parallel()
	models := []catalogue.Model{
		{ID: "fixed", VRAMMB: 10000},
		{ID: "min2", VRAMMB: 10000, MinReplicas: 2},
		{ID: "elastic", VRAMMB: 10000, MinReplicas: 1, MaxReplicas: 3},
		{ID: "max2", VRAMMB: 10000, MaxReplicas: 2},
		{ID: "low", VRAMMB: 20000, ResidencyPriority: 10},
		{ID: "same", VRAMMB: 20000},
		{ID: "pinned-low", VRAMMB: 20000, ResidencyPriority: 10, PinnedOn: []string{"n2"}},
	}
	g := gpus(24000)
	// idleFor is a replica idle for d at its step's time.
	idleFor := func(n, m string, d time.Duration) route.IdleReplica {
		return route.IdleReplica{Neuron: n, Model: m, Since: t0.Add(-d)}
	}
	tests := []struct {
		name   string
		scaled string // the one model with replica bounds in the catalogue
		steps  []scaleStep
	}{
		{
			name:   "a model without replica bounds is left alone",
			scaled: "fixed",
			steps: []scaleStep{{
				at:      time.Hour,
				neurons: []route.NeuronState{host("n1", g, busy(loaded("fixed", 10000), 50, 50)), host("n2", g)},
			}},
		},
		{
			name:   "min_replicas placed at once, on free VRAM by name",
			scaled: "min2",
			steps: []scaleStep{{
				neurons: []route.NeuronState{host("n1", g, loaded("min2", 10000)), host("n2", g), host("n3", g)},
				want:    []string{"out min2 n2"},
			}},
		},
		{
			name:   "a load in flight counts as a replica",
			scaled: "min2",
			steps: []scaleStep{{
				neurons: []route.NeuronState{host("n1", g, loaded("min2", 10000)), host("n2", g), host("n3", g)},
				loads:   []route.Load{{Model: "min2", Neuron: "n3"}},
			}},
		},
		{
			name:   "a scale-out skips the neurons where the model's load backs off",
			scaled: "min2",
			steps: []scaleStep{
				{
					neurons: []route.NeuronState{host("n1", g, loaded("min2", 10000)), host("n2", g), host("n3", g)},
					backoff: []route.Backoff{{Neuron: "n2", Until: t0.Add(time.Minute)}},
					want:    []string{"out min2 n3"},
				},
				{
					// Nowhere else: the scale-out waits for the backoff.
					at:      time.Second,
					neurons: []route.NeuronState{host("n1", g, loaded("min2", 10000)), host("n2", g)},
					backoff: []route.Backoff{{Neuron: "n2", Until: t0.Add(time.Minute)}},
				},
			},
		},
		{
			name:   "a replica on a neuron that is down does not count",
			scaled: "elastic",
			steps: []scaleStep{{
				neurons: []route.NeuronState{down(host("n1", g, loaded("elastic", 10000))), host("n2", g)},
				want:    []string{"out elastic n2"},
			}},
		},
		{
			name:   "scale out after the window, then the cool-down",
			scaled: "elastic",
			steps: []scaleStep{
				{neurons: []route.NeuronState{host("n1", g, busy(loaded("elastic", 10000), 8, 4)), host("n2", g), host("n3", g)}},
				{at: 9 * time.Second, neurons: []route.NeuronState{host("n1", g, busy(loaded("elastic", 10000), 8, 4)), host("n2", g), host("n3", g)}},
				{
					at:      10 * time.Second,
					neurons: []route.NeuronState{host("n1", g, busy(loaded("elastic", 10000), 8, 4)), host("n2", g), host("n3", g)},
					want:    []string{"out elastic n2"},
				},
				{
					// 12 over two replicas (one loading) is still above 4.
					at:      30 * time.Second,
					neurons: []route.NeuronState{host("n1", g, busy(loaded("elastic", 10000), 8, 4)), host("n2", g), host("n3", g)},
					loads:   []route.Load{{Model: "elastic", Neuron: "n2"}},
				},
				{
					at:      40 * time.Second,
					neurons: []route.NeuronState{host("n1", g, busy(loaded("elastic", 10000), 8, 4)), host("n2", g, busy(loaded("elastic", 10000), 8, 4)), host("n3", g)},
					want:    []string{"out elastic n3"},
				},
			},
		},
		{
			name:   "a signal that drops restarts the window",
			scaled: "elastic",
			steps: []scaleStep{
				{neurons: []route.NeuronState{host("n1", g, busy(loaded("elastic", 10000), 8, 4)), host("n2", g)}},
				{at: 5 * time.Second, neurons: []route.NeuronState{host("n1", g, busy(loaded("elastic", 10000), 2, 0)), host("n2", g)}},
				{at: 10 * time.Second, neurons: []route.NeuronState{host("n1", g, busy(loaded("elastic", 10000), 8, 4)), host("n2", g)}},
				{
					at:      20 * time.Second,
					neurons: []route.NeuronState{host("n1", g, busy(loaded("elastic", 10000), 8, 4)), host("n2", g)},
					want:    []string{"out elastic n2"},
				},
			},
		},
		{
			name:   "never past max_replicas",
			scaled: "max2",
			steps: []scaleStep{
				{neurons: []route.NeuronState{host("n1", g, busy(loaded("max2", 10000), 9, 9)), host("n2", g, busy(loaded("max2", 10000), 9, 9)), host("n3", g)}},
				{at: time.Minute, neurons: []route.NeuronState{host("n1", g, busy(loaded("max2", 10000), 9, 9)), host("n2", g, busy(loaded("max2", 10000), 9, 9)), host("n3", g)}},
			},
		},
		{
			name:   "evicts only an idle model of lower priority",
			scaled: "max2",
			steps: []scaleStep{
				{neurons: []route.NeuronState{host("n1", g, busy(loaded("max2", 10000), 9, 9)), host("n2", g, loaded("same", 20000)), host("n3", g, loaded("low", 20000))}},
				{
					at:      time.Minute,
					neurons: []route.NeuronState{host("n1", g, busy(loaded("max2", 10000), 9, 9)), host("n2", g, loaded("same", 20000)), host("n3", g, loaded("low", 20000))},
					want:    []string{"out max2 n3 low"},
				},
			},
		},
		{
			name:   "never a pinned model on its pin, nor a busy one, nor one as important",
			scaled: "max2",
			steps: []scaleStep{
				{neurons: []route.NeuronState{host("n1", g, busy(loaded("max2", 10000), 9, 9)), host("n2", g, loaded("pinned-low", 20000)), host("n3", g, busy(loaded("low", 20000), 1, 0)), host("n4", g, loaded("same", 20000))}},
				{at: time.Minute, neurons: []route.NeuronState{host("n1", g, busy(loaded("max2", 10000), 9, 9)), host("n2", g, loaded("pinned-low", 20000)), host("n3", g, busy(loaded("low", 20000), 1, 0)), host("n4", g, loaded("same", 20000))}},
			},
		},
		{
			name:   "scale in the replica idle the longest, past the idle window",
			scaled: "elastic",
			steps: []scaleStep{{
				at:      time.Hour,
				neurons: []route.NeuronState{host("n1", g, loaded("elastic", 10000)), host("n2", g, loaded("elastic", 10000)), host("n3", g, loaded("elastic", 10000))},
				idle:    []route.IdleReplica{idleFor("n1", "elastic", time.Minute), idleFor("n2", "elastic", time.Hour), idleFor("n3", "elastic", 10*time.Minute)},
				want:    []string{"in elastic n2"},
			}},
		},
		{
			name:   "never below min_replicas",
			scaled: "elastic",
			steps: []scaleStep{{
				at:      time.Hour,
				neurons: []route.NeuronState{host("n1", g, loaded("elastic", 10000)), host("n2", g)},
				idle:    []route.IdleReplica{idleFor("n1", "elastic", time.Hour)},
			}},
		},
		{
			name:   "never a replica with work",
			scaled: "elastic",
			steps: []scaleStep{{
				at:      time.Hour,
				neurons: []route.NeuronState{host("n1", g, loaded("elastic", 10000)), host("n2", g, busy(loaded("elastic", 10000), 1, 0))},
				idle:    []route.IdleReplica{idleFor("n2", "elastic", time.Hour)},
			}},
		},
		{
			name:   "no scale in while the others would be near the target",
			scaled: "elastic",
			steps: []scaleStep{{
				at:      time.Hour,
				neurons: []route.NeuronState{host("n1", g, busy(loaded("elastic", 10000), 3, 0)), host("n2", g, busy(loaded("elastic", 10000), 3, 0)), host("n3", g, loaded("elastic", 10000))},
				idle:    []route.IdleReplica{idleFor("n3", "elastic", time.Hour)},
			}},
		},
		{
			name:   "a surplus over max_replicas goes at once",
			scaled: "max2",
			steps: []scaleStep{{
				neurons: []route.NeuronState{host("n1", g, loaded("max2", 10000)), host("n2", g, loaded("max2", 10000)), host("n3", g, loaded("max2", 10000))},
				idle:    []route.IdleReplica{idleFor("n1", "max2", time.Second), idleFor("n3", "max2", time.Minute)},
				want:    []string{"in max2 n3"},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var ms []catalogue.Model
			for _, m := range models {
				if !m.Scaled() || m.ID == tt.scaled {
					ms = append(ms, m)
				}
			}
			cat := newCatalogue(t, ms, nil)
			s, err := route.NewScaler()
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				f := newFleet(t, cat, nil, st.neurons...)
				idle := st.idle
				for j := range idle {
					idle[j].Since = idle[j].Since.Add(st.at)
				}
				d := &route.Demand{Now: t0.Add(st.at), Loads: st.loads, Idle: idle}
				if st.backoff != nil {
					d.Backoff = map[string][]route.Backoff{tt.scaled: st.backoff}
				}
				got := formatScale(s.Scale(f, d))
				if diff := cmp.Diff(got, st.want); diff != "" {
					t.Errorf("step %d (at %v): decisions (-got +want):\n%s", i, st.at, diff)
				}
			}
		})
	}
}

func TestNewScalerRefusesBadKnobs(t *testing.T) {
	t.Parallel()
	for _, opt := range []route.ScalerOption{
		route.WithTargetWork(0), route.WithScaleWindow(-time.Second),
		route.WithScaleCooldown(-time.Second), route.WithScaleInIdle(-time.Second),
	} {
		if _, err := route.NewScaler(opt); err == nil {
			t.Error("NewScaler accepted a bad option")
		}
	}
}

func TestCountReplicas(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{{ID: "m", VRAMMB: 1000}}, nil)
	g := gpus(24000)
	f := newFleet(t, cat, nil,
		host("n1", g, busy(loaded("m", 1000), 2, 3)),
		host("n2", g, model("m", neuron.StatusLoading, 0)),
		host("n3", g),
		down(host("n4", g, loaded("m", 1000))),
		host("n5", g, model("m", neuron.StatusUnloading, 1000)),
	)
	got := route.CountReplicas(f, []route.Load{{Model: "m", Neuron: "n3"}, {Model: "m", Neuron: "n2"}, {Model: "x", Neuron: "n3"}}, "m")
	want := route.Replicas{Ready: 1, Loading: 2, Work: 5}
	if got != want || got.Count() != 3 || got.WorkPerReplica() != 5.0/3 {
		t.Errorf("CountReplicas = %+v (count %d, per replica %v), want %+v", got, got.Count(), got.WorkPerReplica(), want)
	}
}
