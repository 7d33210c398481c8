package neuron

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// VRAM accounting. Engines allocate their memory lazily, so a live sample
// lags behind a load that has just started. The Agent therefore keeps its own
// ledger: each model it loads holds a reservation of VRAMMB split evenly
// over its devices, until it is unloaded (or its load fails and the harness
// forgets it). A device's free VRAM is its total minus its reservations, and
// never more than the free VRAM last sampled for it.
//
// When a LoadSpec names no devices the Agent chooses the fewest devices, the
// ones with the most free VRAM, on which an even split fits; a spec without
// VRAMMB gets the one device with the most free VRAM. A host whose discovery
// found no devices (no GPU) does no accounting: loads go to the harness
// without devices.

// reservation is the VRAM the Agent has assigned to one model.
type reservation struct {
	devices     []int
	perDeviceMB uint64
	loads       int // loads of the model in progress through the Agent
}

// load loads spec through the harness and returns when the model is ready.
// A cancelled ctx, or the end of the Agent's life in Shutdown, stops the
// wait, not the load. Loading a model the harness already has returns its
// info (and joins a load in progress) without a new reservation.
func (a *Agent) load(ctx context.Context, spec LoadSpec) (ModelInfo, error) {
	if spec.ModelID == "" {
		return ModelInfo{}, fmt.Errorf("%w: model_id is required", ErrInvalidRequest)
	}
	if err := spec.EngineArgs.Validate(); err != nil {
		return ModelInfo{}, err
	}
	if a.life.Err() != nil {
		return ModelInfo{}, ErrShuttingDown
	}
	if reason := a.Discovery().CUDAUnavailableReason; reason != "" {
		return ModelInfo{}, fmt.Errorf("%w: %s", ErrCUDAUnavailable, reason)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(a.life, cancel)()

	known := a.h.Models()
	if i := slices.IndexFunc(known, func(m ModelInfo) bool { return m.ID == spec.ModelID }); i >= 0 {
		if known[i].Status == StatusLoaded {
			return known[i], nil
		}
		return a.harnessLoad(ctx, spec)
	}
	if err := a.preflight(ctx, spec); err != nil {
		return ModelInfo{}, err
	}
	samples, err := a.d.Sample(ctx)
	if err != nil {
		a.log.DebugContext(ctx, "neuron: device sample failed", "err", err)
	}
	spec, err = a.reserve(spec, known, samples)
	if err != nil {
		return ModelInfo{}, err
	}
	a.log.InfoContext(ctx, "neuron: loading model", "model", spec.ModelID, "engine", spec.Engine,
		"devices", spec.Devices, "vram_mb", spec.VRAMMB, "context", spec.Context)
	info, err := a.harnessLoad(ctx, spec)
	a.settle(spec.ModelID, err)
	return info, err
}

// Check reports whether a load of spec could start on this neuron, with
// no side effect: it is POST /models/check. A model the harness already
// runs (loaded, loading, recovering) passes: a load of it joins it or
// answers at once. For any other it checks what a load would refuse
// before starting an engine: a model id (ErrInvalidRequest), the neuron
// not shutting down (ErrShuttingDown), CUDA (ErrCUDAUnavailable), devices
// that exist and VRAM that fits them once every other model is gone
// (*VRAMError: the load cannot fit even after evictions), and the
// harness's own Check when it is a Checker (ErrUnknownEngine,
// ErrCannotStart: the engine's command or the model's file is missing).
// Free VRAM is not checked: cortex evicts to make room after a check.
func (a *Agent) Check(ctx context.Context, spec LoadSpec) error {
	if spec.ModelID == "" {
		return fmt.Errorf("%w: model_id is required", ErrInvalidRequest)
	}
	if err := spec.EngineArgs.Validate(); err != nil {
		return err
	}
	if a.life.Err() != nil {
		return ErrShuttingDown
	}
	disc := a.Discovery()
	if disc.CUDAUnavailableReason != "" {
		return fmt.Errorf("%w: %s", ErrCUDAUnavailable, disc.CUDAUnavailableReason)
	}
	if a.known(spec.ModelID) {
		return nil
	}
	total := make(map[int]uint64, len(disc.Devices))
	for _, d := range disc.Devices {
		total[d.Index] = d.TotalMB
	}
	if _, _, err := chooseDevices(disc.Devices, total, spec.Devices, spec.VRAMMB); err != nil {
		return err
	}
	return a.preflight(ctx, spec)
}

// preflight asks the harness, when it is a Checker, whether spec's engine
// can start.
func (a *Agent) preflight(ctx context.Context, spec LoadSpec) error {
	if c, ok := a.h.(Checker); ok {
		return c.Check(ctx, spec)
	}
	return nil
}

func (a *Agent) harnessLoad(ctx context.Context, spec LoadSpec) (ModelInfo, error) {
	info, err := a.h.Load(ctx, spec)
	if err != nil && ctx.Err() != nil && a.life.Err() != nil {
		return info, fmt.Errorf("%w: load of %s abandoned: %w", ErrShuttingDown, spec.ModelID, err)
	}
	return info, err
}

// reserve assigns devices and VRAM to spec, or joins the reservation of a
// load of the same model already in progress. It returns spec with its
// devices set.
func (a *Agent) reserve(spec LoadSpec, known []ModelInfo, samples []DeviceSample) (LoadSpec, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, r := range a.reservations {
		if r.loads == 0 && !slices.ContainsFunc(known, func(m ModelInfo) bool { return m.ID == id }) {
			delete(a.reservations, id) // the harness has forgotten the model
		}
	}
	if r, ok := a.reservations[spec.ModelID]; ok {
		r.loads++
		spec.Devices = slices.Clone(r.devices)
		return spec, nil
	}
	devices, per, err := chooseDevices(a.discovery.Devices, a.freeLocked(samples), spec.Devices, spec.VRAMMB)
	if err != nil {
		return spec, err
	}
	a.reservations[spec.ModelID] = &reservation{devices: devices, perDeviceMB: per, loads: 1}
	spec.Devices = slices.Clone(devices)
	return spec, nil
}

// settle ends a load begun by reserve. A failed load gives its VRAM back
// unless another load of the model is under way or the harness still holds
// the model.
func (a *Agent) settle(id string, loadErr error) {
	held := loadErr != nil && a.known(id)
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.reservations[id]
	if !ok {
		return
	}
	r.loads--
	if loadErr != nil && r.loads == 0 && !held {
		delete(a.reservations, id)
	}
}

func (a *Agent) dropReservation(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.reservations, id)
}

// freeLocked returns the free VRAM of each discovered device.
func (a *Agent) freeLocked(samples []DeviceSample) map[int]uint64 {
	free := make(map[int]uint64, len(a.discovery.Devices))
	for _, d := range a.discovery.Devices {
		free[d.Index] = d.TotalMB
	}
	for _, r := range a.reservations {
		for _, i := range r.devices {
			free[i] -= min(free[i], r.perDeviceMB)
		}
	}
	for _, s := range samples {
		if f, ok := free[s.Index]; ok && s.FreeMB < f {
			free[s.Index] = s.FreeMB
		}
	}
	return free
}

// chooseDevices picks the devices for a model needing vramMB in all, split
// evenly over them, and returns them (sorted by index when chosen) with the
// share of each. When want names devices they are checked, not chosen.
// Otherwise it picks the fewest devices with the most free VRAM that fit;
// with vramMB 0, the one device with the most free VRAM. With no devices
// discovered it returns none and checks nothing. A model that does not fit
// gets a *VRAMError whose FreeMB is the most VRAM an even split could give.
func chooseDevices(devs []Device, free map[int]uint64, want []int, vramMB uint64) ([]int, uint64, error) {
	if len(devs) == 0 {
		if len(want) > 0 {
			return nil, 0, fmt.Errorf("%w: device %d requested but no GPU was discovered", ErrInvalidRequest, want[0])
		}
		return nil, 0, nil
	}
	if len(want) > 0 {
		minFree := uint64(0)
		for i, idx := range want {
			f, ok := free[idx]
			if !ok {
				return nil, 0, fmt.Errorf("%w: no device %d", ErrInvalidRequest, idx)
			}
			if slices.Contains(want[:i], idx) {
				return nil, 0, fmt.Errorf("%w: device %d listed twice", ErrInvalidRequest, idx)
			}
			if i == 0 || f < minFree {
				minFree = f
			}
		}
		k := uint64(len(want))
		per := ceilDiv(vramMB, k)
		if minFree < per {
			return nil, 0, &VRAMError{FreeMB: k * minFree, RequiredMB: vramMB}
		}
		return slices.Clone(want), per, nil
	}
	order := make([]int, 0, len(devs))
	for _, d := range devs {
		order = append(order, d.Index)
	}
	slices.SortFunc(order, func(x, y int) int {
		if c := cmp.Compare(free[y], free[x]); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
	if vramMB == 0 {
		return order[:1], 0, nil
	}
	best := uint64(0)
	for k := 1; k <= len(order); k++ {
		capacity := uint64(k) * free[order[k-1]]
		if capacity >= vramMB {
			chosen := slices.Clone(order[:k])
			slices.Sort(chosen)
			return chosen, ceilDiv(vramMB, uint64(k)), nil
		}
		best = max(best, capacity)
	}
	return nil, 0, &VRAMError{FreeMB: best, RequiredMB: vramMB}
}

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }
