//go:build linux && cgo

package nvml

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/helexa-ai/helexa-go/neuron"
)

// options holds the settings of Option.
type options struct {
	hostname string
	logger   *slog.Logger
	lib      gonvml.Interface
}

// WithInterface sets the NVML implementation: go-nvml's pkg/nvml/mock in
// tests, or gonvml.New(gonvml.WithLibraryPath(...)) for a library outside
// the loader's search path. Default: gonvml.New(), which loads
// libnvidia-ml.so.1 at the first Discover or Sample. A nil Interface means
// the default. This option exists only in Linux cgo builds.
func WithInterface(lib gonvml.Interface) Option {
	return func(o *options) { o.lib = lib }
}

// mib is one MiB in bytes.
const mib = 1 << 20

// Discoverer is a neuron.Discoverer over NVML. The zero value is not
// usable; call New.
//
// NVML is started (nvmlInit) once, at the first Discover or Sample, and the
// GPU handles are enumerated then. When nvmlInit fails, the reason is
// recorded and no other NVML function is called for the life of the
// Discoverer. Close shuts NVML down if it was started.
//
// Concurrency: every method may be called from many goroutines at once.
// Discover and Sample run concurrently with each other; the first of them
// blocks the others while NVML starts, and Close waits for calls in
// progress to finish before it shuts NVML down.
type Discoverer struct {
	lib  gonvml.Interface
	opts options

	// mu guards the NVML session. Init and Shutdown run under the write
	// lock; every other NVML call runs under the read lock, so that Close
	// cannot shut NVML down beneath a Discover or Sample in progress.
	// Nothing else is done while it is held: logging waits until it is
	// released.
	mu         sync.RWMutex
	started    bool // Init was called
	ok         bool // Init succeeded
	closed     bool
	gpuReason  string
	cudaReason string
	devices    []device // usable GPUs, in index order; fixed once started

	// pmu guards problems: the NVML calls now failing, with their error
	// text, so each problem is logged once when it starts and once when it
	// clears.
	pmu      sync.Mutex
	problems map[problemKey]string
}

var _ neuron.Discoverer = (*Discoverer)(nil)

type device struct {
	index int
	h     gonvml.Device
}

// New returns a Discoverer. It does not touch NVML: the library is loaded
// and started at the first Discover or Sample.
func New(opts ...Option) *Discoverer {
	o := newOptions(opts)
	lib := o.lib
	if lib == nil {
		lib = gonvml.New()
	}
	return &Discoverer{lib: lib, opts: o, problems: make(map[problemKey]string)}
}

// Discover reports the host: hostname, OS, architecture, driver and CUDA
// versions, and each usable GPU (index, name, UUID, total memory in MiB,
// compute capability such as "9.0").
//
// When NVML cannot be used, Discover reports no devices, with the reason in
// GPUUnavailableReason (ReasonLibraryNotFound, ReasonNoDevices, ...) or, when
// the library is present but nvmlInit fails (driver/library version
// mismatch, driver not loaded, no permission), in CUDAUnavailableReason.
// A GPU whose handle cannot be had is left out; a field that cannot be read
// is left empty. Neither is an error. The error is ctx.Err() when ctx is
// done at the call, or ErrClosed after Close.
func (d *Discoverer) Discover(ctx context.Context) (neuron.Discovery, error) {
	if err := ctx.Err(); err != nil {
		return neuron.Discovery{}, err
	}
	out := neuron.Discovery{
		Hostname: d.opts.resolveHostname(),
		OS:       runtime.GOOS,
		Arch:     runtime.GOARCH,
		Devices:  []neuron.Device{},
	}
	if err := d.session(ctx); err != nil {
		return neuron.Discovery{}, err
	}
	var obs observations
	out.GPUUnavailableReason = d.gpuReason
	out.CUDAUnavailableReason = d.cudaReason
	if d.ok {
		if v, ret := d.lib.SystemGetDriverVersion(); obs.check(-1, "SystemGetDriverVersion", ret) {
			out.DriverVersion = v
		}
		if v, ret := d.lib.SystemGetCudaDriverVersion(); obs.check(-1, "SystemGetCudaDriverVersion", ret) {
			out.CUDAVersion = cudaVersion(v)
		}
		for _, dev := range d.devices {
			out.Devices = append(out.Devices, describe(dev, &obs))
		}
	}
	d.mu.RUnlock()
	d.report(ctx, obs)
	return out, nil
}

// describe reads the static description of one GPU.
func describe(dev device, obs *observations) neuron.Device {
	out := neuron.Device{Index: dev.index}
	if v, ret := dev.h.GetName(); obs.check(dev.index, "GetName", ret) {
		out.Name = v
	}
	if v, ret := dev.h.GetUUID(); obs.check(dev.index, "GetUUID", ret) {
		out.UUID = v
	}
	if m, ret := dev.h.GetMemoryInfo(); obs.check(dev.index, "GetMemoryInfo", ret) {
		out.TotalMB = m.Total / mib
	}
	if major, minor, ret := dev.h.GetCudaComputeCapability(); obs.check(dev.index, "GetCudaComputeCapability", ret) {
		out.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	}
	return out
}

// Sample reads each usable GPU's used and free memory (MiB), utilisation
// (percent) and temperature (Celsius): three NVML calls per GPU. A reading that fails is left at zero (so a
// GPU whose memory cannot be read shows no free memory) and is not an
// error. When NVML could not be started, Sample returns no samples and no
// error. The error is ctx.Err() when ctx is done at the call, or ErrClosed
// after Close.
func (d *Discoverer) Sample(ctx context.Context) ([]neuron.DeviceSample, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := d.session(ctx); err != nil {
		return nil, err
	}
	obs := make(observations, 0, 3*len(d.devices))
	out := make([]neuron.DeviceSample, 0, len(d.devices))
	for _, dev := range d.devices {
		s := neuron.DeviceSample{Index: dev.index}
		if m, ret := dev.h.GetMemoryInfo(); obs.check(dev.index, "GetMemoryInfo", ret) {
			s.UsedMB = m.Used / mib
			s.FreeMB = m.Free / mib
		}
		if u, ret := dev.h.GetUtilizationRates(); obs.check(dev.index, "GetUtilizationRates", ret) {
			s.UtilizationPct = int(u.Gpu)
		}
		if t, ret := dev.h.GetTemperature(gonvml.TEMPERATURE_GPU); obs.check(dev.index, "GetTemperature", ret) {
			s.TemperatureC = int(t)
		}
		out = append(out, s)
	}
	d.mu.RUnlock()
	d.report(ctx, obs)
	return out, nil
}

// Close shuts NVML down if it was started successfully, once; later calls
// return nil. After Close, Discover and Sample return ErrClosed. A failed
// nvmlShutdown is returned wrapped: errors.Is(err, gonvml.ERROR_...) works.
func (d *Discoverer) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	ret := gonvml.SUCCESS
	if d.ok {
		ret = d.lib.Shutdown()
	}
	d.devices = nil
	d.mu.Unlock()
	if ret != gonvml.SUCCESS {
		return fmt.Errorf("nvml: shutdown: %w", ret)
	}
	return nil
}

// session starts NVML on the first call and returns with d.mu read-locked,
// or ErrClosed (unlocked). The caller must call d.mu.RUnlock.
func (d *Discoverer) session(ctx context.Context) error {
	for {
		d.mu.RLock()
		if d.closed {
			d.mu.RUnlock()
			return ErrClosed
		}
		if d.started {
			return nil
		}
		d.mu.RUnlock()

		d.mu.Lock()
		var logs []logEntry
		if !d.started && !d.closed {
			logs = d.startLocked()
		}
		d.mu.Unlock()
		d.log(ctx, logs)
	}
}

// startLocked calls Init and enumerates the GPUs. It returns what to log
// once d.mu is released.
func (d *Discoverer) startLocked() []logEntry {
	d.started = true
	switch ret := d.lib.Init(); ret {
	case gonvml.SUCCESS:
	case gonvml.ERROR_LIBRARY_NOT_FOUND:
		// No other NVML call may follow a failed Init.
		d.gpuReason = ReasonLibraryNotFound
		return []logEntry{{slog.LevelInfo, "nvml: no GPU", []any{"reason", d.gpuReason}}}
	default:
		d.cudaReason = "NVML initialisation failed: " + ret.Error()
		return []logEntry{{slog.LevelWarn, "nvml: GPUs unusable", []any{"reason", d.cudaReason}}}
	}
	d.ok = true

	n, ret := d.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		d.gpuReason = "NVML cannot count GPUs: " + ret.Error()
		return []logEntry{{slog.LevelWarn, "nvml: no GPU", []any{"reason", d.gpuReason}}}
	}
	var logs []logEntry
	var firstErr string
	for i := range n {
		h, ret := d.lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			if firstErr == "" {
				firstErr = fmt.Sprintf("GPU %d: %s", i, ret.Error())
			}
			logs = append(logs, logEntry{slog.LevelWarn, "nvml: GPU left out", []any{"gpu", i, "call", "DeviceGetHandleByIndex", "err", ret.Error()}})
			continue
		}
		d.devices = append(d.devices, device{index: i, h: h})
	}
	switch {
	case n == 0:
		d.gpuReason = ReasonNoDevices
	case len(d.devices) == 0:
		d.gpuReason = "no usable GPU: " + firstErr
	}
	return logs
}

// cudaVersion formats NVML's CUDA driver version (1000*major + 10*minor,
// for example 12040) as "12.4"; "" when unknown.
func cudaVersion(v int) string {
	if v <= 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
}

// problemKey names one NVML call on one GPU (gpu -1: a system call).
type problemKey struct {
	gpu  int
	call string
}

// observation is the outcome of one NVML call; err is "" on success.
type observation struct {
	key problemKey
	err string
}

// observations collects call outcomes while d.mu is held, for report.
type observations []observation

// check records the outcome of call on gpu and reports whether it worked.
func (o *observations) check(gpu int, call string, ret gonvml.Return) bool {
	ob := observation{key: problemKey{gpu: gpu, call: call}}
	if ret != gonvml.SUCCESS {
		ob.err = ret.Error()
	}
	*o = append(*o, ob)
	return ret == gonvml.SUCCESS
}

// report logs each problem that started, changed or cleared.
func (d *Discoverer) report(ctx context.Context, obs observations) {
	var logs []logEntry
	d.pmu.Lock()
	for _, ob := range obs {
		prev, failing := d.problems[ob.key]
		switch {
		case ob.err == "" && failing:
			delete(d.problems, ob.key)
			logs = append(logs, logEntry{slog.LevelInfo, "nvml: GPU call recovered", ob.key.attrs()})
		case ob.err != "" && prev != ob.err:
			d.problems[ob.key] = ob.err
			logs = append(logs, logEntry{slog.LevelWarn, "nvml: GPU call failed", append(ob.key.attrs(), "err", ob.err)})
		}
	}
	d.pmu.Unlock()
	d.log(ctx, logs)
}

func (k problemKey) attrs() []any {
	if k.gpu < 0 {
		return []any{"call", k.call}
	}
	return []any{"gpu", k.gpu, "call", k.call}
}

// logEntry is a log line held back until no lock is held.
type logEntry struct {
	level slog.Level
	msg   string
	args  []any
}

func (d *Discoverer) log(ctx context.Context, logs []logEntry) {
	for _, l := range logs {
		d.opts.logger.Log(ctx, l.level, l.msg, l.args...)
	}
}
