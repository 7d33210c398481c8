package cortex_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// loadOn is a Router and a Placer that loads a model on its own neuron
// unless the snapshot shows it there: each of several gateways with a
// different one decides a different replica, as gateways over snapshots
// a poll apart may.
type loadOn string

func (n loadOn) Route(f *route.Fleet, r *route.Request) (route.Decision, error) {
	prof, _ := f.Catalogue().Lookup(r.Model)
	return n.Place(f, r, prof)
}

func (n loadOn) Place(f *route.Fleet, r *route.Request, prof catalogue.Model) (route.Decision, error) {
	if m := f.Neuron(string(n)).Model(prof.ID); m != nil {
		return route.Decision{Neuron: string(n), Model: prof, Action: route.ActionServe}, nil
	}
	return route.Decision{Neuron: string(n), Model: prof, Action: route.ActionLoad}, nil
}

// holdAll holds the loads of every neuron of fleet until the returned
// func is called (and at the end of the test).
func holdAll(t *testing.T, fleet *cortextest.Fleet) func() {
	var rel []func()
	for _, n := range fleet.Neurons() {
		rel = append(rel, n.HoldLoads())
	}
	release := func() {
		for _, r := range rel {
			r()
		}
	}
	t.Cleanup(release)
	return release
}

// loadedOn returns the neurons of fleet that received a load call.
func loadedOn(fleet *cortextest.Fleet) []string {
	var on []string
	for _, n := range fleet.Neurons() {
		if n.Loads() > 0 {
			on = append(on, n.Name())
		}
	}
	return on
}

// TestRequestLoadsClaimReplicas: three gateways over one fleet, each of
// which would load a cold model with max_replicas 1 on its own neuron,
// get one request each at once. The model's arbiter grants one replica;
// the other two requests join it, and all three are served.
func TestRequestLoadsClaimReplicas(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{{ID: "m", VRAMMB: 1000, MaxReplicas: 1}}, nil)
	fleet := cortextest.NewFleet(t, cortextest.Named("n1", "n2", "n3")...)
	var gws []*stack
	for _, n := range fleet.Neurons() {
		gws = append(gws, newStackOn(t, fleet, cat, cortex.WithRouter(loadOn(n.Name()))))
	}
	release := holdAll(t, fleet)
	var wg sync.WaitGroup
	codes := make([]int, len(gws))
	for i, s := range gws {
		wg.Go(func() {
			resp := s.do(http.MethodPost, "/v1/chat/completions", `{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	// Every request's load has reached a neuron (a claimed load, or a
	// join of it) before any is let through.
	waitFor(t, "three load calls", func() bool {
		n := 0
		for _, nr := range fleet.Neurons() {
			n += nr.Loads()
		}
		return n == 3
	})
	release()
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("gateway %d answered %d, want 200", i+1, c)
		}
	}
	if on := loadedOn(fleet); len(on) != 1 {
		t.Fatalf("load calls on %v, want one neuron: max_replicas 1", on)
	}
	gws[0].refresh()
	if r := route.CountReplicas(gws[0].gw.Fleet(), nil, "m"); r.Count() != 1 {
		t.Errorf("replicas of m: %+v, want 1", r)
	}
}

// TestScaleOutsNeverPassMax: three gateways, each placing scale-outs on
// its own neuron first, run their first scale step over the same stale
// snapshot for a model with min_replicas = max_replicas = 2. Without
// arbitration that would load three replicas; the arbiter grants two,
// and the third gateway records no scale-out.
func TestScaleOutsNeverPassMax(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{{ID: "m", VRAMMB: 1000, MinReplicas: 2, MaxReplicas: 2}}, nil)
	fleet := cortextest.NewFleet(t, cortextest.Named("n1", "n2", "n3", "n4")...)
	release := holdAll(t, fleet)
	var gws []*stack
	var clocks []*clocktest.Fake
	for _, n := range fleet.Neurons()[:3] {
		scaler, err := route.NewScaler(route.WithPlacer(loadOn(n.Name())), route.WithScaleWindow(0), route.WithScaleCooldown(0))
		if err != nil {
			t.Fatal(err)
		}
		clk := newFakeClock()
		s := newStackOn(t, fleet, cat, cortex.WithClock(clk), cortex.WithScaler(scaler))
		runOnClock(t, s, clk)
		gws, clocks = append(gws, s), append(clocks, clk)
	}
	t.Cleanup(release) // before the gateways stop: a held load would hold up their Shutdown
	// One scale step each, before any poll: every gateway sees no
	// replica of m, and each decides one on its own neuron.
	for _, clk := range clocks {
		clk.Advance(time.Second)
	}
	for _, clk := range clocks {
		waitArmed(t, clk, loopArmed)
	}
	waitFor(t, "the two granted loads", func() bool { return len(loadedOn(fleet)) == 2 })
	var outs []string
	for i, s := range gws {
		for _, e := range s.gw.Events() {
			if e.Kind == cortex.EventScaleOut {
				outs = append(outs, fmt.Sprintf("gateway %d: %s on %s", i+1, e.Reason, e.Neuron))
			}
		}
	}
	if len(outs) != 2 {
		t.Errorf("scale-outs %q, want two: max_replicas 2", outs)
	}
	var results []string
	for _, s := range gws {
		for _, r := range []string{"granted", "refused"} {
			if strings.Contains(metricsText(s), `helexa_replica_claims_total{model="m",result="`+r+`"} 1`) {
				results = append(results, r)
			}
		}
	}
	if slices.Sort(results); !slices.Equal(results, []string{"granted", "granted", "refused"}) {
		t.Errorf("helexa_replica_claims_total over the gateways: %q, want granted twice and refused once", results)
	}
	release()
	for _, s := range gws {
		waitFor(t, "two ready replicas", func() bool {
			s.refresh()
			r := route.CountReplicas(s.gw.Fleet(), nil, "m")
			return r.Ready == 2 && r.Loading == 0
		})
	}
	if on := loadedOn(fleet); len(on) != 2 || slices.Contains(on, "n4") {
		t.Errorf("load calls on %v, want two of n1-n3", on)
	}
}

// claimless is a neuron client whose replica claims fail with err.
type claimless struct {
	*neuron.Client
	err error
}

func (c claimless) ClaimReplica(context.Context, neuron.ReplicaClaim) (neuron.ClaimResult, error) {
	return neuron.ClaimResult{}, c.err
}

// TestClaimWithoutArbiter: an arbiter that does not know claims (an older
// neuron: 404) leaves the bound to what the gateway sees, and loads go on;
// one that cannot be asked holds scale-outs back, but never a request's
// load.
func TestClaimWithoutArbiter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		scaleOut bool // the scale-out for min_replicas loads
	}{
		{"older neuron", &neuron.APIError{Status: http.StatusNotFound, Code: "not_found", Message: "404 page not found"}, true},
		{"unreachable", errors.New("dial tcp: connection refused"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cat := newCatalogue(t, []catalogue.Model{
				{ID: "kept", VRAMMB: 1000, MinReplicas: 1},
				{ID: "cold", VRAMMB: 1000, MaxReplicas: 1},
			}, nil)
			fleet := cortextest.NewFleet(t, cortextest.Named("n1")...)
			clk := newFakeClock()
			s := newStackOn(t, fleet, cat, cortex.WithClock(clk), cortex.WithAdminFactory(func(cortex.NeuronConfig) (cortex.NeuronAdmin, error) {
				return claimless{Client: fleet.Neuron("n1").Client(), err: tt.err}, nil
			}))
			runOnClock(t, s, clk)
			advance(t, clk, time.Second)
			resp := s.do(http.MethodPost, "/v1/chat/completions", `{"model":"cold","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("a request's cold load: %d, want 200", resp.StatusCode)
			}
			if tt.scaleOut {
				waitFor(t, "the load of min_replicas", func() bool { return slices.Contains(fleet.Neuron("n1").LoadCalls(), "kept") })
				return
			}
			waitFor(t, "the scale-out's claim", func() bool {
				return strings.Contains(metricsText(s), `helexa_replica_claims_total{model="kept",result="unavailable"} 1`)
			})
			if slices.Contains(fleet.Neuron("n1").LoadCalls(), "kept") {
				t.Error("min_replicas loaded without its claim")
			}
		})
	}
}
