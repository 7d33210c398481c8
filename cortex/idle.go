package cortex

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// Idle unload: a catalogue model with IdleUnload set is unloaded from a
// neuron where it has served nothing for that long (catalogue.Model
// docs). Run starts the loop; decisions (idleVictims) are a pure function
// of the fleet snapshot, the gateway's live usage and the loop's own
// memory, and the unloads go through the neuron's NeuronAdmin.
//
// What "served nothing for that long" means here:
//   - the model's last use through this gateway (Usage), or
//   - the last sweep that saw work on it at the neuron (its in-flight and
//     queued requests at the last poll, which counts the requests other
//     cortex replicas sent), or
//   - for a model never used, when this gateway first saw it loaded (a
//     load by this gateway counts as a use): the neuron's LoadedAt is on
//     the neuron's clock, which may be skewed,
//
// whichever is latest, is at least IdleUnload ago. A replica with requests
// in flight, loading, on a neuron that does not take work, or pinned there,
// is never unloaded. The unload does not force: a neuron that sees a
// request arrive at that moment refuses it (model busy), and the next
// sweep tries again. Several cortex replicas may decide the same unload;
// the neuron's unload is idempotent (model_not_found is fine).
//
// A model served only through other cortex replicas, by requests that are
// short and rare enough to fall between polls, looks idle to this one and
// may be unloaded; the next request loads it again.

// Bounds of the idle loop's sleep between sweeps: it wakes at the next
// deadline, but at least this often, to see a new catalogue or new
// replicas, and never more often than idleMinWait.
const (
	idleMaxWait = 30 * time.Second
	idleMinWait = time.Second
)

// idleUnloadTimeout bounds one unload call.
const idleUnloadTimeout = time.Minute

// idleVictim is one unload the idle loop decided: of an idle replica, or
// a scale-in (scale.go) when scale is set.
type idleVictim struct {
	neuron, model string
	idleFor       time.Duration
	scale         *route.ScaleDecision
}

// idleVictims returns the replicas of f idle past their model's
// IdleUnload at now, and how long until the next one may be. busy maps
// each loaded replica with an IdleUnload to the last time the loop saw it
// loaded-and-busy, or first saw it loaded; idleVictims updates it, and
// drops the replicas no longer loaded. It tracks the replicas of the
// models with replica bounds (catalogue.Model.Scaled) too, whatever their
// IdleUnload, but never makes them victims: the Scaler scales them in
// (scale.go), never below min_replicas. loading reports a load of the
// model on the neuron in progress at this gateway.
func idleVictims(f *route.Fleet, now time.Time, busy map[replicaKey]time.Time, loading func(neuron, model string) bool) ([]idleVictim, time.Duration) {
	var victims []idleVictim
	next := idleMaxWait
	seen := make(map[replicaKey]bool, len(busy))
	for _, n := range f.Neurons() {
		for i := range n.Models {
			m := &n.Models[i]
			ttl := m.Profile.IdleUnload
			scaled := m.Profile.Scaled()
			if ttl <= 0 && !scaled || m.Status != neuron.StatusLoaded || m.Profile.PinnedTo(n.Name) {
				continue
			}
			k := replicaKey{n.Name, m.ID}
			seen[k] = true
			since, ok := busy[k]
			if !ok || m.Outstanding() > 0 || loading(n.Name, m.ID) {
				since = now
			}
			if lu := m.LastUse(); lu.After(since) {
				since = lu
			}
			busy[k] = since
			if scaled {
				continue
			}
			left := since.Add(ttl).Sub(now)
			if left > 0 || !n.Available() {
				next = min(next, max(left, idleMinWait))
				continue
			}
			victims = append(victims, idleVictim{neuron: n.Name, model: m.ID, idleFor: now.Sub(since)})
		}
	}
	for k := range busy {
		if !seen[k] {
			delete(busy, k)
		}
	}
	return victims, max(next, idleMinWait)
}

// runIdle runs the idle loop until ctx ends.
func (g *Gateway) runIdle(ctx context.Context) {
	busy := make(map[replicaKey]time.Time)
	t := g.clock.NewTimer(idleMinWait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		loads := g.loads.Loads()
		loading := func(n, m string) bool {
			return slices.ContainsFunc(loads, func(l route.Load) bool { return l.Neuron == n && l.Model == m })
		}
		f, now := g.Fleet(), g.clock.Now()
		victims, wait := idleVictims(f, now, busy, loading)
		victims, wait = g.scale(f, now, busy, loads, victims, wait)
		for _, v := range victims {
			if ctx.Err() != nil {
				return
			}
			if g.idleUnload(ctx, v) {
				delete(busy, replicaKey{v.neuron, v.model})
			}
		}
		t.Reset(wait)
	}
}

// idleUnload unloads v's model from its neuron, without force, and reports
// whether it is gone.
func (g *Gateway) idleUnload(ctx context.Context, v idleVictim) bool {
	up := g.upstream(v.neuron)
	if up == nil {
		return false
	}
	// The request path may have picked the replica since the snapshot.
	if g.usage.InFlight(v.neuron, v.model) > 0 {
		return false
	}
	log := g.log.With("model", v.model, "neuron", v.neuron)
	uctx, cancel := context.WithTimeout(ctx, idleUnloadTimeout)
	defer cancel()
	err := up.admin.Unload(uctx, v.model, false)
	switch {
	case err == nil && v.scale != nil:
		log.Info("cortex: scaled in", "reason", v.scale.Reason, "replicas", v.scale.Replicas)
		g.metrics.scaled(v.model, route.ScaleIn)
		g.events.add(Event{Time: g.clock.Now(), Kind: EventScaleIn, Neuron: v.neuron, Model: v.model, Reason: v.scale.Reason})
	case err == nil:
		log.Info("cortex: unloaded idle model", "idle_for", v.idleFor)
		g.metrics.idleUnloaded(v.model, v.neuron)
		g.events.add(Event{Time: g.clock.Now(), Kind: EventIdleUnload, Neuron: v.neuron, Model: v.model,
			Reason: "served nothing for " + v.idleFor.Round(time.Second).String()})
	case errors.Is(err, neuron.ErrModelNotFound):
		// Unloaded already: by another cortex replica, or by hand.
	default:
		log.Warn("cortex: idle unload failed; the next sweep tries again", "err", err)
		return false
	}
	g.releaseReplica(v.model, v.neuron)
	up.forget(v.model)
	g.refresh(ctx, v.neuron)
	return true
}
