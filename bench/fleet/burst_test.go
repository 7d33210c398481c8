package main

import (
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
)

func TestReplicaTimeline(t *testing.T) {
	s := time.Second
	samples := []replicaSample{
		{0, 1, 0}, {s / 2, 1, 0}, {2 * s, 1, 1}, {3 * s, 2, 0}, {3*s + s/2, 2, 0},
		{4 * s, 2, 1}, {5 * s, 3, 0}, {6 * s, 3, 0},
	}
	steps := replicaSteps(samples)
	if len(steps) != 5 || steps[0].at != 0 || steps[4].at != 5*s {
		t.Errorf("replicaSteps = %+v, want the changes at 0, 2, 3, 4 and 5 s", steps)
	}
	if got, want := fmtSteps(samples), "0.0s 1, 2.0s 1+1, 3.0s 2, 4.0s 2+1, 5.0s 3"; got != want {
		t.Errorf("fmtSteps = %q, want %q", got, want)
	}
	if at, ok := firstExtra(samples, 1); !ok || at != 3*s {
		t.Errorf("firstExtra over 1 preloaded = %v, %v; want 3s, true", at, ok)
	}
	if _, ok := firstExtra(samples, 3); ok {
		t.Error("firstExtra over 3 preloaded found one; the samples never pass 3")
	}
	if got := rampEnd(samples); got != 5*s {
		t.Errorf("rampEnd = %v, want 5s (a loading replica is no change)", got)
	}
	if got := rampEnd(samples[:2]); got != 0 {
		t.Errorf("rampEnd without a change = %v, want 0", got)
	}
}

func TestBurstChecks(t *testing.T) {
	setups := burstSetups(8)
	pre := &result{cell: cell{scale: setups[1]}, tokRate: 1000}
	sc := &result{cell: cell{scale: setups[2]}, tokRate: 800,
		replicas: []replicaSample{{0, 1, 0}, {burstLoadTime + 2*time.Second, 2, 0}}}
	got := burstChecks(map[string]*result{"preloaded": pre, "scaling": sc}, 2*time.Second)
	if len(got) != 2 || !got[0].ok || !got[1].ok {
		t.Fatalf("at both limits: %+v, want two passes", got)
	}
	sc.tokRate = 799
	sc.replicas[1].at++
	got = burstChecks(map[string]*result{"preloaded": pre, "scaling": sc}, 2*time.Second)
	if got[0].ok || got[1].ok {
		t.Errorf("just past both limits: %+v, want two failures", got)
	}
	sc.replicas = sc.replicas[:1]
	if got := burstChecks(map[string]*result{"scaling": sc}, 2*time.Second); len(got) != 1 || got[0].ok || got[0].got != "none" {
		t.Errorf("no extra replica, no preloaded cell: %+v, want one failure measuring none", got)
	}
}

func TestFixedTimingIsAsLongAsTheScalingWindow(t *testing.T) {
	got := fixedTiming(timing{warmup: 18 * time.Second, duration: 22 * time.Second, drain: time.Second})
	want := timing{warmup: burstFixedWarmup, duration: burstFixedWarmup + 4*time.Second, drain: time.Second}
	if got != want {
		t.Errorf("fixedTiming = %+v, want %+v", got, want)
	}
}

func TestScaledCatalogueHasTheBounds(t *testing.T) {
	cat, err := catalogue.Parse([]byte(scaledCatalogue(1, 8)))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := cat.Lookup(modelID)
	if !ok {
		t.Fatalf("no %s in the scaled catalogue", modelID)
	}
	if lo, hi := m.ReplicaBounds(); lo != 1 || hi != 8 || !m.Scaled() {
		t.Errorf("bounds %d-%d (scaled %v), want 1-8, scaled", lo, hi, m.Scaled())
	}
	if _, err := newBurstScaler(); err != nil {
		t.Errorf("newBurstScaler: %v", err)
	}
}
