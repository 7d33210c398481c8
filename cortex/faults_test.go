package cortex_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/redact"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// refusing is an engine that answers every request with the neuron's own
// refusal code (the neuron relays it as it came), counting them.
type refusing struct {
	status int
	code   string
	n      atomic.Int64
}

func (e *refusing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	e.n.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(e.status)
	fmt.Fprintf(w, `{"error":{"message":"refused","type":"server_error","code":%q,"param":null}}`, e.code)
}

// A neuron's refusal that came before its engine did anything
// (model_not_ready, queue_full, model_not_found) is retried on another
// replica, before anything reached the client, and charged once.
func TestRefusalsAreRetriedElsewhere(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		status int
		code   string
	}{
		{http.StatusServiceUnavailable, neuron.CodeModelNotReady},
		{http.StatusServiceUnavailable, neuron.CodeQueueFull},
		{http.StatusNotFound, neuron.CodeModelNotFound},
	} {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			bad := &refusing{status: tt.status, code: tt.code}
			local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", HardCap: ptr(int64(10000))})
			// n1 sorts first: with equal load it is the router's choice.
			s := newStack(t, []cortextest.Spec{
				{Name: "n1", Engine: bad, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
				{Name: "n2", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
			}, testCatalogue(t), cortex.WithProvider(local))
			for range 3 {
				status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`), "x-api-key", "k")
				if status != http.StatusOK {
					t.Fatalf("status %d: %s", status, body)
				}
			}
			if bad.n.Load() == 0 {
				t.Fatal("n1 was never tried: the test proves nothing")
			}
			if got := s.fleet.Neuron("n2").Requests(); got != 3 {
				t.Errorf("n2 served %d requests, want 3", got)
			}
			snap := s.budgetOf(local, "acct")
			if want := entitlements.Amount(3 * (helloEstimate + 3)); snap.Reserved != 0 || snap.Spent > want {
				t.Errorf("spent %d reserved %d; want each request charged once (at most %d), nothing reserved", snap.Spent, snap.Reserved, want)
			}
		})
	}
}

// When every replica refuses, the last refusal reaches the client as the
// neuron gave it, after a bounded number of attempts.
func TestRefusalRelayedWhenNoReplicaIsLeft(t *testing.T) {
	t.Parallel()
	a, b := &refusing{status: http.StatusServiceUnavailable, code: neuron.CodeModelNotReady},
		&refusing{status: http.StatusServiceUnavailable, code: neuron.CodeQueueFull}
	s := newStack(t, []cortextest.Spec{
		{Name: "n1", Engine: a, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
		{Name: "n2", Engine: b, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}},
	}, testCatalogue(t))
	status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`))
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q: %s", status, hdr.Get("Retry-After"), body)
	}
	if e := envelope(t, body); e.Code != neuron.CodeModelNotReady && e.Code != neuron.CodeQueueFull {
		t.Errorf("envelope %+v, want a neuron's refusal", e)
	}
	if a.n.Load() != 1 || b.n.Load() != 1 {
		t.Errorf("attempts on n1 %d, n2 %d; want one each", a.n.Load(), b.n.Load())
	}
}

// A model unloaded behind the gateway's back (another replica's eviction,
// an operator) gives no false 404: the neuron's model_not_found makes the
// gateway see the neuron as it is, and load the model again.
func TestStaleSnapshotLoadsAgain(t *testing.T) {
	t.Parallel()
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t))
	n1 := s.fleet.Neuron("n1")
	if err := n1.Client().Unload(t.Context(), "chat-a", false); err != nil {
		t.Fatal(err)
	}
	status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if n1.Loads() != 1 {
		t.Errorf("%d loads on n1, want 1", n1.Loads())
	}
}

// cortexBackoff is the first load backoff of TestFailedLoadBacksOff.
const cortexBackoff = 10 * time.Second

// A model whose load failed is not loaded again on that neuron until its
// backoff ends: requests meanwhile get 503 with Retry-After, and start
// nothing.
func TestFailedLoadBacksOff(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Sim: sim.Config{FailLoad: true}}}, testCatalogue(t),
		cortex.WithClock(clock), cortex.WithLoadBackoff(cortexBackoff, 4*cortexBackoff))
	n1 := s.fleet.Neuron("n1")
	status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`))
	if status != http.StatusBadGateway {
		t.Fatalf("first request: status %d: %s", status, body)
	}
	loads := len(n1.LoadCalls())
	for range 3 {
		status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`))
		if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "10" {
			t.Errorf("in the backoff: status %d, Retry-After %q: %s", status, hdr.Get("Retry-After"), body)
		}
	}
	if got := len(n1.LoadCalls()); got != loads {
		t.Errorf("%d load calls during the backoff, want none", got-loads)
	}
	// After it, the neuron decides again: the sim lists the model failed
	// there, which the router takes for a restart in progress.
	clock.Advance(cortexBackoff)
	if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`)); status == http.StatusOK {
		t.Errorf("after the backoff: status %d: %s", status, body)
	}
}

// checkingAdmin is a neuron client whose load check refuses every load.
type checkingAdmin struct {
	*neuron.Client
	checks atomic.Int64
}

func (a *checkingAdmin) Check(context.Context, neuron.LoadSpec) error {
	a.checks.Add(1)
	return &neuron.APIError{Status: http.StatusUnprocessableEntity, Code: neuron.CodeCannotStart,
		Message: "engine command not found: /opt/llama/bin/llama-server"}
}

// A load that cannot start is refused before anything is evicted for it:
// the victim stays loaded, the client is told the code without the
// neuron's detail, and the model backs off.
func TestLoadThatCannotStartEvictsNothing(t *testing.T) {
	t.Parallel()
	var admin *checkingAdmin
	// One 5000 MiB GPU holding chat-b: chat-a (4000) needs it evicted.
	s := newStack(t, []cortextest.Spec{{Name: "n1", GPUs: []uint64{5000}, Models: []neuron.LoadSpec{loadedSpec("chat-b", 4000)}}},
		testCatalogue(t), cortex.WithAdminFactory(func(c cortex.NeuronConfig) (cortex.NeuronAdmin, error) {
			cl, err := neuron.NewClient(c.Endpoint, neuron.WithToken(c.Token))
			admin = &checkingAdmin{Client: cl}
			return admin, err
		}))
	status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`))
	if status != http.StatusBadGateway || !strings.Contains(body, neuron.CodeCannotStart) {
		t.Errorf("status %d: %s; want 502 naming %s", status, body, neuron.CodeCannotStart)
	}
	if !redact.Clean(body) {
		t.Errorf("the answer tells about the inside: %v", redact.Find(body))
	}
	if admin.checks.Load() != 1 {
		t.Errorf("%d checks, want 1", admin.checks.Load())
	}
	n1 := s.fleet.Neuron("n1")
	if got := n1.Unloads(); len(got) != 0 {
		t.Errorf("unloaded %v for a load that cannot start", got)
	}
	if got := n1.Loads(); got != 0 {
		t.Errorf("%d loads started", got)
	}
}
