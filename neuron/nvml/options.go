package nvml

import (
	"errors"
	"log/slog"
	"os"
)

// ErrClosed is returned by Discover and Sample after Close.
var ErrClosed = errors.New("nvml: discoverer closed")

// Reasons reported in neuron.Discovery when no GPU can be used.
const (
	// ReasonUnsupported is the GPUUnavailableReason of builds without NVML
	// support (not Linux, or cgo disabled).
	ReasonUnsupported = "NVML not supported on this build"
	// ReasonLibraryNotFound is the GPUUnavailableReason when
	// libnvidia-ml.so cannot be loaded: a host without the NVIDIA driver.
	ReasonLibraryNotFound = "NVIDIA driver library not found (libnvidia-ml.so)"
	// ReasonNoDevices is the GPUUnavailableReason when NVML starts but
	// reports no GPU.
	ReasonNoDevices = "NVML reports no GPU"
)

// Option configures a Discoverer.
type Option func(*options)

// WithHostname sets the hostname Discover reports. Default: os.Hostname().
func WithHostname(name string) Option {
	return func(o *options) { o.hostname = name }
}

// WithLogger sets the logger for per-device problems and for the reason
// NVML could not start. Default: no logging. A nil logger means the default.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

func newOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// resolveHostname returns the configured hostname, else os.Hostname() (empty,
// logged, when that fails).
func (o *options) resolveHostname() string {
	if o.hostname != "" {
		return o.hostname
	}
	h, err := os.Hostname()
	if err != nil {
		o.logger.Warn("nvml: hostname unknown", "err", err)
		return ""
	}
	return h
}
