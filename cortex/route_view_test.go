package cortex_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// viewRouter records what the Router is shown of each request, and
// routes with the default Router.
type viewRouter struct {
	next route.Router

	mu    sync.Mutex
	views []routerView
}

// routerView is the part of a route.Request a test compares: a Router may
// not keep the Request itself.
type routerView struct {
	model, account, key, zone string
	prefix                    route.Prefix
	tried                     []route.Attempt
}

func (v *viewRouter) Route(f *route.Fleet, r *route.Request) (route.Decision, error) {
	v.mu.Lock()
	v.views = append(v.views, routerView{model: r.Model, account: r.Account, key: r.Key, zone: r.Header.Get("X-Zone"),
		prefix: r.Prefix, tried: slices.Clone(r.Tried)})
	v.mu.Unlock()
	return v.next.Route(f, r)
}

// The Router sees the request: the principal, the headers, the prompt's
// prefix fingerprint as route.PrefixOf computes it from the prompt's text,
// and on a retry the attempt that failed.
func TestRouterSeesTheRequest(t *testing.T) {
	t.Parallel()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-rich", AccountID: "rich", HardCap: ptr(int64(1_000_000))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	def, err := route.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	vr := &viewRouter{next: def}
	s := newStack(t, []cortextest.Spec{loadedA("n1"), loadedA("n2")}, testCatalogue(t),
		cortex.WithProvider(local), cortex.WithRouter(vr))
	// n1 sorts first and is as idle as n2: the first attempt goes there,
	// finds it down, and the retry goes to n2.
	s.fleet.Neuron("n1").Stop()

	system := strings.Repeat("You answer in one word. ", 30)
	user := strings.Repeat("Which colour is the sky? ", 12)
	body := `{"model":"chat-a","max_tokens":2,"messages":[{"role":"system","content":"` + system +
		`"},{"role":"user","content":[{"type":"text","text":"` + user + `"}]}]}`
	status, _, answer := s.post("/v1/chat/completions", body, "Authorization", "Bearer sk-rich", "X-Zone", "eu")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, answer)
	}

	vr.mu.Lock()
	defer vr.mu.Unlock()
	if len(vr.views) != 2 {
		t.Fatalf("%d routings, want 2 (the first attempt and its retry)", len(vr.views))
	}
	want := route.PrefixOf([]byte(system + user))
	for i, v := range vr.views {
		if v.model != "chat-a" || v.account != "rich" || v.key == "" || strings.Contains(v.key, "sk-rich") || v.zone != "eu" {
			t.Errorf("routing %d: model %q, account %q, key %q, X-Zone %q", i, v.model, v.account, v.key, v.zone)
		}
		if v.prefix.Len() != want.Len() || v.prefix != want {
			t.Errorf("routing %d: prefix of %d blocks, want the %d of the prompt's text", i, v.prefix.Len(), want.Len())
		}
	}
	if len(vr.views[0].tried) != 0 {
		t.Errorf("first routing saw attempts %v", vr.views[0].tried)
	}
	if got := vr.views[1].tried; len(got) != 1 || got[0].Neuron != "n1" || got[0].Failure != route.FailedUnreachable {
		t.Errorf("the retry saw attempts %v, want n1 unreachable", got)
	}
}

// With prefix affinity from cortex.toml's [routing], requests that share a
// long system prompt go to one replica, turn after turn, and other prompts
// spread over the rest.
func TestPrefixAffinityThroughTheGateway(t *testing.T) {
	t.Parallel()
	cfg, err := cortex.ParseConfig([]byte("[[neurons]]\nname = \"x\"\nendpoint = \"http://x:1\"\n[routing]\nprefix_affinity = true\naffinity_depth = 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, []cortextest.Spec{loadedA("n1"), loadedA("n2"), loadedA("n3"), loadedA("n4")}, testCatalogue(t), cfg.GatewayOptions()...)
	ask := func(system, user string) {
		t.Helper()
		body := `{"model":"chat-a","max_tokens":1,"messages":[{"role":"system","content":"` + system +
			`"},{"role":"user","content":"` + user + `"}]}`
		if status, _, answer := s.post("/v1/chat/completions", body); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, answer)
		}
	}
	served := func() map[string]int {
		m := map[string]int{}
		for _, n := range s.fleet.Neurons() {
			m[n.Name()] = n.Requests()
		}
		return m
	}
	// A system prompt whose replica is not n1, which the least busy
	// replica would be (ties go to the first name): the replica the
	// default Router with the same affinity picks over the same names.
	r, err := route.NewRouter(route.WithPrefixAffinity(route.PrefixAffinity{Depth: 4, Remember: -1}))
	if err != nil {
		t.Fatal(err)
	}
	var names []route.NeuronState
	for _, n := range s.fleet.Neurons() {
		names = append(names, route.NeuronState{Name: n.Name(), Healthy: true, Models: []route.ModelState{{ModelInfo: neuron.ModelInfo{ID: "chat-a", Status: neuron.StatusLoaded}}}})
	}
	f, err := route.NewFleet(nil, nil, time.Now(), names)
	if err != nil {
		t.Fatal(err)
	}
	var system, want string
	for v := 0; want == "" || want == "n1"; v++ {
		system = strings.Repeat(fmt.Sprintf("You are the support assistant of shop %d. ", v), 30)
		d, err := r.Route(f, &route.Request{Model: "chat-a", Prefix: route.PrefixOf([]byte(system))})
		if err != nil {
			t.Fatal(err)
		}
		want = d.Neuron
	}
	before := served()
	for i := range 12 {
		ask(system, fmt.Sprintf("Question %d?", i))
	}
	after := served()
	// Every turn went to the prefix's own replica: on an idle fleet even
	// the first, a prefix the gateway had not seen, is among the least
	// busy replicas.
	wantServed := map[string]int{want: 12}
	for _, n := range s.fleet.Neurons() {
		if got := after[n.Name()] - before[n.Name()]; got != wantServed[n.Name()] {
			t.Errorf("%s served %d of 12 turns behind one system prompt, want %d", n.Name(), got, wantServed[n.Name()])
		}
	}
	// 40 other prefixes, each asked twice: the second asks spread.
	for range 2 {
		for i := range 40 {
			ask(strings.Repeat(fmt.Sprintf("Tenant %d's own instructions. ", i), 40), "Hi")
		}
	}
	for n, c := range served() {
		if c == after[n] {
			t.Errorf("%s served none of 40 other prefixes", n)
		}
	}
}

// Ties spread: identical requests, one at a time, over identical idle
// replicas, through three gateways in front of the same fleet, leave the
// busiest replica within 1.2 times the mean. (Ties used to go to the first
// neuron name, on every gateway alike.) 1,200 requests make a spread past
// the bound a 4-sigma event.
func TestTiesSpreadOverReplicas(t *testing.T) {
	t.Parallel()
	// The gateways' own random seeds, not the stack's first-name ties.
	s := newStack(t, []cortextest.Spec{loadedA("n1"), loadedA("n2"), loadedA("n3"), loadedA("n4")}, testCatalogue(t),
		cortex.WithRouteSeeds(nil))
	urls := []string{s.srv.URL}
	for range 2 {
		gw, err := cortex.NewGateway(s.fleet.Configs(), testCatalogue(t))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(gw)
		t.Cleanup(func() {
			srv.Close()
			_ = gw.Shutdown(context.Background())
		})
		p := gw.Poller().(*route.FleetPoller)
		for _, n := range s.fleet.Neurons() {
			if _, err := p.Refresh(t.Context(), n.Name()); err != nil {
				t.Fatal(err)
			}
		}
		urls = append(urls, srv.URL)
	}
	before := map[string]int{}
	for _, n := range s.fleet.Neurons() {
		before[n.Name()] = n.Requests()
	}
	const requests = 1200
	for i := range requests {
		resp, err := http.Post(urls[i%len(urls)]+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("chat-a", `"max_tokens":1`)))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	mean := float64(requests) / 4
	for _, n := range s.fleet.Neurons() {
		if got := n.Requests() - before[n.Name()]; float64(got) > 1.2*mean {
			t.Errorf("%s served %d of %d, over 1.2 × the mean %.0f", n.Name(), got, requests, mean)
		}
	}
}
