package route_test

import (
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// TestRouterSkipsEjectedReplicas: the default Router serves from the
// replicas in rotation, and from an ejected one only when no other is
// ready.
func TestRouterSkipsEjectedReplicas(t *testing.T) {
	t.Parallel()
	at := time.Unix(1_000_000, 0)
	ejected := new(route.Ejection)
	ejected.Eject(at, at.Add(time.Minute))
	ended := new(route.Ejection)
	ended.Eject(at.Add(-time.Minute), at) // ends at the snapshot's time
	disc := &neuron.Discovery{Devices: []neuron.Device{{Index: 0, TotalMB: 24576}}}
	rep := func(ej *route.Ejection, inFlight int) route.ModelState {
		return route.ModelState{ModelInfo: neuron.ModelInfo{ID: "m", Status: neuron.StatusLoaded, VRAMUsedMB: 1000}, InFlight: inFlight, Ejection: ej}
	}
	fleet := func(models ...route.ModelState) *route.Fleet {
		var ns []route.NeuronState
		for i, m := range models {
			ns = append(ns, route.NeuronState{Name: "n" + string(rune('1'+i)), Healthy: true, Discovery: disc, Models: []route.ModelState{m}})
		}
		f, err := route.NewFleet(nil, nil, at, ns)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	r, err := route.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		f       *route.Fleet
		tried   []route.Attempt
		want    string
		wantErr error
	}{
		{name: "the idle replica is ejected: the busy one serves", f: fleet(rep(ejected, 0), rep(nil, 5)), want: "n2"},
		{name: "the ejection ended at the snapshot", f: fleet(rep(ended, 0), rep(nil, 5)), want: "n1"},
		{name: "every replica is ejected: the least busy serves", f: fleet(rep(ejected, 3), rep(ejected, 1)), want: "n2"},
		{name: "the one in rotation is excluded: the ejected one serves", f: fleet(rep(ejected, 0), rep(nil, 0)),
			tried: unreachable("n2"), want: "n1"},
		{name: "every replica excluded", f: fleet(rep(ejected, 0)), tried: unreachable("n1"), wantErr: route.ErrModelNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := r.Route(tt.f, &route.Request{Model: "m", Tried: tt.tried})
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Route = %+v, want an error", d)
				}
				return
			}
			if err != nil || d.Neuron != tt.want || d.Action != route.ActionServe {
				t.Errorf("Route = %+v, %v; want serve on %s", d, err, tt.want)
			}
		})
	}
}

// TestEjectionReadmit: Eject counts each new ejection once; Readmit puts
// the replica back in rotation and keeps the count.
func TestEjectionReadmit(t *testing.T) {
	t.Parallel()
	at := time.Unix(1_000_000, 0)
	var e route.Ejection
	e.Eject(at, at.Add(time.Minute))
	e.Eject(at, at.Add(2*time.Minute)) // the same ejection, extended
	if !e.Active(at) || e.Count() != 1 || !e.Until().Equal(at.Add(2*time.Minute)) {
		t.Fatalf("after Eject: active %v, count %d, until %v", e.Active(at), e.Count(), e.Until())
	}
	e.Readmit()
	if e.Active(at) || !e.Since().IsZero() || !e.Until().IsZero() || e.Count() != 1 {
		t.Errorf("after Readmit: active %v, since %v, until %v, count %d", e.Active(at), e.Since(), e.Until(), e.Count())
	}
	var none *route.Ejection
	if none.Active(at) || none.Count() != 0 || !none.Until().IsZero() {
		t.Error("a nil Ejection reads as ejected")
	}
}
