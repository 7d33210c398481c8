package cortex_test

import (
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
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

// fakeClock is a Clock whose ticks the test sends.
type fakeClock struct {
	ticks chan time.Time
	mu    sync.Mutex
	now   time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{ticks: make(chan time.Time), now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) NewTicker(time.Duration) (<-chan time.Time, func()) {
	return c.ticks, func() {}
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
