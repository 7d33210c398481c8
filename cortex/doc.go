// Package cortex is the gateway of a helexa fleet: it authenticates API
// keys, holds each key to its budget, routes each OpenAI-compatible request
// to a neuron that has the model (or loads it there, evicting least recently
// used models to make room), streams the answer back and meters usage.
//
// # Decisions and effects
//
// The package splits what should happen from doing it. Three small
// interfaces make the decisions, and the Gateway carries them out through
// the neuron Client:
//
//   - A Poller keeps an immutable snapshot of the fleet, a *Fleet, fresh. The
//     default, FleetPoller, polls every neuron's management API (GET /models
//     and GET /health on every round, GET /discovery until it has been
//     fetched once) every 2 s and publishes a new *Fleet after each round.
//   - A Router picks, for one request, the neuron and the Action: Serve a
//     loaded replica, Join a load in progress, or Load the model (after
//     unloading the models in Decision.Evict).
//   - An Evictor picks which resident models of one neuron to unload to make
//     room for an incoming one. The default is LRU.
//
// Router and Evictor are pure: they read a snapshot and return a decision,
// without I/O, locks or goroutines, so they are tested in one goroutine over
// hand-built fleets (see NewFleet) and are safe to call concurrently.
//
// Usage holds the live counters the Gateway owns: requests in flight and the
// last use of each (neuron, model). Each snapshot's ModelState points to its
// live counter, so a Router sees requests started since the last poll with
// one atomic load.
//
// # Routing policy of the default Router
//
// In this order:
//
//  1. The model name is resolved through the catalogue's aliases. A model
//     that is not in the catalogue but is resident on some neuron is still
//     served under its id, with a default profile (residency priority 100).
//  2. No healthy neuron: *RetryError wrapping ErrNoHealthyNeuron. A neuron
//     is healthy until FailureThreshold consecutive polls fail (default 3),
//     and again after one successful poll; a neuron that reports
//     "shutting_down" in /health is skipped like an unhealthy one.
//  3. Among healthy neurons where the model is loaded, the replica with the
//     least work wins: in_flight + queue_depth from the last /health, plus
//     the gateway's live in-flight count. Ties go to the first neuron name.
//  4. A model loading on a healthy neuron is joined (ActionJoin), never
//     loaded a second time.
//  5. A model present only as recovering or failed: *RetryError wrapping
//     ErrModelRecovering; the neuron is restarting it.
//  6. A model that is neither in the catalogue nor resident anywhere:
//     ErrModelNotFound.
//  7. Otherwise the model is placed (ActionLoad) on the best healthy neuron
//     whose hardware can hold it (catalogue.Feasible over the devices of its
//     /discovery): a neuron where the model is pinned and fits (in free
//     VRAM, else after evicting), then the neuron with the most free VRAM
//     that fits it, then the neuron that fits it after evicting the fewest
//     models, then the feasible neuron with the most free VRAM (the neuron
//     has the last word; free VRAM is an estimate). Ties go to the first
//     name. Pinning is a preference, not a restriction.
//  8. When only unhealthy, excluded or not yet discovered neurons could
//     hold it: *RetryError wrapping ErrFeasibleNeuronDown. When no neuron
//     could ever hold it: ErrNoFeasibleNeuron, which the HTTP edge maps to a
//     4xx the client must not retry.
//
// Free VRAM on a neuron is its devices' total minus the vram_used_mb of
// every model it lists, and never more than the free VRAM sampled by its
// /health (engines allocate lazily, and static discoverers report every
// device free).
//
// # Errors
//
// The routing errors are sentinels (ErrNoHealthyNeuron, ErrModelRecovering,
// ErrModelNotFound, ErrNoFeasibleNeuron, ErrFeasibleNeuronDown); the
// retryable ones arrive wrapped in a *RetryError that carries the
// Retry-After to send (default 2 s). Callers use errors.Is and errors.As.
// The suggested HTTP mapping: ErrModelNotFound 404 model_not_found;
// ErrNoFeasibleNeuron 400 (the model cannot run on this fleet); every
// *RetryError 503 service_unavailable with Retry-After.
package cortex
