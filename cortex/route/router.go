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

// Routing errors. ErrNoHealthyNeuron, ErrModelRecovering,
// ErrFeasibleNeuronDown and ErrLoadBackoff arrive wrapped in a
// *RetryError; ErrModelNotFound and ErrNoFeasibleNeuron are final.
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
	// ErrFeasibleNeuronDown: only neurons that are unhealthy, already
	// tried by the request, dropped by a filter, busy unloading the model
	// or not yet discovered could hold the model.
	ErrFeasibleNeuronDown = errors.New("route: no neuron that can hold the model is available")
	// ErrLoadBackoff: the model failed to load recently on every neuron
	// that could hold it now; no new load starts there until its backoff
	// ends (Request.Backoff).
	ErrLoadBackoff = errors.New("route: the model failed to load recently; a new load waits for its backoff")
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
	// Err is the cause: ErrNoHealthyNeuron, ErrModelRecovering,
	// ErrFeasibleNeuronDown or ErrLoadBackoff, possibly wrapped with
	// detail.
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
	// ActionJoin: the model is on its way on the neuron: loading there
	// (as the snapshot shows, or as Request.Loads says of this gateway's
	// own load), or its engine restarting. Wait until it is ready (never
	// start a second load), then send the request.
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

// Router picks the neuron and action for a request: it owns the whole
// decision, and the gateway carries it out as it is (see the package
// documentation, The Router contract).
//
// Concurrency: Route is a pure decision over an immutable snapshot and may
// be called from many goroutines at once. It must not block, do I/O, hold
// locks or modify f or r; the only live state it may read is the atomic
// counters ModelState.Live and ModelState.Ejection point to.
type Router interface {
	// Route decides where to serve r.Model. Retryable failures are
	// *RetryError; ErrModelNotFound and ErrNoFeasibleNeuron are final; a
	// *Refusal is answered as it says.
	Route(f *Fleet, r *Request) (Decision, error)
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

// WithFilters adds filters, asked in order after the router's own checks
// (see Filter). Default none.
func WithFilters(fs ...Filter) RouterOption {
	return routerOptionFunc(func(r *DefaultRouter) { r.filters = append(r.filters, fs...) })
}

// WithScorers sets the scorers that rank the replicas a request may be
// served from or join, replacing the default: LeastLoaded with weight 1.
func WithScorers(ws ...Weighted) RouterOption {
	return routerOptionFunc(func(r *DefaultRouter) { r.replicas = newScoring(ws) })
}

// WithPlacementScorers sets the scorers that rank the neurons of one
// placement class a model may be loaded on (see the package
// documentation, Routing policy), replacing the default: FreeVRAM with
// weight 1.
func WithPlacementScorers(ws ...Weighted) RouterOption {
	return routerOptionFunc(func(r *DefaultRouter) { r.placements = newScoring(ws) })
}

// DefaultRouter is the default Router: the best loaded replica, else a
// load in progress, else a placement on the best feasible neuron, as the
// package documentation describes, with the filters and scorers it is
// given. It is safe for concurrent use.
type DefaultRouter struct {
	evictor    Evictor
	retryAfter time.Duration
	filters    []Filter
	replicas   scoring
	placements scoring
	affinity   *PrefixAffinity // nil: off
}

var _ Router = (*DefaultRouter)(nil)

// NewRouter returns the default Router. It fails on a nil Evictor, Filter
// or Scorer, or a non-positive Retry-After.
func NewRouter(opts ...RouterOption) (*DefaultRouter, error) {
	r := &DefaultRouter{
		evictor:    LRU{},
		retryAfter: DefaultRetryAfter,
		replicas:   newScoring([]Weighted{{Scorer: LeastLoaded, Weight: 1}}),
		placements: newScoring([]Weighted{{Scorer: FreeVRAM, Weight: 1}}),
	}
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
	for i, f := range r.filters {
		if f == nil {
			return nil, fmt.Errorf("route: router: filter %d is nil", i)
		}
	}
	if r.affinity != nil {
		if err := r.affinity.validate(); err != nil {
			return nil, fmt.Errorf("route: router: %w", err)
		}
	}
	for _, s := range [2]scoring{r.replicas, r.placements} {
		for i, w := range s.ws {
			if w.Scorer == nil {
				return nil, fmt.Errorf("route: router: scorer %d is nil", i)
			}
		}
	}
	return r, nil
}

func (r *DefaultRouter) retry(err error) error {
	return &RetryError{Err: err, RetryAfter: r.retryAfter}
}

// keep reports whether every filter keeps c.
func (r *DefaultRouter) keep(f *Fleet, req *Request, c Candidate) bool {
	for _, fl := range r.filters {
		if !fl.Keep(f, req, c) {
			return false
		}
	}
	return true
}

// Route implements Router. Routing to a loaded model does not allocate.
//
// A request the model cannot be routed for while a load of it backs off
// somewhere (Request.Backoff) gets a *RetryError wrapping ErrLoadBackoff,
// with the Retry-After of the soonest end of a backoff, so that clients
// wait for the next load rather than for nothing.
func (r *DefaultRouter) Route(f *Fleet, req *Request) (Decision, error) {
	d, err := r.route(f, req)
	if err != nil && len(req.Backoff) > 0 {
		soonest := req.Backoff[0].Until
		for _, b := range req.Backoff[1:] {
			if b.Until.Before(soonest) {
				soonest = b.Until
			}
		}
		var at time.Time
		if f != nil {
			at = f.at
		}
		return Decision{}, &RetryError{Err: fmt.Errorf("%w: %q", ErrLoadBackoff, req.Model), RetryAfter: max(soonest.Sub(at), time.Second)}
	}
	return d, err
}

func (r *DefaultRouter) route(f *Fleet, req *Request) (Decision, error) {
	if f == nil || f.available == 0 {
		return Decision{}, r.retry(ErrNoHealthyNeuron)
	}
	var prof catalogue.Model
	inCat := false
	if f.cat != nil {
		prof, inCat = f.cat.Resolve(req.Model)
	}
	id := req.Model
	if inCat {
		id = prof.ID
	}
	mi := f.models[id]
	if mi != nil {
		if !inCat && len(mi.all) > 0 {
			prof = mi.all[0].m.Profile
		}
		if d, ok := r.serve(f, req, mi); ok {
			return d, nil
		}
	}
	if d, ok := r.join(f, req, id, mi, prof); ok {
		return d, nil
	}
	switch {
	case mi != nil && recovering(req, mi):
		return Decision{}, r.retry(fmt.Errorf("%w: %q", ErrModelRecovering, id))
	case !inCat && mi == nil:
		return Decision{}, fmt.Errorf("%w: %q", ErrModelNotFound, req.Model)
	case !inCat, !req.mayLoad():
		// Resident only where it cannot be served now; without a profile
		// it cannot be placed elsewhere. Or a retry, which starts no
		// second copy of a model that is still resident.
		return Decision{}, r.retry(fmt.Errorf("%w: %q", ErrFeasibleNeuronDown, id))
	}
	return r.place(f, req, prof)
}

// serve picks the best loaded replica the request may go to. Ejected
// replicas are left out while another is ready; when every one is
// ejected, the best of them serves rather than none (Envoy's panic mode).
// Its answer, or a success that brings it back, is the neuron's.
func (r *DefaultRouter) serve(f *Fleet, req *Request, mi *modelIndex) (Decision, bool) {
	var best, ejected, preferred *readyReplica
	if r.affinity != nil {
		preferred = r.prefer(f, req, mi)
	}
	switch {
	case preferred != nil && r.replicas.leastLoaded && r.affinity.Weight >= r.replicas.max:
		// Nothing the other scorer gives can outweigh it.
		best = preferred
	case preferred == nil && len(r.filters) == 0 && len(req.Tried) == 0 && r.replicas.leastLoaded:
		best, ejected = r.leastLoaded(f, mi, req.Seed)
	default:
		best, ejected = r.bestReplica(f, req, mi, preferred)
	}
	if best == nil {
		best = ejected
	}
	if best == nil {
		return Decision{}, false
	}
	return Decision{Neuron: best.n.Name, Model: best.m.Profile, Action: ActionServe}, true
}

// leastLoaded is bestReplica with no filter, no attempt tried and the
// default scorer: it compares loads, and stops at an idle replica.
func (r *DefaultRouter) leastLoaded(f *Fleet, mi *modelIndex, seed uint64) (best, ejected *readyReplica) {
	bestLoad, ejectedLoad := 0, 0
	var bestTie uint64
	for i := range mi.ready {
		rr := &mi.ready[i]
		load := rr.base + rr.live.InFlight()
		if best != nil && load > bestLoad {
			continue
		}
		var tie uint64
		if best != nil && load == bestLoad {
			if seed == 0 {
				continue // ties go to the first
			}
			if tie = rendezvous(seed, rr.n.nameHash); tie <= bestTie {
				continue
			}
		}
		if rr.ej.Active(f.at) {
			if ejected == nil || load < ejectedLoad {
				ejected, ejectedLoad = rr, load
			}
			continue
		}
		if tie == 0 && seed != 0 {
			tie = rendezvous(seed, rr.n.nameHash)
		}
		best, bestLoad, bestTie = rr, load, tie
		if load == 0 && seed == 0 {
			break // nothing beats an idle replica, and ties go to the first
		}
	}
	return best, ejected
}

// bestReplica returns the ready replica, not ejected, that the filters
// keep with the highest score, and the best ejected one. The replica the
// prefix affinity prefers, when not nil, scores its weight more.
func (r *DefaultRouter) bestReplica(f *Fleet, req *Request, mi *modelIndex, preferred *readyReplica) (best, ejected *readyReplica) {
	bestScore, ejectedScore := 0.0, 0.0
	var bestTie uint64
	most := r.replicas.max
	if preferred != nil {
		most += r.affinity.Weight
	}
	for i := range mi.ready {
		rr := &mi.ready[i]
		if _, t := req.tried(rr.n.Name); t {
			continue
		}
		c := Candidate{Neuron: rr.n, Model: rr.m, Action: ActionServe, Profile: &rr.m.Profile, Load: rr.base + rr.live.InFlight()}
		if !r.keep(f, req, c) {
			continue
		}
		isEjected := rr.ej.Active(f.at)
		if isEjected && best != nil {
			continue
		}
		score := r.replicas.score(f, req, c)
		if rr == preferred {
			score += r.affinity.Weight
		}
		if isEjected {
			if ejected == nil || score > ejectedScore {
				ejected, ejectedScore = rr, score
			}
			continue
		}
		var tie uint64
		if req.Seed != 0 {
			tie = rendezvous(req.Seed, rr.n.nameHash)
		}
		if best == nil || score > bestScore || score == bestScore && tie > bestTie {
			best, bestScore, bestTie = rr, score, tie
			if score >= most && req.Seed == 0 {
				break // nothing scores higher, and ties go to the first
			}
		}
	}
	return best, ejected
}

// join picks the best load in progress of the model the request may wait
// for: a replica the snapshot shows loading or restarting, or a load of
// this gateway the snapshot does not show yet.
func (r *DefaultRouter) join(f *Fleet, req *Request, id string, mi *modelIndex, model catalogue.Model) (Decision, bool) {
	prof := &model
	var best *Candidate
	var bestC Candidate
	bestScore := 0.0
	consider := func(c Candidate) {
		if fail, t := req.tried(c.Neuron.Name); t && fail != FailedNotReady && fail != FailedGone {
			return
		}
		if !r.keep(f, req, c) {
			return
		}
		score := r.replicas.score(f, req, c)
		if best == nil || score > bestScore || score == bestScore && c.Neuron.Name < bestC.Neuron.Name {
			bestC, bestScore = c, score
			best = &bestC
		}
	}
	if mi != nil {
		for i := range mi.all {
			rp := &mi.all[i]
			if rp.n.available && (rp.kind == kindLoading || rp.kind == kindRecovering && rp.m.Restarting()) {
				consider(Candidate{Neuron: rp.n, Model: rp.m, Action: ActionJoin, Profile: prof, Load: rp.m.Outstanding()})
			}
		}
	}
	for _, l := range req.Loads {
		if l.Model != id {
			continue
		}
		if n := f.byName[l.Neuron]; n != nil && n.available && n.Model(id) == nil {
			consider(Candidate{Neuron: n, Action: ActionJoin, Profile: prof})
		}
	}
	if best == nil {
		return Decision{}, false
	}
	return Decision{Neuron: best.Neuron.Name, Model: *prof, Action: ActionJoin}, true
}

// recovering reports whether the model is recovering or failed on an
// available neuron the request may still go to.
func recovering(req *Request, mi *modelIndex) bool {
	for i := range mi.all {
		rp := &mi.all[i]
		if !rp.n.available || rp.kind != kindRecovering {
			continue
		}
		if fail, t := req.tried(rp.n.Name); !t || fail == FailedNotReady || fail == FailedGone {
			return true
		}
	}
	return false
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
	score   float64
	victims []string
}

// better reports whether n, scoring score, beats the candidate (ties go to
// the first name: neurons are visited in name order).
func (c *candidate) better(score float64) bool { return c.n == nil || score > c.score }

// placement is one placement decision in progress.
type placement struct {
	f    *Fleet
	req  *Request
	prof *catalogue.Model
	mi   *modelIndex // where the model is listed; nil when nowhere
}

// Place picks a neuron to load one more replica of prof on, as Route
// places a model that is loaded nowhere: among the neurons that list no
// replica of it (loaded, loading or unloading), pinned ones first, then
// free VRAM, then the fewest victims of the Evictor; the filters and
// placement scorers apply. It implements Placer, for the Scaler.
func (r *DefaultRouter) Place(f *Fleet, req *Request, prof catalogue.Model) (Decision, error) {
	if f == nil || f.available == 0 {
		return Decision{}, r.retry(ErrNoHealthyNeuron)
	}
	return r.place(f, req, prof)
}

// place picks a neuron to load prof on.
func (r *DefaultRouter) place(f *Fleet, req *Request, prof catalogue.Model) (Decision, error) {
	p := placement{f: f, req: req, prof: &prof, mi: f.models[prof.ID]}
	var (
		best      [classNone]candidate
		down      bool // a neuron could hold it, but not now
		evictable [2]bool
	)
	for _, n := range f.neurons {
		switch r.placeable(&p, n) {
		case placeUnknown, placeDown:
			down = true
			continue
		case placeNo:
			continue
		}
		score := r.placements.score(f, req, Candidate{Neuron: n, Action: ActionLoad, Profile: &prof})
		pinned := prof.PinnedTo(n.Name)
		if n.freeMB >= prof.VRAMMB {
			cl := classFree
			if pinned {
				cl = classPinnedFree
			}
			if best[cl].better(score) {
				best[cl] = candidate{n: n, score: score}
			}
		} else if pinned {
			evictable[0] = true
		} else {
			evictable[1] = true
		}
		if best[classAny].better(score) {
			best[classAny] = candidate{n: n, score: score}
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
// needing the fewest victims (ties: the higher score, then the first
// name).
func (r *DefaultRouter) fewestVictims(p *placement, pinned bool) candidate {
	var best candidate
	for _, n := range p.f.neurons {
		if n.freeMB >= p.prof.VRAMMB || p.prof.PinnedTo(n.Name) != pinned || r.placeable(p, n) != placeOK {
			continue
		}
		v := r.evictor.Victims(n, *p.prof, p.prof.VRAMMB-n.freeMB)
		if len(v) == 0 {
			continue
		}
		score := r.placements.score(p.f, p.req, Candidate{Neuron: n, Action: ActionLoad, Profile: p.prof})
		if best.n == nil || len(v) < len(best.victims) || len(v) == len(best.victims) && score > best.score {
			best = candidate{n: n, score: score, victims: v}
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

func (r *DefaultRouter) placeable(p *placement, n *NeuronState) placeability {
	if n.Discovery == nil {
		return placeUnknown
	}
	if !catalogue.Feasible(*p.prof, n.deviceMB) {
		return placeNo
	}
	if !n.available || p.listedOn(n) {
		return placeDown
	}
	if fail, t := p.req.tried(n.Name); t && fail != FailedGone {
		return placeDown
	}
	if p.req.backingOff(n.Name) {
		return placeDown
	}
	if !r.keep(p.f, p.req, Candidate{Neuron: n, Action: ActionLoad, Profile: p.prof}) {
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
