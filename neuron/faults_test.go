package neuron_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/helexa-ai/helexa-go/neuron"
)

// checkingHarness adds neuron.Checker to a fakeHarness.
type checkingHarness struct {
	*fakeHarness
	CheckFunc func(ctx context.Context, spec neuron.LoadSpec) error
}

func (c *checkingHarness) Check(ctx context.Context, spec neuron.LoadSpec) error {
	return c.CheckFunc(ctx, spec)
}

var _ neuron.Checker = (*checkingHarness)(nil)

// refuseMissing is a Check that refuses the engine "absent" and the source
// "/missing.gguf" as the process harness would.
func refuseMissing(ctx context.Context, spec neuron.LoadSpec) error {
	switch {
	case spec.Engine == "bogus":
		return fmt.Errorf("%w: %q", neuron.ErrUnknownEngine, spec.Engine)
	case spec.Engine == "absent":
		return fmt.Errorf("%w: engine absent: command %q does not exist", neuron.ErrCannotStart, "/opt/absent")
	case spec.Source == "/missing.gguf":
		return fmt.Errorf("%w: engine sim: model %q does not exist", neuron.ErrCannotStart, spec.Source)
	}
	return nil
}

func TestAgent_CheckAnswersWhatALoadWouldRefuse(t *testing.T) {
	t.Parallel()
	// m1 is loaded and holds 20000 of the 24000 MiB of device 0.
	table, fh := newModelTable(t, "")
	h := &checkingHarness{fakeHarness: fh, CheckFunc: refuseMissing}
	_, srv := startAgent(t, h, neuron.NewStaticDiscoverer(gpus(1, 24000)))
	if got := send(t, t.Context(), srv, "POST", "/models/load", `{"model_id":"m1","vram_mb":20000,"source":"/missing.gguf"}`); got.status != 422 {
		t.Fatalf("load of a missing file: %d %s, want 422", got.status, got.body)
	}
	h.CheckFunc = func(ctx context.Context, spec neuron.LoadSpec) error {
		if spec.ModelID == "m1" {
			return nil
		}
		return refuseMissing(ctx, spec)
	}
	if got := send(t, t.Context(), srv, "POST", "/models/load", `{"model_id":"m1","vram_mb":20000}`); got.status != 200 {
		t.Fatalf("load m1: %d %s", got.status, got.body)
	}
	h.CheckFunc = refuseMissing // m1's file is gone now: it still passes, being loaded
	c, err := neuron.NewClient(srv.URL, neuron.WithDoer(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		spec       neuron.LoadSpec
		wantStatus int
		wantCode   string
		wantErr    error
	}{
		{name: "startable", spec: neuron.LoadSpec{ModelID: "m2", VRAMMB: 8000}, wantStatus: 200},
		{name: "fits only after evictions", spec: neuron.LoadSpec{ModelID: "m2", VRAMMB: 24000}, wantStatus: 200},
		{name: "already loaded", spec: neuron.LoadSpec{ModelID: "m1", Source: "/missing.gguf"}, wantStatus: 200},
		{name: "missing model file", spec: neuron.LoadSpec{ModelID: "m2", Source: "/missing.gguf"},
			wantStatus: 422, wantCode: neuron.CodeCannotStart, wantErr: neuron.ErrCannotStart},
		{name: "missing command", spec: neuron.LoadSpec{ModelID: "m2", Engine: "absent"},
			wantStatus: 422, wantCode: neuron.CodeCannotStart, wantErr: neuron.ErrLoadFailed},
		{name: "unknown engine", spec: neuron.LoadSpec{ModelID: "m2", Engine: "bogus"},
			wantStatus: 400, wantCode: neuron.CodeUnknownEngine, wantErr: neuron.ErrUnknownEngine},
		{name: "larger than the host", spec: neuron.LoadSpec{ModelID: "m2", VRAMMB: 30000},
			wantStatus: 409, wantCode: neuron.CodeInsufficientVRAM, wantErr: neuron.ErrInsufficientVRAM},
		{name: "no such device", spec: neuron.LoadSpec{ModelID: "m2", Devices: []int{3}},
			wantStatus: 400, wantCode: neuron.CodeInvalidBody, wantErr: neuron.ErrInvalidRequest},
		{name: "no model id", spec: neuron.LoadSpec{},
			wantStatus: 400, wantCode: neuron.CodeInvalidBody, wantErr: neuron.ErrInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Check(t.Context(), tt.spec)
			var ae *neuron.APIError
			switch {
			case tt.wantStatus == 200 && err != nil:
				t.Fatalf("Check: %v", err)
			case tt.wantStatus == 200:
				return
			case !errors.As(err, &ae):
				t.Fatalf("Check: %v, want an *APIError", err)
			case ae.Status != tt.wantStatus || ae.Code != tt.wantCode:
				t.Errorf("Check: %d %s, want %d %s", ae.Status, ae.Code, tt.wantStatus, tt.wantCode)
			case !errors.Is(err, tt.wantErr):
				t.Errorf("Check: %v is not %v", err, tt.wantErr)
			}
			// A load is refused the same way, before the harness loads.
			before := len(table.recordedLoads())
			_, lerr := c.Load(t.Context(), tt.spec)
			var lae *neuron.APIError
			if !errors.As(lerr, &lae) || lae.Status != ae.Status || lae.Code != ae.Code {
				t.Errorf("Load: %v, want Check's %v", lerr, err)
			}
			if after := len(table.recordedLoads()); after != before {
				t.Errorf("the harness loaded a model that cannot start")
			}
		})
	}
	if n := len(table.recordedLoads()); n != 1 {
		t.Errorf("harness loads = %d, want 1 (m1)", n)
	}
}

func TestAgent_CheckWhileShuttingDownOrWithoutCUDA(t *testing.T) {
	t.Parallel()
	_, h := newModelTable(t, "")
	d := gpus(1, 24000)
	d.CUDAUnavailableReason = "driver too old"
	_, srv := startAgent(t, h, neuron.NewStaticDiscoverer(d))
	got := send(t, t.Context(), srv, "POST", "/models/check", `{"model_id":"m"}`)
	if got.status != 503 || got.code(t) != neuron.CodeCUDAUnavailable {
		t.Errorf("check without CUDA: %d %s", got.status, got.body)
	}

	a, srv2 := startAgent(t, h, nil)
	if err := a.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	got = send(t, t.Context(), srv2, "POST", "/models/check", `{"model_id":"m"}`)
	if got.status != 503 || got.code(t) != neuron.CodeShuttingDown {
		t.Errorf("check while shutting down: %d %s", got.status, got.body)
	}
}

// leaks matches what a client must never read in an error of the
// inference routes: an IP address, a host:port, a file path, a Go
// transport error.
var leaks = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+|:\d{2,5}\b|/[a-z]+/|\b(read|write|dial) tcp\b|connection reset|EOF`)

// A request whose engine dies before it answers is told so without the
// transport's detail: 503 model_not_ready when the harness has marked the
// engine failed, 404 model_not_found when the model was unloaded, 502
// upstream_connection_error otherwise.
func TestForward_EngineDeathDuringARequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		after      func(table *modelTable) // what the harness does when the engine dies
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{name: "engine marked failed", after: func(m *modelTable) { m.setStatus("m1", neuron.StatusFailed) },
			wantStatus: 503, wantCode: neuron.CodeModelNotReady},
		{name: "engine restarted elsewhere", after: func(m *modelTable) { m.setEngine("http://127.0.0.1:9") },
			wantStatus: 503, wantCode: neuron.CodeModelNotReady},
		{name: "model unloaded", after: func(m *modelTable) { m.remove("m1") },
			wantStatus: 404, wantCode: neuron.CodeModelNotFound},
		{name: "model unloading", after: func(m *modelTable) { m.setStatus("m1", neuron.StatusUnloading) },
			wantStatus: 503, wantCode: neuron.CodeModelNotReady, wantMsg: "m1 was unloaded during the request"},
		{name: "engine still taken for loaded", after: func(*modelTable) {},
			wantStatus: 502, wantCode: neuron.CodeUpstreamConnection},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var table *modelTable
			var hits atomic.Int32
			// The engine takes the request and dies: its connection is
			// closed without an answer, every time.
			engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) == 1 {
					tt.after(table)
				}
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
			}))
			t.Cleanup(engine.Close)
			var h *fakeHarness
			table, h = newModelTable(t, engine.URL, neuron.ModelInfo{ID: "m1", Engine: "sim", Status: neuron.StatusLoaded})
			_, srv := startAgent(t, h, nil)
			got := send(t, t.Context(), srv, "POST", "/v1/chat/completions", chatBody)
			if got.status != tt.wantStatus || got.code(t) != tt.wantCode {
				t.Fatalf("answer %d %s, want %d %s", got.status, got.body, tt.wantStatus, tt.wantCode)
			}
			var e envelope
			got.decode(t, &e)
			if leaks.MatchString(e.Error.Message) {
				t.Errorf("message %q tells the client about the inside", e.Error.Message)
			}
			if !strings.Contains(e.Error.Message, tt.wantMsg) {
				t.Errorf("message %q, want it to say %q", e.Error.Message, tt.wantMsg)
			}
		})
	}
}

func (m *modelTable) setStatus(id string, s neuron.ModelStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mi := m.models[id]
	mi.Status = s
	m.models[id] = mi
}

func (m *modelTable) setEngine(u string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.engine, _ = url.Parse(u)
}

func (m *modelTable) remove(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.models, id)
}

// The errors the inference routes answer name nothing of the host.
func TestForward_ErrorMessagesNameNothingInside(t *testing.T) {
	t.Parallel()
	_, h := newModelTable(t, "", // an engine nobody listens on
		neuron.ModelInfo{ID: "m1", Engine: "sim", Status: neuron.StatusLoaded},
		neuron.ModelInfo{ID: "m2", Engine: "sim", Status: neuron.StatusRecovering})
	h.EndpointFunc = func(next func(string) (*url.URL, error)) func(string) (*url.URL, error) {
		return func(id string) (*url.URL, error) {
			if id == "odd" {
				return nil, errors.New("stat /var/lib/models/odd: 10.1.2.3:8080 refused")
			}
			return next(id)
		}
	}(h.EndpointFunc)
	_, srv := startAgent(t, h, nil)
	for _, body := range []string{chatBody, `{"model":"m2"}`, `{"model":"nope"}`, `{"model":"odd"}`} {
		got := send(t, t.Context(), srv, "POST", "/v1/chat/completions", body)
		var e envelope
		got.decode(t, &e)
		if got.status < 400 || e.Error.Code == "" {
			t.Errorf("%s: %d %s, want an error", body, got.status, got.body)
		}
		if leaks.MatchString(e.Error.Message) {
			t.Errorf("%s: message %q tells the client about the inside", body, e.Error.Message)
		}
	}
}
