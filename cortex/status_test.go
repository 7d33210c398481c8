package cortex_test

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// getStatus fetches /status.json and decodes it, failing the test unless
// it answers 200.
func getStatus(t *testing.T, s *stack, header ...string) cortex.Status {
	t.Helper()
	resp := s.do(http.MethodGet, "/status.json", "", header...)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /status.json: %d: %s", resp.StatusCode, b)
	}
	var st cortex.Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("GET /status.json: %v: %s", err, b)
	}
	return st
}

// getPage fetches a path and returns its status, headers and body.
func getPage(t *testing.T, s *stack, path string, header ...string) (int, http.Header, string) {
	t.Helper()
	resp := s.do(http.MethodGet, path, "", header...)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestStatusShowsTheFleet(t *testing.T) {
	t.Parallel()
	// n1 has one 6000 MiB GPU, holding chat-b; n2 goes down. chat-a must
	// then evict chat-b on n1.
	specs := []cortextest.Spec{
		{Name: "n1", GPUs: []uint64{6000}, Models: []neuron.LoadSpec{loadedSpec("chat-b", 4000)}},
		{Name: "n2"},
	}
	s := newStack(t, specs, testCatalogue(t))
	s.fleet.Neuron("n2").Stop()
	s.refresh()
	if status, _, body := s.post("/v1/chat/completions", chatBody("fast", `"max_tokens":2`)); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}

	st := getStatus(t, s)
	if st.Admin || st.Health.Status != cortex.HealthDegraded {
		t.Errorf("admin %v, health %+v; want the fleet view of a degraded gateway", st.Admin, st.Health)
	}
	type neuronRow struct {
		Name, State string
		GPUs        int
		TotalMB     uint64
		Models      []string
		LastError   string
	}
	var neurons []neuronRow
	for _, n := range st.Neurons {
		row := neuronRow{Name: n.Name, State: n.State, GPUs: len(n.GPUs), TotalMB: n.TotalVRAMMB, LastError: n.LastError}
		for _, m := range n.Models {
			row.Models = append(row.Models, m.ID+":"+string(m.Status))
		}
		neurons = append(neurons, row)
	}
	wantNeurons := []neuronRow{
		{Name: "n1", State: cortex.NeuronOK, GPUs: 1, TotalMB: 6000, Models: []string{"chat-a:loaded"}},
		{Name: "n2", State: cortex.NeuronDown, GPUs: 2, TotalMB: 2 * cortextest.DefaultGPUMB},
	}
	if diff := cmp.Diff(neurons, wantNeurons); diff != "" {
		t.Errorf("neurons (-got +want):\n%s", diff)
	}
	if g := st.Neurons[0].GPUs[0]; !g.Sampled || g.TotalMB != 6000 {
		t.Errorf("n1's GPU %+v: want a live sample of 6000 MiB", g)
	}

	models := map[string]string{}
	for _, m := range st.Models {
		models[m.ID] = m.State
	}
	wantModels := map[string]string{
		"chat-a": cortex.ModelLoaded, "chat-b": cortex.ModelCold, "tiny-context": cortex.ModelCold,
		"giant": cortex.ModelNotDeployable,
	}
	if diff := cmp.Diff(models, wantModels); diff != "" {
		t.Errorf("model states (-got +want):\n%s", diff)
	}
	if got := st.Models[0]; got.ID != "chat-a" || !cmp.Equal(got.Aliases, []string{"fast"}) || got.VRAMMB != 4000 {
		t.Errorf("first model %+v: want chat-a with its alias and VRAM", got)
	}

	type eventRow struct {
		Kind               cortex.EventKind
		Model, Neuron, For string
		HasError, TookTime bool
	}
	var events []eventRow
	for _, e := range st.Events {
		events = append(events, eventRow{Kind: e.Kind, Model: e.Model, Neuron: e.Neuron, For: e.For, HasError: e.Error != "", TookTime: e.Took > 0})
	}
	wantEvents := []eventRow{
		{Kind: cortex.EventLoad, Model: "chat-a", Neuron: "n1", TookTime: true},
		{Kind: cortex.EventEvict, Model: "chat-b", Neuron: "n1", For: "chat-a"},
		{Kind: cortex.EventNeuronDown, Neuron: "n2", HasError: true},
	}
	if diff := cmp.Diff(events, wantEvents); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(s.gw.Events(), st.Events, cmp.Comparer(func(a, b cortex.Event) bool {
		return a.Kind == b.Kind && a.Model == b.Model && a.Time.Equal(b.Time)
	})); diff != "" {
		t.Errorf("Gateway.Events and status.json differ (-got +want):\n%s", diff)
	}
}

func TestStatusPageRendersAndEscapes(t *testing.T) {
	t.Parallel()
	// Neuron names and model ids are untrusted text.
	const evilNeuron, evilModel = `<b>n&1</b>`, `<script>alert(1)</script>`
	specs := []cortextest.Spec{{Name: evilNeuron, Models: []neuron.LoadSpec{loadedSpec(evilModel, 1000), loadedSpec("chat-a", 4000)}}}
	s := newStack(t, specs, testCatalogue(t))

	status, hdr, body := getPage(t, s, "/status")
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /status: %d %s: %s", status, hdr.Get("Content-Type"), body)
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		`data-neuron="&lt;b&gt;n&amp;1&lt;/b&gt;"`,
		`&lt;script&gt;alert(1)&lt;/script&gt;`,
		`class="bar vram"`,
		`data-model="chat-a"`,
		`fast`, // chat-a's alias
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, bad := range []string{evilNeuron, evilModel, "<script"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page contains %q unescaped", bad)
		}
	}
	for k, want := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := hdr.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q allows scripts", csp)
	}

	_, _, body = getPage(t, s, "/status?refresh=0")
	if strings.Contains(body, "http-equiv") {
		t.Error("?refresh=0 still reloads")
	}
	_, _, body = getPage(t, s, "/status?refresh=30")
	if !strings.Contains(body, `content="30"`) {
		t.Error("?refresh=30 is not used")
	}
}

func TestStatusAccess(t *testing.T) {
	t.Parallel()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-user", AccountID: "acme", HardCap: ptr(int64(1000))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	acme := entitlements.Principal{AccountID: "acme", KeyID: "acme"}
	admin := []cortex.GatewayOption{
		cortex.WithProvider(local), cortex.WithRequireAuth(true),
		cortex.WithAdminKeys(entitlements.KeyDigest("sk-admin")), cortex.WithStatusBudgets(acme),
	}
	private := newStack(t, cortextest.Named("n1"), testCatalogue(t), admin...)
	public := newStack(t, cortextest.Named("n1"), testCatalogue(t), append(admin, cortex.WithPublicStatus(true))...)
	open := newStack(t, cortextest.Named("n1"), testCatalogue(t))

	type want struct {
		status int
		admin  bool
		basic  bool // a Basic challenge, for the browser
	}
	tests := []struct {
		name   string
		s      *stack
		path   string
		header []string
		want   want
	}{
		{"no key", private, "/status.json", nil, want{status: 401}},
		{"no key, html", private, "/status", nil, want{status: 401, basic: true}},
		{"unknown key", private, "/status.json", []string{"Authorization", "Bearer sk-nope"}, want{status: 401}},
		{"user key", private, "/status.json", []string{"Authorization", "Bearer sk-user"}, want{status: 200}},
		{"user key as x-api-key", private, "/status.json", []string{"x-api-key", "sk-user"}, want{status: 200}},
		{"admin key", private, "/status.json", []string{"Authorization", "Bearer sk-admin"}, want{status: 200, admin: true}},
		{"admin key by basic auth", private, "/status", []string{"Authorization", basic("ops", "sk-admin")}, want{status: 200, admin: true}},
		{"user asks for the admin view", private, "/status?admin=1", []string{"Authorization", basic("ops", "sk-user")}, want{status: 401, basic: true}},
		{"public, no key", public, "/status.json", nil, want{status: 200}},
		{"public, admin view asked", public, "/status?admin=1", nil, want{status: 401, basic: true}},
		{"public, admin key", public, "/status.json", []string{"x-api-key", "sk-admin"}, want{status: 200, admin: true}},
		{"no auth required", open, "/status.json", nil, want{status: 200}},
		{"no auth required, admin view cannot be had", open, "/status.json?admin=1", []string{"Authorization", "Bearer sk-admin"}, want{status: 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := getPage(t, tt.s, tt.path, tt.header...)
			got := want{status: status, basic: strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ")}
			if status == http.StatusOK {
				if strings.HasPrefix(tt.path, "/status.json") {
					var st cortex.Status
					if err := json.Unmarshal([]byte(body), &st); err != nil {
						t.Fatal(err)
					}
					got.admin = st.Admin
					if st.Admin != (len(st.Budgets) == 1) {
						t.Errorf("admin %v with budgets %+v", st.Admin, st.Budgets)
					}
				} else {
					got.admin = strings.Contains(body, `id="budgets"`)
				}
			}
			if diff := cmp.Diff(got, tt.want, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("(-got +want):\n%s\n%s", diff, body)
			}
			if status == http.StatusUnauthorized && strings.HasPrefix(tt.path, "/status.json") {
				if e := envelope(t, body); e.Code != cortex.CodeInvalidAPIKey {
					t.Errorf("envelope %+v", e)
				}
			}
		})
	}
}

func basic(user, password string) string {
	r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	r.SetBasicAuth(user, password)
	return r.Header.Get("Authorization")
}

func TestStatusBudgetsForAdmin(t *testing.T) {
	t.Parallel()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-user", AccountID: "acme", KeyID: "ci", HardCap: ptr(int64(100_000))},
		{Key: "sk-free", AccountID: "free"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	acme := entitlements.Principal{AccountID: "acme", KeyID: "ci"}
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t),
		cortex.WithProvider(local), cortex.WithAdminKeys(entitlements.KeyDigest("sk-admin")),
		cortex.WithStatusBudgets(acme, entitlements.Principal{AccountID: "free"}, entitlements.Principal{AccountID: "gone", KeyID: "old"}))
	if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`), "Authorization", "Bearer sk-user"); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	snap, err := local.Snapshot(t.Context(), acme)
	if err != nil || snap.Spent == 0 {
		t.Fatalf("snapshot %+v, %v: want something spent", snap, err)
	}

	st := getStatus(t, s, "Authorization", "Bearer sk-admin")
	remaining := int64(100_000) - int64(snap.Spent)
	want := []cortex.StatusBudget{
		{AccountID: "acme", KeyID: "ci", Unit: "tokens", Window: "balance", HardCap: ptr(int64(100_000)), Spent: int64(snap.Spent), Remaining: &remaining},
		{AccountID: "free", KeyID: "free", Unit: "tokens", Window: "balance"},
		{AccountID: "gone", KeyID: "old", Unit: "tokens", Error: "invalid API key"},
	}
	if diff := cmp.Diff(st.Budgets, want); diff != "" {
		t.Errorf("budgets (-got +want):\n%s", diff)
	}
	if st := getStatus(t, s, "Authorization", "Bearer sk-user"); st.Budgets != nil || st.Admin {
		t.Errorf("a user key sees budgets: %+v", st.Budgets)
	}
}

func TestStatusOptionsAreChecked(t *testing.T) {
	t.Parallel()
	nc := []cortex.NeuronConfig{{Name: "n1", Endpoint: "http://127.0.0.1:1"}}
	tests := []struct {
		name    string
		opt     cortex.GatewayOption
		wantErr string
	}{
		{"zero cold start wait", cortex.WithColdStartWait(0), "cold start wait"},
		{"negative cold start wait", cortex.WithColdStartWait(-1), "cold start wait"},
		{"anonymous budget", cortex.WithStatusBudgets(entitlements.Anonymous()), "without an account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := cortex.NewGateway(nc, nil, tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewGateway: %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestStatusConfig(t *testing.T) {
	t.Parallel()
	digest := entitlements.KeyDigest("sk-admin")
	doc := `
[gateway]
cold_start_wait = "5s"
public_status = true
admin_keys_sha256 = ["` + hex.EncodeToString(digest[:]) + `"]

[[neurons]]
name = "n1"
endpoint = "http://127.0.0.1:1"

[entitlements]
require_auth = true
[[entitlements.keys]]
key = "sk-a"
account_id = "acme"
key_id = "ci"
hard_cap = 500
[[entitlements.keys]]
key = "sk-b"
account_id = "acme"
key_id = "ci"
hard_cap = 500
`
	cfg, err := cortex.ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.ColdStartWait.Std() != 5*time.Second || !cfg.Gateway.PublicStatus || len(cfg.Gateway.AdminKeysSHA256) != 1 {
		t.Errorf("gateway table: %+v", cfg.Gateway)
	}
	local, err := entitlements.NewLocal(cfg.Entitlements)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := cortex.NewGateway(cfg.Neurons, nil, append(cfg.GatewayOptions(), cortex.WithProvider(local))...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = gw.Shutdown(t.Context()) }()
	srv := httptest.NewServer(gw)
	defer srv.Close()
	get := func(key string) cortex.Status {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/status.json", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st cortex.Status
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		return st
	}
	if st := get(""); st.Admin {
		t.Error("public_status: the anonymous view is the admin view")
	}
	st := get("sk-admin")
	want := []cortex.StatusBudget{{AccountID: "acme", KeyID: "ci", Unit: "tokens", Window: "balance", HardCap: ptr(int64(500)), Remaining: ptr(int64(500))}}
	if diff := cmp.Diff(st.Budgets, want); !st.Admin || diff != "" {
		t.Errorf("admin %v, budgets (-got +want):\n%s", st.Admin, diff)
	}

	_, err = cortex.ParseConfig([]byte("[gateway]\nadmin_keys_sha256 = [\"abc\"]\n[[neurons]]\nname = \"n\"\nendpoint = \"http://n:1\"\n"))
	if err == nil || !strings.Contains(err.Error(), "admin_keys_sha256[0]") {
		t.Errorf("a bad digest: %v", err)
	}
}

// TestStatusShowsADownNeuronAsStale: a neuron that is down is shown down,
// with its last known models marked stale and nothing live (free VRAM,
// uptime, GPU samples); its going down is an event whose detail (the poll
// error, with the neuron's address) only the admin view has.
func TestStatusShowsADownNeuronAsStale(t *testing.T) {
	t.Parallel()
	specs := []cortextest.Spec{
		{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
		{Name: "n2", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
	}
	s := newStack(t, specs, testCatalogue(t), cortex.WithAdminKeys(entitlements.KeyDigest("sk-admin")))
	s.fleet.Neuron("n2").Stop()
	s.refresh()

	check := func(st cortex.Status) {
		t.Helper()
		n2 := st.Neurons[1]
		if n2.Name != "n2" || n2.State != cortex.NeuronDown || n2.Healthy || !n2.Stale {
			t.Fatalf("n2 %+v: want down and stale", n2)
		}
		if n2.FreeVRAMMB != 0 || n2.UptimeSeconds != 0 {
			t.Errorf("n2 reports free VRAM %d MiB and uptime %vs while down", n2.FreeVRAMMB, n2.UptimeSeconds)
		}
		for _, g := range n2.GPUs {
			if g.Sampled {
				t.Errorf("n2's GPU %d has a live sample while down", g.Index)
			}
		}
		if len(n2.Models) != 1 || !n2.Models[0].Stale || n2.Models[0].Status != neuron.StatusLoaded {
			t.Errorf("n2's models %+v: want its last known chat-a, stale", n2.Models)
		}
		if n1 := st.Neurons[0]; n1.Stale || n1.Models[0].Stale || n1.FreeVRAMMB == 0 {
			t.Errorf("n1 %+v: a healthy neuron is not stale", n1)
		}
		if len(st.Events) == 0 || st.Events[0].Kind != cortex.EventNeuronDown || st.Events[0].Neuron != "n2" {
			t.Errorf("events %+v: want n2 down last", st.Events)
		}
	}
	public := getStatus(t, s)
	check(public)
	admin := getStatus(t, s, "Authorization", "Bearer sk-admin")
	check(admin)
	if public.Events[0].Detail != "" || public.Neurons[1].LastError != "" {
		t.Errorf("the fleet view has the poll error: %q, %q", public.Events[0].Detail, public.Neurons[1].LastError)
	}
	if admin.Events[0].Detail == "" || admin.Neurons[1].LastError == "" {
		t.Error("the admin view lacks the poll error")
	}

	// Nothing in the fleet view names the neuron's address or port.
	u := s.fleet.Neuron("n2").URL()
	hostPort := strings.TrimPrefix(u, "http://")
	_, port, _ := strings.Cut(hostPort, ":")
	for _, path := range []string{"/status.json", "/status"} {
		_, _, body := getPage(t, s, path)
		if strings.Contains(body, hostPort) || strings.Contains(body, ":"+port) || strings.Contains(body, "127.0.0.1") {
			t.Errorf("GET %s (fleet view) names the neuron's address %s", path, hostPort)
		}
	}
	_, _, page := getPage(t, s, "/status")
	for _, want := range []string{`data-state="down"`, `loaded, stale`, `last seen`, `class="badge s-neuron_down"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}
