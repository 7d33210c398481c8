package cortex_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/neuron"
)

// failingEngine answers every inference request with status and an error
// envelope of code, as a neuron does for an engine that is not ready.
func failingEngine(status int, code string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"error":{"message":"the engine is not ready","type":"server_error","code":"`+code+`"}}`)
	})
}

// ejectionStack is a gateway over two neurons with chat-a loaded: n1's
// engine answers with status and code, n2's serves. The gateway's clock is
// fake: ejections end when the test says.
func ejectionStack(t *testing.T, status int, code string, opts ...cortex.GatewayOption) (*stack, *clocktest.Fake) {
	t.Helper()
	clock := newFakeClock()
	specs := []cortextest.Spec{
		{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}, Engine: failingEngine(status, code)},
		{Name: "n2", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
	}
	return newStack(t, specs, testCatalogue(t), append([]cortex.GatewayOption{cortex.WithClock(clock)}, opts...)...), clock
}

// sendChats sends n chat requests for chat-a one after the other and
// returns how many got each status.
func sendChats(s *stack, n int) map[int]int {
	s.t.Helper()
	got := map[int]int{}
	for range n {
		status, _, _ := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`))
		got[status]++
	}
	return got
}

// split returns the inference requests each neuron received.
func split(s *stack) [2]int {
	return [2]int{s.fleet.Neuron("n1").Requests(), s.fleet.Neuron("n2").Requests()}
}

// replicaStatus returns chat-a on the named neuron as /status.json shows it.
func replicaStatus(t *testing.T, s *stack, name string, header ...string) cortex.StatusReplica {
	t.Helper()
	for _, n := range getStatus(t, s, header...).Neurons {
		if n.Name != name {
			continue
		}
		for _, m := range n.Models {
			if m.ID == "chat-a" {
				return m
			}
		}
	}
	t.Fatalf("/status.json has no chat-a on %s", name)
	return cortex.StatusReplica{}
}

// kinds returns the kinds of the gateway's events, oldest first.
func kinds(s *stack) []cortex.EventKind {
	ev := s.gw.Events()
	out := make([]cortex.EventKind, 0, len(ev))
	for i := len(ev) - 1; i >= 0; i-- {
		out = append(out, ev[i].Kind)
	}
	return out
}

func countKind(s *stack, k cortex.EventKind) int {
	n := 0
	for _, e := range s.gw.Events() {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// TestOutlierEjectionMovesTrafficOffAFailingReplica is the fault of the
// issue: of two neurons with the model loaded, one answers every request
// with 503 model_not_ready, and as the least busy replica it draws every
// request first. Without ejection it keeps drawing them; with it, it draws
// the five that eject it.
func TestOutlierEjectionMovesTrafficOffAFailingReplica(t *testing.T) {
	t.Parallel()
	const requests = 40
	before, _ := ejectionStack(t, http.StatusServiceUnavailable, neuron.CodeModelNotReady,
		cortex.WithOutlierDetection(cortex.OutlierConfig{Disabled: true}))
	after, _ := ejectionStack(t, http.StatusServiceUnavailable, neuron.CodeModelNotReady)

	beforeStatus := sendChats(before, requests)
	afterStatus := sendChats(after, requests)
	t.Logf("without ejection: answers %v, requests n1/n2 %v", beforeStatus, split(before))
	t.Logf("with ejection:    answers %v, requests n1/n2 %v", afterStatus, split(after))

	if got := split(before); got[0] != requests {
		t.Errorf("without ejection the failing n1 got %d of %d requests; the scenario expects all", got[0], requests)
	}
	if got := split(after); got[0] != cortex.DefaultConsecutiveFailures || got[1] < requests-cortex.DefaultConsecutiveFailures {
		t.Errorf("with ejection n1/n2 got %v requests; want n1 %d (the failures that eject it), n2 the rest",
			got, cortex.DefaultConsecutiveFailures)
	}
	if m := replicaStatus(t, after, "n1"); !m.Ejected || m.Ejections != 1 || m.EjectedUntil.IsZero() {
		t.Errorf("n1's chat-a in /status.json: %+v; want ejected once, with its end", m)
	}
	if m := replicaStatus(t, after, "n2"); m.Ejected {
		t.Errorf("n2's chat-a is ejected: %+v", m)
	}
	if n := countKind(after, cortex.EventEject); n != 1 {
		t.Errorf("%d eject events, want 1: %v", n, kinds(after))
	}
	if n := countKind(before, cortex.EventEject); n != 0 {
		t.Errorf("disabled ejection recorded %d eject events", n)
	}
}

func TestOutlierEjectionEndsWithItsPeriodAndGrows(t *testing.T) {
	t.Parallel()
	s, clock := ejectionStack(t, http.StatusInternalServerError, "upstream_error")
	failures := cortex.DefaultConsecutiveFailures

	sendChats(s, failures+3)
	if got := split(s); got != [2]int{failures, 3} {
		t.Fatalf("requests n1/n2 %v, want [%d 3]: ejected after %d failures", got, failures, failures)
	}
	first := replicaStatus(t, s, "n1")
	if !first.Ejected || first.EjectedUntil.Sub(clock.Now()) != cortex.DefaultBaseEjectionTime {
		t.Fatalf("n1 %+v: want ejected for %v", first, cortex.DefaultBaseEjectionTime)
	}

	// Just before the end it is still out; at the end, the next poll
	// brings it back.
	clock.Advance(cortex.DefaultBaseEjectionTime - time.Second)
	s.refresh()
	sendChats(s, 1)
	if got := split(s); got != [2]int{failures, 4} {
		t.Fatalf("requests n1/n2 %v before the period's end, want [%d 4]", got, failures)
	}
	clock.Advance(time.Second)
	s.refresh()
	if m := replicaStatus(t, s, "n1"); m.Ejected {
		t.Fatalf("n1 is still ejected after its period: %+v", m)
	}
	if n := countKind(s, cortex.EventReadmit); n != 1 {
		t.Errorf("%d readmit events, want 1: %v", n, kinds(s))
	}

	// Still failing: the second ejection is twice as long.
	sendChats(s, failures)
	if got := split(s); got[0] != 2*failures {
		t.Fatalf("n1 got %d requests, want %d", got[0], 2*failures)
	}
	if m := replicaStatus(t, s, "n1"); !m.Ejected || m.Ejections != 2 || m.EjectedUntil.Sub(clock.Now()) != 2*cortex.DefaultBaseEjectionTime {
		t.Errorf("n1 %+v: want its second ejection, for %v", m, 2*cortex.DefaultBaseEjectionTime)
	}
}

func TestOutlierEjectionIgnoresClientErrors(t *testing.T) {
	t.Parallel()
	s, _ := ejectionStack(t, http.StatusBadRequest, "invalid_request_body")
	got := sendChats(s, 3*cortex.DefaultConsecutiveFailures)
	if got[http.StatusBadRequest] != 3*cortex.DefaultConsecutiveFailures {
		t.Fatalf("answers %v: want every one the engine's 400", got)
	}
	if r := split(s); r[0] != 3*cortex.DefaultConsecutiveFailures {
		t.Errorf("requests n1/n2 %v: a replica answering 4xx must stay in rotation", r)
	}
	if m := replicaStatus(t, s, "n1"); m.Ejected || m.Ejections != 0 {
		t.Errorf("n1 %+v: ejected for 4xx answers", m)
	}
}

func TestOutlierEjectionIgnoresQueueFull(t *testing.T) {
	t.Parallel()
	s, _ := ejectionStack(t, http.StatusServiceUnavailable, neuron.CodeQueueFull)
	sendChats(s, 2*cortex.DefaultConsecutiveFailures)
	if m := replicaStatus(t, s, "n1"); m.Ejected {
		t.Errorf("n1 %+v: ejected for queue_full, which is overload, not a fault", m)
	}
}

// TestOutlierEjectionFallsBackToTheOnlyReplica: ejection never turns into
// a refusal of the gateway's own; the only replica is still tried, and a
// success brings it back.
func TestOutlierEjectionFallsBackToTheOnlyReplica(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	failing.Store(true)
	notReady := failingEngine(http.StatusServiceUnavailable, neuron.CodeModelNotReady)
	engine := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			notReady.ServeHTTP(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c1","object":"chat.completion","model":"chat-a",`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],`+
			`"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	})
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}, Engine: engine}},
		testCatalogue(t), cortex.WithClock(newFakeClock()))

	got := sendChats(s, cortex.DefaultConsecutiveFailures+2)
	if got[http.StatusServiceUnavailable] != cortex.DefaultConsecutiveFailures+2 {
		t.Fatalf("answers %v: want the neuron's own 503 every time", got)
	}
	if r := s.fleet.Neuron("n1").Requests(); r != cortex.DefaultConsecutiveFailures+2 {
		t.Errorf("n1 got %d requests: the only replica must still be tried while ejected", r)
	}
	if m := replicaStatus(t, s, "n1"); !m.Ejected {
		t.Fatalf("n1 %+v: want ejected", m)
	}
	failing.Store(false)
	if got := sendChats(s, 1); got[http.StatusOK] != 1 {
		t.Fatalf("answers %v once the engine serves", got)
	}
	if m := replicaStatus(t, s, "n1"); m.Ejected {
		t.Errorf("n1 %+v: a success must bring it back", m)
	}
	if ev := s.gw.Events(); len(ev) == 0 || ev[0].Kind != cortex.EventReadmit || ev[0].Reason != "it served a request" {
		t.Errorf("events %+v: want a readmit last, as it served a request", ev)
	}
}

// TestOutlierReadmittedByAPollThatShowsItReloaded: an engine that crashed
// and was restarted by its neuron comes back at the next poll, before its
// period ends; the crash and the restart are events.
func TestOutlierReadmittedByAPollThatShowsItReloaded(t *testing.T) {
	t.Parallel()
	s, _ := ejectionStack(t, http.StatusServiceUnavailable, neuron.CodeModelNotReady)
	sendChats(s, cortex.DefaultConsecutiveFailures)
	if m := replicaStatus(t, s, "n1"); !m.Ejected {
		t.Fatalf("n1 %+v: want ejected", m)
	}
	n1 := s.fleet.Neuron("n1")
	if err := n1.Harness().Crash("chat-a"); err != nil {
		t.Fatal(err)
	}
	s.refresh() // sees it failed or recovering
	waitFor(t, "chat-a restarted on n1", func() bool {
		for _, m := range n1.Harness().Models() {
			if m.ID == "chat-a" {
				return m.Status == neuron.StatusLoaded && m.Restarts == 1
			}
		}
		return false
	})
	s.refresh() // sees it loaded anew
	if m := replicaStatus(t, s, "n1"); m.Ejected || m.Restarts != 1 {
		t.Errorf("n1 %+v: want back in rotation after its restart", m)
	}
	want := []cortex.EventKind{cortex.EventEject, cortex.EventEngineFailed, cortex.EventEngineRestarted, cortex.EventReadmit}
	if got := kinds(s); !equalKinds(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if e := s.gw.Events()[0]; e.Reason != "its neuron reports it loaded again" {
		t.Errorf("readmit reason %q", e.Reason)
	}
}

func equalKinds(a, b []cortex.EventKind) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOutlierEjectionMetrics(t *testing.T) {
	t.Parallel()
	s, _ := ejectionStack(t, http.StatusServiceUnavailable, neuron.CodeModelNotReady)
	sendChats(s, cortex.DefaultConsecutiveFailures)
	rec := httptest.NewRecorder()
	s.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`helexa_replica_ejected{model="chat-a",neuron="n1"} 1`,
		`helexa_replica_ejected{model="chat-a",neuron="n2"} 0`,
		`helexa_replica_ejections_total{model="chat-a",neuron="n1"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestOutlierEjectionOnTheStatusPage(t *testing.T) {
	t.Parallel()
	s, _ := ejectionStack(t, http.StatusServiceUnavailable, neuron.CodeModelNotReady)
	sendChats(s, cortex.DefaultConsecutiveFailures)
	status, _, body := getPage(t, s, "/status")
	if status != http.StatusOK {
		t.Fatalf("GET /status: %d", status)
	}
	for _, want := range []string{`data-ejected="true"`, `ejected, back in 10s`, `class="badge s-eject"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

func TestOutlierConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      cortex.OutlierConfig
		wantErr string
	}{
		{name: "zero is the default", in: cortex.OutlierConfig{}},
		{name: "disabled", in: cortex.OutlierConfig{Disabled: true}},
		{name: "negative failures", in: cortex.OutlierConfig{ConsecutiveFailures: -1}, wantErr: "consecutive_failures"},
		{name: "negative base", in: cortex.OutlierConfig{BaseEjectionTime: neuron.Duration(-time.Second)}, wantErr: "base_ejection_time"},
		{name: "base over max", in: cortex.OutlierConfig{BaseEjectionTime: neuron.Duration(time.Hour)}, wantErr: "longer than max_ejection_time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			if (err != nil) != (tt.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
	if _, err := cortex.NewGateway([]cortex.NeuronConfig{{Name: "n1", Endpoint: "http://n1:31400"}}, nil,
		cortex.WithOutlierDetection(cortex.OutlierConfig{ConsecutiveFailures: -2})); err == nil {
		t.Error("NewGateway accepted a negative number of failures")
	}
}
