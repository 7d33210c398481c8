package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// testFleet is a route.Fleet of the bench's model on the named neurons,
// loaded on those listed in loaded.
func testFleet(t *testing.T, names []string, loaded map[string]bool) *route.Fleet {
	t.Helper()
	cat, err := catalogue.Parse([]byte(catalogueTOML))
	if err != nil {
		t.Fatal(err)
	}
	var states []route.NeuronState
	for _, n := range names {
		st := route.NeuronState{Name: n, Endpoint: "http://" + n, Healthy: true,
			Discovery: &neuron.Discovery{Hostname: n, Devices: []neuron.Device{{Index: 0, TotalMB: deviceMB}}},
			Health:    &neuron.Health{Status: "ok"}}
		if loaded[n] {
			st.Models = []route.ModelState{{ModelInfo: neuron.ModelInfo{ID: modelID, Engine: "sim", Status: neuron.StatusLoaded, Devices: []int{0}, VRAMUsedMB: modelVRAMMB}}}
		}
		states = append(states, st)
	}
	f, err := route.NewFleet(cat, route.NewUsage(), time.Now(), states)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRoundRobinCyclesOverReadyReplicas(t *testing.T) {
	f := testFleet(t, []string{"a", "b", "c", "d"}, map[string]bool{"a": true, "c": true, "d": true})
	fb, err := route.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	r := &roundRobin{fallback: fb}
	var got []string
	for range 6 {
		d, err := r.Route(f, &route.Request{Model: modelID})
		if err != nil {
			t.Fatal(err)
		}
		if d.Action != route.ActionServe || d.Model.ID != modelID {
			t.Fatalf("decision %+v, want serve %s", d, modelID)
		}
		got = append(got, d.Neuron)
	}
	if s := strings.Join(got, ","); s != "a,c,d,a,c,d" {
		t.Errorf("neurons %s, want a,c,d,a,c,d", s)
	}
}

func TestRoundRobinSkipsTriedNeurons(t *testing.T) {
	f := testFleet(t, []string{"a", "b"}, map[string]bool{"a": true, "b": true})
	fb, err := route.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	r := &roundRobin{fallback: fb}
	req := &route.Request{Model: modelID, Tried: []route.Attempt{{Neuron: "a", Failure: route.FailedUnreachable}}}
	for range 3 {
		d, err := r.Route(f, req)
		if err != nil {
			t.Fatal(err)
		}
		if d.Neuron != "b" {
			t.Fatalf("routed to %s after a failed on a, want b", d.Neuron)
		}
	}
}

func TestRoundRobinFallsBackWithoutReadyReplica(t *testing.T) {
	f := testFleet(t, []string{"a"}, nil)
	fb, err := route.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	r := &roundRobin{fallback: fb}
	d, err := r.Route(f, &route.Request{Model: modelID})
	if err != nil {
		t.Fatal(err)
	}
	if d.Action != route.ActionLoad || d.Neuron != "a" {
		t.Errorf("decision %+v, want the fallback's load on a", d)
	}
}

func TestTextIsExactlyTheTokensAsked(t *testing.T) {
	src := newTenants(1, 3)
	for i, s := range src.systems {
		if len(s) != 4*systemTokens {
			t.Errorf("tenant %d: system prompt of %d bytes, want %d", i, len(s), 4*systemTokens)
		}
	}
	if src.systems[0][:2048] == src.systems[1][:2048] {
		t.Error("two tenants share their first 2 KiB: the affinity would not tell them apart")
	}
	for range 50 {
		msgs, release, err := src.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		release("", true)
		if len(msgs) != 2 || msgs[0].Role != "system" || msgs[1].Role != "user" {
			t.Fatalf("messages %v, want system and user", msgs)
		}
		if u := len(msgs[1].Content) / 4; u < userMinTokens || u > userMaxTokens {
			t.Errorf("user turn of %d tokens, want %d to %d", u, userMinTokens, userMaxTokens)
		}
	}
}

func TestUniquePromptsDifferFromTheirStart(t *testing.T) {
	u := workloads()[2].newSource(1)
	seen := map[string]bool{}
	for range 100 {
		msgs, _, err := u.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p := msgs[0].Content
		if len(p) != 4*uniqueTokens || len(p) <= route.PrefixBlockBytes*route.DefaultAffinityDepth {
			t.Fatalf("prompt of %d bytes, want %d, over the affinity's key", len(p), 4*uniqueTokens)
		}
		if seen[p[:64]] {
			t.Fatal("two prompts share their first block")
		}
		seen[p[:64]] = true
	}
}

func TestSessionsGrowTurnByTurn(t *testing.T) {
	s := newSessions(1, 2)
	ctx := context.Background()
	msgs, release, err := s.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || promptTokens(msgs) != openingTokens+messageOverhead {
		t.Fatalf("first turn: %d messages of %d tokens, want 1 of %d", len(msgs), promptTokens(msgs), openingTokens+messageOverhead)
	}
	opening := msgs[0].Content
	release("an answer", true)

	// The other session is idle first; then the first one comes back
	// after its think time, one answer and one user message longer.
	other, releaseOther, err := s.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if other[0].Content == opening {
		t.Fatal("two sessions share their opening")
	}
	releaseOther("", false) // a failed turn: back at once, unchanged
	again, releaseAgain, err := s.acquire(ctx)
	if err != nil || len(again) != 1 || again[0].Content != other[0].Content {
		t.Fatalf("after a failed turn: %d messages, %v; want the same session, unchanged", len(again), err)
	}
	defer releaseAgain("", false)       // held: the next acquire waits for the first session
	msgs, release, err = s.acquire(ctx) // blocks until its think time ends
	if err != nil {
		t.Fatal(err)
	}
	defer release("", false)
	if len(msgs) != 3 || msgs[0].Content != opening || msgs[1].Role != "assistant" || msgs[1].Content != "an answer" ||
		msgs[2].Role != "user" || len(msgs[2].Content) != 4*turnTokens {
		t.Fatalf("second turn %v, want the opening, the answer and a %d-token user message", msgs, turnTokens)
	}
}

func TestSessionsWaitForAnIdleOne(t *testing.T) {
	s := newSessions(1, 1)
	_, release, err := s.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release("", false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.acquire(ctx); err == nil {
		t.Fatal("acquire with every session busy and ctx done: no error")
	}
}

// res is a result of workload w at load under policy with the given
// figures.
func res(w *workload, load float64, policy string, tok float64, ttft ...time.Duration) *result {
	return &result{cell: cell{w: w, load: load, policy: policy, gateways: 1}, tokRate: tok, ttft: ttft}
}

func TestChecks(t *testing.T) {
	ws := workloads()
	ms := time.Millisecond
	rep := &report{workloads: []*workloadResults{
		{w: ws[0], results: []*result{
			res(ws[0], 0.5, policyLL, 100, 100*ms),
			res(ws[0], 0.5, policyPrefix, 100, 100*ms), // lower load: not checked
			res(ws[0], 2, policyLL, 100, 1000*ms),
			res(ws[0], 2, policyPrefix, 200, 200*ms), // 2x, 5x: pass
		}},
		{w: ws[1], results: []*result{
			res(ws[1], 2, policyLL, 100, 1000*ms),
			res(ws[1], 2, policyPrefix, 199, 201*ms), // just under both
		}},
		{w: ws[2], results: []*result{
			res(ws[2], 1, policyLL, 100, 100*ms),
			res(ws[2], 1, policyPrefix, 95, 105*ms), // at both limits: pass
			res(ws[2], 2, policyLL, 100, 100*ms),
			res(ws[2], 2, policyPrefix, 94, 106*ms),
		}},
	}}
	rep.hot = &result{loadRatio: 1.31}
	rep.one = &result{prompt: 100, cached: 90}
	rep.three = &result{prompt: 100, cached: 86}
	want := []bool{true, true, false, false, true, true, false, false, false, true}
	got := rep.checks()
	if len(got) != len(want) {
		t.Fatalf("%d checks, want %d: %+v", len(got), len(want), got)
	}
	for i, c := range got {
		if c.ok != want[i] {
			t.Errorf("check %q (%s): ok %v, want %v", c.target, c.got, c.ok, want[i])
		}
	}
	rep.three.cached = 84 // 6 points below
	rep.hot.loadRatio = 1.3
	got = rep.checks()
	if c := got[len(got)-1]; c.ok {
		t.Errorf("hit ratio 6 points below: %s passes", c.got)
	}
	if c := got[len(got)-2]; !c.ok {
		t.Errorf("hot prefix at 1.3x: %s fails", c.got)
	}
}

func TestCheckOnCutTTFTsMarksTheBound(t *testing.T) {
	ws := workloads()
	ll := res(ws[0], 2, policyLL, 10, time.Second, 2*time.Second)
	ll.cut = 1
	rep := &report{workloads: []*workloadResults{{w: ws[0], results: []*result{ll, res(ws[0], 2, policyPrefix, 100, 100*time.Millisecond)}}}}
	c := rep.checks()[1]
	if !c.ok || !strings.Contains(c.got, "≥ 1500 ms") {
		t.Errorf("mean TTFT check %q: ok %v, want a pass against the lower bound ≥ 1500 ms", c.got, c.ok)
	}
}

func TestCapacityEstimate(t *testing.T) {
	g := benchGPU()
	g.TimeScale = 1
	w := &workload{meanPrompt: 1000, maxTokens: 64}
	// 1000 × 125 µs + 64 × (10 ms + 64 × 150 µs) / 64 = 125 ms + 19.6 ms.
	want := 8 / 0.1446
	if got := capacity(w, g, 8); got < want*0.999 || got > want*1.001 {
		t.Errorf("capacity %v, want %v", got, want)
	}
}
