package cortex_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// max_in_flight: a key's request beyond its limit is refused with 429
// rate_limit_exceeded and Retry-After, without reserving or dispatching;
// the slot frees when the request in flight ends.
func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	local := newLocal(t,
		entitlements.KeyConfig{Key: "sk-one", AccountID: "acct", KeyID: "one", HardCap: ptr(int64(1000)), MaxInFlight: 1},
		entitlements.KeyConfig{Key: "sk-other", AccountID: "acct", KeyID: "other", HardCap: ptr(int64(1000))},
	)
	eng := newStepEngine(2)
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: eng, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}},
		testCatalogue(t), cortex.WithProvider(local))
	n := s.fleet.Neuron("n1")

	resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"stream":true`, `"max_tokens":5`), "x-api-key", "sk-one")
	defer resp.Body.Close()
	er := newEventReader(resp.Body)
	nextWithin(t, er, 10*time.Second, "first chunk")

	status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-a", `"stream":true`, `"max_tokens":5`), "x-api-key", "sk-one")
	if status != http.StatusTooManyRequests || envelope(t, body).Code != cortex.CodeRateLimitExceeded || hdr.Get("Retry-After") != "1" {
		t.Fatalf("second request: status %d, Retry-After %q: %s", status, hdr.Get("Retry-After"), body)
	}
	if n.Requests() != 1 {
		t.Errorf("the neuron got %d requests, want 1", n.Requests())
	}
	if snap, _ := local.Snapshot(t.Context(), entitlements.Principal{AccountID: "acct"}); snap.Reserved != helloEstimate+5 {
		t.Errorf("reserved %d, want only the first request's %d", snap.Reserved, helloEstimate+5)
	}

	// The limit is the key's: another key of the account is not held back.
	eng2done := make(chan int, 1)
	go func() {
		st, _, _ := s.post("/v1/chat/completions", chatBody("chat-a", `"stream":true`, `"max_tokens":5`), "x-api-key", "sk-other")
		eng2done <- st
	}()
	step(t, eng) // one of the two streams goes on
	step(t, eng) // and the other
	if _, err := er.all(); err != nil {
		t.Fatal(err)
	}
	if st := <-eng2done; st != http.StatusOK {
		t.Errorf("the other key: status %d", st)
	}

	waitFor(t, "the first request to finish", func() bool { return s.gw.InFlight() == 0 })
	go func() {
		select {
		case eng.steps <- struct{}{}:
		case <-t.Context().Done():
		}
	}()
	status, _, body = s.post("/v1/chat/completions", chatBody("chat-a", `"stream":true`, `"max_tokens":5`), "x-api-key", "sk-one")
	if status != http.StatusOK {
		t.Errorf("after the first ended: status %d: %s", status, body)
	}
}

// step lets a stream of eng send its next chunk.
func step(t *testing.T, eng *stepEngine) {
	t.Helper()
	select {
	case eng.steps <- struct{}{}:
	case <-time.After(10 * time.Second):
		t.Fatal("no stream of the engine is waiting to go on")
	}
}

// rpm: a key may send a burst of rpm requests, then one every 60/rpm
// seconds; a refusal says when to retry.
func TestRPM(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", RPM: 2})
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local), cortex.WithClock(clock))
	send := func() (int, http.Header, string) {
		t.Helper()
		return s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":1`), "x-api-key", "k")
	}
	for i := range 2 {
		if status, _, body := send(); status != http.StatusOK {
			t.Fatalf("request %d of the burst: status %d: %s", i, status, body)
		}
	}
	status, hdr, body := send()
	if status != http.StatusTooManyRequests || envelope(t, body).Code != cortex.CodeRateLimitExceeded || hdr.Get("Retry-After") != "30" {
		t.Fatalf("third request: status %d, Retry-After %q: %s; want 429 with Retry-After 30", status, hdr.Get("Retry-After"), body)
	}
	if n := s.fleet.Neuron("n1").Requests(); n != 2 {
		t.Errorf("the neuron got %d requests, want 2", n)
	}
	clock.Advance(20 * time.Second)
	if status, hdr, _ := send(); status != http.StatusTooManyRequests || hdr.Get("Retry-After") != "10" {
		t.Errorf("20 s later: status %d, Retry-After %q; want 429, 10", status, hdr.Get("Retry-After"))
	}
	clock.Advance(10 * time.Second)
	if status, _, body := send(); status != http.StatusOK {
		t.Errorf("30 s later: status %d: %s", status, body)
	}
	if status, _, _ := send(); status != http.StatusTooManyRequests {
		t.Errorf("at once again: status %d, want 429", status)
	}
}
