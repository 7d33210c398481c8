package catalogue_test

import (
	"math"
	"testing"

	"github.com/helexa-ai/helexa-go/catalogue"
)

func TestFeasible(t *testing.T) {
	t.Parallel()
	const gib = 1024
	tests := []struct {
		name string
		m    catalogue.Model
		devs []uint64
		want bool
	}{
		{name: "fits one device", m: catalogue.Model{VRAMMB: 6 * gib}, devs: []uint64{24 * gib}, want: true},
		{name: "exactly fits", m: catalogue.Model{VRAMMB: 24 * gib}, devs: []uint64{24 * gib}, want: true},
		{name: "one MiB short", m: catalogue.Model{VRAMMB: 24*gib + 1}, devs: []uint64{24 * gib}},
		{name: "no devices", m: catalogue.Model{VRAMMB: 1}, devs: nil},
		{name: "needs nothing, no devices", m: catalogue.Model{}, devs: nil, want: true},
		{name: "default one device may spread", m: catalogue.Model{VRAMMB: 40 * gib}, devs: []uint64{24 * gib, 24 * gib}, want: true},
		{name: "two devices needed, one present", m: catalogue.Model{VRAMMB: 8 * gib, MinDevices: 2}, devs: []uint64{80 * gib}},
		{name: "two devices needed, two present", m: catalogue.Model{VRAMMB: 8 * gib, MinDevices: 2}, devs: []uint64{24 * gib, 24 * gib}, want: true},
		{name: "floor excludes the small device", m: catalogue.Model{VRAMMB: 24 * gib, MinDevices: 2, MinDeviceVRAMMB: 16 * gib}, devs: []uint64{24 * gib, 12 * gib}},
		{name: "floor met on enough devices", m: catalogue.Model{VRAMMB: 24 * gib, MinDevices: 2, MinDeviceVRAMMB: 16 * gib}, devs: []uint64{12 * gib, 16 * gib, 16 * gib}, want: true},
		{name: "floor met but too little together", m: catalogue.Model{VRAMMB: 40 * gib, MinDevices: 2, MinDeviceVRAMMB: 16 * gib}, devs: []uint64{12 * gib, 16 * gib, 16 * gib, 4 * gib}},
		{name: "small devices do not add up", m: catalogue.Model{VRAMMB: 20 * gib, MinDeviceVRAMMB: 16 * gib}, devs: []uint64{16 * gib, 8 * gib}},
		{name: "devices without a VRAM need", m: catalogue.Model{MinDevices: 2}, devs: []uint64{1, 1}, want: true},
		{name: "empty devices never qualify", m: catalogue.Model{MinDevices: 2}, devs: []uint64{0, 1}},
		{name: "huge devices do not overflow", m: catalogue.Model{VRAMMB: math.MaxUint64, MinDevices: 3}, devs: []uint64{math.MaxUint64, math.MaxUint64, math.MaxUint64}, want: true},
		{name: "huge need", m: catalogue.Model{VRAMMB: math.MaxUint64}, devs: []uint64{math.MaxUint64 - 1, 1 << 62}, want: true},
		{name: "negative MinDevices is the default", m: catalogue.Model{VRAMMB: 1, MinDevices: -1}, devs: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := catalogue.Feasible(tt.m, tt.devs); got != tt.want {
				t.Errorf("Feasible(%+v, %v) = %v; want %v", tt.m, tt.devs, got, tt.want)
			}
		})
	}
}

func TestFeasibleOn(t *testing.T) {
	t.Parallel()
	pinned := catalogue.Model{ID: "a", VRAMMB: 8192, PinnedOn: []string{"gpu-01", "gpu-02"}}
	free := catalogue.Model{ID: "b", VRAMMB: 8192}
	big := []uint64{24576}
	small := []uint64{4096}
	tests := []struct {
		name   string
		m      catalogue.Model
		devs   []uint64
		neuron string
		want   catalogue.Fit
	}{
		{name: "pinned here", m: pinned, devs: big, neuron: "gpu-02", want: catalogue.FitsPinned},
		{name: "pinned elsewhere still fits", m: pinned, devs: big, neuron: "gpu-03", want: catalogue.Fits},
		{name: "pinned here but too small", m: pinned, devs: small, neuron: "gpu-01", want: catalogue.NoFit},
		{name: "not pinned", m: free, devs: big, neuron: "gpu-01", want: catalogue.Fits},
		{name: "not pinned, too small", m: free, devs: small, neuron: "gpu-01", want: catalogue.NoFit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := catalogue.FeasibleOn(tt.m, tt.devs, tt.neuron)
			if got != tt.want {
				t.Errorf("FeasibleOn(%s, %v, %q) = %v; want %v", tt.m.ID, tt.devs, tt.neuron, got, tt.want)
			}
			if got.OK() != catalogue.Feasible(tt.m, tt.devs) {
				t.Errorf("FeasibleOn(...).OK() = %v; Feasible says otherwise", got.OK())
			}
		})
	}
}

func TestFitString(t *testing.T) {
	t.Parallel()
	for f, want := range map[catalogue.Fit]string{
		catalogue.NoFit: "no_fit", catalogue.Fits: "fits", catalogue.FitsPinned: "fits_pinned", 7: "fit(7)",
	} {
		if got := f.String(); got != want {
			t.Errorf("Fit(%d).String() = %q; want %q", f, got, want)
		}
	}
}

func TestModelPredicates(t *testing.T) {
	t.Parallel()
	m := catalogue.Model{ID: "a", PinnedOn: []string{"gpu-01"}, Capabilities: []string{"chat", "tools"}}
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"pinned to gpu-01", m.PinnedTo("gpu-01"), true},
		{"not pinned to gpu-02", m.PinnedTo("gpu-02"), false},
		{"unpinned model", catalogue.Model{}.PinnedTo("gpu-01"), false},
		{"supports chat", m.Supports("chat"), true},
		{"does not support embeddings", m.Supports("embeddings"), false},
		{"unknown capabilities allow all", catalogue.Model{}.Supports("embeddings"), true},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func BenchmarkFeasible(b *testing.B) {
	m := catalogue.Model{VRAMMB: 24576, MinDevices: 2, MinDeviceVRAMMB: 16384}
	devs := []uint64{12288, 24576, 24576, 81920, 81920, 81920, 81920, 81920}
	b.ReportAllocs()
	for b.Loop() {
		catalogue.Feasible(m, devs)
	}
}
