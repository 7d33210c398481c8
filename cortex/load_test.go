package cortex_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

func TestColdLoadIsSingleFlight(t *testing.T) {
	t.Parallel()
	const clients = 100
	s := newStack(t, cortextest.Named("n1"), testCatalogue(t))
	n := s.fleet.Neuron("n1")
	release := n.HoldLoads()
	defer release()

	type result struct {
		status int
		body   string
	}
	results := make(chan result, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			resp, err := s.srv.Client().Post(s.srv.URL+"/v1/chat/completions", "application/json",
				strings.NewReader(chatBody("fast", `"max_tokens":2`)))
			if err != nil {
				results <- result{body: err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			results <- result{resp.StatusCode, string(b)}
		})
	}
	// Every request is in the gateway, waiting for the one load.
	waitFor(t, "100 requests waiting for a load", func() bool { return s.gw.InFlight() == clients && n.Loads() >= 1 })
	release()
	wg.Wait()
	close(results)
	for r := range results {
		if r.status != http.StatusOK {
			t.Errorf("status %d: %s", r.status, r.body)
		}
	}
	if diff := cmp.Diff(n.LoadCalls(), []string{"chat-a"}); diff != "" {
		t.Errorf("load calls (-got +want):\n%s", diff)
	}
	if got := n.Requests(); got != clients {
		t.Errorf("the neuron served %d requests, want %d", got, clients)
	}
	// The load was refreshed into the snapshot: the next request is warm.
	if m := s.gw.Fleet().Neuron("n1").Model("chat-a"); m == nil || m.Status != neuron.StatusLoaded {
		t.Errorf("after the load, the snapshot has %+v", m)
	}
}

func TestEvictionLRUOrderAndProtection(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{
		{ID: "a", VRAMMB: 6000},
		{ID: "b", VRAMMB: 6000},
		{ID: "pinned", VRAMMB: 6000, PinnedOn: []string{"n1"}},
		{ID: "vip", VRAMMB: 6000, ResidencyPriority: 500},
		{ID: "new1", VRAMMB: 6000},
		{ID: "new2", VRAMMB: 6000},
		{ID: "new3", VRAMMB: 6000},
		{ID: "lowly", VRAMMB: 6000, ResidencyPriority: 50},
	}, nil)
	// One 24000 MiB GPU, full.
	spec := cortextest.Spec{Name: "n1", GPUs: []uint64{24000}, Models: []neuron.LoadSpec{
		loadedSpec("a", 6000), loadedSpec("b", 6000), loadedSpec("pinned", 6000), loadedSpec("vip", 6000),
	}}
	s := newStack(t, []cortextest.Spec{spec}, cat, cortex.WithRetryAfter(3*time.Second))
	n := s.fleet.Neuron("n1")
	ask := func(model string) (int, http.Header, string) {
		t.Helper()
		return s.post("/v1/completions", `{"model":"`+model+`","prompt":"hi","max_tokens":1}`)
	}
	mustServe := func(model string) {
		t.Helper()
		if status, _, body := ask(model); status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", model, status, body)
		}
	}
	// b is used before a: b is the least recently used.
	mustServe("b")
	mustServe("a")
	mustServe("new1") // evicts b (never pinned or vip)
	mustServe("new2") // evicts a: older than new1
	mustServe("new3") // evicts new1
	if diff := cmp.Diff(n.Unloads(), []string{"b", "a", "new1"}); diff != "" {
		t.Errorf("unloads (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(n.LoadCalls(), []string{"new1", "new2", "new3"}); diff != "" {
		t.Errorf("loads (-got +want):\n%s", diff)
	}

	// A model of lower priority than every resident cannot evict any: the
	// neuron refuses the load (not enough VRAM), which is retryable.
	status, hdr, body := ask("lowly")
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "3" {
		t.Fatalf("lowly: status %d, Retry-After %q: %s", status, hdr.Get("Retry-After"), body)
	}
	if e := envelope(t, body); e.Code != cortex.CodeServiceUnavailable || !strings.Contains(e.Message, neuron.CodeInsufficientVRAM) {
		t.Errorf("lowly: %+v", e)
	}
	if got := n.Unloads(); len(got) != 3 {
		t.Errorf("unloads after lowly: %q, want no more", got)
	}
	resident := map[string]bool{}
	for _, m := range s.gw.Fleet().Neuron("n1").Models {
		resident[m.ID] = true
	}
	if diff := cmp.Diff(resident, map[string]bool{"pinned": true, "vip": true, "new2": true, "new3": true}); diff != "" {
		t.Errorf("resident models (-got +want):\n%s", diff)
	}
}

func TestLoadFailure(t *testing.T) {
	t.Parallel()
	spec := cortextest.Spec{Name: "n1", SimModels: map[string]sim.Config{"chat-b": {FailLoad: true}}}
	s := newStack(t, []cortextest.Spec{spec}, testCatalogue(t))
	status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-b"))
	if status != http.StatusBadGateway || hdr.Get("Retry-After") != "" {
		t.Fatalf("status %d, Retry-After %q: %s", status, hdr.Get("Retry-After"), body)
	}
	if e := envelope(t, body); e.Code != cortex.CodeModelLoadFailed || !strings.Contains(e.Message, neuron.CodeLoadFailed) {
		t.Errorf("%+v", e)
	}
}

// A model the snapshot shows loading is joined: the gateway asks the
// neuron for that load (the neuron joins its own load in progress), once
// for all the requests.
func TestJoinALoadInProgress(t *testing.T) {
	t.Parallel()
	cat := testCatalogue(t)
	fleet := cortextest.NewFleet(t, cortextest.Named("n1")...)
	n := fleet.Neuron("n1")
	f := snapshot(route.NeuronState{
		Name: "n1", Endpoint: n.URL(), Healthy: true, Discovery: gpus(24576, 24576),
		Models: []route.ModelState{model("chat-b", neuron.StatusLoading, 4000)},
	})
	gw, err := cortex.NewGateway(fleet.Configs(), cat, cortex.WithPoller(staticPoller{f}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	release := n.HoldLoads()
	defer release()
	var wg sync.WaitGroup
	codes := make(chan int, 5)
	for range 5 {
		wg.Go(func() {
			w := httptest.NewRecorder()
			gw.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(chatBody("chat-b", `"max_tokens":1`))))
			codes <- w.Code
		})
	}
	waitFor(t, "5 requests waiting for a load", func() bool { return gw.InFlight() == 5 && n.Loads() >= 1 })
	release()
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("status %d", c)
		}
	}
	if diff := cmp.Diff(n.LoadCalls(), []string{"chat-b"}); diff != "" {
		t.Errorf("load calls (-got +want):\n%s", diff)
	}
}

// busyAdmin is a NeuronAdmin whose unloads are refused as busy.
type busyAdmin struct {
	cortex.NeuronAdmin
	mu      sync.Mutex
	unloads []string
}

func (b *busyAdmin) Unload(_ context.Context, id string, _ bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unloads = append(b.unloads, id)
	return &neuron.APIError{Status: http.StatusConflict, Code: neuron.CodeModelBusy, Message: id + " has requests in flight"}
}

// A victim that turns out busy aborts the load: 503 with Retry-After, and
// the model is not loaded.
func TestBusyVictimAbortsTheLoad(t *testing.T) {
	t.Parallel()
	fleet := cortextest.NewFleet(t, cortextest.Spec{Name: "n1", GPUs: []uint64{6000}, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}})
	n := fleet.Neuron("n1")
	admin := &busyAdmin{NeuronAdmin: n.Client()}
	gw, err := cortex.NewGateway(fleet.Configs(), testCatalogue(t), cortex.WithRetryAfter(4*time.Second),
		cortex.WithAdminFactory(func(cortex.NeuronConfig) (cortex.NeuronAdmin, error) { return admin, nil }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	if _, err := gw.Poller().(route.Refresher).Refresh(t.Context(), "n1"); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	gw.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(chatBody("chat-b"))))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "4" {
		t.Fatalf("status %d, Retry-After %q: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if e := envelope(t, w.Body.String()); !strings.Contains(e.Message, neuron.CodeModelBusy) {
		t.Errorf("%+v", e)
	}
	admin.mu.Lock()
	defer admin.mu.Unlock()
	if diff := cmp.Diff(admin.unloads, []string{"chat-a"}); diff != "" {
		t.Errorf("unloads (-got +want):\n%s", diff)
	}
	if n.Loads() != 0 {
		t.Errorf("%d loads after a refused eviction", n.Loads())
	}
}
