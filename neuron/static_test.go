package neuron_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron"
)

func twoGPUs() neuron.Discovery {
	return neuron.Discovery{
		Hostname:      "gpu-01",
		OS:            "linux",
		Arch:          "arm64",
		DriverVersion: "550.54.15",
		CUDAVersion:   "12.4",
		Devices: []neuron.Device{
			{Index: 0, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-0", TotalMB: 81920, ComputeCapability: "9.0"},
			{Index: 1, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-1", TotalMB: 81920, ComputeCapability: "9.0"},
		},
	}
}

func TestStaticDiscoverer_Discover(t *testing.T) {
	t.Parallel()
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("os.Hostname: %v", err)
	}
	tests := []struct {
		name string
		in   neuron.Discovery
		want neuron.Discovery
	}{
		{
			name: "as given",
			in:   twoGPUs(),
			want: twoGPUs(),
		},
		{
			name: "defaults",
			in:   neuron.Discovery{GPUUnavailableReason: "none configured"},
			want: neuron.Discovery{
				Hostname:             host,
				OS:                   runtime.GOOS,
				Arch:                 runtime.GOARCH,
				Devices:              []neuron.Device{},
				GPUUnavailableReason: "none configured",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := neuron.NewStaticDiscoverer(tt.in)
			got, err := s.Discover(t.Context())
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Discover (-got +want):\n%s", diff)
			}
		})
	}
}

func TestStaticDiscoverer_Copies(t *testing.T) {
	t.Parallel()
	in := twoGPUs()
	s := neuron.NewStaticDiscoverer(in)
	in.Devices[0].Name = "changed by caller"
	got, err := s.Discover(t.Context())
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	got.Devices[1].Name = "changed by receiver"
	again, err := s.Discover(t.Context())
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if diff := cmp.Diff(again, twoGPUs()); diff != "" {
		t.Errorf("Discover after changes (-got +want):\n%s", diff)
	}
}

func TestStaticDiscoverer_Sample(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      map[int]uint64 // SetUsed calls
		want    []neuron.DeviceSample
		wantErr bool
	}{
		{
			name: "all free",
			want: []neuron.DeviceSample{
				{Index: 0, UsedMB: 0, FreeMB: 81920},
				{Index: 1, UsedMB: 0, FreeMB: 81920},
			},
		},
		{
			name: "some used",
			in:   map[int]uint64{1: 20000},
			want: []neuron.DeviceSample{
				{Index: 0, UsedMB: 0, FreeMB: 81920},
				{Index: 1, UsedMB: 20000, FreeMB: 61920},
			},
		},
		{
			name: "over total",
			in:   map[int]uint64{0: 90000},
			want: []neuron.DeviceSample{
				{Index: 0, UsedMB: 90000, FreeMB: 0},
				{Index: 1, UsedMB: 0, FreeMB: 81920},
			},
		},
		{
			name:    "unknown device",
			in:      map[int]uint64{7: 1},
			want:    []neuron.DeviceSample{{Index: 0, FreeMB: 81920}, {Index: 1, FreeMB: 81920}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := neuron.NewStaticDiscoverer(twoGPUs())
			for i, mb := range tt.in {
				if err := s.SetUsed(i, mb); (err != nil) != tt.wantErr {
					t.Errorf("SetUsed(%d, %d) = %v, want error %t", i, mb, err, tt.wantErr)
				}
			}
			got, err := s.Sample(t.Context())
			if err != nil {
				t.Fatalf("Sample: %v", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Sample (-got +want):\n%s", diff)
			}
		})
	}
}

func TestStaticDiscoverer_CancelledContext(t *testing.T) {
	t.Parallel()
	s := neuron.NewStaticDiscoverer(twoGPUs())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Discover(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Discover = %v, want context.Canceled", err)
	}
	if _, err := s.Sample(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Sample = %v, want context.Canceled", err)
	}
}

func TestStaticDiscoverer_Concurrent(t *testing.T) {
	t.Parallel()
	s := neuron.NewStaticDiscoverer(twoGPUs())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := s.SetUsed(i%2, uint64(i)); err != nil {
				t.Error(err)
			}
			samples, err := s.Sample(t.Context())
			if err != nil {
				t.Error(err)
				return
			}
			for _, x := range samples {
				if x.UsedMB+x.FreeMB != 81920 {
					t.Errorf("sample %+v: used + free != total", x)
				}
			}
			if _, err := s.Discover(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
