package neuron

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
)

// StaticDiscoverer is a Discoverer that reports a fixed Discovery: the
// devices listed in neuron.toml ([discovery] kind = "static"), or those of
// a test. Its samples show each device's used memory (0 unless set with
// SetUsed) and the rest of its TotalMB free, with zero utilisation and
// temperature.
//
// Concurrency: every method may be called from many goroutines at once.
type StaticDiscoverer struct {
	d Discovery

	mu   sync.Mutex
	used map[int]uint64 // device index -> used MiB
}

var _ Discoverer = (*StaticDiscoverer)(nil)

// NewStaticDiscoverer returns a StaticDiscoverer that reports d. An empty
// Hostname defaults to os.Hostname() (empty if that fails), an empty OS and
// Arch to runtime.GOOS and runtime.GOARCH. d is copied: later changes to
// its Devices slice do not show.
func NewStaticDiscoverer(d Discovery) *StaticDiscoverer {
	if d.Hostname == "" {
		d.Hostname, _ = os.Hostname()
	}
	if d.OS == "" {
		d.OS = runtime.GOOS
	}
	if d.Arch == "" {
		d.Arch = runtime.GOARCH
	}
	d.Devices = slices.Clone(d.Devices)
	if d.Devices == nil {
		d.Devices = []Device{}
	}
	return &StaticDiscoverer{d: d, used: make(map[int]uint64)}
}

// Discover returns the Discovery given to NewStaticDiscoverer, with its
// defaults filled in. The error is ctx.Err() when ctx is done.
func (s *StaticDiscoverer) Discover(ctx context.Context) (Discovery, error) {
	if err := ctx.Err(); err != nil {
		return Discovery{}, err
	}
	d := s.d
	d.Devices = slices.Clone(s.d.Devices)
	return d, nil
}

// Sample returns one sample per device, in the order of Discovery.Devices:
// UsedMB as set with SetUsed (default 0) and FreeMB = TotalMB - UsedMB
// (0 when UsedMB exceeds TotalMB). The error is ctx.Err() when ctx is done.
func (s *StaticDiscoverer) Sample(ctx context.Context) ([]DeviceSample, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]DeviceSample, len(s.d.Devices))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, dev := range s.d.Devices {
		used := s.used[dev.Index]
		out[i] = DeviceSample{Index: dev.Index, UsedMB: used, FreeMB: dev.TotalMB - min(used, dev.TotalMB)}
	}
	return out, nil
}

// SetUsed sets the memory in use on the device with the given index, in
// MiB, as later samples report it. It is meant for tests and simulations.
// It returns an error when no device has that index.
func (s *StaticDiscoverer) SetUsed(index int, mb uint64) error {
	if !slices.ContainsFunc(s.d.Devices, func(d Device) bool { return d.Index == index }) {
		return fmt.Errorf("neuron: static discoverer has no device %d", index)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used[index] = mb
	return nil
}
