package cortex

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

var outlierT0 = time.Unix(1_000_000, 0)

// TestOutlierStateNext drives the pure decision of outlier detection
// through a replica's life, one answer at a time.
func TestOutlierStateNext(t *testing.T) {
	t.Parallel()
	cfg := OutlierConfig{ConsecutiveFailures: 3, BaseEjectionTime: neuron.Duration(10 * time.Second),
		MaxEjectionTime: neuron.Duration(25 * time.Second)}
	type step struct {
		at     time.Duration // after outlierT0
		failed bool
		want   string // the change: "", "eject 10s", "back: why"
		out    bool   // ejected after the step
	}
	steps := []step{
		{at: 0, failed: true},
		{at: 1, failed: true},
		{at: 2, failed: false}, // a success starts the count over
		{at: 3, failed: true},
		{at: 4, failed: true},
		{at: 5, failed: true, want: "eject 10s (1)", out: true},
		{at: 6, failed: true, out: true},                         // while out, a failure changes nothing
		{at: 15, failed: true},                                   // the period ended at 15: back, and this is failure 1
		{at: 16, failed: true},                                   //
		{at: 17, failed: true, want: "eject 20s (2)", out: true}, // soon again: twice as long
		{at: 20, failed: false, want: "back: " + backServed},     // the router fell back to it, and it served
		{at: 21, failed: true},
		{at: 22, failed: true},
		{at: 23, failed: true, want: "eject 25s (3)", out: true}, // 30 s, capped at 25
		// 25 s out (to 48), then 40 s in rotation: the multiplier goes
		// down by 4 (to 0), and the next ejection is a first one again.
		{at: 88, failed: true},
		{at: 89, failed: true},
		{at: 90, failed: true, want: "eject 10s (1)", out: true},
	}
	var s outlierState
	for i, st := range steps {
		now := outlierT0.Add(st.at * time.Second)
		next, ch, ok := s.next(st.failed, now, cfg)
		got := ""
		switch {
		case ok && ch.eject:
			got = "eject " + ch.period.String() + " (" + string(rune('0'+ch.count)) + ")"
		case ok && ch.why != backPeriodEnded:
			got = "back: " + ch.why
		}
		if got != st.want {
			t.Errorf("step %d (t+%ds, failed %v): change %q, want %q", i, st.at, st.failed, got, st.want)
		}
		if out := !next.since.IsZero(); out != st.out {
			t.Errorf("step %d: ejected %v, want %v", i, out, st.out)
		}
		s = next
	}
}

func TestOutliersReportAndPoll(t *testing.T) {
	t.Parallel()
	now := outlierT0
	o := newOutliers(OutlierConfig{}, func() time.Time { return now }, nil)
	var changes []string
	o.notify = func(ch outlierChange) {
		if ch.eject {
			changes = append(changes, "eject "+ch.neuron+"/"+ch.model)
		} else {
			changes = append(changes, "back "+ch.neuron+"/"+ch.model+": "+ch.why)
		}
	}
	loadedAt := outlierT0.Add(-time.Hour)
	fleetAt := func(at time.Time, restarts int, la time.Time) *route.Fleet {
		m := route.ModelState{ModelInfo: neuron.ModelInfo{ID: "m", Status: neuron.StatusLoaded, LoadedAt: la, Restarts: restarts}}
		m.Ejection = o.ejection("n1", "m")
		f, err := route.NewFleet(nil, nil, at, []route.NeuronState{{Name: "n1", Healthy: true, Models: []route.ModelState{m}}})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	cur := fleetAt(now, 0, loadedAt)
	o.fleet = func() *route.Fleet { return cur }

	e := o.ejection("n1", "m")
	if e != o.ejection("n1", "m") {
		t.Fatal("ejection returns another pointer for the same replica")
	}
	for range DefaultConsecutiveFailures - 1 {
		o.report("n1", "m", true)
	}
	o.report("n1", "m", false) // the success fast path must not be taken with failures counted
	for range DefaultConsecutiveFailures {
		o.report("n1", "m", true)
	}
	if !e.Active(now) || e.Count() != 1 || !e.Since().Equal(now) || !e.Until().Equal(now.Add(DefaultBaseEjectionTime)) {
		t.Fatalf("after %d failures: active %v, count %d, %v..%v", DefaultConsecutiveFailures, e.Active(now), e.Count(), e.Since(), e.Until())
	}
	if f := fleetAt(now, 0, loadedAt); !f.Neuron("n1").Model("m").Ejected(f.At()) {
		t.Error("route.ModelState.Ejected is false for an ejected replica")
	}

	// A poll that shows it as it was changes nothing; one that shows it
	// loaded anew brings it back.
	now = now.Add(time.Second)
	o.polled(fleetAt(now, 0, loadedAt))
	if !e.Active(now) {
		t.Fatal("a poll showing the same engine brought it back")
	}
	o.polled(fleetAt(now, 1, loadedAt))
	if e.Active(now) || !e.Since().IsZero() {
		t.Fatal("a poll showing a restart did not bring it back")
	}
	want := []string{"eject n1/m", "back n1/m: " + backReloaded}
	if diff := cmp.Diff(changes, want); diff != "" {
		t.Errorf("changes (-got +want):\n%s", diff)
	}

	// A disabled tracker ejects nothing; a nil one neither.
	off := newOutliers(OutlierConfig{Disabled: true}, func() time.Time { return now }, nil)
	for range 10 {
		off.report("n1", "m", true)
	}
	if off.ejection("n1", "m").Active(now) {
		t.Error("a disabled tracker ejected")
	}
	var none *outliers
	none.report("n1", "m", true)
	none.polled(cur)
	if none.ejection("n1", "m") != nil {
		t.Error("a nil tracker has ejections")
	}
}

func TestFleetEvents(t *testing.T) {
	t.Parallel()
	at := outlierT0
	mk := func(at time.Time, neurons ...route.NeuronState) *route.Fleet {
		f, err := route.NewFleet(nil, nil, at, neurons)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	model := func(status neuron.ModelStatus, restarts, failures int) route.ModelState {
		return route.ModelState{ModelInfo: neuron.ModelInfo{ID: "m", Status: status, Restarts: restarts, Failures: failures,
			LastFailure: neuron.FailureUnresponsive, LastFailureReason: "3 liveness probes failed",
			LastError: "exit status 1: /opt/llama-server listening on 127.0.0.1:40001"}}
	}
	up := func(models ...route.ModelState) route.NeuronState {
		return route.NeuronState{Name: "n1", Healthy: true, LastSuccess: at, Models: models}
	}
	down := func(failures int, models ...route.ModelState) route.NeuronState {
		return route.NeuronState{Name: "n1", Failures: failures, LastSuccess: at.Add(-time.Minute),
			LastError: errors.New("models: dial tcp 10.0.0.5:31400: connection refused"), Models: models}
	}
	type row struct {
		Kind           EventKind
		Model, Reason  string
		HasErr, Detail bool
	}
	tests := []struct {
		name       string
		prev, next route.NeuronState
		want       []row
	}{
		{name: "nothing changed", prev: up(model(neuron.StatusLoaded, 0, 0)), next: up(model(neuron.StatusLoaded, 0, 0))},
		{name: "neuron down", prev: up(model(neuron.StatusLoaded, 0, 0)), next: down(3, model(neuron.StatusLoaded, 0, 0)),
			want: []row{{Kind: EventNeuronDown, Reason: "3 failed polls", HasErr: true, Detail: true}}},
		{name: "neuron back", prev: down(4), next: up(),
			want: []row{{Kind: EventNeuronUp, Reason: "after 4 failed polls"}}},
		{name: "first poll is no event", prev: route.NeuronState{Name: "n1"}, next: up()},
		{name: "engine failed, counted", prev: up(model(neuron.StatusLoaded, 0, 0)), next: up(model(neuron.StatusFailed, 0, 1)),
			want: []row{{Kind: EventEngineFailed, Model: "m", Reason: "unresponsive: its liveness probes failed", HasErr: true, Detail: true}}},
		{name: "engine failed, seen by its status", prev: up(model(neuron.StatusLoaded, 0, 0)), next: up(model(neuron.StatusRecovering, 1, 0)),
			want: []row{{Kind: EventEngineFailed, Model: "m", Reason: "unresponsive: its liveness probes failed", HasErr: true, Detail: true}}},
		{name: "restarted", prev: up(model(neuron.StatusRecovering, 1, 1)), next: up(model(neuron.StatusLoaded, 1, 1)),
			want: []row{{Kind: EventEngineRestarted, Model: "m", Reason: "restart 1"}}},
		{name: "failed and restarted between two polls", prev: up(model(neuron.StatusLoaded, 1, 1)), next: up(model(neuron.StatusLoaded, 2, 1)),
			want: []row{
				{Kind: EventEngineFailed, Model: "m", Reason: "unresponsive: its liveness probes failed", HasErr: true, Detail: true},
				{Kind: EventEngineRestarted, Model: "m", Reason: "restart 2"},
			}},
		{name: "a first load that fails is the load's event", prev: up(model(neuron.StatusLoading, 0, 0)), next: up(model(neuron.StatusFailed, 0, 0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []row
			for _, e := range fleetEvents(mk(at.Add(-time.Second), tt.prev), mk(at, tt.next)) {
				if e.Neuron != "n1" || !e.Time.Equal(at) {
					t.Errorf("event %+v: want on n1 at the new snapshot's time", e)
				}
				got = append(got, row{Kind: e.Kind, Model: e.Model, Reason: e.Reason, HasErr: e.Error != "", Detail: e.Detail != ""})
				if internalDetail.MatchString(e.Error) || internalDetail.MatchString(e.Reason) {
					t.Errorf("event %+v: Error or Reason names something internal", e)
				}
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("events (-got +want):\n%s", diff)
			}
		})
	}
}

func TestPublicEvents(t *testing.T) {
	t.Parallel()
	in := []Event{
		{Kind: EventNeuronDown, Error: "the neuron could not be polled", Detail: "dial tcp 10.0.0.5:31400: connection refused"},
		{Kind: EventLoadFailed, Error: "model_load_failed: engine exited: error loading /models/x.gguf\nline 2"},
		{Kind: EventLoadFailed, Error: "read tcp 127.0.0.1:22768->127.0.0.1:22501: connection reset by peer"},
		{Kind: EventLoadFailed, Error: "insufficient_vram: needs 4000 MiB, 1000 free"},
		{Kind: EventLoadFailed, Error: "engine at [::1]:8080 refused"},
		{Kind: EventLoadFailed, Error: "see http://gpu-01.internal/x"},
	}
	got := publicEvents(append([]Event(nil), in...))
	want := []string{
		"the neuron could not be polled",
		"model_load_failed (detail in the admin view)",
		"failed (detail in the admin view)",
		"insufficient_vram: needs 4000 MiB, 1000 free",
		"failed (detail in the admin view)",
		"failed (detail in the admin view)",
	}
	for i, e := range got {
		if e.Detail != "" {
			t.Errorf("event %d keeps its detail %q", i, e.Detail)
		}
		if e.Error != want[i] {
			t.Errorf("event %d: Error %q, want %q", i, e.Error, want[i])
		}
		if strings.Contains(e.Error, "127.0.0.1") || strings.Contains(e.Error, "/models") {
			t.Errorf("event %d leaks %q", i, e.Error)
		}
	}
}
