package route_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// t0 is the time of every hand-built snapshot.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// newCatalogue builds a catalogue or fails the test.
func newCatalogue(tb testing.TB, models []catalogue.Model, aliases map[string]string) *catalogue.Catalogue {
	tb.Helper()
	c, err := catalogue.New(models, aliases)
	if err != nil {
		tb.Fatalf("catalogue.New: %v", err)
	}
	return c
}

// newFleet builds a fleet or fails the test.
func newFleet(tb testing.TB, cat *catalogue.Catalogue, u *route.Usage, neurons ...route.NeuronState) *route.Fleet {
	tb.Helper()
	f, err := route.NewFleet(cat, u, t0, neurons)
	if err != nil {
		tb.Fatalf("NewFleet: %v", err)
	}
	return f
}

// gpus returns a discovery with one device per size (MiB).
func gpus(mb ...uint64) *neuron.Discovery {
	d := &neuron.Discovery{Hostname: "host"}
	for i, m := range mb {
		d.Devices = append(d.Devices, neuron.Device{Index: i, Name: "gpu", TotalMB: m})
	}
	return d
}

// host returns a healthy neuron with the given devices and models.
func host(name string, d *neuron.Discovery, models ...route.ModelState) route.NeuronState {
	return route.NeuronState{Name: name, Endpoint: "http://" + name + ":31400", Healthy: true, Discovery: d, Models: models}
}

// down returns n marked unhealthy.
func down(n route.NeuronState) route.NeuronState {
	n.Healthy = false
	n.Failures = 3
	n.LastError = errors.New("connection refused")
	return n
}

// model returns a model state with the given status and VRAM use.
func model(id string, status neuron.ModelStatus, vramMB uint64) route.ModelState {
	return route.ModelState{ModelInfo: neuron.ModelInfo{ID: id, Status: status, VRAMUsedMB: vramMB}}
}

// busy returns m with the given admission counts.
func busy(m route.ModelState, inFlight, queue int) route.ModelState {
	m.InFlight, m.QueueDepth = inFlight, queue
	return m
}

// used returns m with a last use.
func used(m route.ModelState, at time.Time) route.ModelState {
	m.LastUsed = at
	return m
}

func TestNewFleetSortsAndLooksUp(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{{ID: "llama", VRAMMB: 8000}}, map[string]string{"l": "llama"})
	f := newFleet(t, cat, nil,
		host("n2", gpus(24000), model("zeta", neuron.StatusLoaded, 1000), model("llama", neuron.StatusLoaded, 8000)),
		host("n1", gpus(24000)),
	)
	var names []string
	for _, n := range f.Neurons() {
		names = append(names, n.Name)
	}
	if diff := cmp.Diff(names, []string{"n1", "n2"}); diff != "" {
		t.Errorf("Neurons (-got +want):\n%s", diff)
	}
	n2 := f.Neuron("n2")
	if n2 == nil || n2.Name != "n2" {
		t.Fatalf("Neuron(n2) = %v", n2)
	}
	if f.Neuron("n3") != nil {
		t.Error("Neuron(n3) != nil")
	}
	var ids []string
	for _, m := range n2.Models {
		ids = append(ids, m.ID)
	}
	if diff := cmp.Diff(ids, []string{"llama", "zeta"}); diff != "" {
		t.Errorf("models (-got +want):\n%s", diff)
	}
	if m := n2.Model("zeta"); m == nil || m.ID != "zeta" {
		t.Errorf("Model(zeta) = %v", m)
	}
	if n2.Model("nope") != nil {
		t.Error("Model(nope) != nil")
	}
	if got := n2.Model("llama").Profile.VRAMMB; got != 8000 {
		t.Errorf("catalogue profile VRAMMB = %d, want 8000", got)
	}
	if got := n2.Model("zeta").Profile; got.ID != "zeta" || got.ResidencyPriority != 100 {
		t.Errorf("default profile = %+v, want id zeta, priority 100", got)
	}
	if diff := cmp.Diff(f.ModelIDs(), []string{"llama", "zeta"}); diff != "" {
		t.Errorf("ModelIDs (-got +want):\n%s", diff)
	}
	if got := f.Available(); got != 2 {
		t.Errorf("Available = %d, want 2", got)
	}
	if !f.At().Equal(t0) || f.Catalogue() != cat {
		t.Errorf("At, Catalogue = %v, %p", f.At(), f.Catalogue())
	}
}

func TestNewFleetCopiesInput(t *testing.T) {
	t.Parallel()
	in := []route.NeuronState{host("n1", gpus(1000), model("b", neuron.StatusLoaded, 1), model("a", neuron.StatusLoaded, 1))}
	f, err := route.NewFleet(nil, nil, t0, in)
	if err != nil {
		t.Fatal(err)
	}
	in[0].Name = "changed"
	in[0].Models[0].ID = "changed"
	n := f.Neuron("n1")
	if n == nil || n.Model("a") == nil || n.Model("b") == nil {
		t.Fatalf("fleet changed with its input: %+v", n)
	}
}

func TestNewFleetErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []route.NeuronState
	}{
		{name: "empty name", in: []route.NeuronState{host("", nil)}},
		{name: "duplicate neuron", in: []route.NeuronState{host("a", nil), host("a", nil)}},
		{name: "empty model id", in: []route.NeuronState{host("a", nil, model("", neuron.StatusLoaded, 0))}},
		{name: "duplicate model", in: []route.NeuronState{host("a", nil, model("m", neuron.StatusLoaded, 0), model("m", neuron.StatusLoading, 0))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if f, err := route.NewFleet(nil, nil, t0, tt.in); err == nil {
				t.Errorf("NewFleet = %v, want an error", f)
			}
		})
	}
}

func TestNeuronVRAM(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        route.NeuronState
		wantDev   []uint64
		wantTotal uint64
		wantFree  uint64
	}{
		{
			name: "unknown hardware",
			in:   host("n", nil, model("m", neuron.StatusLoaded, 100)),
		},
		{
			name:      "total minus resident models",
			in:        host("n", gpus(24000, 16000), model("a", neuron.StatusLoaded, 10000), model("b", neuron.StatusLoading, 5000)),
			wantDev:   []uint64{24000, 16000},
			wantTotal: 40000,
			wantFree:  25000,
		},
		{
			name:      "over-committed never underflows",
			in:        host("n", gpus(8000), model("a", neuron.StatusLoaded, 9000)),
			wantDev:   []uint64{8000},
			wantTotal: 8000,
		},
		{
			name: "capped by sampled free",
			in: func() route.NeuronState {
				n := host("n", gpus(24000, 24000), model("a", neuron.StatusLoaded, 10000))
				n.Health = &neuron.Health{Status: "ok", Devices: []neuron.DeviceSample{{Index: 0, FreeMB: 2000}, {Index: 1, FreeMB: 3000}}}
				return n
			}(),
			wantDev:   []uint64{24000, 24000},
			wantTotal: 48000,
			wantFree:  5000,
		},
		{
			name: "sampled free above the estimate does not raise it",
			in: func() route.NeuronState {
				n := host("n", gpus(24000), model("a", neuron.StatusLoaded, 20000))
				n.Health = &neuron.Health{Status: "ok", Devices: []neuron.DeviceSample{{Index: 0, FreeMB: 24000}}}
				return n
			}(),
			wantDev:   []uint64{24000},
			wantTotal: 24000,
			wantFree:  4000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := newFleet(t, nil, nil, tt.in).Neuron("n")
			if diff := cmp.Diff(n.DeviceVRAMMB(), tt.wantDev); diff != "" {
				t.Errorf("DeviceVRAMMB (-got +want):\n%s", diff)
			}
			if got := n.TotalVRAMMB(); got != tt.wantTotal {
				t.Errorf("TotalVRAMMB = %d, want %d", got, tt.wantTotal)
			}
			if got := n.FreeVRAMMB(); got != tt.wantFree {
				t.Errorf("FreeVRAMMB = %d, want %d", got, tt.wantFree)
			}
		})
	}
}

func TestNeuronAvailable(t *testing.T) {
	t.Parallel()
	draining := host("drain", nil)
	draining.Health = &neuron.Health{Status: "shutting_down"}
	f := newFleet(t, nil, nil, host("ok", nil), down(host("down", nil)), draining)
	for _, tt := range []struct {
		name      string
		available bool
		draining  bool
	}{
		{"ok", true, false},
		{"down", false, false},
		{"drain", false, true},
	} {
		n := f.Neuron(tt.name)
		if n.Available() != tt.available || n.Draining() != tt.draining {
			t.Errorf("%s: Available, Draining = %v, %v; want %v, %v", tt.name, n.Available(), n.Draining(), tt.available, tt.draining)
		}
	}
	if got := f.Available(); got != 1 {
		t.Errorf("Fleet.Available = %d, want 1", got)
	}
}

func TestFleetUsage(t *testing.T) {
	t.Parallel()
	u := route.NewUsage()
	early, late := t0.Add(-time.Hour), t0.Add(-time.Minute)
	u.Touch("n1", "a", late)
	u.Touch("n1", "b", early)
	u.Add("n1", "a")
	f := newFleet(t, nil, u, host("n1", gpus(1000),
		used(model("a", neuron.StatusLoaded, 1), early),
		used(model("b", neuron.StatusLoaded, 1), late),
		model("c", neuron.StatusLoaded, 1),
	))
	n := f.Neuron("n1")
	a, b, c := n.Model("a"), n.Model("b"), n.Model("c")
	if a.Live != u.Counter("n1", "a") {
		t.Error("Live is not the usage counter")
	}
	if !a.LastUsed.Equal(late) || !b.LastUsed.Equal(late) || !c.LastUsed.IsZero() {
		t.Errorf("LastUsed = %v, %v, %v; want %v, %v, zero", a.LastUsed, b.LastUsed, c.LastUsed, late, late)
	}
	if got := a.Outstanding(); got != 1 {
		t.Errorf("Outstanding = %d, want 1 (live)", got)
	}
	// The live counter moves on after the snapshot; the snapshot sees it.
	u.Add("n1", "c")
	u.Touch("n1", "c", t0)
	if got := c.Outstanding(); got != 1 {
		t.Errorf("Outstanding after Add = %d, want 1", got)
	}
	if got := c.LastUse(); !got.Equal(t0) {
		t.Errorf("LastUse = %v, want %v", got, t0)
	}
	if !c.LastUsed.IsZero() {
		t.Errorf("snapshot LastUsed changed: %v", c.LastUsed)
	}
}

func TestFleetResolve(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{{ID: "llama", VRAMMB: 8000}}, map[string]string{"l": "llama"})
	f := newFleet(t, cat, nil, host("n1", gpus(24000), model("custom", neuron.StatusLoaded, 10)))
	tests := []struct {
		name   string
		in     string
		want   string
		wantOK bool
	}{
		{name: "id", in: "llama", want: "llama", wantOK: true},
		{name: "alias", in: "l", want: "llama", wantOK: true},
		{name: "resident only", in: "custom", want: "custom", wantOK: true},
		{name: "unknown", in: "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := f.Resolve(tt.in)
			if got.ID != tt.want || ok != tt.wantOK {
				t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tt.in, got.ID, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestFleetLookupsDoNotAllocate(t *testing.T) {
	f := newFleet(t, nil, nil,
		host("n1", gpus(1000), model("a", neuron.StatusLoaded, 1), model("b", neuron.StatusLoaded, 1)),
		host("n2", gpus(1000)),
	)
	allocs := testing.AllocsPerRun(100, func() {
		n := f.Neuron("n1")
		if n.Model("b") == nil {
			panic("missing model")
		}
	})
	if allocs != 0 {
		t.Errorf("Neuron + Model allocate %v times, want 0", allocs)
	}
}

// The neuron's count of a replica's requests includes the gateway's own,
// which the live counter already counts: Outstanding counts them once.
func TestOutstandingCountsOwnRequestsOnce(t *testing.T) {
	t.Parallel()
	u := route.NewUsage()
	u.Add("n1", "mid")
	u.Add("n1", "mid")
	f := newFleet(t, routerCatalogue(t), u,
		host("n1", gpus(24000), busy(loaded("mid", 10000), 2, 1)), // 2 of its 3 are this gateway's
		host("n2", gpus(24000), busy(loaded("mid", 10000), 3, 0))) // none is
	n1, n2 := f.Neuron("n1").Model("mid"), f.Neuron("n2").Model("mid")
	if got := n1.Outstanding(); got != 3 {
		t.Errorf("n1: %d outstanding, want 3 (2 own, 1 another's)", got)
	}
	if got := n2.Outstanding(); got != 3 {
		t.Errorf("n2: %d outstanding, want 3", got)
	}
	u.Done("n1", "mid")
	u.Add("n2", "mid")
	if n1.Outstanding() != 2 || n2.Outstanding() != 4 {
		t.Errorf("after one ends on n1 and one starts on n2: %d and %d, want 2 and 4", n1.Outstanding(), n2.Outstanding())
	}
}
