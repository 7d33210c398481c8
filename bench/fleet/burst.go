package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
)

// The burst scenario (issue 22): workload (c), unique prompts, offered at
// burstLoad times one replica's capacity estimate, over three fleets of
// the same 8 neurons, least-loaded routing:
//
//   - one replica: min_replicas = max_replicas = 1, one neuron loaded;
//   - preloaded: min_replicas = max_replicas = 8, every neuron loaded;
//   - scaling: min_replicas 1, max_replicas 8, one neuron loaded, the
//     gateway's Scaler adding replicas as the work grows.
//
// The scaling fleet runs -burst-duration and measures from -burst-warmup,
// after its ramp; the fixed ones measure a window as long from
// burstFixedWarmup, when the preloaded fleet is at its steady state (a
// request lives some 4 s there, so the usual cell's window, from 2 s,
// would still see it filling).
const (
	burstLoad = 6.0
	// burstLoadTime is sim.Config.LoadTime of the burst's neurons: a
	// load, time-scaled like the GPU.
	burstLoadTime = 2 * time.Second
	// The Scaler's knobs. Target work 4 (route.DefaultTargetWork): one
	// replica serving unique prompts queues past a few requests, each
	// holding the engine for its prefill. Window 0: the time-to-first
	// target allows one poll interval from the burst's start to the
	// decision, and the scale step itself comes up to one interval after
	// the work appears. Cool-down 1 s, under the scale step (2 s), so that
	// the ramp adds one replica per step.
	burstTargetWork = 4
	burstWindow     = 0
	burstCooldown   = time.Second
	// burstFixedWarmup is the start of the fixed fleets' window.
	burstFixedWarmup = 8 * time.Second
	// burstSample is the period of the replica sampler.
	burstSample = 50 * time.Millisecond
)

// scaling is the model's replica bounds in a burst cell, and the replicas
// loaded before the arrivals.
type scaling struct {
	name              string
	min, max, preload int
}

// burstSetups are the burst's fleets, in table order.
func burstSetups(neurons int) []*scaling {
	return []*scaling{
		{name: "one replica", min: 1, max: 1, preload: 1},
		{name: "preloaded", min: neurons, max: neurons, preload: neurons},
		{name: "scaling", min: 1, max: neurons, preload: 1},
	}
}

// fixedTiming is the timing of the fixed fleets' cells: a window as long
// as the scaling cell's, from burstFixedWarmup.
func fixedTiming(scaling timing) timing {
	return timing{warmup: burstFixedWarmup, duration: burstFixedWarmup + scaling.duration - scaling.warmup, drain: scaling.drain}
}

// newBurstScaler returns the Scaler of the burst's gateways.
func newBurstScaler() (route.Scaler, error) {
	return route.NewScaler(route.WithTargetWork(burstTargetWork), route.WithScaleWindow(burstWindow),
		route.WithScaleCooldown(burstCooldown))
}

// replicaSample is the model's replicas as a gateway saw them at one time.
type replicaSample struct {
	at             time.Duration // from the cell's start
	ready, loading int
}

// sampleReplicas samples gw's replicas of the model every burstSample,
// from start until ctx ends.
func sampleReplicas(ctx context.Context, gw *cortex.Gateway, start time.Time) []replicaSample {
	var out []replicaSample
	tick := time.NewTicker(burstSample)
	defer tick.Stop()
	for {
		r := route.CountReplicas(gw.Fleet(), nil, modelID)
		out = append(out, replicaSample{at: time.Since(start), ready: r.Ready, loading: r.Loading})
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
	}
}

// replicaSteps returns the samples at which the replica count changed,
// the first sample included.
func replicaSteps(s []replicaSample) []replicaSample {
	var out []replicaSample
	for i, x := range s {
		if i == 0 || x.ready != s[i-1].ready || x.loading != s[i-1].loading {
			out = append(out, x)
		}
	}
	return out
}

// firstExtra returns when the samples first show more than preload ready
// replicas; false when they never do.
func firstExtra(s []replicaSample, preload int) (time.Duration, bool) {
	for _, x := range s {
		if x.ready > preload {
			return x.at, true
		}
	}
	return 0, false
}

// rampEnd returns when the samples last show a change in ready replicas:
// the end of the ramp.
func rampEnd(s []replicaSample) time.Duration {
	var end time.Duration
	for i := 1; i < len(s); i++ {
		if s[i].ready != s[i-1].ready {
			end = s[i].at
		}
	}
	return end
}

// fmtSteps formats the replica steps as "0.0s 1, 2.1s 1+1, ...": ready
// replicas, plus those loading.
func fmtSteps(s []replicaSample) string {
	var parts []string
	for _, x := range replicaSteps(s) {
		p := strconv.FormatFloat(x.at.Seconds(), 'f', 1, 64) + "s " + strconv.Itoa(x.ready)
		if x.loading > 0 {
			p += "+" + strconv.Itoa(x.loading)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// burstChecks evaluates the burst's targets over its cells, by setup
// name; poll is the gateways' poll interval.
func burstChecks(cells map[string]*result, poll time.Duration) []check {
	var out []check
	sc, pre := cells["scaling"], cells["preloaded"]
	if sc != nil && pre != nil {
		r := ratio(sc.tokRate, pre.tokRate)
		out = append(out, check{
			target: "burst: scaling's output tok/s after the ramp ≥ 0.8 of the preloaded fleet's",
			got:    fmt.Sprintf("%s vs %s tok/s: %s", fmtRate(sc.tokRate), fmtRate(pre.tokRate), fmtRatio(r)),
			ok:     r >= 0.8,
		})
	}
	if sc != nil {
		bound := burstLoadTime + poll
		at, ok := firstExtra(sc.replicas, sc.scale.preload)
		got := "none"
		if ok {
			got = fmtDur(at)
		}
		out = append(out, check{
			target: fmt.Sprintf("burst: first extra replica ready ≤ one load (%v) + one poll interval (%v)", burstLoadTime, poll),
			got:    got,
			ok:     ok && at <= bound,
		})
	}
	return out
}
