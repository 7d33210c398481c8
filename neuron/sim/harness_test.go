package sim_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// newHarness returns a harness closed at the end of the test, and an HTTP
// client for its server.
func newHarness(t *testing.T, cfg sim.Config, opts ...sim.HarnessOption) (*sim.Harness, *http.Client) {
	t.Helper()
	h, err := sim.NewHarness(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		client.CloseIdleConnections()
	})
	return h, client
}

// endpoint returns the base URL of a loaded model.
func endpoint(t *testing.T, h *sim.Harness, id string) string {
	t.Helper()
	u, err := h.Endpoint(id)
	if err != nil {
		t.Fatalf("Endpoint(%q): %v", id, err)
	}
	return u.String()
}

// countLines counts the log lines of id that contain s.
func countLines(t *testing.T, h *sim.Harness, id, s string) int {
	t.Helper()
	lines, err := h.Logs(id)
	if err != nil {
		t.Fatalf("Logs(%q): %v", id, err)
	}
	n := 0
	for _, l := range lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func TestHarnessLoadServeUnload(t *testing.T) {
	t.Parallel()
	h, client := newHarness(t, sim.Config{})
	spec := neuron.LoadSpec{
		ModelID: "m1", Devices: []int{0, 1}, VRAMMB: 20_000,
		Limit: neuron.Limit{Output: 512}, Capabilities: []string{"chat"},
	}
	got, err := h.Load(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if got.LoadedAt.IsZero() {
		t.Error("LoadedAt is zero")
	}
	want := neuron.ModelInfo{
		ID: "m1", Engine: "sim", Status: neuron.StatusLoaded, Devices: []int{0, 1}, VRAMUsedMB: 20_000,
		Limit: neuron.Limit{Context: sim.DefaultContextLength, Output: 512}, Capabilities: []string{"chat"},
	}
	if diff := cmp.Diff(got, want, cmpopts.IgnoreFields(neuron.ModelInfo{}, "LoadedAt")); diff != "" {
		t.Errorf("Load (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(h.Models(), []neuron.ModelInfo{got}); diff != "" {
		t.Errorf("Models (-got +want):\n%s", diff)
	}
	again, err := h.Load(t.Context(), spec)
	if err != nil || !again.LoadedAt.Equal(got.LoadedAt) {
		t.Errorf("second Load = %+v, %v; want the loaded model", again, err)
	}

	base := endpoint(t, h, "m1")
	answer := decodeOK[chatResponse](t, send(t.Context(), t, client, base+"/v1/chat/completions", chatBodyFor("m1", "hi", "")))
	if answer.Model != "m1" || answer.Usage.CompletionTokens != sim.DefaultMaxTokens {
		t.Errorf("answer %+v", answer)
	}
	notFound := send(t.Context(), t, client, base+"/v1/chat/completions", chatBodyFor("other", "hi", ""))
	if e := errorCode(t, notFound, http.StatusNotFound); e.Code != neuron.CodeModelNotFound {
		t.Errorf("unknown model: code %q", e.Code)
	}
	noModel := send(t.Context(), t, client, base+"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`)
	if e := errorCode(t, noModel, http.StatusBadRequest); e.Code != neuron.CodeMissingModel {
		t.Errorf("no model: code %q", e.Code)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/models", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	models := decodeOK[struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}](t, resp)
	if len(models.Data) != 1 || models.Data[0].ID != "m1" {
		t.Errorf("/v1/models %+v", models)
	}

	if err := h.Unload(t.Context(), "m1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Endpoint("m1"); !errors.Is(err, neuron.ErrModelNotFound) {
		t.Errorf("Endpoint after Unload: %v, want ErrModelNotFound", err)
	}
	if err := h.Unload(t.Context(), "m1"); !errors.Is(err, neuron.ErrModelNotFound) {
		t.Errorf("second Unload: %v, want ErrModelNotFound", err)
	}
	if len(h.Models()) != 0 {
		t.Errorf("Models after Unload: %+v", h.Models())
	}
	for _, event := range []string{"loading", "loaded", "unloaded"} {
		if countLines(t, h, "m1", event) == 0 {
			t.Errorf("no %q line in the logs", event)
		}
	}
	if _, err := h.Logs("never"); !errors.Is(err, neuron.ErrModelNotFound) {
		t.Errorf("Logs of an unknown id: %v", err)
	}
}

func TestHarnessConcurrentLoadsShareOneLoad(t *testing.T) {
	t.Parallel()
	h, _ := newHarness(t, sim.Config{LoadTime: 20 * time.Millisecond})
	const n = 8
	infos := make([]neuron.ModelInfo, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { infos[i], errs[i] = h.Load(t.Context(), neuron.LoadSpec{ModelID: "shared"}) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || infos[i].Status != neuron.StatusLoaded || !infos[i].LoadedAt.Equal(infos[0].LoadedAt) {
			t.Errorf("Load %d = %+v, %v", i, infos[i], errs[i])
		}
	}
	if got := countLines(t, h, "shared", "loading"); got != 1 {
		t.Errorf("%d loads started, want 1", got)
	}
}

func TestHarnessCancelledWait(t *testing.T) {
	t.Parallel()
	h, err := sim.NewHarness(sim.Config{LoadTime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := h.Load(ctx, neuron.LoadSpec{ModelID: "slow"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Load with a cancelled ctx: %v", err)
	}
	// The load goes on.
	models := h.Models()
	if len(models) != 1 || models[0].Status != neuron.StatusLoading || models[0].LoadingSince.IsZero() {
		t.Fatalf("Models = %+v, want slow loading", models)
	}
	if _, err := h.Endpoint("slow"); !errors.Is(err, neuron.ErrNotReady) {
		t.Errorf("Endpoint while loading: %v, want ErrNotReady", err)
	}
	if err := h.Crash("slow"); !errors.Is(err, neuron.ErrNotReady) {
		t.Errorf("Crash while loading: %v, want ErrNotReady", err)
	}
	// A waiter is released by Close.
	waited := make(chan error, 1)
	go func() {
		_, err := h.Load(context.Background(), neuron.LoadSpec{ModelID: "slow"})
		waited <- err
	}()
	if err := h.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; !errors.Is(err, neuron.ErrShuttingDown) {
		t.Errorf("waiting Load after Close: %v, want ErrShuttingDown", err)
	}
	if len(h.Models()) != 0 {
		t.Errorf("Models after Close: %+v", h.Models())
	}
	if err := h.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestHarnessUnloadWhileLoading(t *testing.T) {
	t.Parallel()
	h, _ := newHarness(t, sim.Config{LoadTime: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _ = h.Load(ctx, neuron.LoadSpec{ModelID: "slow"})
	if err := h.Unload(t.Context(), "slow"); err != nil {
		t.Fatal(err)
	}
	if countLines(t, h, "slow", "unloaded") != 1 {
		t.Error("no unloaded line")
	}
}

func TestHarnessFailLoad(t *testing.T) {
	t.Parallel()
	h, client := newHarness(t, sim.Config{}, sim.WithModelConfig("bad", sim.Config{FailLoad: true}))
	for range 2 { // a failed model loads again, and fails again
		_, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "bad"})
		if !errors.Is(err, neuron.ErrLoadFailed) {
			t.Fatalf("Load: %v, want ErrLoadFailed", err)
		}
	}
	models := h.Models()
	if len(models) != 1 || models[0].Status != neuron.StatusFailed || models[0].LastError == "" {
		t.Fatalf("Models = %+v, want bad failed", models)
	}
	if _, err := h.Endpoint("bad"); !errors.Is(err, neuron.ErrNotReady) {
		t.Errorf("Endpoint of a failed model: %v", err)
	}
	if got := countLines(t, h, "bad", "load failed"); got != 2 {
		t.Errorf("%d failure lines, want 2", got)
	}
	// Other models use the Harness's Config.
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "good"}); err != nil {
		t.Fatal(err)
	}
	resp := send(t.Context(), t, client, endpoint(t, h, "good")+"/v1/chat/completions", chatBodyFor("bad", "x", ""))
	if e := errorCode(t, resp, http.StatusServiceUnavailable); e.Code != neuron.CodeModelNotReady || resp.Header.Get("Retry-After") == "" {
		t.Errorf("request to a failed model: %+v", e)
	}
}

func TestHarnessContextFromSpec(t *testing.T) {
	t.Parallel()
	h, client := newHarness(t, sim.Config{})
	info, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "small", Context: 16})
	if err != nil {
		t.Fatal(err)
	}
	if info.Limit.Context != 16 {
		t.Errorf("Limit.Context %d, want 16", info.Limit.Context)
	}
	body := chatBodyFor("small", strings.Repeat("x", 100), "")
	resp := send(t.Context(), t, client, endpoint(t, h, "small")+"/v1/chat/completions", body)
	if e := errorCode(t, resp, http.StatusBadRequest); e.Code != "context_length_exceeded" {
		t.Errorf("code %q", e.Code)
	}
}

// streamFirstToken starts a stream for model id and reads up to its first
// token; the rest of the stream is returned as a reader.
func streamFirstToken(t *testing.T, client *http.Client, base, id string) *http.Response {
	t.Helper()
	body := chatBodyFor(id, "x", `"max_tokens":100,"stream":true`)
	resp := send(t.Context(), t, client, base+"/v1/chat/completions", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var buf []byte
	for strings.Count(string(buf), "data: ") < 2 {
		var b [512]byte
		n, err := resp.Body.Read(b[:])
		if err != nil {
			t.Fatalf("reading the first token: %v", err)
		}
		buf = append(buf, b[:n]...)
	}
	return resp
}

func TestHarnessCrash(t *testing.T) {
	t.Parallel()
	h, client := newHarness(t, sim.Config{}, sim.WithModelConfig("hang", sim.Config{Hang: true}))
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "hang"}); err != nil {
		t.Fatal(err)
	}
	resp := streamFirstToken(t, client, endpoint(t, h, "hang"), "hang")
	if err := h.Crash("hang"); err != nil {
		t.Fatal(err)
	}
	if _, done, err := readSSE(resp.Body); !isAbort(err) || done {
		t.Errorf("in-flight stream after Crash: err %v done %v, want aborted", err, done)
	}
	status := h.Models()[0].Status
	if !slices.Contains([]neuron.ModelStatus{neuron.StatusFailed, neuron.StatusRecovering, neuron.StatusLoaded}, status) {
		t.Errorf("status after Crash %q", status)
	}
	info, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "hang"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != neuron.StatusLoaded || info.Restarts != 1 || info.LastError == "" {
		t.Errorf("after recovery %+v", info)
	}
	for _, event := range []string{"crashed", "recovering"} {
		if countLines(t, h, "hang", event) != 1 {
			t.Errorf("want one %q line", event)
		}
	}
	if err := h.Crash("nope"); !errors.Is(err, neuron.ErrModelNotFound) {
		t.Errorf("Crash of an unknown id: %v", err)
	}
}

func TestHarnessCrashAfterTokens(t *testing.T) {
	t.Parallel()
	h, client := newHarness(t, sim.Config{CrashAfterTokens: 2})
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "c"}); err != nil {
		t.Fatal(err)
	}
	body := chatBodyFor("c", "x", `"max_tokens":10,"stream":true`)
	resp := send(t.Context(), t, client, endpoint(t, h, "c")+"/v1/chat/completions", body)
	events, done, err := readSSE(resp.Body)
	if !isAbort(err) || done || len(events) != 3 { // role chunk, 2 tokens
		t.Errorf("stream: %d events, err %v, done %v; want 3 events and an abort", len(events), err, done)
	}
	info, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "c"})
	if err != nil || info.Restarts != 1 {
		t.Errorf("after the crash: %+v, %v; want loaded with 1 restart", info, err)
	}
}

func TestHarnessUnloadAbortsRequests(t *testing.T) {
	t.Parallel()
	h, client := newHarness(t, sim.Config{Hang: true})
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "u"}); err != nil {
		t.Fatal(err)
	}
	resp := streamFirstToken(t, client, endpoint(t, h, "u"), "u")
	if err := h.Unload(t.Context(), "u"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readSSE(resp.Body); !isAbort(err) {
		t.Errorf("in-flight stream after Unload: %v, want aborted", err)
	}
}

func TestHarnessLoadAfterClose(t *testing.T) {
	t.Parallel()
	h, err := sim.NewHarness(sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Load(t.Context(), neuron.LoadSpec{ModelID: "a"}); !errors.Is(err, neuron.ErrShuttingDown) {
		t.Errorf("Load after Close: %v", err)
	}
	if _, err := h.Endpoint("a"); !errors.Is(err, neuron.ErrModelNotFound) {
		t.Errorf("Endpoint after Close: %v", err)
	}
}

func TestNewHarnessRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  sim.Config
		opts []sim.HarnessOption
	}{
		{name: "base", cfg: sim.Config{LoadTime: -time.Second}},
		{name: "per model", opts: []sim.HarnessOption{sim.WithModelConfig("x", sim.Config{TokensPerSecond: -1})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if h, err := sim.NewHarness(tt.cfg, tt.opts...); err == nil {
				_ = h.Close(t.Context())
				t.Error("NewHarness accepted an invalid Config")
			}
		})
	}
}

func TestHarnessEmptyID(t *testing.T) {
	t.Parallel()
	h, _ := newHarness(t, sim.Config{})
	if _, err := h.Load(t.Context(), neuron.LoadSpec{}); err == nil {
		t.Error("Load accepted an empty model id")
	}
}
