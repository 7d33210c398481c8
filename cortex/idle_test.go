package cortex_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/neuron"
)

// TestIdleUnload runs the gateway's Run on a fake clock over a neuron with
// four models loaded: one idle past its idle_unload, one used halfway
// through, one pinned on the neuron, one without idle_unload. Only the
// idle ones are unloaded, each when its own ten minutes have passed.
func TestIdleUnload(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Minute
	cat := newCatalogue(t, []catalogue.Model{
		{ID: "idle-m", VRAMMB: 1000, IdleUnload: ttl},
		{ID: "used-m", VRAMMB: 1000, IdleUnload: ttl},
		{ID: "pinned-m", VRAMMB: 1000, IdleUnload: ttl, PinnedOn: []string{"n1"}},
		{ID: "kept-m", VRAMMB: 1000},
	}, nil)
	var specs []neuron.LoadSpec
	for _, id := range []string{"idle-m", "used-m", "pinned-m", "kept-m"} {
		specs = append(specs, loadedSpec(id, 1000))
	}
	clk := newFakeClock()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: specs}}, cat, cortex.WithClock(clk))
	s.refresh()
	runOnClock(t, s, clk)
	n1 := s.fleet.Neuron("n1")
	// step moves the clock by d and waits for the idle loop to sleep
	// again: what it had to unload is unloaded by then.
	step := func(d time.Duration) {
		t.Helper()
		advance(t, clk, d)
	}

	step(time.Second) // the first sweep sees every model loaded: t0+1s
	start := clk.Now()
	for clk.Now().Sub(start) < 6*time.Minute {
		step(30 * time.Second)
	}
	if status, _, body := s.post("/v1/chat/completions", chatBody("used-m", `"max_tokens":2`)); status != http.StatusOK {
		t.Fatalf("chat with used-m: %d %s", status, body)
	}
	used := clk.Now()
	// A snapshot taken during the request shows it in flight, which
	// counts as a use too: take one without it.
	s.refresh()
	for clk.Now().Sub(start)+30*time.Second < ttl {
		step(30 * time.Second)
	}
	if u := n1.Unloads(); len(u) != 0 {
		t.Fatalf("unloaded %q before any model was idle for %v", u, ttl)
	}
	for clk.Now().Sub(start) < ttl {
		step(time.Second)
	}
	s.refresh()
	if u := n1.Unloads(); !slices.Equal(u, []string{"idle-m"}) {
		t.Fatalf("unloads at %v idle: %q, want idle-m alone", ttl, u)
	}
	for clk.Now().Sub(used) < ttl {
		step(30 * time.Second)
	}
	if u := n1.Unloads(); !slices.Equal(u, []string{"idle-m", "used-m"}) {
		t.Fatalf("unloads %v after used-m's last use: %q, want idle-m, used-m", ttl, u)
	}
	for range 40 {
		step(30 * time.Second)
	}
	if u := n1.Unloads(); len(u) != 2 {
		t.Errorf("unloads %q: the pinned model or the one without idle_unload was unloaded", u)
	}

	var kinds []string
	for _, e := range s.gw.Events() {
		if e.Kind == cortex.EventIdleUnload {
			kinds = append(kinds, e.Model+" "+e.Reason)
		}
	}
	want := []string{"used-m served nothing for 10m0s", "idle-m served nothing for 10m0s"} // newest first
	if !slices.Equal(kinds, want) {
		t.Errorf("idle unload events %q, want %q", kinds, want)
	}
	m := metricsText(s)
	for _, id := range []string{"idle-m", "used-m"} {
		if line := `helexa_idle_unloads_total{model="` + id + `",neuron="n1"} 1`; !strings.Contains(m, line) {
			t.Errorf("metrics lack %s", line)
		}
	}
}
