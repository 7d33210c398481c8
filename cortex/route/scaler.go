package route

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/neuron"
)

// Scaler decides how many replicas each model has: which model to load
// one more replica of, and where (scale out), and which replica to unload
// (scale in). It is a pure decision over a Fleet snapshot and the
// gateway's demand signals: the gateway calls it on its clock and carries
// the decisions out through its load and unload paths.
//
// Concurrency: the gateway calls Scale from one goroutine, so a Scaler may
// keep memory between calls (windows, cool-downs) behind its own lock. It
// must not block, do I/O, or modify f or d.
type Scaler interface {
	// Scale returns the changes to make now, at most one per model; nil
	// when none.
	Scale(f *Fleet, d *Demand) []ScaleDecision
}

// Demand is what the gateway knows beside the snapshot when it asks its
// Scaler.
type Demand struct {
	// Now is the gateway's time.
	Now time.Time
	// Loads lists the loads this gateway has in flight: each is a replica
	// on its way that the snapshot may not show yet.
	Loads []Load
	// Idle lists the loaded replicas of the scaled models
	// (catalogue.Model.Scaled) that may be scaled in, with when each last
	// had work: its last use through this gateway, the last poll that saw
	// requests at the neuron, or when the gateway first saw it loaded.
	// Replicas that are pinned on their neuron, loading or on a neuron
	// that takes no work are not listed.
	Idle []IdleReplica
	// Backoff lists, by model id, the neurons where a load of the model
	// failed recently and may not start again yet (cortex.WithLoadBackoff):
	// a scale-out goes elsewhere or waits, rather than loading again on
	// each step where it failed.
	Backoff map[string][]Backoff
}

// IdleReplica is a loaded replica and when it last had work.
type IdleReplica struct {
	Neuron, Model string
	Since         time.Time
}

// ScaleDirection says whether a ScaleDecision adds or removes a replica.
type ScaleDirection uint8

// Directions. The zero ScaleDirection is invalid.
const (
	// ScaleOut: load one more replica of the model on Neuron, unloading
	// Evict there first.
	ScaleOut ScaleDirection = iota + 1
	// ScaleIn: unload the model's replica on Neuron.
	ScaleIn
)

// String returns "out" or "in".
func (s ScaleDirection) String() string {
	switch s {
	case ScaleOut:
		return "out"
	case ScaleIn:
		return "in"
	}
	return fmt.Sprintf("ScaleDirection(%d)", uint8(s))
}

// ScaleDecision is one change of a model's replica count.
type ScaleDecision struct {
	// Direction says whether to add or remove a replica.
	Direction ScaleDirection
	// Model is the model's catalogue profile.
	Model catalogue.Model
	// Neuron is where to load the new replica, or the replica to unload.
	Neuron string
	// Evict lists the models to unload from Neuron first (ScaleOut only);
	// nil when the model fits as it is.
	Evict []string
	// Reason says why, in a short phrase for events and logs:
	// "min_replicas 2", "work per replica 6.0 >= 4 for 10s",
	// "idle 5m0s", "over max_replicas 3".
	Reason string
	// Replicas is the model's replica count the decision was made over:
	// loaded and loading replicas on available neurons, with the
	// gateway's own loads in flight.
	Replicas int
}

// Placer picks a neuron to load one more replica of a model on. The
// default Router is a Placer (DefaultRouter.Place).
type Placer interface {
	// Place returns an ActionLoad Decision for prof on a neuron that
	// lists no replica of it, or an error when none can take it now.
	Place(f *Fleet, r *Request, prof catalogue.Model) (Decision, error)
}

// Replicas counts the replicas of one model in a Fleet, as the default
// Scaler sees them.
type Replicas struct {
	// Ready are the loaded replicas on available neurons.
	Ready int
	// Loading are the replicas on their way on available neurons: loading
	// or restarting in the snapshot, or loading through this gateway
	// (Demand.Loads) where the snapshot does not list the model.
	Loading int
	// Work is the work of the ready replicas: the sum of their
	// ModelState.Outstanding.
	Work int
}

// Count returns Ready + Loading: the replicas the model has or will have
// soon. A load in progress counts as a replica.
func (r Replicas) Count() int { return r.Ready + r.Loading }

// WorkPerReplica returns Work over Count: the default Scaler's scale-out
// signal. Loading replicas are in the count so that the signal drops as
// soon as a new replica is on its way, not when it is ready. 0 without
// replicas.
func (r Replicas) WorkPerReplica() float64 {
	if r.Count() == 0 {
		return 0
	}
	return float64(r.Work) / float64(r.Count())
}

// CountReplicas counts the replicas of model id in f, with loads, the
// gateway's loads in flight. Replicas on neurons that take no work are
// left out: a neuron that is down holds no replica a request can use, so
// the Scaler places another; when it comes back, the surplus is scaled in.
func CountReplicas(f *Fleet, loads []Load, id string) Replicas {
	var r Replicas
	eachReplica(f, loads, id, func(n *NeuronState, m *ModelState) {
		switch {
		case m != nil && m.Status == neuron.StatusLoaded:
			r.Ready++
			r.Work += m.Outstanding()
		default:
			r.Loading++
		}
	})
	return r
}

// ReplicaHolders returns the names of the neurons CountReplicas counts a
// replica of model id on, in the Fleet's order: what a gateway tells the
// replica arbiter it sees (see Arbiter).
func ReplicaHolders(f *Fleet, loads []Load, id string) []string {
	var out []string
	eachReplica(f, loads, id, func(n *NeuronState, _ *ModelState) { out = append(out, n.Name) })
	return out
}

// eachReplica calls fn for each replica of model id in f, with loads: a
// loaded, loading or restarting one on an available neuron (m set), or a
// load in flight there that the snapshot does not show (m nil).
func eachReplica(f *Fleet, loads []Load, id string, fn func(n *NeuronState, m *ModelState)) {
	if f == nil {
		return
	}
	for _, n := range f.neurons {
		if !n.available {
			continue
		}
		m := n.Model(id)
		switch {
		case m == nil:
			if slices.ContainsFunc(loads, func(l Load) bool { return l.Model == id && l.Neuron == n.Name }) {
				fn(n, nil)
			}
		case m.Status == neuron.StatusLoaded, m.Status == neuron.StatusLoading, m.Restarting():
			fn(n, m)
		}
	}
}

// Arbiter returns the neuron that arbitrates the replicas of model id
// (neuron's POST /replicas/claim), or "" when f has no available neuron:
// of the available neurons, the one that weighs most for the model in
// rendezvous hashing. Gateways with the same neurons agree on it without
// talking to each other, each model has its own, and when it goes away
// only its models move to another.
func Arbiter(f *Fleet, id string) string {
	if f == nil {
		return ""
	}
	key := fnv64(id)
	var best *NeuronState
	var bestW uint64
	for _, n := range f.neurons {
		if !n.available {
			continue
		}
		if w := rendezvous(key, n.nameHash); best == nil || w > bestW || w == bestW && n.Name < best.Name {
			best, bestW = n, w
		}
	}
	if best == nil {
		return ""
	}
	return best.Name
}

// LowerPriority wraps an Evictor so that it evicts only models of lower
// residency priority than the incoming one: it asks Evictor as if the
// incoming model's priority were one less. The default Scaler places
// through it, so that scaling a model out never evicts a model as
// important as itself, which a request could then load back.
type LowerPriority struct {
	Evictor Evictor
}

// Victims implements Evictor.
func (l LowerPriority) Victims(n *NeuronState, incoming catalogue.Model, needMB uint64) []string {
	p := priority(&incoming)
	if p <= 1 || l.Evictor == nil {
		return nil
	}
	incoming.ResidencyPriority = p - 1
	return l.Evictor.Victims(n, incoming, needMB)
}

// NotLoadingHere is a Filter that drops a load of the request's model on
// a neuron where the gateway is loading it already (Request.Loads): a
// placement there would join that load, not add a replica.
var NotLoadingHere Filter = FilterFunc(func(_ *Fleet, r *Request, c Candidate) bool {
	if c.Action != ActionLoad {
		return true
	}
	for _, l := range r.Loads {
		if l.Model == c.Profile.ID && l.Neuron == c.Neuron.Name {
			return false
		}
	}
	return true
})

// Defaults of the default Scaler.
const (
	// DefaultTargetWork is the work per replica (in flight plus queued)
	// above which the default Scaler scales a model out (WithTargetWork).
	DefaultTargetWork = 4
	// DefaultScaleWindow is how long the work must stay above the target
	// before a scale-out (WithScaleWindow).
	DefaultScaleWindow = 10 * time.Second
	// DefaultScaleCooldown is the least time between two changes of a
	// model's replica count for demand (WithScaleCooldown).
	DefaultScaleCooldown = 30 * time.Second
	// DefaultScaleInIdle is how long a replica of a model without
	// idle_unload serves nothing before the default Scaler scales it in
	// (WithScaleInIdle).
	DefaultScaleInIdle = 5 * time.Minute
)

// ScalerOption configures NewScaler.
type ScalerOption func(*DefaultScaler)

// WithTargetWork sets the work per replica the default Scaler scales out
// above (DefaultTargetWork). Set it near the number of requests one
// replica serves at once without slowing down.
func WithTargetWork(w float64) ScalerOption { return func(s *DefaultScaler) { s.target = w } }

// WithScaleWindow sets how long the signal must hold before a scale-out
// (DefaultScaleWindow); 0 scales out on the first step that sees it.
func WithScaleWindow(d time.Duration) ScalerOption { return func(s *DefaultScaler) { s.window = d } }

// WithScaleCooldown sets the least time between two changes of a model's
// replica count for demand (DefaultScaleCooldown). Changes for
// min_replicas and max_replicas do not wait for it.
func WithScaleCooldown(d time.Duration) ScalerOption {
	return func(s *DefaultScaler) { s.cooldown = d }
}

// WithScaleInIdle sets the idle window of the models without idle_unload
// (DefaultScaleInIdle); a model's idle_unload is its window.
func WithScaleInIdle(d time.Duration) ScalerOption { return func(s *DefaultScaler) { s.idle = d } }

// WithPlacer sets where scale-outs go. The default is a default Router
// (NewRouter) whose Evictor is LowerPriority{LRU} and whose filters drop
// the neurons the gateway is loading the model on (NotLoadingHere).
func WithPlacer(p Placer) ScalerOption { return func(s *DefaultScaler) { s.placer = p } }

// DefaultScaler is the default Scaler. For each catalogue model with
// replica bounds (catalogue.Model.Scaled), at most one decision per call:
//
//   - Below min_replicas: scale out, now.
//   - Above max_replicas (several gateways raced, or a neuron came back):
//     scale in the replica idle the longest that has no work.
//   - Scale out when the work per replica (Replicas.WorkPerReplica) has
//     stayed at or above the target for the window, below max_replicas,
//     at least the cool-down after the model's last change.
//   - Scale in a replica idle for the model's idle window (its
//     idle_unload, else WithScaleInIdle), above min_replicas, at least
//     the cool-down after the model's last change, when the others would
//     stay under half the target; never a replica with work.
//
// The signal is work per replica because the gateway sees it on every
// poll without new instruments (the neuron's in-flight and queued counts
// and the gateway's own live count), and it rises as soon as requests
// queue, before their wait shows in latency. The window keeps a burst of
// a few seconds from loading a replica that would be ready after it; the
// gap between the scale-out threshold (the target) and the scale-in one
// (an idle window, and the rest under half the target) with the
// cool-down keeps a load at the threshold from flapping.
//
// Scale-outs go where the Placer says, never on a neuron where a load of
// the model backs off (Demand.Backoff): the default Router's placement
// (free VRAM first, then evicting only idle models of lower priority,
// never a pinned model on its pin), ties broken by neuron name so that
// gateways over the same snapshot pick the same neuron, where the
// neuron's load arbitration joins their loads into one. The gateway
// claims each new replica from the model's Arbiter before it loads it,
// so that gateways over different snapshots never pass max_replicas
// together.
//
// A DefaultScaler is safe for concurrent use.
type DefaultScaler struct {
	target   float64
	window   time.Duration
	cooldown time.Duration
	idle     time.Duration
	placer   Placer

	mu     sync.Mutex
	models map[string]*scaleState
}

// scaleState is what the default Scaler remembers of one model.
type scaleState struct {
	over    time.Time // since when the signal holds; zero: it does not
	changed time.Time // the last decision for demand
	seen    bool      // seen in the last call
}

var _ Scaler = (*DefaultScaler)(nil)

// NewScaler returns the default Scaler. It fails on a target that is not
// positive, or a negative window, cool-down or idle window.
func NewScaler(opts ...ScalerOption) (*DefaultScaler, error) {
	s := &DefaultScaler{
		target:   DefaultTargetWork,
		window:   DefaultScaleWindow,
		cooldown: DefaultScaleCooldown,
		idle:     DefaultScaleInIdle,
		models:   make(map[string]*scaleState),
	}
	for _, o := range opts {
		o(s)
	}
	var errs []error
	if !(s.target > 0) {
		errs = append(errs, fmt.Errorf("route: scaler: target work %v is not positive", s.target))
	}
	for _, d := range [...]struct {
		name string
		d    time.Duration
	}{{"window", s.window}, {"cool-down", s.cooldown}, {"idle window", s.idle}} {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("route: scaler: negative %s %v", d.name, d.d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if s.placer == nil {
		r, err := NewRouter(WithEvictor(LowerPriority{Evictor: LRU{}}), WithFilters(NotLoadingHere))
		if err != nil {
			return nil, err
		}
		s.placer = r
	}
	return s, nil
}

// Scale implements Scaler.
func (s *DefaultScaler) Scale(f *Fleet, d *Demand) []ScaleDecision {
	if f == nil || f.cat == nil || d == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.models {
		st.seen = false
	}
	var out []ScaleDecision
	for _, prof := range f.cat.Models() {
		if !prof.Scaled() {
			continue
		}
		st := s.models[prof.ID]
		if st == nil {
			st = &scaleState{}
			s.models[prof.ID] = st
		}
		st.seen = true
		if dec, ok := s.decide(f, d, prof, st); ok {
			out = append(out, dec)
		}
	}
	for id, st := range s.models {
		if !st.seen {
			delete(s.models, id)
		}
	}
	return out
}

// decide returns the decision for one scaled model, if any.
func (s *DefaultScaler) decide(f *Fleet, d *Demand, prof catalogue.Model, st *scaleState) (ScaleDecision, bool) {
	lo, hi := prof.ReplicaBounds()
	r := CountReplicas(f, d.Loads, prof.ID)
	n := r.Count()
	wpr := r.WorkPerReplica()
	if wpr >= s.target && n > 0 {
		if st.over.IsZero() {
			st.over = d.Now
		}
	} else {
		st.over = time.Time{}
	}
	cooled := st.changed.IsZero() || d.Now.Sub(st.changed) >= s.cooldown
	switch {
	case n < lo:
		return s.out(f, d, prof, n, fmt.Sprintf("min_replicas %d", lo))
	case n > hi:
		if v, ok := s.victim(f, d, prof, 0); ok {
			return ScaleDecision{Direction: ScaleIn, Model: prof, Neuron: v, Replicas: n,
				Reason: fmt.Sprintf("over max_replicas %d", hi)}, true
		}
	case n < hi && !st.over.IsZero() && d.Now.Sub(st.over) >= s.window && cooled:
		dec, ok := s.out(f, d, prof, n, fmt.Sprintf("work per replica %.1f >= %g for %v", wpr, s.target, d.Now.Sub(st.over).Round(100*time.Millisecond)))
		if ok {
			st.changed, st.over = d.Now, time.Time{}
		}
		return dec, ok
	case n > lo && cooled && float64(r.Work) <= s.target/2*float64(n-1):
		window := s.idle
		if prof.IdleUnload > 0 {
			window = prof.IdleUnload
		}
		if v, ok := s.victim(f, d, prof, window); ok {
			st.changed = d.Now
			return ScaleDecision{Direction: ScaleIn, Model: prof, Neuron: v, Replicas: n,
				Reason: "idle " + window.String()}, true
		}
	}
	return ScaleDecision{}, false
}

// out places one more replica of prof.
func (s *DefaultScaler) out(f *Fleet, d *Demand, prof catalogue.Model, n int, reason string) (ScaleDecision, bool) {
	dec, err := s.placer.Place(f, &Request{Model: prof.ID, Loads: d.Loads, Backoff: d.Backoff[prof.ID]}, prof)
	if err != nil || dec.Action != ActionLoad {
		return ScaleDecision{}, false
	}
	// A Router places a request's model where it may not fit, to let the
	// neuron decide; a scale-out goes only where there is room.
	if n := f.byName[dec.Neuron]; n == nil || len(dec.Evict) == 0 && n.freeMB < prof.VRAMMB {
		return ScaleDecision{}, false
	}
	return ScaleDecision{Direction: ScaleOut, Model: prof, Neuron: dec.Neuron, Evict: dec.Evict, Reason: reason, Replicas: n}, true
}

// victim returns the replica of prof idle the longest, for at least
// window, that is loaded with no work in f and not pinned on its neuron.
func (s *DefaultScaler) victim(f *Fleet, d *Demand, prof catalogue.Model, window time.Duration) (string, bool) {
	var best IdleReplica
	for _, ir := range d.Idle {
		if ir.Model != prof.ID || d.Now.Sub(ir.Since) < window || !best.Since.IsZero() && !ir.Since.Before(best.Since) {
			continue
		}
		n := f.byName[ir.Neuron]
		if n == nil || !n.available || prof.PinnedTo(n.Name) {
			continue
		}
		m := n.Model(prof.ID)
		if m == nil || m.Status != neuron.StatusLoaded || m.Outstanding() > 0 {
			continue
		}
		best = ir
	}
	return best.Neuron, best.Neuron != ""
}
