package cortex

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
)

// fleetView builds the Fleet the gateway routes over from the Poller's
// latest Snapshot, with the gateway's catalogue and Usage: once per new
// Snapshot or catalogue, whoever asks first (a request, the status page, the metrics,
// or the default Poller's WithPublished hook). This is where the
// gateway's own state joins the neuron states, so that no Poller can
// publish a fleet without live counts or with another catalogue.
type fleetView struct {
	poller  route.Poller
	cat     atomic.Pointer[catalogue.Catalogue] // nil: none; replaced by setCatalogue
	usage   *route.Usage
	log     *slog.Logger
	observe func(prev, next *route.Fleet) // each new fleet after the first; nil: none

	cur atomic.Pointer[builtFleet]
	mu  sync.Mutex // serialises building
}

// builtFleet is the Fleet built from one Snapshot.
type builtFleet struct {
	src *route.Snapshot
	cat *catalogue.Catalogue
	f   *route.Fleet
}

// catalogue returns the catalogue fleets are built with; nil: none.
func (v *fleetView) catalogue() *catalogue.Catalogue { return v.cat.Load() }

// setCatalogue makes cat the catalogue of the fleets built from now on,
// and builds one at once. Fleets built before keep the old one: a request
// routed over one keeps the model it was priced with.
func (v *fleetView) setCatalogue(cat *catalogue.Catalogue) *route.Fleet {
	v.cat.Store(cat)
	return v.Fleet()
}

// Fleet returns the Fleet of the Poller's latest Snapshot. It does not
// allocate when the Snapshot has not changed since the last call.
func (v *fleetView) Fleet() *route.Fleet {
	s := v.poller.Snapshot()
	if c := v.cur.Load(); c != nil && c.src == s && c.cat == v.cat.Load() {
		return c.f
	}
	return v.rebuild()
}

// rebuild builds the Fleet of the latest Snapshot under v.mu, and tells
// the observer with no lock held. A Snapshot NewFleet refuses (a custom
// Poller's duplicate names) keeps the last Fleet, and is logged once.
func (v *fleetView) rebuild() *route.Fleet {
	v.mu.Lock()
	s := v.poller.Snapshot()
	prev := v.cur.Load()
	cat := v.cat.Load()
	if prev != nil && prev.src == s && prev.cat == cat {
		v.mu.Unlock()
		return prev.f
	}
	f, err := route.FromSnapshot(cat, v.usage, s)
	if err != nil {
		v.log.Error("cortex: the poller published a snapshot the gateway cannot use; keeping the last one", "err", err)
		if prev != nil {
			f = prev.f
		} else {
			f, _ = route.FromSnapshot(cat, v.usage, nil)
		}
	}
	v.cur.Store(&builtFleet{src: s, cat: cat, f: f})
	v.mu.Unlock()
	if prev != nil && prev.f != f && v.observe != nil {
		v.observe(prev.f, f)
	}
	return f
}
