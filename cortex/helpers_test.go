package cortex_test

import (
	"context"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// The helpers of hand-built snapshots, fake clocks and waits that the
// gateway's tests share; the tests of the decision layer have their own in
// package route_test.

// t0 is the time of every hand-built snapshot.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// newCatalogue builds a catalogue or fails the test.
func newCatalogue(tb testing.TB, models []catalogue.Model, aliases map[string]string) *catalogue.Catalogue {
	tb.Helper()
	c, err := catalogue.New(models, aliases)
	if err != nil {
		tb.Fatalf("catalogue.New: %v", err)
	}
	return c
}

// gpus returns a discovery with one device per size (MiB).
func gpus(mb ...uint64) *neuron.Discovery {
	d := &neuron.Discovery{Hostname: "host"}
	for i, m := range mb {
		d.Devices = append(d.Devices, neuron.Device{Index: i, Name: "gpu", TotalMB: m})
	}
	return d
}

// host returns a healthy neuron with the given devices and models.
func host(name string, d *neuron.Discovery, models ...route.ModelState) route.NeuronState {
	return route.NeuronState{Name: name, Endpoint: "http://" + name + ":31400", Healthy: true, Discovery: d, Models: models}
}

// model returns a model state with the given status and VRAM use.
func model(id string, status neuron.ModelStatus, vramMB uint64) route.ModelState {
	return route.ModelState{ModelInfo: neuron.ModelInfo{ID: id, Status: status, VRAMUsedMB: vramMB}}
}

// newFakeClock returns a fake clock that reads t0.
func newFakeClock() *clocktest.Fake { return clocktest.New(t0) }

// waitArmed waits until clk has at least n timers and tickers armed, so
// that moving it fires the one the test means; it fails the test after
// 10 s.
func waitArmed(t *testing.T, clk *clocktest.Fake, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := clk.WaitArmed(ctx, n); err != nil {
		t.Fatalf("waiting for %d armed timers (%d are): %v", n, clk.Armed(), err)
	}
}

// loopArmed is what a gateway's Run on a fake clock keeps armed between
// two steps: the poller's ticker and the idle loop's timer.
const loopArmed = 2

// runOnClock runs s's gateway (Run) on clk until the end of the test, and
// waits until its loops sleep (loopArmed).
func runOnClock(t *testing.T, s *stack, clk *clocktest.Fake) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- s.gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitArmed(t, clk, loopArmed)
}

// advance moves clk by d and waits until the gateway's loops sleep again:
// the idle loop ran its step (sweep and scale) if one was due.
func advance(t *testing.T, clk *clocktest.Fake, d time.Duration) {
	t.Helper()
	clk.Advance(d)
	waitArmed(t, clk, loopArmed)
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
