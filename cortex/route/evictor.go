package route

import (
	"cmp"
	"slices"
	"strings"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/neuron"
)

// Evictor decides which resident models of a neuron to unload to make room
// for an incoming model. It is a pure decision: the Router calls it while
// routing, and the gateway carries the answer out (unload, then load).
//
// Concurrency: Victims may be called from many goroutines at once over the
// same snapshot. It must not block, do I/O, or modify n.
type Evictor interface {
	// Victims returns the ids of the models on n to unload, in order, so
	// that at least needMB MiB are freed for incoming; nil when no
	// acceptable set of models frees that much (never evict pointlessly).
	Victims(n *NeuronState, incoming catalogue.Model, needMB uint64) []string
}

// LRU is the default Evictor: it unloads the least recently used models.
//
// Candidates are the models on the neuron that are loaded, are not pinned
// to it, have nothing in flight or queued (in the snapshot and in the live
// counter), use some VRAM, and have a residency priority no higher than the
// incoming model's. Models never used go first, then the least recently
// used; ties go to the smaller id. LRU takes candidates in that order until
// needMB is freed, and returns nil when all of them together cannot free
// it, or when needMB is 0.
//
// The zero value is ready to use and safe for concurrent use.
type LRU struct{}

var _ Evictor = LRU{}

// NewLRUEvictor returns the default LRU Evictor.
func NewLRUEvictor() LRU { return LRU{} }

// Victims implements Evictor.
func (LRU) Victims(n *NeuronState, incoming catalogue.Model, needMB uint64) []string {
	if n == nil || needMB == 0 {
		return nil
	}
	type cand struct {
		m    *ModelState
		used int64 // LastUse in Unix nanoseconds; 0 when never used.
	}
	var cands []cand
	var total uint64
	prio := priority(&incoming)
	for i := range n.Models {
		m := &n.Models[i]
		if m.Status != neuron.StatusLoaded || m.ID == incoming.ID || m.VRAMUsedMB == 0 ||
			slices.Contains(m.Profile.PinnedOn, n.Name) || priority(&m.Profile) > prio ||
			m.Outstanding() > 0 {
			continue
		}
		if cands == nil {
			cands = make([]cand, 0, len(n.Models)-i)
		}
		c := cand{m: m}
		if lu := m.LastUse(); !lu.IsZero() {
			c.used = lu.UnixNano()
		}
		cands = append(cands, c)
		total += m.VRAMUsedMB
	}
	if total < needMB {
		return nil
	}
	slices.SortFunc(cands, func(a, b cand) int {
		// Never used (0) sorts first, then the oldest use.
		if c := cmp.Compare(a.used, b.used); c != 0 {
			return c
		}
		return strings.Compare(a.m.ID, b.m.ID)
	})
	k := 0
	for freed := uint64(0); freed < needMB; k++ {
		freed += cands[k].m.VRAMUsedMB
	}
	victims := make([]string, k)
	for i := range victims {
		victims[i] = cands[i].m.ID
	}
	return victims
}

// priority returns m's residency priority, with the catalogue's default
// for a hand-built profile that leaves it zero.
func priority(m *catalogue.Model) int {
	switch {
	case m.ResidencyPriority != 0:
		return m.ResidencyPriority
	case len(m.PinnedOn) > 0:
		return catalogue.DefaultPinnedResidencyPriority
	}
	return catalogue.DefaultResidencyPriority
}
