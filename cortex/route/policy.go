package route

import "github.com/helexa-ai/helexa-go/catalogue"

// Candidate is one place the default Router considers for a request: a
// replica to serve from or join, or a neuron to load the model on.
type Candidate struct {
	// Neuron is the neuron; it is available (healthy, not draining).
	Neuron *NeuronState
	// Model is the model's state on Neuron: a loaded replica for
	// ActionServe, a loading or restarting one for ActionJoin (nil for a
	// load of this gateway that the snapshot does not show yet), nil for
	// ActionLoad.
	Model *ModelState
	// Action is what choosing the candidate means.
	Action Action
	// Profile is the model's resolved profile (Decision.Model).
	Profile *catalogue.Model
	// Load is Model.Outstanding(), the replica's work; 0 without a Model.
	Load int
}

// Filter drops candidates the request must not go to. The default Router
// asks every filter about every candidate of every step (serve, join,
// load) and keeps those all filters keep; a candidate a filter drops is
// treated as unavailable for this request, so a request that no
// candidate is left for gets a *RetryError.
//
// Concurrency: as Router.Route. Keep must not block, allocate on the
// serve path, or keep the Request.
type Filter interface {
	Keep(f *Fleet, r *Request, c Candidate) bool
}

// FilterFunc adapts a function to a Filter.
type FilterFunc func(f *Fleet, r *Request, c Candidate) bool

// Keep calls fn.
func (fn FilterFunc) Keep(f *Fleet, r *Request, c Candidate) bool { return fn(f, r, c) }

// Scorer rates a candidate the filters kept, from 0 (worst) to 1 (best).
// The default Router picks the candidate with the highest weighted sum of
// its scorers' scores; ties go to the first neuron name.
//
// Concurrency: as Router.Route.
type Scorer interface {
	Score(f *Fleet, r *Request, c Candidate) float64
}

// ScorerFunc adapts a function to a Scorer.
type ScorerFunc func(f *Fleet, r *Request, c Candidate) float64

// Score calls fn.
func (fn ScorerFunc) Score(f *Fleet, r *Request, c Candidate) float64 { return fn(f, r, c) }

// Weighted is a Scorer with its weight in the Router's sum. A negative
// weight turns a preference into an aversion.
type Weighted struct {
	Scorer Scorer
	Weight float64
}

// The scorers of the default Router, for embedders to reuse and weigh.
var (
	// LeastLoaded prefers the replica with the least work:
	// 1/(1+Candidate.Load). It scores a load (no replica yet) 1.
	LeastLoaded Scorer = leastLoaded{}
	// FreeVRAM prefers the neuron with the most free VRAM: its FreeVRAMMB
	// over the largest TotalVRAMMB of the fleet.
	FreeVRAM Scorer = freeVRAM{}
	// Pinned scores 1 where the catalogue pins the model to the neuron
	// (catalogue.Model.PinnedTo), else 0.
	Pinned Scorer = pinned{}
)

type leastLoaded struct{}

func (leastLoaded) Score(_ *Fleet, _ *Request, c Candidate) float64 {
	return 1 / float64(1+c.Load)
}

type freeVRAM struct{}

func (freeVRAM) Score(f *Fleet, _ *Request, c Candidate) float64 {
	if f.maxTotalMB == 0 {
		return 0
	}
	return float64(c.Neuron.freeMB) / float64(f.maxTotalMB)
}

type pinned struct{}

func (pinned) Score(_ *Fleet, _ *Request, c Candidate) float64 {
	if c.Profile.PinnedTo(c.Neuron.Name) {
		return 1
	}
	return 0
}

// scoring is a list of weighted scorers with the best sum it can give.
type scoring struct {
	ws  []Weighted
	max float64 // the sum of the positive weights: nothing scores higher
	// leastLoaded: the list is LeastLoaded alone, with a positive weight,
	// so that the least Load wins; the serve path then compares loads
	// without calling it.
	leastLoaded bool
	// freeVRAM: the list is FreeVRAM alone, with a positive weight; the
	// placement path then scores without calling it.
	freeVRAM bool
}

func newScoring(ws []Weighted) scoring {
	s := scoring{ws: ws}
	for _, w := range ws {
		if w.Weight > 0 {
			s.max += w.Weight
		}
	}
	s.leastLoaded = len(ws) == 1 && ws[0].Scorer == LeastLoaded && ws[0].Weight > 0
	s.freeVRAM = len(ws) == 1 && ws[0].Scorer == FreeVRAM && ws[0].Weight > 0
	return s
}

func (s *scoring) score(f *Fleet, r *Request, c Candidate) float64 {
	if s.freeVRAM {
		return freeVRAM{}.Score(f, r, c)
	}
	var sum float64
	for _, w := range s.ws {
		sum += w.Weight * w.Scorer.Score(f, r, c)
	}
	return sum
}
