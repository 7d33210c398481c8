package faulttest_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/internal/proctest"
	"github.com/helexa-ai/helexa-go/neuron"
)

// Replicas that follow demand (cortex/scale.go), on real neuron processes
// whose helexa-sim engines have a capacity: each replica of scaleModel
// runs one answer at a time (--gpu-max-batch 1), each token after the
// first a decode step of scaleStep, so that an answer of scaleTokens
// tokens holds the engine for at least (scaleTokens-1)*scaleStep (100 ms)
// and one replica serves at most about ten answers a second. Requests
// past that queue at the engine, and the gateway sees them as work on the
// replica.
const (
	scaleModel  = "scaled"
	scaleStep   = 25 * time.Millisecond
	scaleTokens = 5
)

// scaleService is the least time the engine of one replica of scaleModel
// spends on one answer: the first token comes with the prefill, each of
// the others takes a decode step of at least scaleStep.
const scaleService = (scaleTokens - 1) * scaleStep

// scaledModel returns the catalogue profile of scaleModel with replica
// bounds lo and hi, run by the neuron's sim-fast engine template with the
// arguments that give it its capacity.
func scaledModel(lo, hi int) catalogue.Model {
	return catalogue.Model{ID: scaleModel, Engine: "sim-" + modelFast, VRAMMB: 1000, MinReplicas: lo, MaxReplicas: hi,
		EngineArgs: catalogue.EngineArgs{Extra: []string{
			"--gpu-max-batch", "1", "--gpu-decode-base", scaleStep.String(), "--ignore-eos",
		}}}
}

// scaleRequest sends request i of a load of scaleModel (every odd one
// streamed) and checks its answer; safe to call from any goroutine.
func scaleRequest(s *stack, i int) error {
	return loadRequest(s.t.Context(), s, loadSpec{model: scaleModel, maxTokens: scaleTokens,
		prompt: func(i int) string { return fmt.Sprintf("tell me story %d", i) }}, i)
}

// scaleStepSeen is what a watchScaler saw at one step of the gateway's
// Scaler: the replicas of scaleModel as the Scaler counts them (with the
// gateway's loads in flight), and what it decided.
type scaleStepSeen struct {
	at        time.Time
	replicas  route.Replicas
	decisions []route.ScaleDecision
}

// watchScaler is the gateway's Scaler, wrapped to record every step it
// takes: the tests wait for steps instead of for time, and read the
// replica count at each step rather than sampling it from outside.
type watchScaler struct {
	route.Scaler

	mu    sync.Mutex
	steps []scaleStepSeen
}

// Scale implements route.Scaler. It only appends under its own lock: it
// neither blocks nor does I/O.
func (w *watchScaler) Scale(f *route.Fleet, d *route.Demand) []route.ScaleDecision {
	out := w.Scaler.Scale(f, d)
	seen := scaleStepSeen{at: d.Now, replicas: route.CountReplicas(f, d.Loads, scaleModel), decisions: slices.Clone(out)}
	w.mu.Lock()
	w.steps = append(w.steps, seen)
	w.mu.Unlock()
	return out
}

// seen returns the steps so far, oldest first.
func (w *watchScaler) seen() []scaleStepSeen {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.steps)
}

// waitSteps waits until the Scaler has taken n more steps, after those
// already seen, for which cond holds.
func (w *watchScaler) waitSteps(t *testing.T, n int, what string, cond func(scaleStepSeen) bool) {
	t.Helper()
	from := len(w.seen())
	proctest.Eventually(t, 30*time.Second, what, func() bool {
		k := 0
		for _, st := range w.seen()[from:] {
			if cond(st) {
				k++
			}
		}
		return k >= n
	})
}

// scaleStack serves a gateway over neurons with the catalogue models,
// its Scaler the default one with opts, watched. Ties between replicas
// are broken at random, as in production.
func scaleStack(t *testing.T, neurons []*neuronProc, models []catalogue.Model, opts ...route.ScalerOption) (*stack, *watchScaler) {
	t.Helper()
	cat, err := catalogue.New(models, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := route.NewScaler(opts...)
	if err != nil {
		t.Fatal(err)
	}
	w := &watchScaler{Scaler: sc}
	s := serveStack(t, neurons, cat, 1<<40, cortex.WithScaler(w))
	t.Cleanup(s.checkStatusClean) // runs before serveStack's cleanup
	return s, w
}

// waitReplicas waits until the gateway's snapshot shows want ready
// replicas of scaleModel and none on its way.
func waitReplicas(t *testing.T, s *stack, want int, within time.Duration) {
	t.Helper()
	proctest.Eventually(t, within, fmt.Sprintf("%d ready replicas of %s", want, scaleModel), func() bool {
		r := route.CountReplicas(s.gw.Fleet(), nil, scaleModel)
		return r.Ready == want && r.Loading == 0
	})
}

// scaleEvents returns the gateway's scale_out and scale_in events of
// scaleModel, oldest first.
func scaleEvents(s *stack) []cortex.Event {
	var out []cortex.Event
	for _, e := range s.gw.Events() {
		if e.Model == scaleModel && (e.Kind == cortex.EventScaleOut || e.Kind == cortex.EventScaleIn) {
			out = append(out, e)
		}
	}
	slices.Reverse(out) // Events is newest first
	return out
}

// kinds returns the kinds of events, in order, for messages.
func kinds(events []cortex.Event) string {
	var b strings.Builder
	for i, e := range events {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s@%s(%s)", e.Kind, e.Neuron, e.Reason)
	}
	return b.String()
}

// decisions returns ds, in order, for messages.
func decisions(ds []route.ScaleDecision) string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s@%s(%s", d.Direction, d.Neuron, d.Reason)
		if len(d.Evict) > 0 {
			fmt.Fprintf(&b, "; evicting %v", d.Evict)
		}
		b.WriteByte(')')
	}
	return b.String()
}

// engineCount returns the engine processes of the neurons, all together.
func engineCount(neurons []*neuronProc) int {
	k := 0
	for _, n := range neurons {
		k += len(n.engines())
	}
	return k
}

// closedLoop starts clients that each send requests of scaleModel one
// after the other, until the stop it returns is called or the test ends.
// stop waits for them, and returns how many requests they sent and a line
// for each that failed; it runs at the cleanup too, so that a test that
// fails while the load is on leaves no client behind.
func closedLoop(t *testing.T, s *stack, clients int) (stop func() (sent int, failed []string)) {
	var (
		halt atomic.Bool
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	for range clients {
		wg.Go(func() {
			for !halt.Load() && t.Context().Err() == nil {
				i := int(next.Add(1)) - 1
				if err := scaleRequest(s, i); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("request %d: %v", i, err))
					mu.Unlock()
				}
			}
		})
	}
	stop = func() (int, []string) {
		halt.Store(true)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return int(next.Load()), slices.Clone(errs)
	}
	t.Cleanup(func() { stop() })
	return stop
}

// noneFailed fails the test when any of the requests sent failed.
func noneFailed(t *testing.T, sent int, failed []string) {
	t.Helper()
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed; the first: %s", len(failed), sent, strings.Join(failed[:min(len(failed), 3)], "\n"))
	}
}

// TestScaleFollowsBurst: open-loop arrivals at 2.5 times one replica's
// capacity (a request every 40 ms, for 3 s; one replica serves one every
// 100 ms) on a model with min_replicas 1 and max_replicas 3, over four
// neurons. The replicas grow past one and never past max_replicas, though
// a fourth neuron has room; the queue per replica, which grows while one
// replica serves, falls back once the others are ready; the fleet
// completes more requests a second at the end of the burst than one
// replica can; and no request fails. The engine processes, counted
// through the burst, are never more than max_replicas either. When the
// burst ends, the replicas shrink back to min_replicas after the idle
// window, one per cool-down, and their engines stop.
func TestScaleFollowsBurst(t *testing.T) {
	suite(t)
	const (
		lo, hi   = 1, 3
		every    = 40 * time.Millisecond
		requests = 75 // 3 s
		target   = 2
		idle     = time.Second
	)
	var neurons []*neuronProc
	for i := range 4 {
		neurons = append(neurons, startNeuron(t, fmt.Sprintf("gpu-burst%d", i+1)))
	}
	s, w := scaleStack(t, neurons, []catalogue.Model{scaledModel(lo, hi)},
		route.WithTargetWork(target), route.WithScaleWindow(0),
		route.WithScaleCooldown(500*time.Millisecond), route.WithScaleInIdle(idle))
	waitReplicas(t, s, lo, 30*time.Second)

	// The burst, open loop: each request starts on its tick whatever the
	// others do.
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		ends   []time.Time
		failed []string
	)
	// The engines are real processes: count them through the burst.
	quit, mostEngines := make(chan struct{}), make(chan int)
	go func() {
		most := 0
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				mostEngines <- most
				return
			case <-tick.C:
				most = max(most, engineCount(neurons))
			}
		}
	}()
	start := time.Now()
	tick := time.NewTicker(every)
	for i := range requests {
		if i > 0 {
			<-tick.C
		}
		wg.Go(func() {
			err := scaleRequest(s, i)
			mu.Lock()
			defer mu.Unlock()
			ends = append(ends, time.Now())
			if err != nil {
				failed = append(failed, fmt.Sprintf("request %d: %v", i, err))
			}
		})
	}
	tick.Stop()
	end := time.Now()
	wg.Wait()
	close(quit)
	most := <-mostEngines
	t.Logf("at most %d engine processes at once during the burst", most)
	if most > hi {
		t.Errorf("%d engine processes at once during the burst, over max_replicas %d", most, hi)
	}
	noneFailed(t, requests, failed)

	// The replicas, step by step: past one (the bounds are checked for
	// every step below); the queue per ready replica at its peak and over
	// the last second.
	var (
		endQ, peakQ float64
		counted     int
		lastQ       []float64
		trace       []string
	)
	for _, st := range w.seen() {
		if st.at.Before(start) || st.at.After(end) {
			continue
		}
		r := st.replicas
		counted = max(counted, r.Count())
		if r.Ready == 0 {
			continue
		}
		q := float64(r.Work) / float64(r.Ready)
		peakQ = max(peakQ, q)
		if end.Sub(st.at) <= time.Second {
			lastQ = append(lastQ, q)
		}
		trace = append(trace, fmt.Sprintf("+%v %d+%d %.1f", st.at.Sub(start).Round(10*time.Millisecond), r.Ready, r.Loading, q))
	}
	for _, q := range lastQ {
		endQ += q / float64(len(lastQ))
	}
	t.Logf("steps of the burst (time, ready+loading, work per ready replica): %s", strings.Join(trace, ", "))
	if counted < 2 {
		t.Fatalf("the replicas never grew past %d during the burst", counted)
	}
	// A queue that holds: with the replicas of the end, the work per
	// replica is well below what it was while fewer served.
	t.Logf("work per ready replica: peak %.1f, %.1f on average over the last second", peakQ, endQ)
	if len(lastQ) == 0 || endQ > peakQ/2 {
		t.Errorf("the work per ready replica over the last second of the burst is %.1f on average, its peak %.1f: the queue did not hold", endQ, peakQ)
	}

	// Throughput: one replica, its engine busy for at least scaleService
	// per answer, completes at most window/scaleService answers in a
	// window, plus one under way at its start and those its scheduler
	// catches up on after a lag (50 ms). Slowness of the machine only
	// lowers what the fleet completes, so this bound can only make the
	// test fail on a machine too slow to run the replicas at all, never
	// pass for a fleet that did not scale.
	const window = time.Second
	oneReplica := int((window+50*time.Millisecond)/scaleService) + 1
	done := 0
	for _, e := range ends {
		if !e.Before(end.Add(-window)) && !e.After(end) {
			done++
		}
	}
	t.Logf("%d requests completed over the last %v of the burst; one replica completes at most %d", done, window, oneReplica)
	if done <= oneReplica {
		t.Errorf("%d requests completed over the last %v of the burst, no more than one replica can (%d): the throughput did not grow with the replicas", done, window, oneReplica)
	}

	// The burst is over: after the idle window, back to min_replicas, one
	// replica per cool-down, never below, and their engines stop.
	waitReplicas(t, s, lo, 30*time.Second)
	for _, st := range w.seen() {
		if n := st.replicas.Count(); !st.at.Before(start) && (n < lo || n > hi) {
			t.Errorf("a step at +%v counts %d replicas, outside min_replicas %d and max_replicas %d", st.at.Sub(start).Round(time.Millisecond), n, lo, hi)
		}
	}
	events := scaleEvents(s)
	if len(events) == 0 || events[0].Reason != fmt.Sprintf("min_replicas %d", lo) {
		t.Fatalf("scale events %s; the first should place min_replicas", kinds(events))
	}
	events = events[1:]
	outs := slices.IndexFunc(events, func(e cortex.Event) bool { return e.Kind == cortex.EventScaleIn })
	if outs < 1 || len(events) != 2*outs || slices.ContainsFunc(events[outs:], func(e cortex.Event) bool {
		return e.Kind != cortex.EventScaleIn || e.Reason != "idle "+idle.String()
	}) {
		t.Errorf("scale events after the start %s; want scale_outs, then as many scale_ins for idle %v", kinds(events), idle)
	}
	proctest.Eventually(t, 10*time.Second, fmt.Sprintf("%d engine process left", lo), func() bool {
		return engineCount(neurons) == lo
	})
	s.settled(time.Second)
}

// TestScaleSteadyLoadDoesNotFlap: three clients in a closed loop on a
// model with min_replicas 1, max_replicas 2 and a target of 2 requests
// per replica. One replica holds 3: over the target, so it scales out;
// two hold 1.5 each: under the target, yet neither is idle and the work
// is above what one replica may keep after a scale-in (half the target),
// so nothing scales in. Over two seconds of steady load after the
// scale-out (the idle window and several cool-downs) the replica count
// does not change again.
func TestScaleSteadyLoadDoesNotFlap(t *testing.T) {
	suite(t)
	const (
		lo, hi  = 1, 2
		clients = 3
	)
	neurons := []*neuronProc{startNeuron(t, "gpu-flap1"), startNeuron(t, "gpu-flap2")}
	s, w := scaleStack(t, neurons, []catalogue.Model{scaledModel(lo, hi)},
		route.WithTargetWork(2), route.WithScaleWindow(300*time.Millisecond),
		route.WithScaleCooldown(500*time.Millisecond), route.WithScaleInIdle(time.Second))
	waitReplicas(t, s, lo, 30*time.Second)
	before := len(scaleEvents(s))

	start := time.Now()
	stop := closedLoop(t, s, clients)
	waitReplicas(t, s, hi, 30*time.Second)
	// Twenty steps a poll apart, the two replicas ready and the load on.
	w.waitSteps(t, 20, "20 scale steps of steady load on two replicas", func(st scaleStepSeen) bool {
		return st.replicas.Ready == hi
	})
	sent, failed := stop()
	stopped := time.Now()
	noneFailed(t, sent, failed)

	var decided []route.ScaleDecision
	for _, st := range w.seen() {
		if !st.at.Before(start) && !st.at.After(stopped) {
			decided = append(decided, st.decisions...)
		}
	}
	events := scaleEvents(s)[before:]
	t.Logf("%d requests; decisions under load: %s; events %s", sent, decisions(decided), kinds(events))
	if len(decided) != 1 || len(events) != 1 || events[0].Kind != cortex.EventScaleOut {
		t.Errorf("under a steady load, decisions %s and events %s; want one scale-out and nothing after it", decisions(decided), kinds(events))
	}
	s.settled(time.Second)
}

// TestScaleOutEvictsOnlyLowerPriority: a model with min_replicas 1 and
// max_replicas 3 that needs a whole device (81,000 MB of 81,920), over
// four neurons: one empty, where its first replica goes, and three that
// each hold an idle model of 1,000 MB. Under load (four clients, target
// 1) it scales out once, onto the neuron whose model has a lower
// residency priority, which it evicts; it never evicts the model pinned
// on its neuron (though of a lower priority too), nor the model of its
// own priority, so, with no such room left, it stays at two replicas
// while the load asks for more.
func TestScaleOutEvictsOnlyLowerPriority(t *testing.T) {
	suite(t)
	const cooldown = 300 * time.Millisecond
	empty := startNeuron(t, "gpu-evict1")
	lower := startNeuron(t, "gpu-evict2", modelFast)
	pinned := startNeuron(t, "gpu-evict3", modelSlow)
	peer := startNeuron(t, "gpu-evict4", modelCrashy)
	big := scaledModel(1, 3)
	big.VRAMMB = 81_000 // beside a model of 1,000 MB only after evicting it
	s, w := scaleStack(t, []*neuronProc{empty, lower, pinned, peer}, []catalogue.Model{
		big,
		{ID: modelFast, Engine: "sim-" + modelFast, VRAMMB: 1000, ResidencyPriority: 10},
		{ID: modelSlow, Engine: "sim-" + modelSlow, VRAMMB: 1000, ResidencyPriority: 10, PinnedOn: []string{pinned.name}},
		{ID: modelCrashy, Engine: "sim-" + modelCrashy, VRAMMB: 1000}, // the default priority, as big's
	}, route.WithTargetWork(1), route.WithScaleWindow(0),
		route.WithScaleCooldown(cooldown), route.WithScaleInIdle(time.Minute))
	waitReplicas(t, s, 1, 30*time.Second)
	if m := s.gw.Fleet().Neuron(empty.name).Model(scaleModel); m == nil || m.Status != neuron.StatusLoaded {
		t.Fatalf("the first replica is not on the empty neuron %s", empty.name)
	}

	stop := closedLoop(t, s, 4)
	waitReplicas(t, s, 2, 30*time.Second)
	// With the work per replica over the target, the Scaler would scale
	// out again at every step past the cool-down: wait for five such
	// steps.
	outAt := func() time.Time {
		var at time.Time
		for _, st := range w.seen() {
			if len(st.decisions) > 0 {
				at = st.at
			}
		}
		return at
	}()
	w.waitSteps(t, 5, "5 scale steps over the target, past the cool-down", func(st scaleStepSeen) bool {
		return st.replicas.Ready >= 2 && st.replicas.WorkPerReplica() >= 1 && st.at.Sub(outAt) >= cooldown
	})
	sent, failed := stop()
	noneFailed(t, sent, failed)

	var outs []route.ScaleDecision
	for _, st := range w.seen() {
		outs = append(outs, st.decisions...)
	}
	if len(outs) != 2 || outs[0].Neuron != empty.name || outs[1].Direction != route.ScaleOut || outs[1].Neuron != lower.name || !slices.Equal(outs[1].Evict, []string{modelFast}) {
		t.Fatalf("scale decisions %s; want min_replicas on %s, then one scale-out on %s evicting %s", decisions(outs), empty.name, lower.name, modelFast)
	}
	if got := lower.status(t, modelFast); got != "" {
		t.Errorf("%s on %s after the scale-out: %q, want evicted", modelFast, lower.name, got)
	}
	if got := pinned.status(t, modelSlow); got != neuron.StatusLoaded {
		t.Errorf("%s, pinned on %s: %q, want loaded", modelSlow, pinned.name, got)
	}
	if got := peer.status(t, modelCrashy); got != neuron.StatusLoaded {
		t.Errorf("%s, of the scaled model's priority, on %s: %q, want loaded", modelCrashy, peer.name, got)
	}
	var evicted []string
	for _, e := range s.gw.Events() {
		if e.Kind == cortex.EventEvict {
			evicted = append(evicted, e.Model+"@"+e.Neuron+" for "+e.For)
		}
	}
	if want := []string{modelFast + "@" + lower.name + " for " + scaleModel}; !slices.Equal(evicted, want) {
		t.Errorf("evictions %v, want %v", evicted, want)
	}
	if got := route.CountReplicas(s.gw.Fleet(), nil, scaleModel).Count(); got != 2 {
		t.Errorf("%d replicas after the load, want 2", got)
	}
	s.settled(time.Second)
}
