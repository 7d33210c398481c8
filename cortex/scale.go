package cortex

import (
	"cmp"
	"slices"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
)

// Replicas that follow demand: the models with replica bounds in the
// catalogue (min_replicas, max_replicas; catalogue.Model.Scaled) have
// their replica count decided by the gateway's route.Scaler, on the idle
// loop's clock (idle.go), every poll interval while the catalogue has
// such a model. A model without bounds is never scaled: nothing here
// runs for it.
//
// The gateway carries out each decision through its own paths: a
// scale-out is a load (startLoad, ActionLoad with the decision's
// victims), single-flight per model and neuron, that counts as a replica
// from its start (route.Demand.Loads); a scale-in is the idle loop's
// unload (idleUnload), which refuses a replica with requests in flight
// here and never forces the neuron. The idle loop's memory of when each
// replica last had work is the Scaler's Demand.Idle, so both agree on
// what idle means. A scale-out whose load failed backs off as a
// request's load does (WithLoadBackoff): the Scaler's Demand.Backoff
// lists the neuron until the backoff ends, so the next steps place the
// replica elsewhere or wait, rather than loading it again there on every
// step.
//
// Several cortex replicas each run their Scaler. Over the same snapshot
// they decide the same scale-out on the same neuron (placements break ties
// by neuron name), and the neuron, the load arbiter, joins their loads
// into one. Over snapshots that differ (a poll apart), each may decide a
// replica on a different neuron: every load of a new replica of a scaled
// model first claims it from the model's replica arbiter (claim.go), which
// grants no claim past max_replicas, so the count never passes it while
// the arbiter answers. What it cannot be asked, and a neuron that comes
// back with its replicas, leaves a surplus that the next step of every
// gateway scales in first ("over max_replicas").

// scaleInterval returns the time between two scale steps while the
// catalogue has a model with replica bounds: the poll interval, since the
// signals change with each poll (route.DefaultPollInterval for a Poller
// that does not say its interval).
func (g *Gateway) scaleInterval() time.Duration {
	if p, ok := g.poller.(interface{ Interval() time.Duration }); ok && p.Interval() > 0 {
		return p.Interval()
	}
	return route.DefaultPollInterval
}

// WithScaler sets the Scaler that decides the replica counts of the
// models with replica bounds. Default: route.NewScaler(), one for the
// gateway's life. SetOptions and Reload change it: the new Scaler starts
// with no memory of windows and cool-downs.
func WithScaler(s route.Scaler) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.live.scaler = s })
}

// liveScaler returns the Scaler in force.
func (g *Gateway) liveScaler() route.Scaler {
	if s := g.settings().scaler; s != nil {
		return s
	}
	return g.scaler
}

// scale runs one step of the Scaler over f at now when f's catalogue has
// a model with replica bounds: it starts the scale-outs, and adds the
// scale-ins to victims (the idle loop unloads them). busy is the idle
// loop's memory (idleVictims), loads the gateway's loads in flight. It
// returns the victims and the wait until the next step.
func (g *Gateway) scale(f *route.Fleet, now time.Time, busy map[replicaKey]time.Time, loads []route.Load, victims []idleVictim, wait time.Duration) ([]idleVictim, time.Duration) {
	if f == nil || f.Catalogue() == nil || !slices.ContainsFunc(f.Catalogue().Models(), func(m catalogue.Model) bool { return m.Scaled() }) {
		return victims, wait
	}
	var idle []route.IdleReplica
	for k, since := range busy {
		if n := f.Neuron(k.neuron); n != nil && n.Available() {
			if m := n.Model(k.model); m != nil && m.Profile.Scaled() {
				idle = append(idle, route.IdleReplica{Neuron: k.neuron, Model: k.model, Since: since})
			}
		}
	}
	slices.SortFunc(idle, func(a, b route.IdleReplica) int {
		return cmp.Or(cmp.Compare(a.Neuron, b.Neuron), cmp.Compare(a.Model, b.Model))
	})
	var backoff map[string][]route.Backoff
	for _, m := range f.Catalogue().Models() {
		if b := g.backoff.active(m.ID, now, nil); m.Scaled() && len(b) > 0 {
			if backoff == nil {
				backoff = make(map[string][]route.Backoff)
			}
			backoff[m.ID] = b
		}
	}
	for _, d := range g.liveScaler().Scale(f, &route.Demand{Now: now, Loads: loads, Idle: idle, Backoff: backoff}) {
		switch d.Direction {
		case route.ScaleOut:
			// The load claims the replica from the model's arbiter
			// (claim.go), and records the scale-out once it may go on.
			g.beginLoad(route.Decision{Neuron: d.Neuron, Model: d.Model, Action: route.ActionLoad, Evict: d.Evict}, &d)
		case route.ScaleIn:
			victims = append(victims, idleVictim{neuron: d.Neuron, model: d.Model.ID, scale: &d})
		}
	}
	return victims, min(wait, g.scaleInterval())
}
