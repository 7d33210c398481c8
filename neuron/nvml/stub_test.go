//go:build !linux || !cgo

package nvml_test

import (
	"errors"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/nvml"
)

func TestStub(t *testing.T) {
	t.Parallel()
	d := nvml.New(nvml.WithHostname("h"))
	got, err := d.Discover(t.Context())
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	want := neuron.Discovery{
		Hostname:             "h",
		OS:                   runtime.GOOS,
		Arch:                 runtime.GOARCH,
		Devices:              []neuron.Device{},
		GPUUnavailableReason: nvml.ReasonUnsupported,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Discover (-got +want):\n%s", diff)
	}
	samples, err := d.Sample(t.Context())
	if err != nil || len(samples) != 0 {
		t.Errorf("Sample = %v, %v; want no samples, no error", samples, err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := d.Discover(t.Context()); !errors.Is(err, nvml.ErrClosed) {
		t.Errorf("Discover after Close = %v, want ErrClosed", err)
	}
	if _, err := d.Sample(t.Context()); !errors.Is(err, nvml.ErrClosed) {
		t.Errorf("Sample after Close = %v, want ErrClosed", err)
	}
}
