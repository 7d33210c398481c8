package route_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// fakeNeuron is a NeuronAPI with func fields; a nil func answers a healthy
// neuron with one 24 GiB device and no models. It counts the calls.
type fakeNeuron struct {
	discovery func(context.Context) (neuron.Discovery, error)
	health    func(context.Context) (neuron.Health, error)
	models    func(context.Context) ([]neuron.ModelInfo, error)

	discoveryCalls, healthCalls, modelsCalls atomic.Int32
}

var _ route.NeuronAPI = (*fakeNeuron)(nil)

func (f *fakeNeuron) Discovery(ctx context.Context) (neuron.Discovery, error) {
	f.discoveryCalls.Add(1)
	if f.discovery != nil {
		return f.discovery(ctx)
	}
	return *gpus(24576), nil
}

func (f *fakeNeuron) Health(ctx context.Context) (neuron.Health, error) {
	f.healthCalls.Add(1)
	if f.health != nil {
		return f.health(ctx)
	}
	return neuron.Health{Status: "ok"}, nil
}

func (f *fakeNeuron) Models(ctx context.Context) ([]neuron.ModelInfo, error) {
	f.modelsCalls.Add(1)
	if f.models != nil {
		return f.models(ctx)
	}
	return nil, nil
}

// targetsOf returns targets named n0..n(k-1) polling the given fakes.
func targetsOf(fakes ...*fakeNeuron) []route.Target {
	targets := make([]route.Target, len(fakes))
	for i, f := range fakes {
		name := fmt.Sprintf("n%d", i)
		targets[i] = route.Target{Name: name, Endpoint: "http://" + name + ":31400", API: f}
	}
	return targets
}

// polled is a FleetPoller seen as the gateway sees it: each snapshot it
// publishes joined with a catalogue and a Usage into a Fleet, once per
// snapshot.
type polled struct {
	*route.FleetPoller
	t     *testing.T
	cat   *catalogue.Catalogue
	usage *route.Usage

	mu    sync.Mutex
	built map[*route.Snapshot]*route.Fleet
}

// fleetOf returns the Fleet of s.
func (p *polled) fleetOf(s *route.Snapshot) *route.Fleet {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.built[s]; f != nil {
		return f
	}
	f, err := route.FromSnapshot(p.cat, p.usage, s)
	if err != nil {
		p.t.Errorf("FromSnapshot: %v", err)
		return nil
	}
	p.built[s] = f
	return f
}

// Fleet returns the Fleet of the latest snapshot.
func (p *polled) Fleet() *route.Fleet { return p.fleetOf(p.Snapshot()) }

// Refresh refreshes the neuron and returns the Fleet of the snapshot the
// poller published.
func (p *polled) Refresh(ctx context.Context, name string) (*route.Fleet, error) {
	s, err := p.FleetPoller.Refresh(ctx, name)
	if s == nil {
		return nil, err
	}
	return p.fleetOf(s), err
}

// newPoller builds a poller over fakes with a fake clock.
func newPoller(t *testing.T, cat *catalogue.Catalogue, clock *clocktest.Fake, fakes []*fakeNeuron, opts ...route.PollerOption) *polled {
	t.Helper()
	p, err := route.NewPoller(targetsOf(fakes...), append([]route.PollerOption{route.WithClock(clock)}, opts...)...)
	if err != nil {
		t.Fatalf("NewPoller: %v", err)
	}
	return &polled{FleetPoller: p, t: t, cat: cat, built: make(map[*route.Snapshot]*route.Fleet)}
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

func TestPollerInitialFleet(t *testing.T) {
	t.Parallel()
	fakes := []*fakeNeuron{{}, {}, {}}
	p := newPoller(t, nil, clocktest.New(t0), fakes)
	f := p.Fleet()
	if f == nil {
		t.Fatal("Fleet() = nil before any poll")
	}
	var got []string
	for _, n := range f.Neurons() {
		got = append(got, n.Name)
		if n.Healthy || n.Available() || !n.LastPoll.IsZero() || n.Discovery != nil || n.Health != nil {
			t.Errorf("%s before any poll: %+v", n.Name, n)
		}
		if n.Endpoint != "http://"+n.Name+":31400" {
			t.Errorf("%s: Endpoint = %q", n.Name, n.Endpoint)
		}
	}
	if diff := cmp.Diff(got, []string{"n0", "n1", "n2"}); diff != "" {
		t.Errorf("neurons (-got +want):\n%s", diff)
	}
	for i, fk := range fakes {
		if n := fk.modelsCalls.Load() + fk.healthCalls.Load() + fk.discoveryCalls.Load(); n != 0 {
			t.Errorf("n%d called %d times before Run", i, n)
		}
	}
}

func TestPollerHealthTransitions(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	var version atomic.Int32
	fk := &fakeNeuron{
		models: func(context.Context) ([]neuron.ModelInfo, error) {
			if fail.Load() {
				return nil, errors.New("connection refused")
			}
			return []neuron.ModelInfo{{ID: fmt.Sprintf("m%d", version.Load()), Status: neuron.StatusLoaded}}, nil
		},
	}
	clock := clocktest.New(t0)
	p := newPoller(t, nil, clock, []*fakeNeuron{fk}, route.WithFailureThreshold(3))
	steps := []struct {
		name         string
		fail         bool
		wantHealthy  bool
		wantFailures int
		wantModel    string
	}{
		{name: "failing before the first success", fail: true, wantFailures: 1},
		{name: "first success", wantHealthy: true, wantModel: "m1"},
		{name: "failure 1 keeps healthy", fail: true, wantHealthy: true, wantFailures: 1, wantModel: "m1"},
		{name: "failure 2 keeps healthy", fail: true, wantHealthy: true, wantFailures: 2, wantModel: "m1"},
		{name: "failure 3 reaches the threshold", fail: true, wantFailures: 3, wantModel: "m1"},
		{name: "failure 4 stays unhealthy", fail: true, wantFailures: 4, wantModel: "m1"},
		{name: "one success recovers", wantHealthy: true, wantModel: "m6"},
		{name: "failure after recovery counts from zero", fail: true, wantHealthy: true, wantFailures: 1, wantModel: "m6"},
	}
	for i, st := range steps {
		fail.Store(st.fail)
		version.Store(int32(i))
		clock.Advance(time.Second)
		f, err := p.Refresh(t.Context(), "n0")
		if (err != nil) != st.fail {
			t.Fatalf("step %q: Refresh error %v, want failure %v", st.name, err, st.fail)
		}
		if f != p.Fleet() {
			t.Fatalf("step %q: Refresh did not publish its fleet", st.name)
		}
		n := f.Neuron("n0")
		if n.Healthy != st.wantHealthy || n.Failures != st.wantFailures {
			t.Errorf("step %q: Healthy, Failures = %v, %d; want %v, %d", st.name, n.Healthy, n.Failures, st.wantHealthy, st.wantFailures)
		}
		if (n.LastError != nil) != st.fail {
			t.Errorf("step %q: LastError = %v", st.name, n.LastError)
		}
		if !n.LastPoll.Equal(clock.Now()) {
			t.Errorf("step %q: LastPoll = %v, want %v", st.name, n.LastPoll, clock.Now())
		}
		var models []string
		for _, m := range n.Models {
			models = append(models, m.ID)
		}
		var want []string
		if st.wantModel != "" {
			want = []string{st.wantModel}
		}
		if diff := cmp.Diff(models, want); diff != "" {
			t.Errorf("step %q: models (-got +want):\n%s", st.name, diff)
		}
	}
}

func TestPollerDiscoveryFetchedUntilCached(t *testing.T) {
	t.Parallel()
	var discoveryFails atomic.Bool
	discoveryFails.Store(true)
	fk := &fakeNeuron{
		discovery: func(context.Context) (neuron.Discovery, error) {
			if discoveryFails.Load() {
				return neuron.Discovery{}, errors.New("boom")
			}
			return *gpus(24576, 24576), nil
		},
	}
	p := newPoller(t, nil, clocktest.New(t0), []*fakeNeuron{fk})
	f, err := p.Refresh(t.Context(), "n0")
	if err == nil || f.Neuron("n0").Healthy || f.Neuron("n0").Discovery != nil {
		t.Fatalf("failed discovery: err %v, neuron %+v", err, f.Neuron("n0"))
	}
	if got := fk.modelsCalls.Load(); got != 0 {
		t.Errorf("models called %d times after a failed discovery, want 0 (stop at the first failure)", got)
	}
	discoveryFails.Store(false)
	for range 3 {
		if f, err = p.Refresh(t.Context(), "n0"); err != nil {
			t.Fatal(err)
		}
	}
	if got := fk.discoveryCalls.Load(); got != 2 {
		t.Errorf("discovery called %d times, want 2 (until cached)", got)
	}
	if got := fk.modelsCalls.Load(); got != 3 {
		t.Errorf("models called %d times, want 3", got)
	}
	if diff := cmp.Diff(f.Neuron("n0").DeviceVRAMMB(), []uint64{24576, 24576}); diff != "" {
		t.Errorf("DeviceVRAMMB (-got +want):\n%s", diff)
	}
}

func TestPollerSnapshotContent(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{{ID: "llama", VRAMMB: 8000, ResidencyPriority: 300}}, nil)
	fk := &fakeNeuron{
		models: func(context.Context) ([]neuron.ModelInfo, error) {
			return []neuron.ModelInfo{
				{ID: "llama", Status: neuron.StatusLoaded, VRAMUsedMB: 8000},
				{ID: "custom", Status: neuron.StatusLoading, VRAMUsedMB: 2000},
				{ID: "llama", Status: neuron.StatusFailed}, // a repeated id is dropped
				{ID: ""}, // so is an empty one
			}, nil
		},
		health: func(context.Context) (neuron.Health, error) {
			return neuron.Health{
				Status:  "ok",
				Devices: []neuron.DeviceSample{{Index: 0, FreeMB: 9000}},
				Models: []neuron.ModelLoad{
					{ID: "llama", Status: neuron.StatusLoaded, InFlight: 2, QueueDepth: 3},
					{ID: "gone", InFlight: 7},
				},
			}, nil
		},
	}
	u := route.NewUsage()
	u.Touch("n0", "llama", t0)
	p := newPoller(t, cat, clocktest.New(t0), []*fakeNeuron{fk})
	p.usage = u // the gateway's: the poller never sees it
	f, err := p.Refresh(t.Context(), "n0")
	if err != nil {
		t.Fatal(err)
	}
	n := f.Neuron("n0")
	type modelView struct {
		ID                   string
		Status               neuron.ModelStatus
		InFlight, QueueDepth int
		Priority             int
		LastUsed             time.Time
	}
	var got []modelView
	for _, m := range n.Models {
		got = append(got, modelView{m.ID, m.Status, m.InFlight, m.QueueDepth, m.Profile.ResidencyPriority, m.LastUsed})
	}
	want := []modelView{
		{ID: "custom", Status: neuron.StatusLoading, Priority: 100},
		{ID: "llama", Status: neuron.StatusLoaded, InFlight: 2, QueueDepth: 3, Priority: 300, LastUsed: t0},
	}
	if diff := cmp.Diff(got, want, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("models (-got +want):\n%s", diff)
	}
	if n.Model("llama").Live != u.Counter("n0", "llama") {
		t.Error("Live is not the usage counter")
	}
	// 24576 total - 10000 used = 14576, capped by the 9000 sampled free.
	if got := n.FreeVRAMMB(); got != 9000 {
		t.Errorf("FreeVRAMMB = %d, want 9000", got)
	}
	if !n.Available() || f.Available() != 1 {
		t.Errorf("neuron not available: %+v", n)
	}
}

func TestPollerDrainingNeuronIsNotAvailable(t *testing.T) {
	t.Parallel()
	fk := &fakeNeuron{health: func(context.Context) (neuron.Health, error) {
		return neuron.Health{Status: "shutting_down"}, nil
	}}
	p := newPoller(t, nil, clocktest.New(t0), []*fakeNeuron{fk})
	f, err := p.Refresh(t.Context(), "n0")
	if err != nil {
		t.Fatal(err)
	}
	n := f.Neuron("n0")
	if !n.Healthy || !n.Draining() || n.Available() {
		t.Errorf("Healthy, Draining, Available = %v, %v, %v; want true, true, false", n.Healthy, n.Draining(), n.Available())
	}
}

func TestPollerPollsNeuronsConcurrently(t *testing.T) {
	t.Parallel()
	const k = 20
	// Every /models call waits until all k have started: a poller that
	// polls one neuron at a time never gets past the first.
	var entered atomic.Int32
	all := make(chan struct{})
	fakes := make([]*fakeNeuron, k)
	for i := range fakes {
		fakes[i] = &fakeNeuron{models: func(ctx context.Context) ([]neuron.ModelInfo, error) {
			if entered.Add(1) == k {
				close(all)
			}
			select {
			case <-all:
				return nil, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}}
	}
	p := newPoller(t, nil, clocktest.New(t0), fakes, route.WithCallTimeout(time.Minute))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "every neuron healthy", func() bool { return p.Fleet().Available() == k })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestPollerRunPollsAtOnceThenOnTicks(t *testing.T) {
	t.Parallel()
	fk := &fakeNeuron{}
	clock := clocktest.New(t0)
	p := newPoller(t, nil, clock, []*fakeNeuron{fk})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "the first round", func() bool { return p.Fleet().Available() == 1 })
	first := p.Fleet()
	if got := fk.modelsCalls.Load(); got != 1 {
		t.Errorf("models calls after the first round = %d, want 1", got)
	}
	clock.Advance(route.DefaultPollInterval) // Run's ticker was armed before the first round
	waitFor(t, "the second round", func() bool { return p.Fleet() != first })
	if got := fk.modelsCalls.Load(); got != 2 {
		t.Errorf("models calls after one tick = %d, want 2", got)
	}
	if got := p.Fleet().At(); !got.Equal(clock.Now()) {
		t.Errorf("Fleet().At() = %v, want %v", got, clock.Now())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestPollerRunDiscardsTheRoundCutByCancel(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	fk := &fakeNeuron{models: func(ctx context.Context) ([]neuron.ModelInfo, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	p := newPoller(t, nil, clocktest.New(t0), []*fakeNeuron{fk}, route.WithCallTimeout(time.Minute))
	before := p.Fleet()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-entered
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if p.Fleet() != before {
		n := p.Fleet().Neuron("n0")
		t.Errorf("a cancelled round changed the fleet: failures %d, err %v", n.Failures, n.LastError)
	}
}

func TestPollerRunOnCancelledContext(t *testing.T) {
	t.Parallel()
	fk := &fakeNeuron{}
	p := newPoller(t, nil, clocktest.New(t0), []*fakeNeuron{fk})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if got := fk.modelsCalls.Load(); got != 0 {
		t.Errorf("models called %d times, want 0", got)
	}
}

func TestPollerRefreshErrors(t *testing.T) {
	t.Parallel()
	fk := &fakeNeuron{}
	p := newPoller(t, nil, clocktest.New(t0), []*fakeNeuron{fk})
	if _, err := p.Refresh(t.Context(), "nope"); !errors.Is(err, route.ErrUnknownNeuron) {
		t.Errorf("Refresh(nope) = %v, want ErrUnknownNeuron", err)
	}
	before := p.Fleet()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Refresh(ctx, "n0"); !errors.Is(err, context.Canceled) {
		t.Errorf("Refresh(cancelled) = %v, want context.Canceled", err)
	}
	if p.Fleet() != before {
		t.Error("a cancelled Refresh changed the fleet")
	}
}

func TestPollerCallTimeout(t *testing.T) {
	t.Parallel()
	fk := &fakeNeuron{health: func(ctx context.Context) (neuron.Health, error) {
		<-ctx.Done() // a neuron that never answers
		return neuron.Health{}, ctx.Err()
	}}
	p := newPoller(t, nil, clocktest.New(t0), []*fakeNeuron{fk}, route.WithCallTimeout(time.Millisecond))
	f, err := p.Refresh(t.Context(), "n0")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Refresh = %v, want a deadline error", err)
	}
	if n := f.Neuron("n0"); n.Failures != 1 || !errors.Is(n.LastError, context.DeadlineExceeded) {
		t.Errorf("Failures, LastError = %d, %v", n.Failures, n.LastError)
	}
}

func TestPollerLaterPollWins(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	fk := &fakeNeuron{models: func(context.Context) ([]neuron.ModelInfo, error) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
			return []neuron.ModelInfo{{ID: "stale", Status: neuron.StatusLoaded}}, nil
		}
		return []neuron.ModelInfo{{ID: "fresh", Status: neuron.StatusLoaded}}, nil
	}}
	p := newPoller(t, nil, clocktest.New(t0), []*fakeNeuron{fk})
	done := make(chan error, 1)
	go func() {
		_, err := p.Refresh(t.Context(), "n0")
		done <- err
	}()
	<-entered
	if _, err := p.Refresh(t.Context(), "n0"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n := p.Fleet().Neuron("n0")
	if n.Model("fresh") == nil || n.Model("stale") != nil {
		t.Errorf("models = %+v, want the later poll's", n.Models)
	}
}

func TestPollerLogsTransitions(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	fk := &fakeNeuron{models: func(context.Context) ([]neuron.ModelInfo, error) {
		if fail.Load() {
			return nil, errors.New("refused")
		}
		return nil, nil
	}}
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	p := newPoller(t, nil, clocktest.New(t0), []*fakeNeuron{fk}, route.WithLogger(logger), route.WithFailureThreshold(1))
	if _, err := p.Refresh(t.Context(), "n0"); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if _, err := p.Refresh(t.Context(), "n0"); err == nil {
		t.Fatal("Refresh succeeded, want a failure")
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	for _, want := range []string{"neuron healthy", "neuron unhealthy", "neuron=n0", "refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNewPollerErrors(t *testing.T) {
	t.Parallel()
	ok := route.Target{Name: "n0", Endpoint: "http://n0:31400", API: &fakeNeuron{}}
	tests := []struct {
		name    string
		targets []route.Target
		opts    []route.PollerOption
	}{
		{name: "duplicate names", targets: []route.Target{ok, ok}},
		{name: "no name", targets: []route.Target{{Endpoint: "http://n0:31400", API: &fakeNeuron{}}}},
		{name: "no API", targets: []route.Target{{Name: "n0", Endpoint: "http://n0:31400"}}},
		{name: "zero interval", targets: []route.Target{ok}, opts: []route.PollerOption{route.WithInterval(0)}},
		{name: "zero call timeout", targets: []route.Target{ok}, opts: []route.PollerOption{route.WithCallTimeout(0)}},
		{name: "zero threshold", targets: []route.Target{ok}, opts: []route.PollerOption{route.WithFailureThreshold(0)}},
		{name: "nil clock", targets: []route.Target{ok}, opts: []route.PollerOption{route.WithClock(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if p, err := route.NewPoller(tt.targets, tt.opts...); err == nil {
				t.Errorf("NewPoller = %v, want an error", p)
			}
		})
	}
}

func TestPollerWithoutNeurons(t *testing.T) {
	t.Parallel()
	p, err := route.NewPoller(nil, route.WithClock(clocktest.New(t0)))
	if err != nil {
		t.Fatal(err)
	}
	s := p.Snapshot()
	if s == nil || len(s.Neurons) != 0 {
		t.Fatalf("Snapshot() = %+v", s)
	}
	if f, err := route.FromSnapshot(nil, nil, s); err != nil || len(f.Neurons()) != 0 || f.Available() != 0 {
		t.Errorf("FromSnapshot = %+v, %v", f, err)
	}
}

// TestPollerPublishes: every snapshot after the first reaches the
// WithPublished functions, and is the one Snapshot then returns.
func TestPollerPublishes(t *testing.T) {
	t.Parallel()
	var got []*route.Snapshot
	var mu sync.Mutex
	p, err := route.NewPoller(targetsOf(&fakeNeuron{}), route.WithClock(clocktest.New(t0)),
		route.WithPublished(func(s *route.Snapshot) { mu.Lock(); got = append(got, s); mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	first := p.Snapshot()
	s, err := p.Refresh(t.Context(), "n0")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != s || s != p.Snapshot() || s == first {
		t.Errorf("published %v; Refresh returned %p, Snapshot %p, first %p", got, s, p.Snapshot(), first)
	}
	if _, err := p.Refresh(t.Context(), "n9"); !errors.Is(err, route.ErrUnknownNeuron) {
		t.Errorf("Refresh of an unknown neuron: %v, want ErrUnknownNeuron", err)
	}
}

func TestPollerOverANeuronClient(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		http.Error(w, "down for maintenance", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	c, err := neuron.NewClient(srv.URL, neuron.WithToken("secret"))
	if err != nil {
		t.Fatal(err)
	}
	fp, err := route.NewPoller([]route.Target{{Name: "n0", Endpoint: srv.URL, API: c}})
	if err != nil {
		t.Fatal(err)
	}
	p := &polled{FleetPoller: fp, t: t, built: make(map[*route.Snapshot]*route.Fleet)}
	f, err := p.Refresh(t.Context(), "n0")
	if err == nil {
		t.Fatal("Refresh succeeded against a failing neuron")
	}
	if n := f.Neuron("n0"); n.Failures != 1 || n.LastError == nil {
		t.Errorf("Failures, LastError = %d, %v", n.Failures, n.LastError)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(seen, []string{"GET /discovery Bearer secret"}); diff != "" {
		t.Errorf("requests (-got +want):\n%s", diff)
	}
}
