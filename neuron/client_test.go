package neuron_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron"
)

func TestNewClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		opts    []neuron.ClientOption
		want    string
		wantErr bool
	}{
		{name: "plain", in: "http://10.0.0.5:31400", want: "http://10.0.0.5:31400"},
		{name: "trailing slash", in: "https://n1.example:31400/", want: "https://n1.example:31400"},
		{name: "path prefix", in: "http://gw/neurons/n1/", want: "http://gw/neurons/n1"},
		{name: "no scheme", in: "10.0.0.5:31400", wantErr: true},
		{name: "other scheme", in: "ftp://10.0.0.5", wantErr: true},
		{name: "no host", in: "http://", wantErr: true},
		{name: "query", in: "http://h/?a=b", wantErr: true},
		{name: "nil doer", in: "http://h", opts: []neuron.ClientOption{neuron.WithDoer(nil)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := neuron.NewClient(tt.in, tt.opts...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewClient(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := c.BaseURL().String(); got != tt.want {
				t.Errorf("BaseURL = %q, want %q", got, tt.want)
			}
			c.BaseURL().Path = "/mutated"
			if got := c.BaseURL().String(); got != tt.want {
				t.Errorf("BaseURL is not a copy: %q", got)
			}
		})
	}
}

func TestClient_AgainstAgent(t *testing.T) {
	t.Parallel()
	loadedAt := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	eng := newGateEngine(t)
	_, h := newModelTable(t, eng.srv.URL, neuron.ModelInfo{ID: "org/busy", Status: neuron.StatusLoaded, LoadedAt: loadedAt})
	d := gpus(2, 24000)
	a, srv := startAgent(t, h, neuron.NewStaticDiscoverer(d), neuron.WithToken("tok"), neuron.WithVersion("v9"))
	c, err := neuron.NewClient(srv.URL, neuron.WithToken("tok"), neuron.WithDoer(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	gotDisc, err := c.Discovery(ctx)
	if err != nil {
		t.Fatalf("Discovery: %v", err)
	}
	if diff := cmp.Diff(gotDisc, d); diff != "" {
		t.Errorf("Discovery (-got +want):\n%s", diff)
	}
	v, err := c.Version(ctx)
	if err != nil || v != (neuron.Version{Version: "v9", GoVersion: runtime.Version()}) {
		t.Errorf("Version = %+v, %v", v, err)
	}

	info, err := c.Load(ctx, neuron.LoadSpec{ModelID: "a", VRAMMB: 20000, Limit: neuron.Limit{Context: 4096}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	wantInfo := neuron.ModelInfo{ID: "a", Status: neuron.StatusLoaded, Devices: []int{0}, VRAMUsedMB: 20000,
		Limit: neuron.Limit{Context: 4096}, LoadedAt: loadedAt}
	if diff := cmp.Diff(info, wantInfo); diff != "" {
		t.Errorf("Load (-got +want):\n%s", diff)
	}
	models, err := c.Models(ctx)
	if err != nil {
		t.Fatalf("Models: %v", err)
	}
	if diff := cmp.Diff(models, []neuron.ModelInfo{wantInfo, {ID: "org/busy", Status: neuron.StatusLoaded, LoadedAt: loadedAt}}); diff != "" {
		t.Errorf("Models (-got +want):\n%s", diff)
	}
	ep, err := c.Endpoint(ctx, "org/busy")
	if err != nil || ep != srv.URL {
		t.Errorf("Endpoint = %q, %v; want %q", ep, err, srv.URL)
	}
	lines, err := c.Logs(ctx, "org/busy")
	if err != nil || !cmp.Equal(lines, []string{"starting org/busy", "ready"}) {
		t.Errorf("Logs = %q, %v", lines, err)
	}
	health, err := c.Health(ctx)
	if err != nil || health.Status != "ok" || len(health.Models) != 2 || len(health.Devices) != 2 {
		t.Errorf("Health = %+v, %v", health, err)
	}

	// A request in flight makes org/busy busy.
	inflight := goSend(context.Background(), srv, "POST", "/v1/chat/completions", `{"model":"org/busy"}`, "Authorization", "Bearer tok")
	eng.waitArrival(t)
	defer func() {
		eng.open()
		<-inflight
	}()

	var vramErr *neuron.VRAMError
	errTests := []struct {
		name  string
		call  func() error
		want  error
		check func(t *testing.T, err error)
	}{
		{name: "unload unknown", call: func() error { return c.Unload(ctx, "nope", false) }, want: neuron.ErrModelNotFound},
		{name: "unload busy", call: func() error { return c.Unload(ctx, "org/busy", false) }, want: neuron.ErrModelBusy},
		{name: "endpoint unknown", call: func() error { _, err := c.Endpoint(ctx, "nope"); return err }, want: neuron.ErrModelNotFound},
		{name: "logs unknown", call: func() error { _, err := c.Logs(ctx, "nope"); return err }, want: neuron.ErrModelNotFound},
		{name: "unknown engine", call: func() error { _, err := c.Load(ctx, neuron.LoadSpec{ModelID: "x", Engine: "bogus"}); return err }, want: neuron.ErrUnknownEngine},
		{name: "load failed", call: func() error { _, err := c.Load(ctx, neuron.LoadSpec{ModelID: "x", Engine: "broken"}); return err }, want: neuron.ErrLoadFailed},
		{name: "invalid load", call: func() error { _, err := c.Load(ctx, neuron.LoadSpec{}); return err }, want: neuron.ErrInvalidRequest},
		{name: "insufficient VRAM", call: func() error { _, err := c.Load(ctx, neuron.LoadSpec{ModelID: "x", VRAMMB: 50000}); return err },
			want: neuron.ErrInsufficientVRAM,
			check: func(t *testing.T, err error) {
				if !errors.As(err, &vramErr) || *vramErr != (neuron.VRAMError{FreeMB: 24000, RequiredMB: 50000}) {
					t.Errorf("errors.As VRAMError = %+v", vramErr)
				}
			}},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want errors.Is %v", err, tt.want)
			}
			var ae *neuron.APIError
			if !errors.As(err, &ae) || ae.Status < 400 {
				t.Errorf("error %v is not an *APIError", err)
			}
			if tt.check != nil {
				tt.check(t, err)
			}
		})
	}

	if err := c.Unload(ctx, "a", false); err != nil {
		t.Errorf("Unload: %v", err)
	}
	if err := c.Unload(ctx, "org/busy", true); err != nil {
		t.Errorf("forced Unload: %v", err)
	}
	if ml := modelLoad(t, a, "a"); ml.ID != "" {
		t.Errorf("a still listed: %+v", ml)
	}
}

func TestClient_ErrorMapping(t *testing.T) {
	t.Parallel()
	_, h := newModelTable(t, "")
	disc := gpus(1, 1000)
	disc.CUDAUnavailableReason = "driver mismatch"
	a, srv := startAgent(t, h, neuron.NewStaticDiscoverer(disc), neuron.WithToken("tok"))
	ctx := t.Context()

	bad, err := neuron.NewClient(srv.URL, neuron.WithToken("wrong"), neuron.WithDoer(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Models(ctx); !errors.Is(err, neuron.ErrUnauthorized) {
		t.Errorf("wrong token: %v, want ErrUnauthorized", err)
	}
	if _, err := bad.Health(ctx); err != nil {
		t.Errorf("health is open, got %v", err)
	}

	c, err := neuron.NewClient(srv.URL, neuron.WithToken("tok"), neuron.WithDoer(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(ctx, neuron.LoadSpec{ModelID: "x"}); !errors.Is(err, neuron.ErrCUDAUnavailable) {
		t.Errorf("load without CUDA: %v, want ErrCUDAUnavailable", err)
	}
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.Load(ctx, neuron.LoadSpec{ModelID: "x"})
	var ae *neuron.APIError
	if !errors.Is(err, neuron.ErrShuttingDown) || !errors.As(err, &ae) || ae.RetryAfter != 5*time.Second || ae.Status != 503 {
		t.Errorf("load while shut down: %#v, want ErrShuttingDown with Retry-After 5s", err)
	}
}

func TestClient_NonEnvelopeAnswers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			w.Header().Set("Retry-After", "7")
			http.Error(w, "upstream proxy down", http.StatusBadGateway)
		case "/version":
			_, _ = io.WriteString(w, "not json")
		case "/discovery":
			if r.Header.Get("Authorization") != "" {
				t.Errorf("client without token sent Authorization %q", r.Header.Get("Authorization"))
			}
			_, _ = io.WriteString(w, `{"hostname":"h"}`)
		}
	}))
	defer srv.Close()
	c, err := neuron.NewClient(srv.URL, neuron.WithDoer(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Health(t.Context())
	want := &neuron.APIError{Status: 502, Message: "upstream proxy down", RetryAfter: 7 * time.Second}
	var ae *neuron.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("Health error %v is not an *APIError", err)
	}
	if diff := cmp.Diff(ae, want); diff != "" {
		t.Errorf("APIError (-got +want):\n%s", diff)
	}
	if !strings.Contains(err.Error(), "502") {
		t.Errorf("Error() = %q", err)
	}
	if _, err := c.Version(t.Context()); err == nil {
		t.Error("Version decoded a non-JSON body")
	}
	if d, err := c.Discovery(t.Context()); err != nil || d.Hostname != "h" {
		t.Errorf("Discovery = %+v, %v", d, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Discovery(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call: %v, want context.Canceled", err)
	}
}

func TestAPIError_IsMapsEveryCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code string
		want error
	}{
		{neuron.CodeModelNotFound, neuron.ErrModelNotFound},
		{neuron.CodeModelNotReady, neuron.ErrNotReady},
		{neuron.CodeModelBusy, neuron.ErrModelBusy},
		{neuron.CodeInsufficientVRAM, neuron.ErrInsufficientVRAM},
		{neuron.CodeCUDAUnavailable, neuron.ErrCUDAUnavailable},
		{neuron.CodeUnknownEngine, neuron.ErrUnknownEngine},
		{neuron.CodeLoadFailed, neuron.ErrLoadFailed},
		{neuron.CodeShuttingDown, neuron.ErrShuttingDown},
		{neuron.CodeInvalidToken, neuron.ErrUnauthorized},
		{neuron.CodeQueueFull, neuron.ErrQueueFull},
		{neuron.CodeQueueTimeout, neuron.ErrQueueTimeout},
		{neuron.CodeRateLimitExceeded, neuron.ErrRateLimited},
		{neuron.CodeInvalidBody, neuron.ErrInvalidRequest},
		{neuron.CodeMissingModel, neuron.ErrInvalidRequest},
		{neuron.CodeUpstreamConnection, neuron.ErrUpstream},
		{neuron.CodeCannotStart, neuron.ErrCannotStart},
		{neuron.CodeCannotStart, neuron.ErrLoadFailed},
		{neuron.CodeClaimTableFull, neuron.ErrClaimTableFull},
	}
	for _, tt := range tests {
		t.Run(tt.code+"/"+tt.want.Error(), func(t *testing.T) {
			t.Parallel()
			err := error(&neuron.APIError{Status: 400, Code: tt.code})
			if !errors.Is(err, tt.want) {
				t.Errorf("errors.Is(%s, %v) = false", tt.code, tt.want)
			}
			if errors.Is(err, errors.New("other")) {
				t.Error("matches an unrelated error")
			}
		})
	}
	if errors.Is(&neuron.APIError{Status: 500}, neuron.ErrModelNotFound) {
		t.Error("an APIError without code matches a sentinel")
	}
}
