package route_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// routerCatalogue is the catalogue of the routing tests.
func routerCatalogue(tb testing.TB) *catalogue.Catalogue {
	return newCatalogue(tb, []catalogue.Model{
		{ID: "small", VRAMMB: 4000},
		{ID: "mid", VRAMMB: 10000},
		{ID: "big", VRAMMB: 40000, MinDevices: 2, MinDeviceVRAMMB: 20000},
		{ID: "huge", VRAMMB: 500000},
		{ID: "pinned", VRAMMB: 8000, PinnedOn: []string{"n3"}},
		{ID: "victim-a", VRAMMB: 6000},
		{ID: "victim-b", VRAMMB: 6000},
		{ID: "victim-c", VRAMMB: 6000},
		{ID: "cpu"},
	}, map[string]string{"m": "mid"})
}

// loaded returns a loaded model state.
func loaded(id string, vramMB uint64) route.ModelState {
	return model(id, neuron.StatusLoaded, vramMB)
}

// decision is the comparable part of a route.Decision.
type decision struct {
	Neuron string
	Model  string
	Action route.Action
	Evict  []string
}

func TestRoute(t *testing.T) {
	t.Parallel()
	const retryAfter = 5 * time.Second
	draining := func(n route.NeuronState) route.NeuronState {
		n.Health = &neuron.Health{Status: "shutting_down"}
		return n
	}
	g24 := gpus(24000)
	tests := []struct {
		name      string
		neurons   []route.NeuronState
		usage     func(*route.Usage)
		model     string
		tried     []route.Attempt
		want      decision
		wantErr   error
		wantRetry bool
	}{
		{
			name: "least busy replica by snapshot counts",
			neurons: []route.NeuronState{
				host("n1", g24, busy(loaded("mid", 10000), 3, 0)),
				host("n2", g24, busy(loaded("mid", 10000), 1, 1)),
				host("n3", g24, busy(loaded("mid", 10000), 0, 5)),
			},
			model: "mid",
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionServe},
		},
		{
			name: "live in-flight counts join the snapshot counts",
			neurons: []route.NeuronState{
				host("n1", g24, busy(loaded("mid", 10000), 3, 0)),
				host("n2", g24, busy(loaded("mid", 10000), 1, 1)),
				host("n3", g24, busy(loaded("mid", 10000), 0, 5)),
			},
			usage: func(u *route.Usage) {
				u.Add("n2", "mid")
				u.Add("n2", "mid")
				u.Add("n3", "other")
			},
			model: "mid",
			want:  decision{Neuron: "n1", Model: "mid", Action: route.ActionServe},
		},
		{
			name: "ties go to the first name",
			neurons: []route.NeuronState{
				host("n2", g24, busy(loaded("mid", 10000), 1, 0)),
				host("n1", g24, busy(loaded("mid", 10000), 0, 1)),
			},
			model: "mid",
			want:  decision{Neuron: "n1", Model: "mid", Action: route.ActionServe},
		},
		{
			name: "unhealthy and draining replicas are skipped",
			neurons: []route.NeuronState{
				down(host("n1", g24, loaded("mid", 10000))),
				draining(host("n2", g24, loaded("mid", 10000))),
				host("n3", g24, busy(loaded("mid", 10000), 9, 9)),
			},
			model: "mid",
			want:  decision{Neuron: "n3", Model: "mid", Action: route.ActionServe},
		},
		{
			name: "an excluded replica is skipped",
			neurons: []route.NeuronState{
				host("n1", g24, loaded("mid", 10000)),
				host("n2", g24, busy(loaded("mid", 10000), 5, 0)),
			},
			model: "mid",
			tried: unreachable("n0", "n1"),
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionServe},
		},
		{
			name: "alias resolves to the model",
			neurons: []route.NeuronState{
				host("n1", g24, loaded("mid", 10000)),
			},
			model: "m",
			want:  decision{Neuron: "n1", Model: "mid", Action: route.ActionServe},
		},
		{
			name: "a loading model is joined, not loaded twice",
			neurons: []route.NeuronState{
				host("n1", g24),
				host("n2", g24, model("mid", neuron.StatusLoading, 10000)),
			},
			model: "mid",
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionJoin},
		},
		{
			name: "a loaded replica beats a loading one",
			neurons: []route.NeuronState{
				host("n1", g24, model("mid", neuron.StatusLoading, 10000)),
				host("n2", g24, busy(loaded("mid", 10000), 50, 50)),
			},
			model: "mid",
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionServe},
		},
		{
			name: "recovering only is joined: its engine is restarting",
			neurons: []route.NeuronState{
				host("n1", g24, model("mid", neuron.StatusRecovering, 10000)),
				host("n2", g24),
			},
			model: "mid",
			want:  decision{Neuron: "n1", Model: "mid", Action: route.ActionJoin},
		},
		{
			name: "failed only is retryable",
			neurons: []route.NeuronState{
				host("n1", g24, model("mid", neuron.StatusFailed, 10000)),
			},
			model:     "mid",
			wantErr:   route.ErrModelRecovering,
			wantRetry: true,
		},
		{
			name: "recovering beside a loaded replica serves the loaded one",
			neurons: []route.NeuronState{
				host("n1", g24, model("mid", neuron.StatusRecovering, 10000)),
				host("n2", g24, loaded("mid", 10000)),
			},
			model: "mid",
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionServe},
		},
		{
			name:      "no healthy neuron",
			neurons:   []route.NeuronState{down(host("n1", g24, loaded("mid", 10000))), draining(host("n2", g24))},
			model:     "mid",
			wantErr:   route.ErrNoHealthyNeuron,
			wantRetry: true,
		},
		{
			name:      "empty fleet",
			model:     "mid",
			wantErr:   route.ErrNoHealthyNeuron,
			wantRetry: true,
		},
		{
			name:    "unknown model",
			neurons: []route.NeuronState{host("n1", g24, loaded("mid", 10000))},
			model:   "nope",
			wantErr: route.ErrModelNotFound,
		},
		{
			name:    "a model not in the catalogue is served where resident",
			neurons: []route.NeuronState{host("n1", g24), host("n2", g24, loaded("custom", 3000))},
			model:   "custom",
			want:    decision{Neuron: "n2", Model: "custom", Action: route.ActionServe},
		},
		{
			name:    "a model not in the catalogue loading is joined",
			neurons: []route.NeuronState{host("n1", g24, model("custom", neuron.StatusLoading, 0))},
			model:   "custom",
			want:    decision{Neuron: "n1", Model: "custom", Action: route.ActionJoin},
		},
		{
			name:      "a model not in the catalogue resident only on a down neuron",
			neurons:   []route.NeuronState{down(host("n1", g24, loaded("custom", 3000))), host("n2", g24)},
			model:     "custom",
			wantErr:   route.ErrFeasibleNeuronDown,
			wantRetry: true,
		},
		{
			name: "placement: the most free VRAM first",
			neurons: []route.NeuronState{
				host("n1", g24, loaded("small", 4000)),
				host("n2", g24),
			},
			model: "mid",
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad},
		},
		{
			name:    "placement: ties go to the first name",
			neurons: []route.NeuronState{host("n2", g24), host("n1", g24)},
			model:   "m",
			want:    decision{Neuron: "n1", Model: "mid", Action: route.ActionLoad},
		},
		{
			name: "placement: pinned first",
			neurons: []route.NeuronState{
				host("n1", g24),
				host("n3", g24, loaded("mid", 10000)),
			},
			model: "pinned",
			want:  decision{Neuron: "n3", Model: "pinned", Action: route.ActionLoad},
		},
		{
			name: "placement: pinned after evicting beats unpinned free",
			neurons: []route.NeuronState{
				host("n1", g24),
				host("n3", gpus(10000), loaded("victim-a", 6000)),
			},
			model: "pinned",
			want:  decision{Neuron: "n3", Model: "pinned", Action: route.ActionLoad, Evict: []string{"victim-a"}},
		},
		{
			name: "placement: a pinned neuron that cannot take it is passed over",
			neurons: []route.NeuronState{
				host("n1", g24),
				host("n3", gpus(10000), busy(loaded("small", 4000), 1, 0)),
			},
			model: "pinned",
			want:  decision{Neuron: "n1", Model: "pinned", Action: route.ActionLoad},
		},
		{
			name: "placement: fits free before fits after evicting",
			neurons: []route.NeuronState{
				host("n1", gpus(16000), loaded("victim-a", 6000), loaded("victim-b", 6000)),
				host("n2", gpus(12000), busy(loaded("small", 1000), 1, 0)),
			},
			model: "mid",
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad},
		},
		{
			name: "placement: the fewest victims",
			neurons: []route.NeuronState{
				host("n1", gpus(12000), loaded("victim-a", 4000), loaded("victim-b", 4000), loaded("victim-c", 4000)),
				host("n2", gpus(12000), used(loaded("victim-a", 6000), t0), loaded("victim-b", 6000)),
			},
			model: "mid",
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad, Evict: []string{"victim-b", "victim-a"}},
		},
		{
			name: "placement: no fit even after evicting takes the most free",
			neurons: []route.NeuronState{
				host("n1", gpus(12000), busy(loaded("small", 6000), 1, 0)),
				host("n2", gpus(12000), busy(loaded("small", 4000), 0, 1)),
			},
			model: "mid",
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad},
		},
		{
			name:    "placement: a model without VRAM fits anywhere",
			neurons: []route.NeuronState{host("n1", gpus())},
			model:   "cpu",
			want:    decision{Neuron: "n1", Model: "cpu", Action: route.ActionLoad},
		},
		{
			name: "placement: a replica on an unhealthy neuron is replaced elsewhere",
			neurons: []route.NeuronState{
				down(host("n1", g24, loaded("mid", 10000))),
				host("n2", g24),
			},
			model: "mid",
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad},
		},
		{
			name: "placement: an excluded replica is replaced elsewhere",
			neurons: []route.NeuronState{
				host("n1", g24, loaded("mid", 10000)),
				host("n2", g24),
			},
			model: "mid",
			tried: gone("n1"),
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad},
		},
		{
			name: "placement: not on the neuron unloading it",
			neurons: []route.NeuronState{
				host("n1", gpus(48000), model("mid", neuron.StatusUnloading, 10000)),
				host("n2", g24),
			},
			model: "mid",
			want:  decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad},
		},
		{
			name:      "placement: only the neuron unloading it is feasible",
			neurons:   []route.NeuronState{host("n1", g24, model("mid", neuron.StatusUnloading, 10000))},
			model:     "mid",
			wantErr:   route.ErrFeasibleNeuronDown,
			wantRetry: true,
		},
		{
			name: "only an unhealthy neuron is feasible",
			neurons: []route.NeuronState{
				down(host("n1", gpus(24000, 24000))),
				host("n2", gpus(24000, 16000)),
			},
			model:     "big",
			wantErr:   route.ErrFeasibleNeuronDown,
			wantRetry: true,
		},
		{
			name: "only an excluded neuron is feasible",
			neurons: []route.NeuronState{
				host("n1", gpus(24000, 24000)),
				host("n2", g24),
			},
			model:     "big",
			tried:     unreachable("n1"),
			wantErr:   route.ErrFeasibleNeuronDown,
			wantRetry: true,
		},
		{
			name: "a neuron not yet discovered might be feasible",
			neurons: []route.NeuronState{
				host("n1", nil),
				host("n2", g24),
			},
			model:     "big",
			wantErr:   route.ErrFeasibleNeuronDown,
			wantRetry: true,
		},
		{
			name: "never feasible is final",
			neurons: []route.NeuronState{
				host("n1", gpus(24000, 24000)),
				down(host("n2", gpus(80000, 80000))),
			},
			model:   "huge",
			wantErr: route.ErrNoFeasibleNeuron,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := route.NewUsage()
			f := newFleet(t, routerCatalogue(t), u, tt.neurons...)
			if tt.usage != nil {
				tt.usage(u) // after the snapshot: the live counters must still count
			}
			r, err := route.NewRouter(route.WithRetryAfter(retryAfter))
			if err != nil {
				t.Fatal(err)
			}
			d, err := r.Route(f, &route.Request{Model: tt.model, Tried: tt.tried})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Route = %+v, %v; want error %v", d, err, tt.wantErr)
				}
				var re *route.RetryError
				if errors.As(err, &re) != tt.wantRetry {
					t.Fatalf("Route error %v: retryable %v, want %v", err, !tt.wantRetry, tt.wantRetry)
				}
				if tt.wantRetry && re.RetryAfter != retryAfter {
					t.Errorf("RetryAfter = %v, want %v", re.RetryAfter, retryAfter)
				}
				return
			}
			if err != nil {
				t.Fatalf("Route: %v", err)
			}
			got := decision{Neuron: d.Neuron, Model: d.Model.ID, Action: d.Action, Evict: d.Evict}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Route (-got +want):\n%s", diff)
			}
		})
	}
}

func TestRouteNilFleet(t *testing.T) {
	t.Parallel()
	r, err := route.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Route(nil, &route.Request{Model: "mid"})
	var re *route.RetryError
	if !errors.Is(err, route.ErrNoHealthyNeuron) || !errors.As(err, &re) || re.RetryAfter != route.DefaultRetryAfter {
		t.Errorf("Route(nil) = %v, want a *RetryError of ErrNoHealthyNeuron after %v", err, route.DefaultRetryAfter)
	}
}

func TestRouteProfiles(t *testing.T) {
	t.Parallel()
	cat := routerCatalogue(t)
	f := newFleet(t, cat, nil, host("n1", gpus(24000), model("custom", neuron.StatusLoaded, 1), model("mid", neuron.StatusLoaded, 10000)))
	r, err := route.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	wantMid, _ := cat.Resolve("mid")
	tests := []struct {
		name string
		in   string
		want catalogue.Model
	}{
		{name: "alias gets the catalogue profile", in: "m", want: wantMid},
		{name: "not in the catalogue gets the default profile", in: "custom", want: catalogue.Model{ID: "custom", ResidencyPriority: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := r.Route(f, &route.Request{Model: tt.in})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(d.Model, tt.want); diff != "" {
				t.Errorf("Decision.Model (-got +want):\n%s", diff)
			}
		})
	}
}

// fakeEvictor records its calls and answers with victims.
type fakeEvictor struct {
	victims func(n *route.NeuronState, incoming catalogue.Model, needMB uint64) []string
	calls   []string
}

func (e *fakeEvictor) Victims(n *route.NeuronState, incoming catalogue.Model, needMB uint64) []string {
	e.calls = append(e.calls, fmt.Sprintf("%s %s %d", n.Name, incoming.ID, needMB))
	return e.victims(n, incoming, needMB)
}

func TestRouteAsksTheEvictor(t *testing.T) {
	t.Parallel()
	cat := routerCatalogue(t)
	tests := []struct {
		name      string
		neurons   []route.NeuronState
		victims   func(n *route.NeuronState, incoming catalogue.Model, needMB uint64) []string
		want      decision
		wantCalls []string
	}{
		{
			name: "not asked when the model fits free",
			neurons: []route.NeuronState{
				host("n1", gpus(12000), loaded("small", 8000)),
				host("n2", gpus(12000)),
			},
			victims: func(*route.NeuronState, catalogue.Model, uint64) []string { return []string{"small"} },
			want:    decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad},
		},
		{
			name: "asked for the VRAM missing on each neuron",
			neurons: []route.NeuronState{
				host("n1", gpus(12000), loaded("small", 8000)),
				host("n2", gpus(12000), loaded("victim-a", 5000)),
			},
			victims: func(n *route.NeuronState, _ catalogue.Model, _ uint64) []string {
				return []string{n.Models[0].ID}
			},
			// One victim each: the tie goes to the higher placement
			// score, the most free VRAM.
			want:      decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad, Evict: []string{"victim-a"}},
			wantCalls: []string{"n1 mid 6000", "n2 mid 3000"},
		},
		{
			name: "no victims anywhere falls back to the most free",
			neurons: []route.NeuronState{
				host("n1", gpus(12000), loaded("small", 8000)),
				host("n2", gpus(12000), loaded("victim-a", 5000)),
			},
			victims:   func(*route.NeuronState, catalogue.Model, uint64) []string { return nil },
			want:      decision{Neuron: "n2", Model: "mid", Action: route.ActionLoad},
			wantCalls: []string{"n1 mid 6000", "n2 mid 3000"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := &fakeEvictor{victims: tt.victims}
			r, err := route.NewRouter(route.WithEvictor(ev))
			if err != nil {
				t.Fatal(err)
			}
			d, err := r.Route(newFleet(t, cat, nil, tt.neurons...), &route.Request{Model: "mid"})
			if err != nil {
				t.Fatal(err)
			}
			got := decision{Neuron: d.Neuron, Model: d.Model.ID, Action: d.Action, Evict: d.Evict}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Route (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(ev.calls, tt.wantCalls); diff != "" {
				t.Errorf("Evictor calls (-got +want):\n%s", diff)
			}
		})
	}
}

func TestNewRouterErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []route.RouterOption
	}{
		{name: "nil evictor", in: []route.RouterOption{route.WithEvictor(nil)}},
		{name: "zero retry after", in: []route.RouterOption{route.WithRetryAfter(0)}},
		{name: "negative retry after", in: []route.RouterOption{route.WithRetryAfter(-time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if r, err := route.NewRouter(tt.in...); err == nil {
				t.Errorf("NewRouter = %v, want an error", r)
			}
		})
	}
}

func TestActionString(t *testing.T) {
	t.Parallel()
	for a, want := range map[route.Action]string{
		route.ActionServe: "serve", route.ActionJoin: "join", route.ActionLoad: "load", 0: "Action(0)",
	} {
		if got := a.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", a, got, want)
		}
	}
}

func TestRetryError(t *testing.T) {
	t.Parallel()
	err := error(&route.RetryError{Err: fmt.Errorf("%w: %q", route.ErrModelRecovering, "mid"), RetryAfter: 2 * time.Second})
	if !errors.Is(err, route.ErrModelRecovering) {
		t.Error("errors.Is does not see the cause")
	}
	if got, want := err.Error(), `route: model is recovering: "mid" (retry after 2s)`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestRouteToLoadedDoesNotAllocate(t *testing.T) {
	u := route.NewUsage()
	f := newFleet(t, routerCatalogue(t), u,
		host("n1", gpus(24000), busy(model("mid", neuron.StatusLoaded, 10000), 1, 0)),
		host("n2", gpus(24000), model("mid", neuron.StatusLoaded, 10000)),
	)
	u.Add("n2", "mid")
	u.Add("n2", "mid")
	r, err := route.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	req := &route.Request{Model: "m", Tried: unreachable("n9")}
	allocs := testing.AllocsPerRun(100, func() {
		d, err := r.Route(f, req)
		if err != nil || d.Neuron != "n1" {
			panic(fmt.Sprint(d, err))
		}
	})
	if allocs != 0 {
		t.Errorf("Route allocates %v times, want 0", allocs)
	}
}

// benchFleet builds neurons × models: every neuron has two 80 GiB devices;
// neuron i hosts models [i*stride, i*stride+perNeuron) modulo distinct,
// loaded, with some load.
func benchFleet(b *testing.B, neurons, perNeuron, distinct int) (*route.Fleet, *route.Usage) {
	b.Helper()
	var models []catalogue.Model
	for i := range distinct {
		models = append(models, catalogue.Model{ID: fmt.Sprintf("model-%04d", i), VRAMMB: 1000})
	}
	models = append(models, catalogue.Model{ID: "cold", VRAMMB: 60000})
	cat := newCatalogue(b, models, map[string]string{"alias-0": "model-0000"})
	u := route.NewUsage()
	states := make([]route.NeuronState, neurons)
	for i := range states {
		var ms []route.ModelState
		for j := range perNeuron {
			id := fmt.Sprintf("model-%04d", (i*perNeuron+j)%distinct)
			// At least 1 in flight everywhere: Route must scan every replica.
			ms = append(ms, busy(model(id, neuron.StatusLoaded, 1000+uint64(j)), 1+(i*7+j)%5, (i*3+j)%4))
		}
		states[i] = host(fmt.Sprintf("neuron-%04d", i), gpus(81920, 81920), ms...)
	}
	f, err := route.NewFleet(cat, u, t0, states)
	if err != nil {
		b.Fatal(err)
	}
	return f, u
}

// BenchmarkRoute measures Route over 1000 neurons × 50 resident models.
// "loaded/spread": 1000 distinct models, each on 50 neurons; "loaded/everywhere":
// 50 models, each on all 1000 neurons (the worst case for the replica scan);
// "load/*": a cold model placed in free VRAM, or after eviction.
func BenchmarkRoute(b *testing.B) {
	r, err := route.NewRouter()
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, f *route.Fleet, model string, want route.Action) {
		b.Helper()
		b.ReportAllocs()
		// A seed, as the gateway draws for every request: ties spread.
		req := &route.Request{Model: model, Seed: 0x9e3779b97f4a7c15}
		for b.Loop() {
			d, err := r.Route(f, req)
			if err != nil || d.Action != want {
				b.Fatal(d, err)
			}
		}
	}
	b.Run("loaded/spread", func(b *testing.B) {
		f, u := benchFleet(b, 1000, 50, 1000)
		u.Add("neuron-0020", "model-0000")
		run(b, f, "alias-0", route.ActionServe)
	})
	b.Run("loaded/everywhere", func(b *testing.B) {
		f, _ := benchFleet(b, 1000, 50, 50)
		run(b, f, "model-0007", route.ActionServe)
	})
	b.Run("loaded/everywhere/filter+scorers", func(b *testing.B) {
		// The generic path: a filter and two scorers of an embedder's
		// own, called for each of the 1000 replicas.
		r, err := route.NewRouter(
			route.WithFilters(route.FilterFunc(func(_ *route.Fleet, _ *route.Request, c route.Candidate) bool {
				return c.Neuron.Name != "neuron-0000"
			})),
			route.WithScorers(route.Weighted{Scorer: route.LeastLoaded, Weight: 1}, route.Weighted{Scorer: route.Pinned, Weight: 0.5}))
		if err != nil {
			b.Fatal(err)
		}
		f, _ := benchFleet(b, 1000, 50, 50)
		req := &route.Request{Model: "model-0007"}
		b.ReportAllocs()
		for b.Loop() {
			if d, err := r.Route(f, req); err != nil || d.Action != route.ActionServe {
				b.Fatal(d, err)
			}
		}
	})
	b.Run("load/free", func(b *testing.B) {
		f, _ := benchFleet(b, 1000, 50, 1000)
		run(b, f, "cold", route.ActionLoad)
	})
	b.Run("load/evict", func(b *testing.B) {
		// 50 models of 2000 MiB leave 63840 MiB free: a 150000 MiB model
		// must evict 44 of the 45 idle ones.
		var models []catalogue.Model
		for i := range 50 {
			models = append(models, catalogue.Model{ID: fmt.Sprintf("model-%04d", i), VRAMMB: 2000})
		}
		models = append(models, catalogue.Model{ID: "cold", VRAMMB: 150000, MinDevices: 2})
		cat := newCatalogue(b, models, nil)
		states := make([]route.NeuronState, 1000)
		for i := range states {
			var ms []route.ModelState
			for j := range 50 {
				m := model(fmt.Sprintf("model-%04d", j), neuron.StatusLoaded, 2000)
				if (i+j)%10 == 0 {
					m = busy(m, 1, 0)
				}
				ms = append(ms, used(m, t0.Add(time.Duration(i*50+j)*time.Second)))
			}
			states[i] = host(fmt.Sprintf("neuron-%04d", i), gpus(81920, 81920), ms...)
		}
		f, err := route.NewFleet(cat, nil, t0, states)
		if err != nil {
			b.Fatal(err)
		}
		run(b, f, "cold", route.ActionLoad)
	})
}

// BenchmarkNewFleet measures building a 1000 × 50 snapshot, as the poller
// does after each round.
func BenchmarkNewFleet(b *testing.B) {
	f, u := benchFleet(b, 1000, 50, 1000)
	states := make([]route.NeuronState, 0, 1000)
	for _, n := range f.Neurons() {
		states = append(states, *n)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := route.NewFleet(f.Catalogue(), u, t0, states); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleDefaultRouter_Route() {
	cat, err := catalogue.New([]catalogue.Model{
		{ID: "llama-3.1-8b-instruct", VRAMMB: 9000},
	}, map[string]string{"llama": "llama-3.1-8b-instruct"})
	if err != nil {
		panic(err)
	}
	gpu := &neuron.Discovery{Devices: []neuron.Device{{Index: 0, Name: "L4", TotalMB: 24576}}}
	fleet, err := route.NewFleet(cat, nil, time.Now(), []route.NeuronState{
		{Name: "gpu-a", Healthy: true, Discovery: gpu, Models: []route.ModelState{{
			ModelInfo: neuron.ModelInfo{ID: "llama-3.1-8b-instruct", Status: neuron.StatusLoaded, VRAMUsedMB: 9000},
			InFlight:  3,
		}}},
		{Name: "gpu-b", Healthy: true, Discovery: gpu},
	})
	if err != nil {
		panic(err)
	}
	r, err := route.NewRouter()
	if err != nil {
		panic(err)
	}

	d, _ := r.Route(fleet, &route.Request{Model: "llama"})
	fmt.Println(d.Action, d.Neuron, d.Model.ID)
	// The retry after gpu-a answered that the model had gone: load it
	// again, on the other neuron, as gpu-a still lists it.
	d, _ = r.Route(fleet, &route.Request{Model: "llama", Tried: []route.Attempt{{Neuron: "gpu-a", Failure: route.FailedGone}}})
	fmt.Println(d.Action, d.Neuron, d.Model.ID)
	_, err = r.Route(fleet, &route.Request{Model: "gpt-4o"})
	fmt.Println(errors.Is(err, route.ErrModelNotFound))
	// Output:
	// serve gpu-a llama-3.1-8b-instruct
	// load gpu-b llama-3.1-8b-instruct
	// true
}

// unreachable returns the attempts of a request that could not reach the
// neurons.
func unreachable(neurons ...string) []route.Attempt { return tried(route.FailedUnreachable, neurons) }

// gone returns the attempts of a request that found the model gone from
// the neurons.
func gone(neurons ...string) []route.Attempt { return tried(route.FailedGone, neurons) }

func tried(f route.Failure, neurons []string) []route.Attempt {
	out := make([]route.Attempt, len(neurons))
	for i, n := range neurons {
		out[i] = route.Attempt{Neuron: n, Failure: f}
	}
	return out
}
