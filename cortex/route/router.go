package route

import (
	"errors"
	"fmt"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
)

// DefaultRetryAfter is the Retry-After the default Router puts in a
// *RetryError unless WithRetryAfter says otherwise.
const DefaultRetryAfter = 2 * time.Second

// Routing errors. ErrNoHealthyNeuron, ErrModelRecovering and
// ErrFeasibleNeuronDown arrive wrapped in a *RetryError; ErrModelNotFound
// and ErrNoFeasibleNeuron are final.
var (
	// ErrNoHealthyNeuron: no neuron takes new work right now.
	ErrNoHealthyNeuron = errors.New("route: no healthy neuron")
	// ErrModelRecovering: the model is resident only as recovering or
	// failed; its neuron is restarting it.
	ErrModelRecovering = errors.New("route: model is recovering")
	// ErrModelNotFound: the model is neither in the catalogue nor resident
	// on any neuron.
	ErrModelNotFound = errors.New("route: model not found")
	// ErrNoFeasibleNeuron: no neuron of the fleet has the hardware to hold
	// the model; retrying does not help.
	ErrNoFeasibleNeuron = errors.New("route: no neuron can hold the model")
	// ErrFeasibleNeuronDown: only neurons that are unhealthy, excluded by
	// the hint, busy unloading the model or not yet discovered could hold
	// the model.
	ErrFeasibleNeuronDown = errors.New("route: no neuron that can hold the model is available")
)

// Refusal is a Router's own refusal of a request, answered as it says: an
// OpenAI error envelope with Status (a 4xx or 5xx; anything else is sent
// as 500), Code and Message, and Retry-After when RetryAfter is positive.
// A custom Router returns it to refuse with a status of its own, such as
// 403 for a principal it does not route, instead of a 500; the cortex
// gateway maps it to its answer (package cortex, Errors). The Message
// reaches the client: it must say nothing of the inside of the fleet.
type Refusal struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

// Error returns the status, code and message of the refusal.
func (r *Refusal) Error() string {
	return fmt.Sprintf("route: refused by the router: %d %s: %s", r.Status, r.Code, r.Message)
}

// RetryError is a routing error worth retrying after RetryAfter: the HTTP
// edge answers 503 with a Retry-After header. errors.Is(err, Err) holds.
type RetryError struct {
	// Err is the cause: ErrNoHealthyNeuron, ErrModelRecovering or
	// ErrFeasibleNeuronDown, possibly wrapped with detail.
	Err error
	// RetryAfter is how long the client should wait (positive).
	RetryAfter time.Duration
}

// Error returns the cause with the Retry-After.
func (e *RetryError) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.Err, e.RetryAfter)
}

// Unwrap returns Err.
func (e *RetryError) Unwrap() error { return e.Err }

// Action is what the gateway must do to carry out a Decision.
type Action uint8

// Actions. The zero Action is invalid.
const (
	// ActionServe: send the request to the loaded model on the neuron.
	ActionServe Action = iota + 1
	// ActionJoin: the model is loading on the neuron; wait for that load
	// (never start a second one), then send the request.
	ActionJoin
	// ActionLoad: unload the models in Decision.Evict from the neuron, in
	// order, then load the model there and send the request.
	ActionLoad
)

// String returns "serve", "join" or "load".
func (a Action) String() string {
	switch a {
	case ActionServe:
		return "serve"
	case ActionJoin:
		return "join"
	case ActionLoad:
		return "load"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Decision is where and how to serve one request.
type Decision struct {
	// Neuron is the name of the chosen neuron.
	Neuron string
	// Model is the resolved profile: the catalogue's, or the default
	// profile of a resident model the catalogue does not know. Model.ID is
	// the id to send to the neuron.
	Model catalogue.Model
	// Action says what to do on Neuron.
	Action Action
	// Evict lists the models to unload from Neuron first (ActionLoad only);
	// nil when the model fits as it is.
	Evict []string
}

// RouteHint carries per-request constraints. The zero value has none.
type RouteHint struct {
	// Exclude names neurons to skip, such as the one a first attempt failed
	// on, for one retry on another replica.
	Exclude []string
}

func (h *RouteHint) excludes(name string) bool {
	for _, x := range h.Exclude {
		if x == name {
			return true
		}
	}
	return false
}

// Router picks the neuron and action for a request.
//
// Concurrency: Route is a pure decision over an immutable snapshot and may
// be called from many goroutines at once. It must not block, do I/O, hold
// locks or modify f; the only live state it may read is the atomic
// counters ModelState.Live points to.
type Router interface {
	// Route decides where to serve model (an id or an alias). Retryable
	// failures are *RetryError; ErrModelNotFound and ErrNoFeasibleNeuron
	// are final.
	Route(f *Fleet, model string, hint RouteHint) (Decision, error)
}

// RouterOption configures NewRouter.
type RouterOption interface {
	applyRouter(*DefaultRouter)
}

type routerOptionFunc func(*DefaultRouter)

func (o routerOptionFunc) applyRouter(r *DefaultRouter) { o(r) }

// WithEvictor sets the Evictor that picks victims when a model fits on a
// neuron only after unloading others. Default LRU{}.
func WithEvictor(e Evictor) RouterOption {
	return routerOptionFunc(func(r *DefaultRouter) { r.evictor = e })
}

// WithRetryAfter sets the Retry-After of the *RetryErrors the router
// returns; the cortex gateway passes its own (cortex.WithRetryAfter).
// Default 2 s.
func WithRetryAfter(d time.Duration) RouterOption {
	return routerOptionFunc(func(r *DefaultRouter) { r.retryAfter = d })
}

// DefaultRouter is the default Router: the least busy loaded replica, else
// a load in progress, else a placement on the best feasible neuron, as the
// package documentation describes. It is safe for concurrent use.
type DefaultRouter struct {
	evictor    Evictor
	retryAfter time.Duration
}

var _ Router = (*DefaultRouter)(nil)

// NewRouter returns the default Router. It fails on a nil Evictor or a
// non-positive Retry-After.
func NewRouter(opts ...RouterOption) (*DefaultRouter, error) {
	r := &DefaultRouter{evictor: LRU{}, retryAfter: DefaultRetryAfter}
	for _, o := range opts {
		if o != nil {
			o.applyRouter(r)
		}
	}
	if r.evictor == nil {
		return nil, errors.New("route: router: nil Evictor")
	}
	if r.retryAfter <= 0 {
		return nil, fmt.Errorf("route: router: Retry-After %v is not positive", r.retryAfter)
	}
	return r, nil
}

func (r *DefaultRouter) retry(err error) error {
	return &RetryError{Err: err, RetryAfter: r.retryAfter}
}

// Route implements Router. Routing to a loaded model does not allocate.
func (r *DefaultRouter) Route(f *Fleet, model string, hint RouteHint) (Decision, error) {
	if f == nil || f.available == 0 {
		return Decision{}, r.retry(ErrNoHealthyNeuron)
	}
	var prof catalogue.Model
	inCat := false
	if f.cat != nil {
		prof, inCat = f.cat.Resolve(model)
	}
	id := model
	if inCat {
		id = prof.ID
	}
	mi := f.models[id]
	var best *readyReplica
	var join *replica
	recovering := false
	if mi != nil {
		excl := len(hint.Exclude) > 0
		at := f.at
		var ejected *readyReplica // the least busy ejected replica
		bestLoad, ejectedLoad := 0, 0
		for i := range mi.ready {
			rr := &mi.ready[i]
			load := rr.base + rr.live.InFlight()
			if (best != nil && load >= bestLoad) || (excl && hint.excludes(rr.n.Name)) {
				continue
			}
			if rr.ej.Active(at) {
				if ejected == nil || load < ejectedLoad {
					ejected, ejectedLoad = rr, load
				}
				continue
			}
			best, bestLoad = rr, load
			if load == 0 {
				break // nothing beats an idle replica, and ties go to the first
			}
		}
		if best == nil {
			// Every ready replica is ejected: rather than refuse, serve
			// the least busy one (Envoy's panic mode). Its answer, or a
			// success that brings it back, is the neuron's.
			best = ejected
		}
		if best == nil {
			for i := range mi.all {
				rp := &mi.all[i]
				if !rp.n.available || (excl && hint.excludes(rp.n.Name)) {
					continue
				}
				switch rp.kind {
				case kindLoading:
					if join == nil {
						join = rp
					}
				case kindRecovering:
					recovering = true
				}
			}
		}
	}
	switch {
	case best != nil:
		return Decision{Neuron: best.n.Name, Model: best.m.Profile, Action: ActionServe}, nil
	case join != nil:
		return Decision{Neuron: join.n.Name, Model: join.m.Profile, Action: ActionJoin}, nil
	case recovering:
		return Decision{}, r.retry(fmt.Errorf("%w: %q", ErrModelRecovering, id))
	case !inCat && mi == nil:
		return Decision{}, fmt.Errorf("%w: %q", ErrModelNotFound, model)
	case !inCat:
		// Resident only where it cannot be served now; without a profile
		// it cannot be placed elsewhere.
		return Decision{}, r.retry(fmt.Errorf("%w: %q", ErrFeasibleNeuronDown, id))
	}
	return r.place(f, prof, &hint)
}

// Placement classes, best first.
const (
	classPinnedFree  = iota // pinned here, fits in free VRAM
	classPinnedEvict        // pinned here, fits after evicting
	classFree               // fits in free VRAM
	classEvict              // fits after evicting
	classAny                // feasible; the neuron has the last word
	classNone
)

// candidate is the best neuron found so far in one placement class.
type candidate struct {
	n       *NeuronState
	victims []string
}

// placement is one placement decision in progress.
type placement struct {
	f    *Fleet
	prof *catalogue.Model
	hint *RouteHint
	mi   *modelIndex // where the model is listed; nil when nowhere
}

// place picks a neuron to load prof on.
func (r *DefaultRouter) place(f *Fleet, prof catalogue.Model, hint *RouteHint) (Decision, error) {
	p := placement{f: f, prof: &prof, hint: hint, mi: f.models[prof.ID]}
	var (
		best      [classNone]candidate
		down      bool // a neuron could hold it, but not now
		evictable [2]bool
	)
	for _, n := range f.neurons {
		switch p.placeable(n) {
		case placeUnknown, placeDown:
			down = true
			continue
		case placeNo:
			continue
		}
		pinned := prof.PinnedTo(n.Name)
		if n.freeMB >= prof.VRAMMB {
			c := classFree
			if pinned {
				c = classPinnedFree
			}
			if best[c].n == nil || n.freeMB > best[c].n.freeMB {
				best[c].n = n
			}
		} else if pinned {
			evictable[0] = true
		} else {
			evictable[1] = true
		}
		if best[classAny].n == nil || n.freeMB > best[classAny].n.freeMB {
			best[classAny].n = n
		}
	}
	if best[classPinnedFree].n == nil && evictable[0] {
		best[classPinnedEvict] = r.fewestVictims(&p, true)
	}
	if best[classPinnedFree].n == nil && best[classPinnedEvict].n == nil &&
		best[classFree].n == nil && evictable[1] {
		best[classEvict] = r.fewestVictims(&p, false)
	}
	for _, c := range best {
		if c.n != nil {
			return Decision{Neuron: c.n.Name, Model: prof, Action: ActionLoad, Evict: c.victims}, nil
		}
	}
	if down {
		return Decision{}, r.retry(fmt.Errorf("%w: %q", ErrFeasibleNeuronDown, prof.ID))
	}
	return Decision{}, fmt.Errorf("%w: %q", ErrNoFeasibleNeuron, prof.ID)
}

// fewestVictims asks the Evictor about each placeable neuron, pinned or
// not, where the model does not fit in free VRAM, and returns the one
// needing the fewest victims (ties: first name).
func (r *DefaultRouter) fewestVictims(p *placement, pinned bool) candidate {
	var best candidate
	for _, n := range p.f.neurons {
		if n.freeMB >= p.prof.VRAMMB || p.prof.PinnedTo(n.Name) != pinned || p.placeable(n) != placeOK {
			continue
		}
		v := r.evictor.Victims(n, *p.prof, p.prof.VRAMMB-n.freeMB)
		if len(v) == 0 {
			continue
		}
		if best.n == nil || len(v) < len(best.victims) {
			best = candidate{n: n, victims: v}
		}
	}
	return best
}

type placeability uint8

const (
	placeOK      placeability = iota
	placeNo                   // the hardware can never hold the model
	placeDown                 // could hold it, but not now
	placeUnknown              // hardware not yet discovered
)

func (p *placement) placeable(n *NeuronState) placeability {
	if n.Discovery == nil {
		return placeUnknown
	}
	if !catalogue.Feasible(*p.prof, n.deviceMB) {
		return placeNo
	}
	if !n.available || p.hint.excludes(n.Name) || p.listedOn(n) {
		return placeDown
	}
	return placeOK
}

// listedOn reports whether n lists the model. On an available neuron it is
// then unloading: loaded, loading and recovering were handled before
// placing.
func (p *placement) listedOn(n *NeuronState) bool {
	if p.mi == nil {
		return false
	}
	for i := range p.mi.all {
		if p.mi.all[i].n == n {
			return true
		}
	}
	return false
}
