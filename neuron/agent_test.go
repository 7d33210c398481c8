package neuron_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/helexa-ai/helexa-go/neuron"
)

func TestNewAgent_Validation(t *testing.T) {
	t.Parallel()
	_, h := newModelTable(t, "")
	d := neuron.NewStaticDiscoverer(gpus(1, 1000))
	tests := []struct {
		name    string
		h       neuron.Harness
		d       neuron.Discoverer
		opts    []neuron.Option
		wantErr string
	}{
		{name: "ok", h: h, d: d},
		{name: "nil harness", d: d, wantErr: "nil Harness"},
		{name: "nil discoverer", h: h, wantErr: "nil Discoverer"},
		{name: "relative advertise URL", h: h, d: d, opts: []neuron.Option{neuron.WithAdvertiseURL("10.0.0.5:31400")}, wantErr: "advertise URL"},
		{name: "negative in flight", h: h, d: d, opts: []neuron.Option{neuron.WithAdmission(neuron.AdmissionConfig{MaxInFlight: -1})}, wantErr: "max_in_flight"},
		{name: "negative per principal", h: h, d: d, opts: []neuron.Option{neuron.WithAdmission(neuron.AdmissionConfig{PerPrincipal: -2})}, wantErr: "per_principal"},
		{name: "negative drain", h: h, d: d, opts: []neuron.Option{neuron.WithDrainTimeout(-time.Second)}, wantErr: "drain"},
		{name: "zero body limit", h: h, d: d, opts: []neuron.Option{neuron.WithMaxBodyBytes(0)}, wantErr: "body"},
		{name: "default model without id", h: h, d: d, opts: []neuron.Option{neuron.WithDefaultModels([]neuron.LoadSpec{{Engine: "x"}})}, wantErr: "model_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := neuron.NewAgent(tt.h, tt.d, tt.opts...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewAgent: %v", err)
				}
				if err := a.Shutdown(t.Context()); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewAgent error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestAgent_ManagementRoutes(t *testing.T) {
	t.Parallel()
	loadedAt := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	table, h := newModelTable(t, "",
		neuron.ModelInfo{ID: "m1", Engine: "sim", Status: neuron.StatusLoaded, LoadedAt: loadedAt},
		neuron.ModelInfo{ID: "org/m2", Engine: "sim", Status: neuron.StatusLoading},
	)
	_, srv := startAgent(t, h, nil, neuron.WithAdvertiseURL("http://10.0.0.5:31400/"), neuron.WithVersion("v1.2.3"))

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantCode   string // envelope code; "" for a 2xx
		wantBody   string // exact JSON, when set
		wantHeader map[string]string
	}{
		{name: "version", method: "GET", path: "/version", wantStatus: 200,
			wantBody: `{"version":"v1.2.3","go_version":"` + runtime.Version() + `"}`},
		{name: "endpoint", method: "GET", path: "/models/m1/endpoint", wantStatus: 200,
			wantBody: `{"url":"http://10.0.0.5:31400"}`},
		{name: "endpoint of an id with a slash", method: "GET", path: "/models/org%2Fm2/endpoint", wantStatus: 200,
			wantBody: `{"url":"http://10.0.0.5:31400"}`},
		{name: "endpoint unknown", method: "GET", path: "/models/nope/endpoint", wantStatus: 404, wantCode: neuron.CodeModelNotFound},
		{name: "logs", method: "GET", path: "/models/m1/logs", wantStatus: 200,
			wantBody: `{"model_id":"m1","lines":["starting m1","ready"]}`},
		{name: "logs unknown", method: "GET", path: "/models/nope/logs", wantStatus: 404, wantCode: neuron.CodeModelNotFound},
		{name: "openai models lists loaded ones", method: "GET", path: "/v1/models", wantStatus: 200,
			wantBody: `{"object":"list","data":[{"id":"m1","object":"model","created":` + "1741064767" + `,"owned_by":"helexa"}]}`},
		{name: "load without model_id", method: "POST", path: "/models/load", body: `{}`, wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "load bad JSON", method: "POST", path: "/models/load", body: `{"model_id":`, wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "load unknown engine", method: "POST", path: "/models/load", body: `{"model_id":"x","engine":"bogus"}`, wantStatus: 400, wantCode: neuron.CodeUnknownEngine},
		{name: "load failing", method: "POST", path: "/models/load", body: `{"model_id":"x","engine":"broken"}`, wantStatus: 502, wantCode: neuron.CodeLoadFailed},
		{name: "load unknown device", method: "POST", path: "/models/load", body: `{"model_id":"x","devices":[7]}`, wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "load with a NUL in engine args", method: "POST", path: "/models/load", body: `{"model_id":"x","engine_args":{"extra":["a\u0000b"]}}`, wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "load setting the port", method: "POST", path: "/models/load", body: `{"model_id":"m1","engine_args":{"set":{"--port":"1"}}}`, wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "check with a placeholder in engine args", method: "POST", path: "/models/check", body: `{"model_id":"x","engine_args":{"extra":["{model}"]}}`, wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "load already loaded", method: "POST", path: "/models/load", body: `{"model_id":"m1"}`, wantStatus: 200,
			wantBody: `{"id":"m1","engine":"sim","status":"loaded","vram_used_mb":0,"loaded_at":"2025-03-04T05:06:07Z"}`},
		{name: "unload without model_id", method: "POST", path: "/models/unload", body: `{}`, wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "unload unknown", method: "POST", path: "/models/unload", body: `{"model_id":"nope"}`, wantStatus: 404, wantCode: neuron.CodeModelNotFound},
		{name: "unknown route", method: "GET", path: "/nope", wantStatus: 404, wantCode: neuron.CodeNotFound},
		{name: "wrong method", method: "DELETE", path: "/models", wantStatus: 405, wantCode: neuron.CodeMethodNotAllowed,
			wantHeader: map[string]string{"Allow": "GET, HEAD"}},
		{name: "GET on an inference route", method: "GET", path: "/v1/chat/completions", wantStatus: 405, wantCode: neuron.CodeMethodNotAllowed},
		{name: "inference without model", method: "POST", path: "/v1/chat/completions", body: `{"messages":[]}`, wantStatus: 400, wantCode: neuron.CodeMissingModel},
		{name: "inference with a non-string model", method: "POST", path: "/v1/completions", body: `{"model":7}`, wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "inference with a non-JSON body", method: "POST", path: "/v1/embeddings", body: `model=m1`, wantStatus: 400, wantCode: neuron.CodeInvalidBody},
		{name: "inference for an unknown model", method: "POST", path: "/v1/responses", body: `{"model":"nope"}`, wantStatus: 404, wantCode: neuron.CodeModelNotFound},
		{name: "inference for a loading model", method: "POST", path: "/v1/chat/completions", body: `{"model":"org/m2"}`, wantStatus: 503, wantCode: neuron.CodeModelNotReady,
			wantHeader: map[string]string{"Retry-After": "5"}},
		{name: "inference with an unreachable engine", method: "POST", path: "/v1/chat/completions", body: chatBody, wantStatus: 502, wantCode: neuron.CodeUpstreamConnection},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := send(t, t.Context(), srv, tt.method, tt.path, tt.body)
			if got.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", got.status, tt.wantStatus, got.body)
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if tt.wantCode != "" {
				if code := got.code(t); code != tt.wantCode {
					t.Errorf("code = %q, want %q; body %s", code, tt.wantCode, got.body)
				}
			}
			if tt.wantBody != "" {
				if diff := cmp.Diff(string(got.body), tt.wantBody); diff != "" {
					t.Errorf("body (-got +want):\n%s", diff)
				}
			}
			for k, v := range tt.wantHeader {
				if g := got.header.Get(k); g != v {
					t.Errorf("header %s = %q, want %q", k, g, v)
				}
			}
		})
	}

	t.Run("models", func(t *testing.T) {
		t.Parallel()
		got := send(t, t.Context(), srv, "GET", "/models", "")
		var l struct{ Models []neuron.ModelInfo }
		got.decode(t, &l)
		if got.status != 200 {
			t.Fatalf("status %d", got.status)
		}
		// Loads in the table above may add models: compare the first two.
		want := table.snapshot()
		if diff := cmp.Diff(l.Models[:2], want[:2]); diff != "" {
			t.Errorf("models (-got +want):\n%s", diff)
		}
	})
	t.Run("discovery", func(t *testing.T) {
		t.Parallel()
		got := send(t, t.Context(), srv, "GET", "/discovery", "")
		var d neuron.Discovery
		got.decode(t, &d)
		if diff := cmp.Diff(d, gpus(2, 24000)); diff != "" {
			t.Errorf("discovery (-got +want):\n%s", diff)
		}
	})
	t.Run("health", func(t *testing.T) {
		t.Parallel()
		got := send(t, t.Context(), srv, "GET", "/health", "")
		var hl neuron.Health
		got.decode(t, &hl)
		if hl.Status != "ok" || len(hl.Devices) != 2 || hl.Devices[0].FreeMB != 24000 {
			t.Errorf("health = %+v", hl)
		}
		if len(hl.Models) < 2 {
			t.Fatalf("health models = %+v", hl.Models)
		}
		m := hl.Models[0]
		if m.ID != "m1" || m.Status != neuron.StatusLoaded || m.MaxInFlight != 4 || m.MaxQueue != 64 {
			t.Errorf("health models[0] = %+v", m)
		}
	})
}

func TestAgent_TokenAuth(t *testing.T) {
	t.Parallel()
	_, h := newModelTable(t, "", neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	_, srv := startAgent(t, h, nil, neuron.WithToken("s3cret"))
	tests := []struct {
		name   string
		method string
		path   string
		auth   string
		want   int
	}{
		{name: "health answers the status alone", method: "GET", path: "/health", want: 200},
		{name: "version needs the token", method: "GET", path: "/version", want: 401},
		{name: "models needs the token", method: "GET", path: "/models", want: 401},
		{name: "discovery needs the token", method: "GET", path: "/discovery", want: 401},
		{name: "wrong token", method: "GET", path: "/models", auth: "Bearer nope", want: 401},
		{name: "token without scheme", method: "GET", path: "/models", auth: "s3cret", want: 401},
		{name: "right token", method: "GET", path: "/models", auth: "Bearer s3cret", want: 200},
		{name: "scheme is case-insensitive", method: "GET", path: "/models", auth: "bearer s3cret", want: 200},
		{name: "inference needs the token", method: "POST", path: "/v1/chat/completions", want: 401},
		{name: "load needs the token", method: "POST", path: "/models/load", want: 401},
		{name: "unknown routes need the token", method: "GET", path: "/nope", want: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var hdr []string
			if tt.auth != "" {
				hdr = []string{"Authorization", tt.auth}
			}
			got := send(t, t.Context(), srv, tt.method, tt.path, `{}`, hdr...)
			if got.status != tt.want {
				t.Fatalf("status = %d, want %d; body %s", got.status, tt.want, got.body)
			}
			if tt.want == 401 {
				if code := got.code(t); code != neuron.CodeInvalidToken {
					t.Errorf("code = %q, want %q", code, neuron.CodeInvalidToken)
				}
				if got.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			}
		})
	}
}

func TestAgent_StartRecordsDiscoveryErrorsAndActivates(t *testing.T) {
	t.Parallel()
	table, h := newModelTable(t, "")
	d := &fakeDiscoverer{
		DiscoverFunc: func(context.Context) (neuron.Discovery, error) {
			return neuron.Discovery{}, errors.New("libnvidia-ml.so.1: cannot open shared object file")
		},
		SampleFunc: func(context.Context) ([]neuron.DeviceSample, error) { return nil, errors.New("no NVML") },
	}
	specs := []neuron.LoadSpec{{ModelID: "a"}, {ModelID: "b", Engine: "broken"}, {ModelID: "c"}}
	a, srv := startAgent(t, h, d, neuron.WithDefaultModels(specs), neuron.WithHostname("node-9"))
	if err := a.Start(t.Context()); err == nil {
		t.Error("second Start succeeded")
	}
	eventually(t, "activation", func() bool { return len(a.Health(t.Context()).Activation.Pending) == 0 })

	if diff := cmp.Diff(a.Health(t.Context()).Activation, neuron.Activation{Total: 3, Loaded: 2, Failed: 1}); diff != "" {
		t.Errorf("activation (-got +want):\n%s", diff)
	}
	got := a.Discovery()
	want := neuron.Discovery{Hostname: "node-9", OS: runtime.GOOS, Arch: runtime.GOARCH, Devices: []neuron.Device{},
		GPUUnavailableReason: "libnvidia-ml.so.1: cannot open shared object file"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("discovery (-got +want):\n%s", diff)
	}
	// No GPU: loads carry no devices and no VRAM check.
	wantLoads := []neuron.LoadSpec{{ModelID: "a"}, {ModelID: "b", Engine: "broken"}, {ModelID: "c"}}
	if diff := cmp.Diff(table.recordedLoads(), wantLoads); diff != "" {
		t.Errorf("loads (-got +want):\n%s", diff)
	}
	var hl neuron.Health
	send(t, t.Context(), srv, "GET", "/health", "").decode(t, &hl)
	if hl.Devices == nil || len(hl.Devices) != 0 {
		t.Errorf("health devices = %#v, want empty", hl.Devices)
	}
}

func TestAgent_LoadChoosesDevicesAndRefusesWhatDoesNotFit(t *testing.T) {
	t.Parallel()
	table, h := newModelTable(t, "")
	d := neuron.NewStaticDiscoverer(gpus(2, 24000))
	_, srv := startAgent(t, h, d)

	steps := []struct {
		name        string
		body        string
		wantStatus  int
		wantDevices []int
		wantFree    uint64
		wantReq     uint64
	}{
		{name: "fits one device", body: `{"model_id":"a","vram_mb":20000}`, wantStatus: 200, wantDevices: []int{0}},
		{name: "goes to the freest device", body: `{"model_id":"b","vram_mb":10000}`, wantStatus: 200, wantDevices: []int{1}},
		{name: "too big for what is left", body: `{"model_id":"c","vram_mb":20000}`, wantStatus: 409, wantFree: 14000, wantReq: 20000},
		{name: "split over two devices does not fit", body: `{"model_id":"c","vram_mb":9000,"devices":[0,1]}`, wantStatus: 409, wantFree: 8000, wantReq: 9000},
		{name: "named device that fits", body: `{"model_id":"c","vram_mb":4000,"devices":[0]}`, wantStatus: 200, wantDevices: []int{0}},
		{name: "sampled usage lowers the free VRAM", body: `{"model_id":"d","vram_mb":12000}`, wantStatus: 409, wantFree: 11000, wantReq: 12000},
	}
	for i, st := range steps {
		if i == len(steps)-1 {
			if err := d.SetUsed(1, 13000); err != nil { // something outside the neuron uses device 1
				t.Fatal(err)
			}
		}
		got := send(t, t.Context(), srv, "POST", "/models/load", st.body)
		if got.status != st.wantStatus {
			t.Fatalf("%s: status %d, want %d: %s", st.name, got.status, st.wantStatus, got.body)
		}
		if st.wantStatus == 200 {
			var mi neuron.ModelInfo
			got.decode(t, &mi)
			if diff := cmp.Diff(mi.Devices, st.wantDevices); diff != "" {
				t.Errorf("%s: devices (-got +want):\n%s", st.name, diff)
			}
			continue
		}
		var e envelope
		got.decode(t, &e)
		if e.Error.Code != neuron.CodeInsufficientVRAM || e.FreeMB != st.wantFree || e.RequiredMB != st.wantReq {
			t.Errorf("%s: got %s, want insufficient_vram free %d required %d", st.name, got.body, st.wantFree, st.wantReq)
		}
	}

	// Unloading gives the VRAM back.
	if got := send(t, t.Context(), srv, "POST", "/models/unload", `{"model_id":"a"}`); got.status != 200 {
		t.Fatalf("unload: %d %s", got.status, got.body)
	}
	if got := send(t, t.Context(), srv, "POST", "/models/load", `{"model_id":"e","vram_mb":20000}`); got.status != 200 {
		t.Fatalf("load after unload: %d %s", got.status, got.body)
	}
	loads := table.recordedLoads()
	if last := loads[len(loads)-1]; !cmp.Equal(last.Devices, []int{0}) {
		t.Errorf("load after unload went to %v, want [0]", last.Devices)
	}
}

func TestAgent_LoadFailureGivesVRAMBack(t *testing.T) {
	t.Parallel()
	_, h := newModelTable(t, "")
	_, srv := startAgent(t, h, neuron.NewStaticDiscoverer(gpus(1, 10000)))
	if got := send(t, t.Context(), srv, "POST", "/models/load", `{"model_id":"a","engine":"broken","vram_mb":8000}`); got.status != 502 {
		t.Fatalf("failing load: %d %s", got.status, got.body)
	}
	if got := send(t, t.Context(), srv, "POST", "/models/load", `{"model_id":"b","vram_mb":8000}`); got.status != 200 {
		t.Fatalf("load after a failed load: %d %s", got.status, got.body)
	}
}

func TestAgent_LoadRefusedWhenCUDAUnavailable(t *testing.T) {
	t.Parallel()
	table, h := newModelTable(t, "")
	disc := gpus(1, 24000)
	disc.CUDAUnavailableReason = "driver 470 too old for CUDA 12"
	_, srv := startAgent(t, h, neuron.NewStaticDiscoverer(disc))
	got := send(t, t.Context(), srv, "POST", "/models/load", `{"model_id":"a"}`)
	if got.status != 503 || got.code(t) != neuron.CodeCUDAUnavailable {
		t.Fatalf("got %d %s, want 503 cuda_unavailable", got.status, got.body)
	}
	if !strings.Contains(string(got.body), "driver 470") {
		t.Errorf("message lacks the reason: %s", got.body)
	}
	if n := len(table.recordedLoads()); n != 0 {
		t.Errorf("harness saw %d loads, want 0", n)
	}
}

func TestAgent_LoadDetachesFromClientDisconnect(t *testing.T) {
	t.Parallel()
	table, h := newModelTable(t, "")
	entered := make(chan context.Context, 1)
	finish := make(chan struct{})
	load := h.LoadFunc
	h.LoadFunc = func(ctx context.Context, spec neuron.LoadSpec) (neuron.ModelInfo, error) {
		entered <- ctx
		<-finish
		return load(ctx, spec)
	}
	a, err := neuron.NewAgent(h, neuron.NewStaticDiscoverer(gpus(1, 24000)))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Note when the server sees the client go.
	clientGone := make(chan struct{})
	handlerDone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(handlerDone)
		stop := context.AfterFunc(r.Context(), func() { close(clientGone) })
		defer stop()
		a.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer func() {
		if err := a.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/models/load", strings.NewReader(`{"model_id":"a","vram_mb":1000}`))
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	loadCtx := <-entered
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("client request succeeded after cancel")
	}
	<-clientGone
	if err := loadCtx.Err(); err != nil {
		t.Fatalf("load ctx ended with the client: %v", err)
	}
	close(finish)
	<-handlerDone
	if diff := cmp.Diff(table.snapshot(), []neuron.ModelInfo{{ID: "a", Status: neuron.StatusLoaded, Devices: []int{0}, VRAMUsedMB: 1000,
		LoadedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}}); diff != "" {
		t.Errorf("models (-got +want):\n%s", diff)
	}
}

func TestAgent_ConcurrentLoadsOfOneModelReserveOnce(t *testing.T) {
	t.Parallel()
	table, h := newModelTable(t, "")
	release := make(chan struct{})
	var arrived sync.WaitGroup
	arrived.Add(2)
	load := h.LoadFunc
	h.LoadFunc = func(ctx context.Context, spec neuron.LoadSpec) (neuron.ModelInfo, error) {
		if spec.ModelID == "a" {
			arrived.Done()
			<-release
		}
		return load(ctx, spec)
	}
	_, srv := startAgent(t, h, neuron.NewStaticDiscoverer(gpus(1, 10000)))
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if got := <-goSend(context.Background(), srv, "POST", "/models/load", `{"model_id":"a","vram_mb":6000}`); got.status != 200 {
				t.Errorf("load: %d %s", got.status, got.body)
			}
		})
	}
	arrived.Wait() // both reached the harness: the second joined the reservation
	close(release)
	wg.Wait()
	for _, l := range table.recordedLoads() {
		if !cmp.Equal(l.Devices, []int{0}) {
			t.Errorf("load devices %v, want [0]", l.Devices)
		}
	}
	// 4000 MiB remain: the model was counted once.
	if got := send(t, t.Context(), srv, "POST", "/models/load", `{"model_id":"b","vram_mb":4000}`); got.status != 200 {
		t.Errorf("second model: %d %s", got.status, got.body)
	}
}

func TestAgent_UnloadBusyAndForce(t *testing.T) {
	t.Parallel()
	eng := newGateEngine(t)
	table, h := newModelTable(t, eng.srv.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	a, srv := startAgent(t, h, nil)

	done := goSend(context.Background(), srv, "POST", "/v1/chat/completions", chatBody)
	eng.waitArrival(t)

	got := send(t, t.Context(), srv, "POST", "/models/unload", `{"model_id":"m1"}`)
	if got.status != 409 || got.code(t) != neuron.CodeModelBusy {
		t.Fatalf("unload while busy: %d %s, want 409 model_busy", got.status, got.body)
	}
	if n := len(table.recordedUnloads()); n != 0 {
		t.Fatalf("harness unloaded %d models", n)
	}
	got = send(t, t.Context(), srv, "POST", "/models/unload", `{"model_id":"m1","force":true}`)
	if got.status != 200 || string(got.body) != `{"model_id":"m1","status":"unloaded"}` {
		t.Fatalf("forced unload: %d %s", got.status, got.body)
	}
	if diff := cmp.Diff(table.recordedUnloads(), []string{"m1"}); diff != "" {
		t.Errorf("unloads (-got +want):\n%s", diff)
	}
	eng.open()
	if r := <-done; r.status != 200 {
		t.Errorf("in-flight request: %d %s", r.status, r.body)
	}
	if ml := modelLoad(t, a, "m1"); ml != (neuron.ModelLoad{}) {
		t.Errorf("unloaded model still in health: %+v", ml)
	}
}

func TestAgent_ShutdownDrainsThenStopsEngines(t *testing.T) {
	t.Parallel()
	eng := newGateEngine(t)
	_, base := newModelTable(t, eng.srv.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	closed := make(chan struct{})
	h := &closingHarness{fakeHarness: base, CloseFunc: func(context.Context) error { close(closed); return nil }}
	a, err := neuron.NewAgent(h, neuron.NewStaticDiscoverer(gpus(1, 1000)))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	defer srv.Close()

	inflight := goSend(context.Background(), srv, "POST", "/v1/chat/completions", chatBody)
	eng.waitArrival(t)

	shut := make(chan error, 1)
	go func() { shut <- a.Shutdown(context.Background()) }()
	eventually(t, "shutting_down health", func() bool { return a.Health(t.Context()).Status == "shutting_down" })

	for _, rt := range []struct{ path, body string }{
		{"/v1/chat/completions", chatBody},
		{"/models/load", `{"model_id":"x"}`},
		{"/models/unload", `{"model_id":"m1"}`},
	} {
		got := send(t, t.Context(), srv, "POST", rt.path, rt.body)
		if got.status != 503 || got.code(t) != neuron.CodeShuttingDown || got.header.Get("Retry-After") == "" {
			t.Errorf("%s during shutdown: %d %v %s, want 503 shutting_down with Retry-After", rt.path, got.status, got.header, got.body)
		}
	}
	select {
	case <-closed:
		t.Fatal("engines stopped while a request was in flight")
	default:
	}
	eng.open()
	if got := <-inflight; got.status != 200 {
		t.Errorf("in-flight request: %d %s", got.status, got.body)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	<-closed
	if err := a.Shutdown(t.Context()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestAgent_ShutdownDrainTimeoutUnloadsEachModel(t *testing.T) {
	t.Parallel()
	eng := newGateEngine(t)
	table, h := newModelTable(t, eng.srv.URL,
		neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded}, neuron.ModelInfo{ID: "m2", Status: neuron.StatusLoaded})
	a, err := neuron.NewAgent(h, neuron.NewStaticDiscoverer(gpus(1, 1000)), neuron.WithDrainTimeout(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	inflight := goSend(context.Background(), srv, "POST", "/v1/chat/completions", chatBody)
	eng.waitArrival(t)

	err = a.Shutdown(t.Context())
	if err == nil || !strings.Contains(err.Error(), "drain timed out") {
		t.Errorf("Shutdown = %v, want a drain timeout", err)
	}
	if diff := cmp.Diff(table.recordedUnloads(), []string{"m1", "m2"}); diff != "" {
		t.Errorf("unloads (-got +want):\n%s", diff)
	}
	eng.open()
	<-inflight
}

func TestAgent_ShutdownAbandonsLoadsInProgress(t *testing.T) {
	t.Parallel()
	_, h := newModelTable(t, "")
	entered := make(chan struct{})
	h.LoadFunc = func(ctx context.Context, spec neuron.LoadSpec) (neuron.ModelInfo, error) {
		close(entered)
		<-ctx.Done() // a harness stops waiting when ctx ends
		return neuron.ModelInfo{}, ctx.Err()
	}
	a, err := neuron.NewAgent(h, neuron.NewStaticDiscoverer(gpus(1, 1000)),
		neuron.WithDefaultModels([]neuron.LoadSpec{{ModelID: "slow"}}), neuron.WithDrainTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := a.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if diff := cmp.Diff(a.Health(t.Context()).Activation, neuron.Activation{Total: 1, Failed: 1}, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("activation (-got +want):\n%s", diff)
	}
}
