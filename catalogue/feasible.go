package catalogue

import "strconv"

// Fit grades how well a neuron's devices suit a model. The values are
// ordered: a router that prefers the higher Fit honours pinning.
type Fit int8

const (
	// NoFit means the devices cannot hold the model.
	NoFit Fit = iota
	// Fits means the devices can hold the model, on a neuron where it is
	// not pinned.
	Fits
	// FitsPinned means the devices can hold the model, on a neuron where it
	// is pinned: the preferred placement.
	FitsPinned
)

// String returns "no_fit", "fits" or "fits_pinned".
func (f Fit) String() string {
	switch f {
	case NoFit:
		return "no_fit"
	case Fits:
		return "fits"
	case FitsPinned:
		return "fits_pinned"
	}
	return "fit(" + strconv.Itoa(int(f)) + ")"
}

// OK reports whether the devices can hold the model (Fits or FitsPinned).
func (f Fit) OK() bool { return f >= Fits }

// Feasible reports whether devices with the given VRAM (MiB, one element
// per device) can hold m: at least m.MinDevices of them (default 1 when
// m.VRAMMB > 0) each have at least m.MinDeviceVRAMMB, and those qualifying
// devices together hold at least m.VRAMMB. A device with 0 MiB never
// qualifies. A model that needs no VRAM and no devices fits anywhere.
//
// Pass each device's total VRAM to ask whether a neuron could ever host
// m, or its free VRAM to ask whether m fits now. Feasible ignores
// m.PinnedOn; see FeasibleOn. It does not allocate.
func Feasible(m Model, deviceVRAMMB []uint64) bool {
	need := m.MinDevices
	if need <= 0 && m.VRAMMB > 0 {
		need = 1
	}
	var n int
	var sum uint64
	for _, mb := range deviceVRAMMB {
		if mb == 0 || mb < m.MinDeviceVRAMMB {
			continue
		}
		n++
		if mb >= m.VRAMMB-sum { // sum <= m.VRAMMB throughout: no overflow
			sum = m.VRAMMB
		} else {
			sum += mb
		}
		if n >= need && sum >= m.VRAMMB {
			return true
		}
	}
	return n >= need && sum >= m.VRAMMB
}

// FeasibleOn grades the neuron named neuron, with the given device VRAM,
// for m: NoFit when Feasible is false, FitsPinned when m is pinned on the
// neuron, else Fits.
//
// Pinning never makes a placement infeasible: pinned_on is a preference
// and an eviction protection, not a restriction, so a pinned model may run
// on a neuron outside PinnedOn when its pinned neurons cannot take it.
func FeasibleOn(m Model, deviceVRAMMB []uint64, neuron string) Fit {
	switch {
	case !Feasible(m, deviceVRAMMB):
		return NoFit
	case m.PinnedTo(neuron):
		return FitsPinned
	default:
		return Fits
	}
}
