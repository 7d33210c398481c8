// Package route is the decision layer of the cortex gateway, the part an
// embedder replaces: immutable fleet snapshots, the Router that decides
// where each request goes, the Evictor that picks the models to unload,
// the Poller that keeps the neuron states fresh, and the live usage
// counters those decisions read. It has no HTTP and no entitlements: the
// gateway (package cortex) authenticates, reserves budgets, carries out
// each Decision through the neuron client and proxies the answer, as
// grpc-go's ClientConn carries out what its balancer picks and its
// resolver finds.
//
// # The snapshot
//
// A Fleet is an immutable snapshot of every neuron: its health, hardware
// (NeuronState) and resident models (ModelState), joined with the model
// catalogue and linked to the gateway's live Usage. Nothing modifies a
// Fleet after NewFleet builds it, so any number of goroutines read it
// without locks; the only live state in it is the per-replica Counter and
// Ejection each ModelState points to, read with atomic loads.
//
// # The Poller, and what the gateway adds
//
// A Poller publishes neuron states only: a *Snapshot, the states of every
// neuron at a time. It never sees the gateway's catalogue or Usage. The
// gateway builds the Fleet it routes over from each new Snapshot with
// NewFleet (or FromSnapshot), its own catalogue and its own Usage, once per
// snapshot. A custom Poller therefore cannot publish a fleet without live
// counts, without ejections, or with another catalogue: it has no way to
// say any of that. Poller has two methods, Run and Snapshot; a Poller that
// can poll one neuron at once also implements Refresher, which the gateway
// calls right after a cold load.
//
// FleetPoller is the default Poller. It lives here, not in cortex, because
// DESIGN.md puts the Poller in the decision layer and because it needs no
// HTTP machinery of its own: it reaches each neuron through a NeuronAPI (a
// *neuron.Client is one), given per Target by whoever builds it. The
// gateway builds those clients over its own Transport, so its transport
// options reach every Poller it builds; this package never opens a
// connection itself.
//
// # The Router contract
//
// A Router turns one request into a Decision: serve a loaded replica
// (ActionServe), wait for the model to be ready on a neuron where it is on
// its way (ActionJoin: loading, or its engine restarting), or load the
// model on a neuron after unloading Decision.Evict (ActionLoad). It
// refuses with a *RetryError (503 with Retry-After at the gateway), one of
// the final sentinels (ErrModelNotFound, ErrNoFeasibleNeuron), or a
// *Refusal that carries its own HTTP status, code and message.
//
// The Router sees the request (Request): the model, the principal, the
// headers, a fingerprint of the prompt's leading blocks (Prefix), the
// attempts already made, the loads the gateway has in flight and the
// neurons where a load backs off. It owns the whole decision: the gateway
// carries each Decision out as it is, on every attempt, a retry included.
// A Join or Load names a load single-flight per model and neuron, so every
// request routed to the same load waits for the same one. On a retry, a
// routing error other than a *Refusal is answered with the failure of the
// last attempt, which tells the client more.
//
// Concurrency: Route is called from many goroutines at once over the same
// Fleet. It must not block, do I/O, hold locks or modify the Fleet or the
// Request, and must not keep the Request after it returns; the only live
// state it may read is the Counter and Ejection the ModelStates point to.
// Routing a loaded model with the default Router does not allocate.
//
// # Building a Router from parts
//
// The default Router (NewRouter) is made of parts an embedder reuses
// rather than rewrites:
//
//   - Filters (WithFilters) drop candidates a request must not go to: a
//     tenant pinned to its neurons, a zone a header excludes. They apply to
//     every step, serving, joining and loading alike.
//   - Weighted scorers rank what the filters keep: WithScorers for the
//     replicas to serve from or join (default LeastLoaded), and
//     WithPlacementScorers for the neurons a model may be loaded on
//     (default FreeVRAM). Pinned, and any ScorerFunc, weigh in beside them.
//   - An Evictor (WithEvictor) picks the models to unload for a load.
//
// What the parts cannot change is the order of the steps and the rules
// of the fleet: only available neurons, ejected replicas only when none
// other is ready, no second load of a model in progress, the catalogue's
// feasibility. "Prefer zone eu", "pin tenant X to neurons Y" and "send
// this header's sessions to one replica" are each a few lines on top of
// the default (see the examples). A Router of one's own implements Route
// and may wrap the default.
//
// # The Evictor
//
// An Evictor picks which resident models of one neuron to unload so that
// an incoming model fits. It is pure too, called by the Router while
// routing; the gateway carries the unloads out. The default, LRU, unloads
// the least recently used models that are idle, not pinned there, and of
// a residency priority no higher than the incoming model's, and never
// evicts pointlessly.
//
// # The Scaler
//
// A Scaler decides the replica count of the models with replica bounds
// (catalogue min_replicas, max_replicas): one more replica where, or one
// fewer which. It is pure over a Fleet and the gateway's Demand (its loads
// in flight, when each replica last had work); the gateway calls it on its
// clock and carries the decisions out through its load and unload paths.
// The default (NewScaler) scales out on work per replica above a target
// for a window, places through the default Router's placement (Place)
// with an Evictor that takes only lower-priority models (LowerPriority),
// and scales in replicas idle for the model's idle window, never below
// min_replicas nor one with work; its parts (CountReplicas, Replicas,
// LowerPriority, NotLoadingHere, Placer) are for embedders to reuse.
// Whatever the Scaler decides, the gateway claims each new replica of a
// model from the model's Arbiter, the neuron that keeps its count under
// max_replicas across several gateways (ReplicaHolders is what a gateway
// tells it it sees).
//
// # Usage
//
// Usage is the gateway's live state per replica (a model on a neuron): a
// Counter of the requests in flight to it and its last use, and its
// Ejection. The gateway counts a request with Add and Done around the
// proxying and Touch at its end; NewFleet points each ModelState at its
// Counter and Ejection, so a Router sees a request started a microsecond
// ago without waiting for the next poll.
//
// # Ejection
//
// The gateway takes a replica whose answers keep failing out of rotation
// for a while (outlier ejection, configured in cortex). ModelState.Ejected
// reports it at the snapshot's time, and ModelState.Ejection tells since
// and until when. The default Router skips ejected replicas while another
// is ready, and serves from the least busy ejected one when none is (it
// never turns an ejection into a refusal).
//
// # Routing policy of the default Router
//
// In this order, each step asking the filters about every candidate:
//
//  1. The model name is resolved through the catalogue's aliases. A model
//     that is not in the catalogue but is resident on some neuron is still
//     served under its id, with a default profile (residency priority 100).
//  2. No healthy neuron: *RetryError wrapping ErrNoHealthyNeuron. A neuron
//     is healthy (with FleetPoller) until FailureThreshold consecutive
//     polls fail (default 3), and again after one successful poll; a
//     neuron that reports "shutting_down" in /health is skipped like an
//     unhealthy one.
//  3. Serve: among healthy neurons where the model is loaded and that no
//     earlier attempt of the request went to, the replica with the highest
//     score wins; by default the least work: in_flight + queue_depth from
//     the last /health, plus the gateway's live in-flight count. Ties go
//     to the first neuron name. Ejected replicas serve only when no other
//     is ready.
//  4. Join: a model loading on a healthy neuron, or restarting there after
//     its engine failed (ModelState.Restarting), or that the gateway is
//     loading there (Request.Loads), is joined (ActionJoin), never loaded a
//     second time. A neuron an earlier attempt found the model not ready or
//     gone on may be joined again.
//  5. A model present only as failed to load: *RetryError wrapping
//     ErrModelRecovering.
//  6. A model that is neither in the catalogue nor resident anywhere:
//     ErrModelNotFound.
//  7. A retry starts no load unless an earlier attempt found the model gone
//     from its neuron (FailedGone): a second copy of a model that is still
//     resident would be a load for nothing. It gets a *RetryError wrapping
//     ErrFeasibleNeuronDown instead.
//  8. Otherwise the model is placed (ActionLoad) on the best healthy neuron
//     whose hardware can hold it (catalogue.Feasible over the devices of its
//     /discovery), where no load of it backs off and no earlier attempt
//     failed but by finding it gone: a neuron where the model is pinned and
//     fits (in free VRAM, else after evicting), then the neuron that fits it
//     in free VRAM with the highest placement score (by default the most
//     free VRAM), then the neuron that fits it after evicting the fewest
//     models (ties: the higher score), then the feasible neuron with the
//     highest score (the neuron has the last word; free VRAM is an
//     estimate). Ties go to the first name. Pinning is a preference, not a
//     restriction.
//  9. When only unhealthy, tried, filtered, unloading or not yet discovered
//     neurons could hold it: *RetryError wrapping ErrFeasibleNeuronDown.
//     When no neuron could ever hold it: ErrNoFeasibleNeuron, which the
//     HTTP edge maps to a 4xx the client must not retry.
//  10. Any refusal while a load of the model backs off somewhere
//     (Request.Backoff) becomes a *RetryError wrapping ErrLoadBackoff, with
//     the Retry-After of the soonest end of a backoff.
//
// Free VRAM on a neuron is its devices' total minus the vram_used_mb of
// every model it lists, and never more than the free VRAM its last
// /health sampled (engines allocate lazily, and static discoverers report
// every device free).
package route
