package route

import (
	"net/http"
	"strconv"
	"time"
)

// Request is what a Router sees of one request. The gateway builds it once
// per request and updates Tried, Loads and Backoff before each attempt; a
// Router reads it during Route and must neither modify it nor keep it, or
// anything it points to, after Route returns.
type Request struct {
	// Model is the model the client named: an id or an alias.
	Model string
	// Account names the account whose budget pays for the request, and Key
	// the API key's id (never its secret); both are empty for an anonymous
	// caller.
	Account, Key string
	// Header is the request's HTTP header, read-only; nil (which reads as
	// empty) when there is none, as in tests.
	Header http.Header
	// Prefix fingerprints the leading blocks of the prompt's text.
	Prefix Prefix
	// Tried lists the earlier attempts of this request, oldest first: the
	// gateway sends a request again, to another replica, when an attempt
	// failed before anything reached the client.
	Tried []Attempt
	// Loads lists every load the gateway has in flight, whatever the model
	// (a model loading is not yet a replica in the Fleet until the next
	// poll). Shared between requests: do not modify it.
	Loads []Load
	// Seed is a random value the gateway draws for each request. The
	// default Router breaks ties between equally good replicas by it
	// (rendezvous hashing of Seed and the neuron names), so that ties
	// spread over the replicas, whichever gateway routes them. Zero, as in
	// tests, breaks ties by neuron name order. Placements and joins break
	// ties by name order whatever the seed, so that gateways agree on where
	// a model loads.
	Seed uint64
	// Backoff lists the neurons where a load of the model failed recently
	// and no new load may start yet, with when one may
	// (cortex.WithLoadBackoff).
	Backoff []Backoff
}

// Attempt is one earlier attempt of a request that failed before anything
// reached the client.
type Attempt struct {
	// Neuron is where the attempt went.
	Neuron string
	// Failure says how it failed.
	Failure Failure
}

// Failure is how an attempt failed.
type Failure uint8

// Failures of an attempt. The zero Failure is invalid.
const (
	// FailedUnreachable: the neuron could not be reached, or broke the
	// connection before it answered.
	FailedUnreachable Failure = iota + 1
	// FailedBusy: the neuron's queue for the model was full.
	FailedBusy
	// FailedNotReady: the model was not ready on the neuron: its engine is
	// restarting there.
	FailedNotReady
	// FailedGone: the model was no longer on the neuron, unloaded behind
	// the snapshot's back; loading it again is worth it.
	FailedGone
)

// String returns "unreachable", "busy", "not_ready" or "gone".
func (f Failure) String() string {
	switch f {
	case FailedUnreachable:
		return "unreachable"
	case FailedBusy:
		return "busy"
	case FailedNotReady:
		return "not_ready"
	case FailedGone:
		return "gone"
	}
	return "Failure(" + strconv.Itoa(int(f)) + ")"
}

// Load is a load the gateway has in flight.
type Load struct {
	// Model is the model id, and Neuron where it is loading.
	Model, Neuron string
	// Since is when the load began.
	Since time.Time
}

// Backoff is a neuron where a load of the model failed recently.
type Backoff struct {
	// Neuron is where the load failed.
	Neuron string
	// Until is when a new load may start there.
	Until time.Time
}

// tried returns how the earlier attempt of the request on the neuron
// failed, if one went there.
func (r *Request) tried(neuron string) (Failure, bool) {
	for _, a := range r.Tried {
		if a.Neuron == neuron {
			return a.Failure, true
		}
	}
	return 0, false
}

// Loading returns the neuron where the gateway is loading model (an id),
// if it is.
func (r *Request) Loading(model string) (neuron string, ok bool) {
	for _, l := range r.Loads {
		if l.Model == model {
			return l.Neuron, true
		}
	}
	return "", false
}

// backingOff reports whether a load of the model backs off on the neuron.
func (r *Request) backingOff(neuron string) bool {
	for _, b := range r.Backoff {
		if b.Neuron == neuron {
			return true
		}
	}
	return false
}

// mayLoad reports whether the request may start a load: on a first attempt
// always, on a retry only when the model left the neuron of an earlier
// attempt (FailedGone). A retry that failed otherwise would only start a
// second copy of a model that is still resident.
func (r *Request) mayLoad() bool {
	if len(r.Tried) == 0 {
		return true
	}
	for _, a := range r.Tried {
		if a.Failure == FailedGone {
			return true
		}
	}
	return false
}
