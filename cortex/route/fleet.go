package route

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/neuron"
)

// healthShuttingDown is the /health status of a neuron that is draining.
const healthShuttingDown = "shutting_down"

// Fleet is an immutable snapshot of every neuron the gateway knows: its
// health, hardware and resident models, joined with the catalogue and
// linked to the gateway's live Usage. A Fleet is never modified after
// construction and is safe for concurrent use.
//
// A Poller publishes neuron states only (a Snapshot); the gateway builds
// the Fleet it routes over from each new Snapshot with NewFleet, its own
// catalogue and its own Usage. Build one with NewFleet in tests.
type Fleet struct {
	at        time.Time
	cat       *catalogue.Catalogue
	neurons   []*NeuronState
	byName    map[string]*NeuronState
	models    map[string]*modelIndex
	modelIDs  []string
	available int
	// maxTotalMB is the largest TotalVRAMMB of a neuron (FreeVRAM's scale).
	maxTotalMB uint64
}

// modelIndex lists the replicas of one model id, in neuron name order, for
// the Router.
type modelIndex struct {
	// ready holds the loaded replicas on available neurons, with the fields
	// the Router's hot loop reads side by side.
	ready []readyReplica
	// all holds every replica.
	all []replica
}

type readyReplica struct {
	live *Counter  // m.Live
	ej   *Ejection // m.Ejection
	base int       // m.others: the work of others as of the snapshot
	n    *NeuronState
	m    *ModelState
}

type replica struct {
	n    *NeuronState
	m    *ModelState
	kind replicaKind
}

type replicaKind uint8

const (
	kindOther replicaKind = iota
	kindLoaded
	kindLoading
	kindRecovering // recovering or failed
	kindUnloading
)

func kindOf(s neuron.ModelStatus) replicaKind {
	switch s {
	case neuron.StatusLoaded:
		return kindLoaded
	case neuron.StatusLoading:
		return kindLoading
	case neuron.StatusRecovering, neuron.StatusFailed:
		return kindRecovering
	case neuron.StatusUnloading:
		return kindUnloading
	}
	return kindOther
}

// NeuronState is one neuron in a Snapshot or a Fleet: what the Poller last
// learned about it. The exported fields are the inputs of NewFleet; the methods report
// values NewFleet derives from them, so query the NeuronStates a Fleet
// returns, not the ones given to NewFleet.
type NeuronState struct {
	// Name is the configured name.
	Name string
	// Endpoint is the configured base URL.
	Endpoint string
	// Healthy is false until the first successful poll, after
	// FailureThreshold consecutive failed polls, and true again after one
	// successful poll.
	Healthy bool
	// Failures counts consecutive failed polls (0 after a success).
	Failures int
	// LastError is the error of the last failed poll; nil after a success.
	LastError error
	// LastPoll is when the last poll finished; zero before the first.
	LastPoll time.Time
	// LastSuccess is when the last successful poll finished.
	LastSuccess time.Time
	// Discovery is the neuron's hardware from GET /discovery; nil until
	// first fetched. It is fetched once and cached.
	Discovery *neuron.Discovery
	// Health is the last GET /health answer; nil until first fetched.
	Health *neuron.Health
	// Models are the neuron's models from its last GET /models, sorted by
	// id in a Fleet. A neuron whose polls fail keeps its last known models.
	Models []ModelState

	deviceMB  []uint64
	totalMB   uint64
	freeMB    uint64
	available bool
	nameHash  uint64 // FNV-1a of Name: the neuron's side of rendezvous hashing
}

// ModelState is one model on one neuron in a Fleet.
type ModelState struct {
	// ModelInfo is the neuron's view from GET /models.
	neuron.ModelInfo
	// InFlight and QueueDepth are the neuron's admission counts from its
	// last GET /health (0 when absent).
	InFlight   int
	QueueDepth int
	// Profile is the catalogue profile of the model; for a model not in the
	// catalogue, a profile with the id and residency priority 100. NewFleet
	// sets it.
	Profile catalogue.Model
	// LastUsed is when the gateway last used the model on this neuron, as
	// of the snapshot; zero when never used. NewFleet raises it to Live's
	// last use.
	LastUsed time.Time
	// Live is the gateway's live counter for the model on this neuron,
	// linked by NewFleet from its Usage; nil when the fleet was built
	// without one.
	Live *Counter
	// others is the work of others as of the snapshot (see Outstanding).
	others int
	// Ejection is the gateway's live outlier state of the model on this
	// neuron: whether the replica is out of rotation, read with one atomic
	// load. NewFleet links it from its Usage; nil (never ejected) in a
	// fleet built without one.
	Ejection *Ejection
}

// Ejected reports whether the replica is out of rotation at t because it
// kept failing (see Ejection.Active). A Router passes the snapshot's time,
// Fleet.At.
func (m *ModelState) Ejected(t time.Time) bool { return m.Ejection.Active(t) }

// Restarting reports whether the neuron is restarting the model's engine:
// it is recovering, or failed by an engine failure (a crash, a hung
// engine) that the neuron restarts, not by a load that failed. A Router
// joins a restarting replica (ActionJoin) rather than loading the model
// again.
func (m *ModelState) Restarting() bool {
	return m.Status == neuron.StatusRecovering || m.Status == neuron.StatusFailed && m.LastFailure != ""
}

// Outstanding returns the work the model has: the gateway's live
// in-flight count, plus the work of others (other gateways, clients of the
// neuron's own) as of the snapshot: InFlight + QueueDepth less the
// gateway's own in-flight count when the Fleet was built, which the
// neuron's count included. It ranks replicas and is not an exact count.
func (m *ModelState) Outstanding() int {
	return m.others + m.Live.InFlight()
}

// LastUse returns the later of LastUsed and the live counter's last use.
func (m *ModelState) LastUse() time.Time {
	if lu := m.Live.LastUsed(); lu.After(m.LastUsed) {
		return lu
	}
	return m.LastUsed
}

// Model returns the model with the given id on the neuron, or nil. It does
// not allocate.
func (n *NeuronState) Model(id string) *ModelState {
	i, ok := slices.BinarySearchFunc(n.Models, id, func(m ModelState, id string) int {
		return strings.Compare(m.ID, id)
	})
	if !ok {
		return nil
	}
	return &n.Models[i]
}

// Available reports whether the neuron takes new work: it is Healthy and
// its last /health did not say it is shutting down.
func (n *NeuronState) Available() bool { return n.available }

// Draining reports whether the neuron's last /health said it is shutting
// down.
func (n *NeuronState) Draining() bool {
	return n.Health != nil && n.Health.Status == healthShuttingDown
}

// DeviceVRAMMB returns the total VRAM of each device in MiB, in the order of
// Discovery.Devices; nil while the hardware is unknown. The slice is shared:
// do not modify it.
func (n *NeuronState) DeviceVRAMMB() []uint64 { return n.deviceMB }

// TotalVRAMMB returns the VRAM of all devices in MiB (0 while unknown).
func (n *NeuronState) TotalVRAMMB() uint64 { return n.totalMB }

// FreeVRAMMB returns the VRAM available for a new model in MiB: the total
// minus the vram_used_mb of every model the neuron lists, and never more
// than the free VRAM its last /health sampled when it reported devices.
func (n *NeuronState) FreeVRAMMB() uint64 { return n.freeMB }

// derive computes the values the methods report.
func (n *NeuronState) derive() {
	n.nameHash = fnv64(n.Name)
	n.deviceMB, n.totalMB, n.freeMB = nil, 0, 0
	if n.Discovery != nil {
		n.deviceMB = make([]uint64, len(n.Discovery.Devices))
		for i, d := range n.Discovery.Devices {
			n.deviceMB[i] = d.TotalMB
			n.totalMB += d.TotalMB
		}
	}
	var used uint64
	for i := range n.Models {
		used += n.Models[i].VRAMUsedMB
	}
	if used < n.totalMB {
		n.freeMB = n.totalMB - used
	}
	if n.Health != nil && len(n.Health.Devices) > 0 {
		var sampled uint64
		for _, d := range n.Health.Devices {
			sampled += d.FreeMB
		}
		n.freeMB = min(n.freeMB, sampled)
	}
	n.available = n.Healthy && !n.Draining()
}

// NewFleet builds a snapshot taken at the time at from the given neurons
// and catalogue (nil: no catalogue, every model gets the default profile).
// It copies the NeuronState values and their Models slices, sorts them by
// name and id, and sets each model's Profile from the catalogue. With a
// non-nil usage, each ModelState's Live points to its counter in usage
// (created when missing) and LastUsed is raised to the counter's last use;
// with a nil usage, Live is kept as given. The Discovery and Health values
// the neurons point to are shared and must not be modified afterwards.
//
// It fails on an empty or duplicate neuron name and on an empty or
// duplicate model id within one neuron.
func NewFleet(cat *catalogue.Catalogue, usage *Usage, at time.Time, neurons []NeuronState) (*Fleet, error) {
	states := slices.Clone(neurons)
	for i := range states {
		states[i].Models = slices.Clone(states[i].Models)
	}
	return newFleet(cat, usage, at, states)
}

// FromSnapshot builds the Fleet of a Snapshot with NewFleet: taken at
// s.At, over s.Neurons, with the given catalogue and Usage. A nil s gives
// an empty fleet.
func FromSnapshot(cat *catalogue.Catalogue, usage *Usage, s *Snapshot) (*Fleet, error) {
	if s == nil {
		return newFleet(cat, usage, time.Time{}, nil)
	}
	return NewFleet(cat, usage, s.At, s.Neurons)
}

// newFleet is NewFleet over states it owns: their Models slices are sorted
// and modified in place.
func newFleet(cat *catalogue.Catalogue, usage *Usage, at time.Time, states []NeuronState) (*Fleet, error) {
	f := &Fleet{
		at:      at,
		cat:     cat,
		neurons: make([]*NeuronState, len(states)),
		byName:  make(map[string]*NeuronState, len(states)),
	}
	for i := range states {
		n := &states[i]
		if n.Name == "" {
			return nil, fmt.Errorf("route: fleet: neuron %d has no name", i)
		}
		if _, dup := f.byName[n.Name]; dup {
			return nil, fmt.Errorf("route: fleet: duplicate neuron %q", n.Name)
		}
		f.byName[n.Name] = n
		f.neurons[i] = n
		slices.SortFunc(n.Models, func(a, b ModelState) int { return strings.Compare(a.ID, b.ID) })
		for j := range n.Models {
			m := &n.Models[j]
			if m.ID == "" {
				return nil, fmt.Errorf("route: fleet: neuron %q: model with no id", n.Name)
			}
			if j > 0 && n.Models[j-1].ID == m.ID {
				return nil, fmt.Errorf("route: fleet: neuron %q: duplicate model %q", n.Name, m.ID)
			}
			m.Profile = profileOf(cat, m.ID)
			m.others = m.InFlight + m.QueueDepth
		}
		n.derive()
		if n.available {
			f.available++
		}
		f.maxTotalMB = max(f.maxTotalMB, n.totalMB)
	}
	slices.SortFunc(f.neurons, func(a, b *NeuronState) int { return strings.Compare(a.Name, b.Name) })
	f.index(usage)
	return f, nil
}

// index builds the replicas of each model id, each list in neuron name
// order, over shared backing arrays, and links the models to their usage
// counters.
func (f *Fleet) index(usage *Usage) {
	counts := make(map[string]int)
	total := 0
	for _, n := range f.neurons {
		for j := range n.Models {
			counts[n.Models[j].ID]++
			total++
		}
	}
	f.modelIDs = make([]string, 0, len(counts))
	for id := range counts {
		f.modelIDs = append(f.modelIDs, id)
	}
	slices.Sort(f.modelIDs)
	all := make([]replica, total)
	idx := make([]modelIndex, len(f.modelIDs))
	f.models = make(map[string]*modelIndex, len(f.modelIDs))
	off := 0
	for i, id := range f.modelIDs {
		c := counts[id]
		idx[i].all = all[off : off : off+c]
		f.models[id] = &idx[i]
		off += c
	}
	nready := 0
	for _, n := range f.neurons {
		for j := range n.Models {
			m := &n.Models[j]
			mi := f.models[m.ID]
			r := replica{n: n, m: m, kind: kindOf(m.Status)}
			mi.all = append(mi.all, r)
			if r.ready() {
				nready++
			}
		}
	}
	if usage != nil {
		usage.attach(f.modelIDs, f.models)
	}
	ready := make([]readyReplica, nready)
	off = 0
	for i := range idx {
		mi := &idx[i]
		start := off
		for _, r := range mi.all {
			if r.ready() {
				ready[off] = readyReplica{live: r.m.Live, ej: r.m.Ejection, base: r.m.others, n: r.n, m: r.m}
				off++
			}
		}
		mi.ready = ready[start:off:off]
	}
}

func (r replica) ready() bool { return r.kind == kindLoaded && r.n.available }

// attach points every model's Live and Ejection at its replica's in u,
// model by model so that new entries of one model's replicas are allocated
// side by side, and raises LastUsed to the counter's.
func (u *Usage) attach(ids []string, models map[string]*modelIndex) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, id := range ids {
		for _, r := range models[id].all {
			m := r.m
			l := u.replicaLocked(usageKey{r.n.Name, id})
			m.Live, m.Ejection = &l.c, &l.e
			// The neuron counted this gateway's own requests too: the
			// live count stands for them from now on.
			m.others = max(0, m.others-m.Live.InFlight())
			if lu := m.Live.LastUsed(); lu.After(m.LastUsed) {
				m.LastUsed = lu
			}
		}
	}
}

// profileOf returns the catalogue profile of id, or the default profile of
// a model the catalogue does not know.
func profileOf(cat *catalogue.Catalogue, id string) catalogue.Model {
	if cat != nil {
		if p, ok := cat.Lookup(id); ok {
			return p
		}
	}
	return catalogue.Model{ID: id, ResidencyPriority: catalogue.DefaultResidencyPriority}
}

// At returns when the snapshot was taken.
func (f *Fleet) At() time.Time { return f.at }

// Catalogue returns the catalogue the snapshot was built with; nil when
// none.
func (f *Fleet) Catalogue() *catalogue.Catalogue { return f.cat }

// Neurons returns every neuron sorted by name. The slice is shared: do not
// modify it.
func (f *Fleet) Neurons() []*NeuronState { return f.neurons }

// Neuron returns the neuron with the given name, or nil. It does not
// allocate.
func (f *Fleet) Neuron(name string) *NeuronState { return f.byName[name] }

// Available returns the number of neurons that take new work (see
// NeuronState.Available).
func (f *Fleet) Available() int { return f.available }

// ModelIDs returns the ids of the models listed by at least one neuron,
// sorted. The slice is shared: do not modify it.
func (f *Fleet) ModelIDs() []string { return f.modelIDs }

// Resolve returns the profile for a model name: the catalogue's, through
// its aliases, or the default profile of a model that is not in the
// catalogue but listed by some neuron. ok is false when neither knows it.
// It does not allocate.
func (f *Fleet) Resolve(model string) (p catalogue.Model, ok bool) {
	if f.cat != nil {
		if p, ok := f.cat.Resolve(model); ok {
			return p, true
		}
	}
	if mi := f.models[model]; mi != nil {
		return mi.all[0].m.Profile, true
	}
	return catalogue.Model{}, false
}
