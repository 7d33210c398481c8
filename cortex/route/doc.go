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
// (ActionServe), join a load in progress (ActionJoin), or load the model on
// a neuron after unloading Decision.Evict (ActionLoad). It refuses with a
// *RetryError (503 with Retry-After at the gateway), one of the final
// sentinels (ErrModelNotFound, ErrNoFeasibleNeuron), or a *Refusal that
// carries its own HTTP status, code and message.
//
// Concurrency: Route is called from many goroutines at once over the same
// Fleet. It must not block, do I/O, hold locks or modify the Fleet; the
// only live state it may read is the Counter and Ejection the ModelStates
// point to. Routing a loaded model with the default Router does not
// allocate.
//
// The default Router (NewRouter) is configured with WithEvictor and
// WithRetryAfter; a custom Router may wrap it and change its answer, as
// the zone-preferring Router of examples/embedded-gateway does.
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
// In this order:
//
//  1. The model name is resolved through the catalogue's aliases. A model
//     that is not in the catalogue but is resident on some neuron is still
//     served under its id, with a default profile (residency priority 100).
//  2. No healthy neuron: *RetryError wrapping ErrNoHealthyNeuron. A neuron
//     is healthy (with FleetPoller) until FailureThreshold consecutive
//     polls fail (default 3),
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
package route
