package route_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// TestRouteSeesTheRequest: the default Router decides from the whole
// request view: the attempts already made, the gateway's loads in flight
// and the load backoffs.
func TestRouteSeesTheRequest(t *testing.T) {
	t.Parallel()
	g24 := gpus(24000)
	t0 := time.Unix(1000, 0)
	restarting := model("mid", neuron.StatusFailed, 10000)
	restarting.LastFailure = "exited with status 1"
	tests := []struct {
		name      string
		neurons   []route.NeuronState
		req       route.Request
		want      decision
		wantErr   error
		wantAfter time.Duration // the Retry-After of a *RetryError
	}{
		{
			name:    "a load of this gateway the snapshot does not show yet is joined",
			neurons: []route.NeuronState{host("n1", g24), host("n2", g24)},
			req:     route.Request{Model: "m", Loads: []route.Load{{Model: "small", Neuron: "n1"}, {Model: "mid", Neuron: "n2"}}},
			want:    decision{Neuron: "n2", Model: "mid", Action: route.ActionJoin},
		},
		{
			name:    "a loaded replica beats joining a load",
			neurons: []route.NeuronState{host("n1", g24, busy(loaded("mid", 10000), 9, 9)), host("n2", g24)},
			req:     route.Request{Model: "mid", Loads: []route.Load{{Model: "mid", Neuron: "n2"}}},
			want:    decision{Neuron: "n1", Model: "mid", Action: route.ActionServe},
		},
		{
			name:    "an engine that failed is restarting: joined",
			neurons: []route.NeuronState{host("n1", g24, restarting), host("n2", g24)},
			req:     route.Request{Model: "mid"},
			want:    decision{Neuron: "n1", Model: "mid", Action: route.ActionJoin},
		},
		{
			name:    "a retry after the engine was not ready joins its restart",
			neurons: []route.NeuronState{host("n1", g24, model("mid", neuron.StatusRecovering, 10000)), host("n2", g24)},
			req:     route.Request{Model: "mid", Tried: []route.Attempt{{Neuron: "n1", Failure: route.FailedNotReady}}},
			want:    decision{Neuron: "n1", Model: "mid", Action: route.ActionJoin},
		},
		{
			name:      "a retry starts no second copy of a model that is still resident",
			neurons:   []route.NeuronState{host("n1", g24, loaded("mid", 10000)), host("n2", g24)},
			req:       route.Request{Model: "mid", Tried: unreachable("n1")},
			wantErr:   route.ErrFeasibleNeuronDown,
			wantAfter: route.DefaultRetryAfter,
		},
		{
			name:    "a retry after the model left the neuron loads it again there",
			neurons: []route.NeuronState{host("n1", g24)},
			req:     route.Request{Model: "mid", Tried: gone("n1")},
			want:    decision{Neuron: "n1", Model: "mid", Action: route.ActionLoad},
		},
		{
			name:    "a retry serves another replica",
			neurons: []route.NeuronState{host("n1", g24, loaded("mid", 10000)), host("n2", g24, busy(loaded("mid", 10000), 3, 3))},
			req:     route.Request{Model: "mid", Tried: []route.Attempt{{Neuron: "n1", Failure: route.FailedBusy}}},
			want:    decision{Neuron: "n2", Model: "mid", Action: route.ActionServe},
		},
		{
			name:    "no load where one backs off; elsewhere it goes on",
			neurons: []route.NeuronState{host("n1", gpus(48000)), host("n2", g24)},
			req:     route.Request{Model: "mid", Backoff: []route.Backoff{{Neuron: "n1", Until: t0.Add(time.Minute)}}},
			want:    decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad},
		},
		{
			name:    "a load backoff does not stop serving a loaded replica",
			neurons: []route.NeuronState{host("n1", g24, loaded("mid", 10000))},
			req:     route.Request{Model: "mid", Backoff: []route.Backoff{{Neuron: "n1", Until: t0.Add(time.Minute)}}},
			want:    decision{Neuron: "n1", Model: "mid", Action: route.ActionServe},
		},
		{
			name:    "every feasible neuron backs off: retry after the soonest end",
			neurons: []route.NeuronState{host("n1", g24), host("n2", g24)},
			req: route.Request{Model: "mid", Backoff: []route.Backoff{
				{Neuron: "n1", Until: t0.Add(time.Minute)}, {Neuron: "n2", Until: t0.Add(30 * time.Second)}}},
			wantErr:   route.ErrLoadBackoff,
			wantAfter: 30 * time.Second,
		},
	}
	r, err := route.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := route.NewFleet(routerCatalogue(t), nil, t0, tt.neurons)
			if err != nil {
				t.Fatal(err)
			}
			d, err := r.Route(f, &tt.req)
			if tt.wantErr != nil {
				var re *route.RetryError
				if !errors.Is(err, tt.wantErr) || !errors.As(err, &re) || re.RetryAfter != tt.wantAfter {
					t.Fatalf("Route = %+v, %v; want %v after %v", d, err, tt.wantErr, tt.wantAfter)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := decision{Neuron: d.Neuron, Model: d.Model.ID, Action: d.Action, Evict: d.Evict}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Route (-got +want):\n%s", diff)
			}
		})
	}
}

// TestFiltersAndScorers: an embedder's filters apply to every step, and
// its weighted scorers pick among what they keep.
func TestFiltersAndScorers(t *testing.T) {
	t.Parallel()
	g24 := gpus(24000)
	// Tenant "acme" may only use n2 and n3.
	acme := route.FilterFunc(func(_ *route.Fleet, r *route.Request, c route.Candidate) bool {
		return r.Account != "acme" || c.Neuron.Name == "n2" || c.Neuron.Name == "n3"
	})
	// The neuron named in X-Zone scores 1.
	zone := route.ScorerFunc(func(_ *route.Fleet, r *route.Request, c route.Candidate) float64 {
		if r.Header.Get("X-Zone") == c.Neuron.Name {
			return 1
		}
		return 0
	})
	r, err := route.NewRouter(route.WithFilters(acme),
		route.WithScorers(route.Weighted{Scorer: route.LeastLoaded, Weight: 1}, route.Weighted{Scorer: zone, Weight: 2}),
		route.WithPlacementScorers(route.Weighted{Scorer: route.FreeVRAM, Weight: 1}, route.Weighted{Scorer: zone, Weight: 2}))
	if err != nil {
		t.Fatal(err)
	}
	zoned := func(z string) http.Header { return http.Header{"X-Zone": {z}} }
	tests := []struct {
		name    string
		neurons []route.NeuronState
		req     route.Request
		want    decision
		wantErr error
	}{
		{
			name:    "serve: the filter drops the idle replica",
			neurons: []route.NeuronState{host("n1", g24, loaded("mid", 10000)), host("n2", g24, busy(loaded("mid", 10000), 4, 0))},
			req:     route.Request{Model: "mid", Account: "acme"},
			want:    decision{Neuron: "n2", Model: "mid", Action: route.ActionServe},
		},
		{
			name:    "serve: another tenant gets the idle one",
			neurons: []route.NeuronState{host("n1", g24, loaded("mid", 10000)), host("n2", g24, busy(loaded("mid", 10000), 4, 0))},
			req:     route.Request{Model: "mid", Account: "other"},
			want:    decision{Neuron: "n1", Model: "mid", Action: route.ActionServe},
		},
		{
			name:    "serve: the header's neuron outweighs its load",
			neurons: []route.NeuronState{host("n1", g24, loaded("mid", 10000)), host("n2", g24, busy(loaded("mid", 10000), 4, 0))},
			req:     route.Request{Model: "mid", Header: zoned("n2")},
			want:    decision{Neuron: "n2", Model: "mid", Action: route.ActionServe},
		},
		{
			name:    "join: the filter drops the load in progress; a load goes where it may",
			neurons: []route.NeuronState{host("n1", g24, model("mid", neuron.StatusLoading, 10000)), host("n2", g24)},
			req:     route.Request{Model: "mid", Account: "acme"},
			want:    decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad},
		},
		{
			name:    "load: the placement scorer picks the header's neuron over more free VRAM",
			neurons: []route.NeuronState{host("n1", gpus(80000)), host("n2", g24)},
			req:     route.Request{Model: "mid", Header: zoned("n2")},
			want:    decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad},
		},
		{
			name:    "load: what the filter drops is unavailable, not infeasible",
			neurons: []route.NeuronState{host("n1", g24)},
			req:     route.Request{Model: "mid", Account: "acme"},
			wantErr: route.ErrFeasibleNeuronDown,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := r.Route(newFleet(t, routerCatalogue(t), nil, tt.neurons...), &tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Route = %+v, %v; want %v", d, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := decision{Neuron: d.Neuron, Model: d.Model.ID, Action: d.Action, Evict: d.Evict}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Route (-got +want):\n%s", diff)
			}
		})
	}
}

func TestNewRouterRefusesNilParts(t *testing.T) {
	t.Parallel()
	for name, opt := range map[string]route.RouterOption{
		"filter":           route.WithFilters(nil),
		"scorer":           route.WithScorers(route.Weighted{Weight: 1}),
		"placement scorer": route.WithPlacementScorers(route.Weighted{Weight: 1}),
		"evictor":          route.WithEvictor(nil),
	} {
		if _, err := route.NewRouter(opt); err == nil {
			t.Errorf("%s: nil accepted", name)
		}
	}
}

func TestPrefix(t *testing.T) {
	t.Parallel()
	system := strings.Repeat("You are a helpful assistant. ", 40) // 1160 bytes: 4 blocks
	a := route.PrefixOf([]byte(system + "What is 2+2?"))
	b := route.PrefixOf([]byte(system + strings.Repeat("Tell me about the sea. ", 20)))
	if a.Len() != 4 || b.Len() != 6 {
		t.Fatalf("blocks %d and %d, want 4 and 6", a.Len(), b.Len())
	}
	for i := range 4 {
		if a.Block(i) != b.Block(i) {
			t.Errorf("block %d differs for a shared system prompt", i)
		}
	}
	if b.Block(5) == b.Block(4) {
		t.Error("two blocks hash the same")
	}
	var sums []uint64
	for i := range b.Len() {
		sums = append(sums, b.Block(i))
	}
	if c := route.NewPrefix(sums); c != b {
		t.Error("NewPrefix of a Prefix's blocks differs from it")
	}
	if short := route.PrefixOf(bytes.Repeat([]byte("x"), route.PrefixBlockBytes-1)); short.Len() != 0 {
		t.Errorf("a prompt shorter than a block has %d blocks", short.Len())
	}
}

// A request's Seed breaks ties between equally good replicas, on the
// least-loaded fast path and on the scored path alike; without one, ties
// go to the first name.
func TestSeedBreaksTies(t *testing.T) {
	t.Parallel()
	f := newFleet(t, routerCatalogue(t), nil,
		host("n1", gpus(24000), loaded("mid", 10000)), host("n2", gpus(24000), loaded("mid", 10000)),
		host("n3", gpus(24000), loaded("mid", 10000)), host("n4", gpus(24000), busy(loaded("mid", 10000), 1, 0)))
	def, err := route.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	scored, err := route.NewRouter(route.WithScorers(route.Weighted{Scorer: route.LeastLoaded, Weight: 1}, route.Weighted{Scorer: route.Pinned, Weight: 1}))
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]route.Router{"least-loaded": def, "scored": scored} {
		if n := routeTo(t, r, f, &route.Request{Model: "mid"}); n != "n1" {
			t.Errorf("%s, no seed: %s, want the first name", name, n)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		counts := map[string]int{}
		for range 3000 {
			counts[routeTo(t, r, f, &route.Request{Model: "mid", Seed: rng.Uint64() | 1})]++
		}
		if counts["n4"] != 0 {
			t.Errorf("%s: the busier n4 won %d ties it was not in", name, counts["n4"])
		}
		for _, n := range []string{"n1", "n2", "n3"} {
			if c := counts[n]; c < 900 || c > 1100 {
				t.Errorf("%s: %s won %d of 3000 ties among 3, want about 1000: %v", name, n, c, counts)
			}
		}
	}
}
