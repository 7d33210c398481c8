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

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// gateEngine streams one chunk, then holds every stream open until
// release is closed, then ends it with usage.
type gateEngine struct {
	started chan struct{} // one value per stream that sent its first chunk
	release chan struct{}
}

func (e *gateEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first \"}}]}\n\n")
	_ = http.NewResponseController(w).Flush()
	e.started <- struct{}{}
	select {
	case <-e.release:
	case <-r.Context().Done():
		return
	}
	_, _ = io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"last\"},\"finish_reason\":\"stop\"}]}\n\n")
	_, _ = io.WriteString(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n")
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
}

func reloadKey(secret, account string) entitlements.Key {
	return entitlements.Key{Digest: entitlements.KeyDigest(secret), Principal: entitlements.Principal{AccountID: account}}
}

const adminKey = "sk-admin"

// reloadStack is a gateway over the first two neurons of a fleet of
// three, with keys, an admin key, and POST /admin/reload calling reload.
type reloadStack struct {
	*stack
	local *entitlements.Local
}

func newReloadStack(t *testing.T, eng http.Handler, reload cortex.ReloadFunc) *reloadStack {
	t.Helper()
	loaded := []neuron.LoadSpec{loadedSpec("chat-a", 4000)}
	fleet := cortextest.NewFleet(t, cortextest.Spec{Name: "n1", Engine: eng, Models: loaded},
		cortextest.Spec{Name: "n2", Engine: eng, Models: loaded}, cortextest.Spec{Name: "n3", Engine: eng, Models: loaded})
	local, err := entitlements.NewLocal(entitlements.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := local.SetKeys(t.Context(), []entitlements.Key{reloadKey("sk-keep", "keep"), reloadKey("sk-old", "old")}); err != nil {
		t.Fatal(err)
	}
	gw, err := cortex.NewGateway(fleet.Configs()[:2], testCatalogue(t),
		cortex.WithPollerOptions(route.WithFailureThreshold(1), route.WithCallTimeout(30*time.Second)),
		cortex.WithProvider(local), cortex.WithRequireAuth(true),
		cortex.WithAdminKeys(entitlements.KeyDigest(adminKey)), cortex.WithReloadFunc(reload))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	s := &reloadStack{stack: &stack{t: t, fleet: fleet, gw: gw, srv: srv}, local: local}
	for _, n := range fleet.Neurons()[:2] {
		if _, err := gw.Poller().(route.Refresher).Refresh(t.Context(), n.Name()); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }

// Streams in flight through the gateway while POST /admin/reload adds a
// key and removes one, changes the catalogue and replaces a neuron: none
// is dropped, each ends with its usage and [DONE], and the new
// configuration is in force after.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	eng := &gateEngine{started: make(chan struct{}, 64), release: make(chan struct{})}
	var s *reloadStack
	reload := func(ctx context.Context) ([]string, error) {
		if err := s.local.SetKeys(ctx, []entitlements.Key{reloadKey("sk-keep", "keep"), reloadKey("sk-new", "new")}); err != nil {
			return nil, err
		}
		cat := newCatalogue(t, []catalogue.Model{{ID: "chat-a", VRAMMB: 4000, Limit: catalogue.Limit{Context: 4096, Output: 64}}},
			map[string]string{"fresh": "chat-a"})
		return nil, s.gw.Reload(ctx, s.fleet.Configs()[1:], cat, cortex.WithRequireAuth(true), cortex.WithAdminKeys(entitlements.KeyDigest(adminKey)))
	}
	s = newReloadStack(t, eng, reload)

	const streams = 12
	type result struct {
		status int
		events []string
		err    error
	}
	results := make(chan result, streams)
	var wg sync.WaitGroup
	for i := range streams {
		key := []string{"sk-keep", "sk-old"}[i%2]
		resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("fast", `"stream":true`), bearer(key)...)
		<-eng.started
		wg.Go(func() {
			defer resp.Body.Close()
			events, err := newEventReader(resp.Body).all()
			results <- result{resp.StatusCode, events, err}
		})
	}
	status, _, body := s.post("/admin/reload", "", bearer(adminKey)...)
	if status != http.StatusOK {
		t.Fatalf("POST /admin/reload: %d %s", status, body)
	}
	close(eng.release)
	wg.Wait()
	close(results)
	for r := range results {
		if r.status != http.StatusOK || r.err != nil || len(r.events) == 0 || r.events[len(r.events)-1] != "[DONE]" {
			t.Errorf("a stream in flight during the reload: status %d, err %v, events %q", r.status, r.err, r.events)
		}
	}

	// The new configuration is in force.
	var names []string
	for _, n := range s.gw.Fleet().Neurons() {
		names = append(names, n.Name)
		if !n.Healthy {
			t.Errorf("neuron %s is not healthy after the reload", n.Name)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"n2", "n3"}) {
		t.Errorf("neurons after the reload: %v, want [n2 n3]", names)
	}
	for _, tc := range []struct {
		key, model string
		want       int
	}{
		{"sk-old", "fresh", http.StatusUnauthorized}, // removed key
		{"sk-new", "fast", http.StatusNotFound},      // removed alias
		{"sk-new", "fresh", http.StatusOK},           // added key, added alias
		{"sk-keep", "chat-a", http.StatusOK},
	} {
		if status, _, body := s.post("/v1/chat/completions", chatBody(tc.model, `"max_tokens":2`), bearer(tc.key)...); status != tc.want {
			t.Errorf("%s with %s after the reload: %d, want %d: %s", tc.model, tc.key, status, tc.want, body)
		}
	}
	// Spend stayed with the accounts: the streams of the removed key were
	// settled into its account.
	if snap := s.budgetOf(s.local, "old"); snap.Spent == 0 || snap.Reserved != 0 {
		t.Errorf("account of the removed key: spent %d, reserved %d; want its streams' spend, nothing reserved", snap.Spent, snap.Reserved)
	}
}

// An invalid configuration is refused with its error, and the one in force
// stays; only an admin key may reload.
func TestReloadRefused(t *testing.T) {
	t.Parallel()
	const bad = "[gateway]\nlisten = \"127.0.0.1:0\"\n[[neurons]]\nname = \"x\"\nendpoint = \"ftp://x\"\n"
	var s *reloadStack
	reload := func(ctx context.Context) ([]string, error) {
		cfg, err := cortex.ParseConfig([]byte(bad))
		if err != nil {
			return nil, err
		}
		return nil, s.gw.Reload(ctx, cfg.Neurons, nil, cfg.ReloadOptions()...)
	}
	s = newReloadStack(t, nil, reload)
	before := s.gw.Neurons()

	for _, key := range []string{"", "sk-keep"} {
		var hdr []string
		if key != "" {
			hdr = bearer(key)
		}
		if status, _, body := s.post("/admin/reload", "", hdr...); status != http.StatusUnauthorized {
			t.Errorf("POST /admin/reload with key %q: %d, want 401: %s", key, status, body)
		}
	}
	status, _, body := s.post("/admin/reload", "", bearer(adminKey)...)
	if status != http.StatusBadRequest {
		t.Fatalf("invalid configuration: %d, want 400: %s", status, body)
	}
	e := envelope(t, body)
	if e.Code != cortex.CodeInvalidConfig || !strings.Contains(e.Message, "cortex.toml:3: neurons[0] (x)") {
		t.Errorf("answer %+v: want code %s and the entry's line", e, cortex.CodeInvalidConfig)
	}
	if after := s.gw.Neurons(); len(after) != len(before) {
		t.Errorf("neurons after a refused reload: %v, want %v", after, before)
	}
	if status, _, body := s.post("/v1/chat/completions", chatBody("fast", `"max_tokens":2`), bearer("sk-keep")...); status != http.StatusOK {
		t.Errorf("after a refused reload: %d %s", status, body)
	}
}

// SetOptions changes the live settings: here the body limit.
func TestSetOptions(t *testing.T) {
	t.Parallel()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
	if err := s.gw.SetOptions(cortex.WithMaxBodyBytes(10)); err != nil {
		t.Fatal(err)
	}
	if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a")); status != http.StatusRequestEntityTooLarge {
		t.Errorf("over the new body limit: %d, want 413: %s", status, body)
	}
	if err := s.gw.SetOptions(cortex.WithMaxBodyBytes(-1)); err == nil {
		t.Error("SetOptions(WithMaxBodyBytes(-1)): nil error")
	}
	if err := s.gw.SetOptions(); err != nil {
		t.Fatal(err)
	}
	if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`)); status != http.StatusOK {
		t.Errorf("back to the default limit: %d: %s", status, body)
	}
}

// RestartNeeded names what a reload does not change.
func TestRestartNeeded(t *testing.T) {
	t.Parallel()
	base := "[[neurons]]\nname = \"a\"\nendpoint = \"http://a:1\"\n"
	a, err := cortex.ParseConfig([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	b, err := cortex.ParseConfig([]byte("[gateway]\nlisten = \"0.0.0.0:1\"\nmax_body_bytes = 10\n[metering]\nmax_accounts = 3\n" +
		"[scaling]\ntarget_work = 2\n" + base + "[[neurons]]\nname = \"b\"\nendpoint = \"http://b:1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(a.RestartNeeded(b))
	if want := "[gateway.listen metering.max_accounts]"; got != want {
		t.Errorf("RestartNeeded = %s, want %s", got, want)
	}
}
