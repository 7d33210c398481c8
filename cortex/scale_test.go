package cortex_test

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// TestScaleFollowsDemand runs the gateway's Run on a fake clock over four
// simulated neurons and one model with min_replicas 1, max_replicas 3:
// its first replica is placed at start, work on it grows the replicas to
// max_replicas and no further, and once the work is gone they shrink back
// to min_replicas after the idle window.
func TestScaleFollowsDemand(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{
		{ID: "m", VRAMMB: 1000, MinReplicas: 1, MaxReplicas: 3},
	}, nil)
	// The Scaler's knobs come from cortex.toml's [scaling] table.
	cfg, err := cortex.ParseConfig([]byte(`[[neurons]]
name = "n1"
endpoint = "http://n1:1"

[scaling]
target_work = 1
window = "0s"
cooldown = "0s"
scale_in_idle = "1m"
`))
	if err != nil {
		t.Fatal(err)
	}
	scaler, err := cfg.Scaling.Scaler()
	if err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	s := newStack(t, cortextest.Named("n1", "n2", "n3", "n4"), cat, cortex.WithClock(clk), cortex.WithScaler(scaler))
	s.refresh()
	runOnClock(t, s, clk)
	// step moves the clock by d, lets the idle loop run its step, and
	// waits until the model has want ready replicas.
	step := func(d time.Duration, want int) {
		t.Helper()
		advance(t, clk, d)
		waitFor(t, "the replica count", func() bool {
			r := route.CountReplicas(s.gw.Fleet(), nil, "m")
			return r.Ready == want && r.Loading == 0
		})
	}
	loaded := func() []string {
		var on []string
		for _, n := range s.fleet.Neurons() {
			if n.Loads() > 0 {
				on = append(on, n.Name())
			}
		}
		return on
	}

	step(time.Second, 1) // min_replicas placed at start
	if got := loaded(); !slices.Equal(got, []string{"n1"}) {
		t.Fatalf("after the start, loads on %v, want [n1]", got)
	}

	// A burst: five requests in flight on the one replica.
	for range 5 {
		s.gw.Usage().Add("n1", "m")
	}
	step(2*time.Second, 2)
	step(2*time.Second, 3)
	step(2*time.Second, 3) // max_replicas: no fourth
	step(2*time.Second, 3) // n1 busy after the others were first seen
	if got := loaded(); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("after the burst, loads on %v, want [n1 n2 n3]", got)
	}

	// The burst ends: after the idle window, one replica goes per step
	// down to min_replicas. (Which one stays, the one busy last, is the
	// Scaler's choice, proven by its table tests in cortex/route: here
	// the snapshots the idle loop sees depend on when each poll lands.)
	for range 5 {
		s.gw.Usage().Done("n1", "m")
	}
	step(30*time.Second, 3) // not idle long enough yet
	step(time.Minute, 2)
	step(2*time.Second, 1)
	step(2*time.Second, 1) // min_replicas: no fewer
	var kinds []cortex.EventKind
	for _, e := range s.gw.Events() {
		if e.Kind == cortex.EventScaleOut || e.Kind == cortex.EventScaleIn {
			kinds = append(kinds, e.Kind)
		}
	}
	slices.Reverse(kinds) // Events is newest first
	want := []cortex.EventKind{cortex.EventScaleOut, cortex.EventScaleOut, cortex.EventScaleOut, cortex.EventScaleIn, cortex.EventScaleIn}
	if !slices.Equal(kinds, want) {
		t.Errorf("scale events %v, want %v", kinds, want)
	}

	// The status page shows the replicas, the bounds and the last
	// decision.
	st := getStatus(t, s)
	i := slices.IndexFunc(st.Models, func(m cortex.StatusModel) bool { return m.ID == "m" })
	if i < 0 || st.Models[i].Replicas == nil {
		t.Fatalf("status.json models %+v: no replicas of m", st.Models)
	}
	r := st.Models[i].Replicas
	if r.Ready != 1 || r.Loading != 0 || r.Min != 1 || r.Max != 3 || r.LastScale == nil ||
		r.LastScale.Kind != cortex.EventScaleIn || r.LastScale.Reason != "idle 1m0s" {
		t.Errorf("status.json replicas of m: %+v, last scale %+v", r, r.LastScale)
	}
	if _, _, page := getPage(t, s, "/status"); !strings.Contains(page, "1 of 1–3") || !strings.Contains(page, "scale_in: idle 1m0s") {
		t.Errorf("the status page shows no replicas of m:\n%s", page)
	}
}

// TestScaleOutBacksOff: a scale-out whose load fails is not loaded again
// on its neuron at each step: the next steps place the replica on another
// neuron. (Here the simulated neuron also lists the failed model, which
// keeps a placement off it by itself; the Scaler's table test in
// cortex/route proves that Demand.Backoff alone does.)
func TestScaleOutBacksOff(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{{ID: "m", VRAMMB: 1000, MinReplicas: 1}}, nil)
	clk := newFakeClock()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Sim: sim.Config{FailLoad: true}}, {Name: "n2"}}, cat,
		cortex.WithClock(clk), cortex.WithLoadBackoff(time.Minute, 4*time.Minute))
	runOnClock(t, s, clk)
	n1, n2 := s.fleet.Neuron("n1"), s.fleet.Neuron("n2")
	// The first step places min_replicas on n1 (ties go by name), where
	// the load fails.
	advance(t, clk, time.Second)
	waitFor(t, "the failed load on n1", func() bool {
		return slices.ContainsFunc(s.gw.Events(), func(e cortex.Event) bool {
			return e.Kind == cortex.EventLoadFailed && e.Neuron == "n1"
		})
	})
	waitFor(t, "the end of the failed load", func() bool {
		i := slices.IndexFunc(s.gw.Models().Data, func(e cortex.ModelEntry) bool { return e.ID == "m" })
		return i >= 0 && !slices.ContainsFunc(s.gw.Models().Data[i].Locations, func(l cortex.ModelLocation) bool {
			return l.Status == neuron.StatusLoading
		})
	})
	// The next steps, within the backoff, place it on n2.
	for range 3 {
		advance(t, clk, 2*time.Second)
	}
	waitFor(t, "the replica on n2", func() bool {
		return route.CountReplicas(s.gw.Fleet(), nil, "m").Ready == 1 && n2.Loads() == 1
	})
	if got := len(n1.LoadCalls()); got != 1 {
		t.Errorf("%d load calls on n1, want 1: the scale-out backs off there", got)
	}
}

// countingScaler counts the steps it is asked, and decides nothing.
type countingScaler struct{ n atomic.Int64 }

func (c *countingScaler) Scale(*route.Fleet, *route.Demand) []route.ScaleDecision {
	c.n.Add(1)
	return nil
}

// TestReloadChangesScaler: SetOptions (as Reload, with a changed
// [scaling] table) replaces the Scaler of a running gateway, and the next
// scale step asks the new one.
func TestReloadChangesScaler(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{{ID: "m", VRAMMB: 1000, MaxReplicas: 2}}, nil)
	clk := newFakeClock()
	var a, b countingScaler
	s := newStack(t, cortextest.Named("n1"), cat, cortex.WithClock(clk), cortex.WithScaler(&a))
	runOnClock(t, s, clk)
	advance(t, clk, time.Second)
	if a.n.Load() != 1 || b.n.Load() != 0 {
		t.Fatalf("steps before the reload: %d, %d; want 1, 0", a.n.Load(), b.n.Load())
	}
	if err := s.gw.SetOptions(cortex.WithScaler(&b)); err != nil {
		t.Fatal(err)
	}
	advance(t, clk, 2*time.Second)
	if a.n.Load() != 1 || b.n.Load() != 1 {
		t.Errorf("steps after the reload: %d, %d; want 1, 1", a.n.Load(), b.n.Load())
	}
}
