package route_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

func TestLRUVictims(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{
		{ID: "incoming", VRAMMB: 10000},
		{ID: "low", VRAMMB: 10000, ResidencyPriority: 10},
		{ID: "vip", VRAMMB: 4000, ResidencyPriority: 500},
		{ID: "pinned-here", VRAMMB: 4000, PinnedOn: []string{"n1"}, ResidencyPriority: 50},
		{ID: "pinned-elsewhere", VRAMMB: 4000, PinnedOn: []string{"n9"}, ResidencyPriority: 50},
	}, nil)
	incoming, _ := cat.Resolve("incoming")
	low, _ := cat.Resolve("low")
	old, older := t0.Add(-time.Minute), t0.Add(-time.Hour)
	tests := []struct {
		name     string
		models   []route.ModelState
		live     func(*route.Usage)
		incoming catalogue.Model
		needMB   uint64
		want     []string
	}{
		{
			name: "never used first, then least recently used, ties by id",
			models: []route.ModelState{
				used(loaded("a", 1000), old),
				used(loaded("b", 1000), older),
				loaded("d", 1000),
				loaded("c", 1000),
				used(loaded("e", 1000), old),
			},
			incoming: incoming,
			needMB:   5000,
			want:     []string{"c", "d", "b", "a", "e"},
		},
		{
			name: "only as many as needed",
			models: []route.ModelState{
				used(loaded("a", 3000), old),
				used(loaded("b", 3000), older),
				used(loaded("c", 3000), t0),
			},
			incoming: incoming,
			needMB:   4000,
			want:     []string{"b", "a"},
		},
		{
			name: "the live last use counts",
			models: []route.ModelState{
				used(loaded("a", 3000), old),
				used(loaded("b", 3000), older),
			},
			live:     func(u *route.Usage) { u.Touch("n1", "b", t0) },
			incoming: incoming,
			needMB:   3000,
			want:     []string{"a"},
		},
		{
			name: "pinned here and higher priority are protected",
			models: []route.ModelState{
				loaded("vip", 4000),
				loaded("pinned-here", 4000),
				used(loaded("pinned-elsewhere", 4000), t0),
				used(loaded("a", 4000), t0),
			},
			incoming: incoming,
			needMB:   8000,
			want:     []string{"a", "pinned-elsewhere"},
		},
		{
			name: "a lower-priority incoming model evicts only lower or equal",
			models: []route.ModelState{
				loaded("a", 4000),
				used(loaded("pinned-elsewhere", 4000), t0),
			},
			incoming: low,
			needMB:   4000,
			want:     nil, // a (100) and pinned-elsewhere (50) outrank low (10)
		},
		{
			name: "models with work are protected",
			models: []route.ModelState{
				busy(loaded("a", 4000), 1, 0),
				busy(loaded("b", 4000), 0, 1),
				loaded("c", 4000),
				used(loaded("d", 4000), t0),
			},
			live:     func(u *route.Usage) { u.Add("n1", "c") },
			incoming: incoming,
			needMB:   4000,
			want:     []string{"d"},
		},
		{
			name: "only loaded models that hold VRAM are candidates",
			models: []route.ModelState{
				model("loading", neuron.StatusLoading, 4000),
				model("recovering", neuron.StatusRecovering, 4000),
				model("unloading", neuron.StatusUnloading, 4000),
				loaded("zero", 0),
				used(loaded("a", 4000), t0),
			},
			incoming: incoming,
			needMB:   4000,
			want:     []string{"a"},
		},
		{
			name:     "the incoming model itself is not a victim",
			models:   []route.ModelState{loaded("incoming", 10000), used(loaded("a", 4000), t0)},
			incoming: incoming,
			needMB:   4000,
			want:     []string{"a"},
		},
		{
			name: "not enough candidates: nothing",
			models: []route.ModelState{
				loaded("a", 4000),
				loaded("vip", 4000),
				busy(loaded("b", 4000), 1, 0),
			},
			incoming: incoming,
			needMB:   8000,
		},
		{
			name:     "nothing needed: nothing",
			models:   []route.ModelState{loaded("a", 4000)},
			incoming: incoming,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := route.NewUsage()
			f := newFleet(t, cat, u, host("n1", gpus(24000), tt.models...))
			if tt.live != nil {
				tt.live(u)
			}
			got := route.NewLRUEvictor().Victims(f.Neuron("n1"), tt.incoming, tt.needMB)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Victims (-got +want):\n%s", diff)
			}
		})
	}
}

func TestLRUDefaultsPriorityOfHandBuiltProfiles(t *testing.T) {
	t.Parallel()
	// A profile built by hand leaves ResidencyPriority zero: it means the
	// catalogue's default (100), so the default-priority resident is fair
	// game and nothing is protected by accident.
	f := newFleet(t, nil, nil, host("n1", gpus(24000), loaded("a", 4000)))
	got := route.LRU{}.Victims(f.Neuron("n1"), catalogue.Model{ID: "x", VRAMMB: 4000}, 4000)
	if diff := cmp.Diff(got, []string{"a"}); diff != "" {
		t.Errorf("Victims (-got +want):\n%s", diff)
	}
	if got := (route.LRU{}).Victims(nil, catalogue.Model{ID: "x"}, 1); got != nil {
		t.Errorf("Victims(nil neuron) = %v, want nil", got)
	}
}
