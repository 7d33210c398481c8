package neuron_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/neuron"
)

func TestForward_SSEChunksArriveUnbuffered(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	eng := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "data: {\"n\":1}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: {\"n\":2}\n\ndata: [DONE]\n\n")
	}))
	defer eng.Close()
	_, h := newModelTable(t, eng.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	_, srv := startAgent(t, h, nil)

	req, err := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"m1","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() {
		line, _ := rd.ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if line != "data: {\"n\":1}\n" {
			t.Fatalf("first line = %q", line)
		}
	case <-time.After(10 * time.Second):
		close(next)
		t.Fatal("the first chunk did not arrive while the engine held the stream: the neuron buffers")
	}
	close(next)
	rest, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	if want := "\ndata: {\"n\":2}\n\ndata: [DONE]\n\n"; string(rest) != want {
		t.Errorf("rest = %q, want %q", rest, want)
	}
}

func TestForward_PathQueryHeadersAndBody(t *testing.T) {
	t.Parallel()
	eng := newGateEngine(t)
	eng.open()
	_, h := newModelTable(t, eng.srv.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	_, srv := startAgent(t, h, nil, neuron.WithToken("neuron-token"))

	body := `{"model":"m1","input":["a","b"]}`
	got := send(t, t.Context(), srv, "POST", "/v1/embeddings?api-version=2", body,
		"Authorization", "Bearer neuron-token", neuron.HeaderAccountID, "acct-1", "X-Custom", "kept")
	if got.status != 200 || string(got.body) != `{"object":"chat.completion"}` {
		t.Fatalf("answer %d %s", got.status, got.body)
	}
	r := eng.waitArrival(t)
	want := engineRequest{method: "POST", path: "/v1/embeddings", query: "api-version=2", body: body}
	if diff := cmp.Diff(r, want, cmp.AllowUnexported(engineRequest{}), cmp.FilterPath(func(p cmp.Path) bool {
		return p.Last().String() == ".header"
	}, cmp.Ignore())); diff != "" {
		t.Errorf("engine request (-got +want):\n%s", diff)
	}
	if a := r.header.Get("Authorization"); a != "" {
		t.Errorf("engine got Authorization %q: the neuron token leaked", a)
	}
	if r.header.Get(neuron.HeaderAccountID) != "acct-1" || r.header.Get("X-Custom") != "kept" {
		t.Errorf("engine headers = %v", r.header)
	}
}

func TestForward_EngineErrorsPassThrough(t *testing.T) {
	t.Parallel()
	const engineErr = `{"error":{"message":"prompt too long","type":"invalid_request_error","code":"context_length_exceeded","param":null}}`
	eng := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, engineErr)
	}))
	defer eng.Close()
	_, h := newModelTable(t, eng.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	_, srv := startAgent(t, h, nil)
	got := send(t, t.Context(), srv, "POST", "/v1/chat/completions", chatBody)
	if got.status != 400 || string(got.body) != engineErr {
		t.Errorf("got %d %s, want the engine's answer", got.status, got.body)
	}
}

func TestForward_BodyLimit(t *testing.T) {
	t.Parallel()
	eng := newGateEngine(t)
	eng.open()
	_, h := newModelTable(t, eng.srv.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	_, srv := startAgent(t, h, nil, neuron.WithMaxBodyBytes(64))
	big := `{"model":"m1","prompt":"` + strings.Repeat("x", 100) + `"}`
	tests := []struct {
		name string
		body io.Reader
		want int
	}{
		{name: "small", body: strings.NewReader(`{"model":"m1"}`), want: 200},
		{name: "too large with a length", body: strings.NewReader(big), want: 413},
		{name: "too large, chunked", body: io.MultiReader(strings.NewReader(big)), want: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/v1/completions", tt.body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, b)
			}
			if tt.want == 413 && !strings.Contains(string(b), neuron.CodeRequestTooLarge) {
				t.Errorf("body %s lacks %s", b, neuron.CodeRequestTooLarge)
			}
		})
	}
}

func TestAdmission_ThroughTheAgent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		admission neuron.AdmissionConfig
		first     []string // headers of the request that occupies the slot
		second    []string // headers of the request that is refused
		want      int
		wantCode  string
	}{
		{name: "queue full", admission: neuron.AdmissionConfig{MaxInFlight: 1, MaxQueue: -1},
			want: 503, wantCode: neuron.CodeQueueFull},
		{name: "queue timeout", admission: neuron.AdmissionConfig{MaxInFlight: 1, MaxQueue: 1, MaxWait: neuron.Duration(20 * time.Millisecond)},
			want: 503, wantCode: neuron.CodeQueueTimeout},
		{name: "per-principal cap", admission: neuron.AdmissionConfig{MaxInFlight: 4, PerPrincipal: 1},
			first:  []string{neuron.HeaderAccountID, "a", neuron.HeaderKeyID, "k"},
			second: []string{neuron.HeaderAccountID, "a", neuron.HeaderKeyID, "k"},
			want:   429, wantCode: neuron.CodeRateLimitExceeded},
		{name: "anonymous requests share a principal", admission: neuron.AdmissionConfig{MaxInFlight: 4, PerPrincipal: 1},
			want: 429, wantCode: neuron.CodeRateLimitExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eng := newGateEngine(t)
			_, h := newModelTable(t, eng.srv.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
			a, srv := startAgent(t, h, nil, neuron.WithAdmission(tt.admission))
			first := goSend(context.Background(), srv, "POST", "/v1/chat/completions", chatBody, tt.first...)
			eng.waitArrival(t)

			got := send(t, t.Context(), srv, "POST", "/v1/chat/completions", chatBody, tt.second...)
			if got.status != tt.want || got.code(t) != tt.wantCode {
				t.Errorf("second request: %d %s, want %d %s", got.status, got.body, tt.want, tt.wantCode)
			}
			if got.header.Get("Retry-After") != "1" {
				t.Errorf("Retry-After = %q, want 1", got.header.Get("Retry-After"))
			}
			if ml := modelLoad(t, a, "m1"); ml.InFlight != 1 || ml.QueueDepth != 0 {
				t.Errorf("after the refusal: %+v, want 1 in flight, none queued", ml)
			}
			eng.open()
			if r := <-first; r.status != 200 {
				t.Errorf("first request: %d %s", r.status, r.body)
			}
		})
	}
}

func TestAdmission_OtherPrincipalsPassTheCap(t *testing.T) {
	t.Parallel()
	eng := newGateEngine(t)
	_, h := newModelTable(t, eng.srv.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	a, srv := startAgent(t, h, nil, neuron.WithAdmission(neuron.AdmissionConfig{MaxInFlight: 4, PerPrincipal: 1}))
	var answers []<-chan answer
	for _, p := range [][]string{
		{neuron.HeaderAccountID, "a"},
		{neuron.HeaderAccountID, "b"},
		{neuron.HeaderAccountID, "a", neuron.HeaderKeyID, "k2"},
		nil, // anonymous
	} {
		answers = append(answers, goSend(context.Background(), srv, "POST", "/v1/chat/completions", chatBody, p...))
		eng.waitArrival(t)
	}
	if ml := modelLoad(t, a, "m1"); ml.InFlight != 4 {
		t.Errorf("in flight = %d, want 4", ml.InFlight)
	}
	eng.open()
	for _, c := range answers {
		if r := <-c; r.status != 200 {
			t.Errorf("answer %d %s", r.status, r.body)
		}
	}
}

func TestAdmission_QueuedClientThatLeavesFreesItsPlace(t *testing.T) {
	t.Parallel()
	eng := newGateEngine(t)
	_, h := newModelTable(t, eng.srv.URL, neuron.ModelInfo{ID: "m1", Status: neuron.StatusLoaded})
	a, srv := startAgent(t, h, nil, neuron.WithAdmission(neuron.AdmissionConfig{
		MaxInFlight: 1, MaxQueue: 1, MaxWait: neuron.Duration(time.Hour)}))

	first := goSend(context.Background(), srv, "POST", "/v1/chat/completions", chatBody)
	eng.waitArrival(t)

	ctx, cancel := context.WithCancel(t.Context())
	leaver := goSend(ctx, srv, "POST", "/v1/chat/completions", chatBody)
	eventually(t, "the second request to queue", func() bool { return modelLoad(t, a, "m1").QueueDepth == 1 })
	cancel()
	<-leaver
	eventually(t, "the queue to empty", func() bool { return modelLoad(t, a, "m1").QueueDepth == 0 })

	third := goSend(context.Background(), srv, "POST", "/v1/chat/completions", chatBody)
	eventually(t, "the third request to queue", func() bool { return modelLoad(t, a, "m1").QueueDepth == 1 })
	eng.open()
	for _, c := range []<-chan answer{first, third} {
		if r := <-c; r.status != 200 {
			t.Errorf("answer %d %s", r.status, r.body)
		}
	}
	eng.waitArrival(t) // the third reached the engine
	select {
	case r := <-eng.arrived:
		t.Errorf("the request that left reached the engine: %+v", r)
	default:
	}
	// The handlers release their slots just after the answers are sent.
	eventually(t, "every slot released", func() bool {
		ml := modelLoad(t, a, "m1")
		return ml.InFlight == 0 && ml.QueueDepth == 0
	})
}
