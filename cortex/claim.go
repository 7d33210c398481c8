package cortex

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// Replica claims: max_replicas held across several gateways.
//
// Each cortex replica runs its own Scaler over its own snapshot, and two
// snapshots a poll apart can each see room for one more replica: alone,
// three gateways could pass a model's max_replicas by two. So every load
// of a new replica of a model with replica bounds (catalogue.Model.Scaled),
// whether a scale-out or a request's cold load, first claims it from the
// model's arbiter: the available neuron that route.Arbiter picks by
// rendezvous hashing, the same for every gateway with the same neurons.
// The claim carries the neurons where the gateway sees a replica
// (route.ReplicaHolders); the arbiter counts those with the claims it has
// granted and not yet seen expire, and grants only below max_replicas
// (neuron's POST /replicas/claim). Two gateways racing for the last slot
// are serialised there: one gets it, the other is refused.
//
// A claim lasts the load timeout and two poll intervals while its load
// runs, and is cut to five poll intervals (at least 30 s) once the load
// succeeded, by which time every gateway's snapshot lists the replica. A load that
// fails, and an unload of a replica (scale-in, idle unload, eviction),
// release it. A gateway that dies during a load leaves its claim to
// expire: until then, at most the load timeout, the slot stays taken.
//
// What a refusal does: a scale-out does nothing (the model is at its
// bound; the Scaler tries again later), and a request's load joins a
// replica the arbiter counts on another neuron, where the neuron's load
// arbitration joins it to the load in progress or answers at once.
//
// When the arbiter cannot be asked (it is unreachable, or the fleet has
// no available neuron), a scale-out waits for the next step, and a
// request's load goes on without a claim: a request is never refused for
// want of an arbiter. A neuron that does not arbitrate (an older one,
// or a NeuronAdmin without ReplicaArbiter) is not asked, and the bound is
// then what each gateway sees (the Scaler scales in the surplus it sees,
// "over max_replicas"). The arbiter keeps its claims in memory: when it
// restarts, or the arbiter changes because it went away, the claims of
// loads in progress are lost, and for that load time the bound is again
// what each gateway sees.

// ReplicaArbiter is an optional NeuronAdmin capability: the replica claims
// of the models whose arbiter the neuron is (neuron.Client has it).
//
// Concurrency: the gateway calls it from many goroutines at once.
type ReplicaArbiter interface {
	// ClaimReplica asks for a replica of claim.Model on claim.Neuron
	// (POST /replicas/claim).
	ClaimReplica(ctx context.Context, claim neuron.ReplicaClaim) (neuron.ClaimResult, error)
	// ReleaseReplica gives a claim back (POST /replicas/release).
	ReleaseReplica(ctx context.Context, model, neuron string) error
}

var _ ReplicaArbiter = (*neuron.Client)(nil)

// claimTimeout bounds one claim or release call.
const claimTimeout = 5 * time.Second

// claimOutcome is what the arbiter said of a claim.
type claimOutcome uint8

const (
	claimNone        claimOutcome = iota // not asked: the model is not scaled, or no neuron arbitrates
	claimGranted                         // the arbiter granted it: release it if the load fails
	claimRefused                         // at max_replicas: the holders are the replicas the arbiter counts
	claimUnavailable                     // the arbiter could not be asked
)

// String returns the outcome's result label of helexa_replica_claims_total.
func (o claimOutcome) String() string {
	switch o {
	case claimGranted:
		return "granted"
	case claimRefused:
		return "refused"
	case claimUnavailable:
		return "unavailable"
	}
	return "none"
}

// errAtMaxReplicas ends a scale-out the arbiter refused.
var errAtMaxReplicas = errors.New("cortex: the model is at max_replicas")

// claimedLoadTTL returns how long a claim lasts while its load runs.
func (g *Gateway) claimedLoadTTL() time.Duration {
	return g.settings().loadTimeout + 2*g.scaleInterval()
}

// claimedReplicaTTL returns how long a claim lasts once its load succeeded:
// until every gateway's snapshot lists the replica, with room for polls
// that are slow or fail once (a neuron that fails them for good leaves
// every snapshot's count).
func (g *Gateway) claimedReplicaTTL() time.Duration {
	return max(5*g.scaleInterval(), minClaimedReplicaTTL)
}

// minClaimedReplicaTTL is the least time a claim lasts after its load.
const minClaimedReplicaTTL = 30 * time.Second

// claim asks the arbiter of prof for a replica on target, lasting ttl.
// The holders it sends are the replicas of the current snapshot and of
// this gateway's loads in flight, less its own load on target.
func (g *Gateway) claim(ctx context.Context, prof catalogue.Model, target string, ttl time.Duration) (claimOutcome, []string, error) {
	if !prof.Scaled() {
		return claimNone, nil, nil
	}
	f := g.Fleet()
	name := route.Arbiter(f, prof.ID)
	if name == "" {
		return claimUnavailable, nil, errors.New("cortex: no available neuron to arbitrate replicas")
	}
	arb, ok := g.arbiter(name)
	if !ok {
		return claimNone, nil, nil
	}
	loads := slices.DeleteFunc(slices.Clone(g.loads.Loads()), func(l route.Load) bool {
		return l.Model == prof.ID && l.Neuron == target
	})
	_, hi := prof.ReplicaBounds()
	cctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	res, err := arb.ClaimReplica(cctx, neuron.ReplicaClaim{
		Model: prof.ID, Neuron: target, Max: hi, TTL: ttl,
		Holders: slices.DeleteFunc(route.ReplicaHolders(f, loads, prof.ID), func(n string) bool { return n == target }),
	})
	switch {
	case err == nil && res.Granted:
		return claimGranted, res.Holders, nil
	case err == nil:
		return claimRefused, res.Holders, nil
	case arbitrates(err):
		return claimUnavailable, nil, err
	}
	g.log.Debug("cortex: the arbiter does not arbitrate replicas", "arbiter", name, "model", prof.ID, "err", err)
	return claimNone, nil, nil
}

// arbiter returns the ReplicaArbiter of the neuron name, if it has one.
func (g *Gateway) arbiter(name string) (ReplicaArbiter, bool) {
	up := g.upstream(name)
	if up == nil {
		return nil, false
	}
	arb, ok := up.admin.(ReplicaArbiter)
	return arb, ok
}

// arbitrates reports whether err leaves the neuron an arbiter that failed
// to answer, rather than one that does not know claims (an older neuron:
// 404 not_found, 405).
func arbitrates(err error) bool {
	var ae *neuron.APIError
	return !errors.As(err, &ae) || ae.Status != http.StatusNotFound && ae.Status != http.StatusMethodNotAllowed
}

// reclaim sets the claim of prof's replica on target to ttl, best effort:
// a short one once its load succeeded.
func (g *Gateway) reclaim(prof catalogue.Model, target string, ttl time.Duration) {
	if _, _, err := g.claim(context.WithoutCancel(g.life), prof, target, ttl); err != nil {
		g.log.Debug("cortex: shortening a replica claim failed; it expires with the load's", "model", prof.ID, "neuron", target, "err", err)
	}
}

// releaseReplica gives back the claim of model's replica on target, best
// effort, when the model is scaled: its load failed, or it was unloaded.
// A claim that is not released expires.
func (g *Gateway) releaseReplica(model, target string) {
	f := g.Fleet()
	if f == nil || f.Catalogue() == nil {
		return
	}
	if prof, ok := f.Catalogue().Lookup(model); !ok || !prof.Scaled() {
		return
	}
	arb, ok := g.arbiter(route.Arbiter(f, model))
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.life), claimTimeout)
	defer cancel()
	if err := arb.ReleaseReplica(ctx, model, target); err != nil {
		g.log.Debug("cortex: releasing a replica claim failed; it expires", "model", model, "neuron", target, "err", err)
	}
}

// claimLoad claims the replica of the Load decision d from its model's
// arbiter, for the Scaler's decision scale or, when nil, for a request.
// It returns the decision to carry out: d, or for a request whose claim
// the arbiter refused, a join of a replica it counts on another neuron.
// A scale-out the arbiter refused, or could not be asked about, fails.
func (g *Gateway) claimLoad(ctx context.Context, d route.Decision, scale *route.ScaleDecision) (route.Decision, claimOutcome, error) {
	out, holders, err := g.claim(ctx, d.Model, d.Neuron, g.claimedLoadTTL())
	log := g.log.With("model", d.Model.ID, "neuron", d.Neuron)
	if out != claimNone {
		g.metrics.claimed(d.Model.ID, out.String())
	}
	switch {
	case out == claimRefused && scale != nil:
		log.Info("cortex: not scaling out: the arbiter counts max_replicas", "replicas", holders)
		return d, out, errAtMaxReplicas
	case out == claimRefused:
		if h := g.joinable(holders, d.Neuron); h != "" {
			log.Info("cortex: the model is at max_replicas; joining a replica", "replica", h, "replicas", holders)
			return route.Decision{Neuron: h, Model: d.Model, Action: route.ActionJoin}, out, nil
		}
		_, hi := d.Model.ReplicaBounds()
		return d, out, &LoadError{Neuron: d.Neuron, Model: d.Model.ID, Op: "claim",
			Err:        fmt.Errorf("%w (%d), and none of its replicas is on a neuron of this gateway: %s", errAtMaxReplicas, hi, strings.Join(holders, ", ")),
			RetryAfter: g.cfg.retryAfter}
	case out == claimUnavailable && scale != nil:
		log.Warn("cortex: not scaling out: the replica arbiter cannot be asked; the next step tries again", "err", err)
		return d, out, err
	case out == claimUnavailable:
		log.Warn("cortex: loading without a replica claim: the replica arbiter cannot be asked", "err", err)
	}
	if scale != nil {
		log.Info("cortex: scaling out", "reason", scale.Reason, "replicas", scale.Replicas, "evict", d.Evict)
		g.metrics.scaled(d.Model.ID, route.ScaleOut)
		g.events.add(Event{Time: g.clock.Now(), Kind: EventScaleOut, Neuron: d.Neuron, Model: d.Model.ID, Reason: scale.Reason})
	}
	return d, out, nil
}

// joinable returns the first of holders, other than target, that is a
// neuron of this gateway, preferring one available in the snapshot; ""
// when none.
func (g *Gateway) joinable(holders []string, target string) string {
	f := g.Fleet()
	var fallback string
	for _, h := range holders {
		if h == target || g.upstream(h) == nil {
			continue
		}
		if n := f.Neuron(h); n != nil && n.Available() {
			return h
		}
		if fallback == "" {
			fallback = h
		}
	}
	return fallback
}
