//go:build !linux || !cgo

package nvml

import (
	"context"
	"log/slog"
	"runtime"
	"sync/atomic"

	"github.com/helexa-ai/helexa-go/neuron"
)

// options holds the settings of Option; this build has no WithInterface.
type options struct {
	hostname string
	logger   *slog.Logger
}

// Discoverer is a neuron.Discoverer. In this build (not Linux, or cgo
// disabled) it reports the host with no devices and GPUUnavailableReason
// ReasonUnsupported, and samples nothing.
//
// Concurrency: every method may be called from many goroutines at once.
type Discoverer struct {
	opts   options
	closed atomic.Bool
}

var _ neuron.Discoverer = (*Discoverer)(nil)

// New returns a Discoverer.
func New(opts ...Option) *Discoverer {
	return &Discoverer{opts: newOptions(opts)}
}

// Discover reports the hostname, OS and architecture, no devices, and
// GPUUnavailableReason ReasonUnsupported.
func (d *Discoverer) Discover(ctx context.Context) (neuron.Discovery, error) {
	if err := ctx.Err(); err != nil {
		return neuron.Discovery{}, err
	}
	if d.closed.Load() {
		return neuron.Discovery{}, ErrClosed
	}
	return neuron.Discovery{
		Hostname:             d.opts.resolveHostname(),
		OS:                   runtime.GOOS,
		Arch:                 runtime.GOARCH,
		Devices:              []neuron.Device{},
		GPUUnavailableReason: ReasonUnsupported,
	}, nil
}

// Sample returns no samples.
func (d *Discoverer) Sample(ctx context.Context) ([]neuron.DeviceSample, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if d.closed.Load() {
		return nil, ErrClosed
	}
	return []neuron.DeviceSample{}, nil
}

// Close marks the Discoverer closed; later calls to Discover and Sample
// return ErrClosed. It always returns nil.
func (d *Discoverer) Close() error {
	d.closed.Store(true)
	return nil
}
