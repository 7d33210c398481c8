//go:build linux && cgo

package nvml_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/nvml"
)

// gpu is one fake GPU of a fake NVML server. Memory is in bytes, as NVML
// reports it.
type gpu struct {
	name          string
	uuid          string
	totalB, usedB uint64
	util, temp    uint32
	major, minor  int
	// handleErr fails DeviceGetHandleByIndex for this GPU.
	handleErr gonvml.Return
	// tempErr, when set, fails GetTemperature while *tempErr is not SUCCESS.
	tempErr *errSwitch
}

// errSwitch is an NVML return code a test can change while the fake runs.
type errSwitch struct {
	mu  sync.Mutex
	ret gonvml.Return
}

func (s *errSwitch) get() gonvml.Return {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ret
}

func (s *errSwitch) set(r gonvml.Return) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ret = r
}

// h100 returns an 80 GiB H100-like GPU with index i: i GiB and 123 bytes
// used, 10*i % utilisation, 30+i degrees.
func h100(i int) gpu {
	total := uint64(80 << 30)
	used := uint64(i)<<30 + 123
	return gpu{
		name:   "NVIDIA H100 80GB HBM3",
		uuid:   fmt.Sprintf("GPU-%08d-0000-0000-0000-000000000000", i),
		totalB: total,
		usedB:  used,
		util:   uint32(10 * i),
		temp:   uint32(30 + i),
		major:  9,
		minor:  0,
	}
}

// server is a fake NVML: a mock.Interface over gpus, with driver 550.54.15
// and CUDA 12.4.
func server(gpus []gpu) *mock.Interface {
	devs := make([]gonvml.Device, len(gpus))
	for i, g := range gpus {
		devs[i] = &mock.Device{
			GetNameFunc: func() (string, gonvml.Return) { return g.name, gonvml.SUCCESS },
			GetUUIDFunc: func() (string, gonvml.Return) { return g.uuid, gonvml.SUCCESS },
			GetMemoryInfoFunc: func() (gonvml.Memory, gonvml.Return) {
				return gonvml.Memory{Total: g.totalB, Used: g.usedB, Free: g.totalB - g.usedB}, gonvml.SUCCESS
			},
			GetCudaComputeCapabilityFunc: func() (int, int, gonvml.Return) { return g.major, g.minor, gonvml.SUCCESS },
			GetUtilizationRatesFunc: func() (gonvml.Utilization, gonvml.Return) {
				return gonvml.Utilization{Gpu: g.util, Memory: g.util / 2}, gonvml.SUCCESS
			},
			GetTemperatureFunc: func(s gonvml.TemperatureSensors) (uint32, gonvml.Return) {
				if s != gonvml.TEMPERATURE_GPU {
					return 0, gonvml.ERROR_INVALID_ARGUMENT
				}
				if g.tempErr != nil {
					if r := g.tempErr.get(); r != gonvml.SUCCESS {
						return 0, r
					}
				}
				return g.temp, gonvml.SUCCESS
			},
		}
	}
	return &mock.Interface{
		InitFunc:                       func() gonvml.Return { return gonvml.SUCCESS },
		ShutdownFunc:                   func() gonvml.Return { return gonvml.SUCCESS },
		SystemGetDriverVersionFunc:     func() (string, gonvml.Return) { return "550.54.15", gonvml.SUCCESS },
		SystemGetCudaDriverVersionFunc: func() (int, gonvml.Return) { return 12040, gonvml.SUCCESS },
		DeviceGetCountFunc:             func() (int, gonvml.Return) { return len(devs), gonvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (gonvml.Device, gonvml.Return) {
			if i < 0 || i >= len(devs) {
				return nil, gonvml.ERROR_INVALID_ARGUMENT
			}
			if r := gpus[i].handleErr; r != gonvml.SUCCESS {
				return nil, r
			}
			return devs[i], gonvml.SUCCESS
		},
	}
}

func dgxH100() []gpu {
	gpus := make([]gpu, 8)
	for i := range gpus {
		gpus[i] = h100(i)
	}
	return gpus
}

// forbidden is a fake NVML whose Init returns initRet and whose every other
// function used by the discoverer fails the test.
func forbidden(t *testing.T, initRet gonvml.Return) *mock.Interface {
	dev := &mock.Device{
		GetNameFunc:                  func() (string, gonvml.Return) { t.Fatal("GetName called"); return "", 0 },
		GetUUIDFunc:                  func() (string, gonvml.Return) { t.Fatal("GetUUID called"); return "", 0 },
		GetMemoryInfoFunc:            func() (gonvml.Memory, gonvml.Return) { t.Fatal("GetMemoryInfo called"); return gonvml.Memory{}, 0 },
		GetCudaComputeCapabilityFunc: func() (int, int, gonvml.Return) { t.Fatal("GetCudaComputeCapability called"); return 0, 0, 0 },
		GetUtilizationRatesFunc: func() (gonvml.Utilization, gonvml.Return) {
			t.Fatal("GetUtilizationRates called")
			return gonvml.Utilization{}, 0
		},
		GetTemperatureFunc: func(gonvml.TemperatureSensors) (uint32, gonvml.Return) { t.Fatal("GetTemperature called"); return 0, 0 },
	}
	return &mock.Interface{
		InitFunc:                       func() gonvml.Return { return initRet },
		ShutdownFunc:                   func() gonvml.Return { t.Fatal("Shutdown called"); return 0 },
		ErrorStringFunc:                func(gonvml.Return) string { t.Fatal("ErrorString called"); return "" },
		SystemGetDriverVersionFunc:     func() (string, gonvml.Return) { t.Fatal("SystemGetDriverVersion called"); return "", 0 },
		SystemGetCudaDriverVersionFunc: func() (int, gonvml.Return) { t.Fatal("SystemGetCudaDriverVersion called"); return 0, 0 },
		DeviceGetCountFunc:             func() (int, gonvml.Return) { t.Fatal("DeviceGetCount called"); return 1, 0 },
		DeviceGetHandleByIndexFunc: func(int) (gonvml.Device, gonvml.Return) {
			t.Fatal("DeviceGetHandleByIndex called")
			return dev, 0
		},
	}
}

func TestDiscoverDGXH100(t *testing.T) {
	t.Parallel()
	lib := server(dgxH100())
	d := nvml.New(nvml.WithInterface(lib), nvml.WithHostname("dgx-01"))
	t.Cleanup(func() { _ = d.Close() })

	got, err := d.Discover(t.Context())
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	want := neuron.Discovery{
		Hostname:      "dgx-01",
		OS:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		DriverVersion: "550.54.15",
		CUDAVersion:   "12.4",
	}
	for i := range 8 {
		want.Devices = append(want.Devices, neuron.Device{
			Index:             i,
			Name:              "NVIDIA H100 80GB HBM3",
			UUID:              fmt.Sprintf("GPU-%08d-0000-0000-0000-000000000000", i),
			TotalMB:           81920,
			ComputeCapability: "9.0",
		})
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Discover (-got +want):\n%s", diff)
	}
}

func TestSampleDGXH100(t *testing.T) {
	t.Parallel()
	lib := server(dgxH100())
	d := nvml.New(nvml.WithInterface(lib))
	t.Cleanup(func() { _ = d.Close() })

	// Sample before any Discover starts NVML by itself.
	got, err := d.Sample(t.Context())
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	var want []neuron.DeviceSample
	for i := range 8 {
		// i GiB + 123 bytes used: i*1024 MiB used, the rest free but for
		// the partial MiB.
		want = append(want, neuron.DeviceSample{
			Index:          i,
			UsedMB:         uint64(i) * 1024,
			FreeMB:         81920 - uint64(i)*1024 - 1,
			UtilizationPct: 10 * i,
			TemperatureC:   30 + i,
		})
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Sample (-got +want):\n%s", diff)
	}
	if n := len(lib.InitCalls()); n != 1 {
		t.Errorf("Init called %d times, want 1", n)
	}
}

func TestLibraryNotFound(t *testing.T) {
	t.Parallel()
	lib := forbidden(t, gonvml.ERROR_LIBRARY_NOT_FOUND)
	d := nvml.New(nvml.WithInterface(lib), nvml.WithHostname("cpu-01"))

	want := neuron.Discovery{
		Hostname:             "cpu-01",
		OS:                   runtime.GOOS,
		Arch:                 runtime.GOARCH,
		Devices:              []neuron.Device{},
		GPUUnavailableReason: nvml.ReasonLibraryNotFound,
	}
	for range 2 {
		got, err := d.Discover(t.Context())
		if err != nil {
			t.Fatalf("Discover: %v", err)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("Discover (-got +want):\n%s", diff)
		}
		samples, err := d.Sample(t.Context())
		if err != nil || len(samples) != 0 {
			t.Errorf("Sample = %v, %v; want no samples, no error", samples, err)
		}
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if n := len(lib.InitCalls()); n != 1 {
		t.Errorf("Init called %d times, want 1", n)
	}
}

func TestInitFailureIsCUDAUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   gonvml.Return
	}{
		{name: "version mismatch", in: gonvml.ERROR_LIB_RM_VERSION_MISMATCH},
		{name: "driver not loaded", in: gonvml.ERROR_DRIVER_NOT_LOADED},
		{name: "no permission", in: gonvml.ERROR_NO_PERMISSION},
		{name: "unknown", in: gonvml.ERROR_UNKNOWN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := nvml.New(nvml.WithInterface(forbidden(t, tt.in)), nvml.WithHostname("h"))
			got, err := d.Discover(t.Context())
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			want := neuron.Discovery{
				Hostname:              "h",
				OS:                    runtime.GOOS,
				Arch:                  runtime.GOARCH,
				Devices:               []neuron.Device{},
				CUDAUnavailableReason: "NVML initialisation failed: " + tt.in.Error(),
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
		})
	}
}

func TestNoDevices(t *testing.T) {
	t.Parallel()
	lib := server(nil)
	d := nvml.New(nvml.WithInterface(lib), nvml.WithHostname("h"))
	got, err := d.Discover(t.Context())
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	want := neuron.Discovery{
		Hostname:             "h",
		OS:                   runtime.GOOS,
		Arch:                 runtime.GOARCH,
		DriverVersion:        "550.54.15",
		CUDAVersion:          "12.4",
		Devices:              []neuron.Device{},
		GPUUnavailableReason: nvml.ReasonNoDevices,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Discover (-got +want):\n%s", diff)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if n := len(lib.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
}

func TestCUDAVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   int
		ret  gonvml.Return
		want string
	}{
		{name: "12.4", in: 12040, want: "12.4"},
		{name: "11.8", in: 11080, want: "11.8"},
		{name: "13.0", in: 13000, want: "13.0"},
		{name: "12.10", in: 12100, want: "12.10"},
		{name: "zero", in: 0, want: ""},
		{name: "error", in: 12040, ret: gonvml.ERROR_NOT_SUPPORTED, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lib := server(nil)
			lib.SystemGetCudaDriverVersionFunc = func() (int, gonvml.Return) { return tt.in, tt.ret }
			d := nvml.New(nvml.WithInterface(lib))
			got, err := d.Discover(t.Context())
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			if got.CUDAVersion != tt.want {
				t.Errorf("CUDAVersion = %q, want %q", got.CUDAVersion, tt.want)
			}
		})
	}
}

func TestDeviceErrorsAreNotFatal(t *testing.T) {
	t.Parallel()
	gpus := dgxH100()[:4]
	temp := &errSwitch{ret: gonvml.ERROR_GPU_IS_LOST}
	gpus[1].tempErr = temp
	gpus[2].handleErr = gonvml.ERROR_GPU_IS_LOST
	lib := server(gpus)
	logs := &recorder{}
	d := nvml.New(nvml.WithInterface(lib), nvml.WithLogger(slog.New(logs)))
	t.Cleanup(func() { _ = d.Close() })

	disc, err := d.Discover(t.Context())
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	var indexes []int
	for _, dev := range disc.Devices {
		indexes = append(indexes, dev.Index)
	}
	if diff := cmp.Diff(indexes, []int{0, 1, 3}); diff != "" {
		t.Errorf("discovered indexes (-got +want):\n%s", diff)
	}
	if disc.GPUUnavailableReason != "" || disc.CUDAUnavailableReason != "" {
		t.Errorf("reasons = %q, %q; want none", disc.GPUUnavailableReason, disc.CUDAUnavailableReason)
	}

	wantSamples := []neuron.DeviceSample{
		{Index: 0, UsedMB: 0, FreeMB: 81919, UtilizationPct: 0, TemperatureC: 30},
		{Index: 1, UsedMB: 1024, FreeMB: 80895, UtilizationPct: 10, TemperatureC: 0},
		{Index: 3, UsedMB: 3072, FreeMB: 78847, UtilizationPct: 30, TemperatureC: 33},
	}
	for range 3 {
		got, err := d.Sample(t.Context())
		if err != nil {
			t.Fatalf("Sample: %v", err)
		}
		if diff := cmp.Diff(got, wantSamples); diff != "" {
			t.Errorf("Sample (-got +want):\n%s", diff)
		}
	}
	temp.set(gonvml.SUCCESS)
	got, err := d.Sample(t.Context())
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if got[1].TemperatureC != 31 {
		t.Errorf("GPU 1 temperature after recovery = %d, want 31", got[1].TemperatureC)
	}

	// Each problem is logged once, however many samples see it.
	lost := gonvml.ERROR_GPU_IS_LOST.Error()
	wantLogs := []string{
		"WARN nvml: GPU left out gpu=2 call=DeviceGetHandleByIndex err=" + lost,
		"WARN nvml: GPU call failed gpu=1 call=GetTemperature err=" + lost,
		"INFO nvml: GPU call recovered gpu=1 call=GetTemperature",
	}
	if diff := cmp.Diff(logs.lines(), wantLogs); diff != "" {
		t.Errorf("logs (-got +want):\n%s", diff)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	lib := server(dgxH100())
	d := nvml.New(nvml.WithInterface(lib))

	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 16 {
		wg.Go(func() {
			if _, err := d.Discover(t.Context()); err != nil {
				errs <- err
			}
			if s, err := d.Sample(t.Context()); err != nil || len(s) != 8 {
				errs <- fmt.Errorf("Sample = %d samples, %v", len(s), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(lib.InitCalls()); n != 1 {
		t.Errorf("Init called %d times, want 1", n)
	}

	// Close races with late callers; each either works or sees ErrClosed.
	for range 4 {
		wg.Go(func() {
			if _, err := d.Sample(t.Context()); err != nil && !errors.Is(err, nvml.ErrClosed) {
				t.Errorf("Sample during Close: %v", err)
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			if err := d.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if n := len(lib.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
	if _, err := d.Discover(t.Context()); !errors.Is(err, nvml.ErrClosed) {
		t.Errorf("Discover after Close: %v, want ErrClosed", err)
	}
	if _, err := d.Sample(t.Context()); !errors.Is(err, nvml.ErrClosed) {
		t.Errorf("Sample after Close: %v, want ErrClosed", err)
	}
}

func TestCloseBeforeUse(t *testing.T) {
	t.Parallel()
	lib := forbidden(t, gonvml.SUCCESS)
	lib.InitFunc = func() gonvml.Return { t.Fatal("Init called"); return 0 }
	d := nvml.New(nvml.WithInterface(lib))
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := d.Discover(t.Context()); !errors.Is(err, nvml.ErrClosed) {
		t.Errorf("Discover after Close: %v, want ErrClosed", err)
	}
}

func TestCloseReportsShutdownFailure(t *testing.T) {
	t.Parallel()
	lib := server(dgxH100())
	lib.ShutdownFunc = func() gonvml.Return { return gonvml.ERROR_UNKNOWN }
	d := nvml.New(nvml.WithInterface(lib))
	if _, err := d.Sample(t.Context()); err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if err := d.Close(); !errors.Is(err, gonvml.ERROR_UNKNOWN) {
		t.Errorf("Close = %v, want ERROR_UNKNOWN", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestCancelledContext(t *testing.T) {
	t.Parallel()
	lib := forbidden(t, gonvml.SUCCESS)
	lib.InitFunc = func() gonvml.Return { t.Fatal("Init called"); return 0 }
	d := nvml.New(nvml.WithInterface(lib))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := d.Discover(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Discover = %v, want context.Canceled", err)
	}
	if _, err := d.Sample(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Sample = %v, want context.Canceled", err)
	}
}

func TestDefaultHostname(t *testing.T) {
	t.Parallel()
	want, err := os.Hostname()
	if err != nil {
		t.Skipf("os.Hostname: %v", err)
	}
	d := nvml.New(nvml.WithInterface(server(nil)))
	t.Cleanup(func() { _ = d.Close() })
	got, err := d.Discover(t.Context())
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if got.Hostname != want {
		t.Errorf("Hostname = %q, want %q", got.Hostname, want)
	}
}

// TestRealNVML runs the default NVML library: on a host without a driver it
// must report no devices and a reason, not crash. On a GPU host it checks
// that what it finds is sane. It does not run in parallel: loading the real
// library sets state shared by every go-nvml Return in the process.
func TestRealNVML(t *testing.T) {
	d := nvml.New()
	got, err := d.Discover(t.Context())
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	t.Logf("discovery: %+v", got)
	samples, err := d.Sample(t.Context())
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if len(got.Devices) == 0 {
		if got.GPUUnavailableReason == "" && got.CUDAUnavailableReason == "" {
			t.Errorf("no devices and no reason: %+v", got)
		}
		if len(samples) != 0 {
			t.Errorf("no devices but samples %+v", samples)
		}
	}
	for _, dev := range got.Devices {
		if dev.UUID == "" || dev.TotalMB == 0 || dev.ComputeCapability == "" {
			t.Errorf("device %+v lacks UUID, memory or compute capability", dev)
		}
	}
	if len(samples) != len(got.Devices) {
		t.Errorf("%d samples for %d devices", len(samples), len(got.Devices))
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// recorder is a slog.Handler that keeps each record as "LEVEL msg k=v ...".
type recorder struct {
	mu   sync.Mutex
	recs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, line)
	return nil
}

func (r *recorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.recs...)
}

// BenchmarkSample measures the discoverer's own cost per Sample of eight
// GPUs over the mock (the real cost is dominated by the driver's calls).
func BenchmarkSample(b *testing.B) {
	d := nvml.New(nvml.WithInterface(server(dgxH100())))
	b.Cleanup(func() { _ = d.Close() })
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Sample(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
