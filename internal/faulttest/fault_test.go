package faulttest_test

import (
	"context"
	"encoding/json"
	"github.com/helexa-ai/helexa-go/internal/proctest"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/neuron"
)

// TestEngineKilledMidStream: the engine process exits in the middle of an
// answer (helexa-sim --crash-after). The client's stream ends with an
// error event and a broken connection, not a hang; the reservation is
// settled within a second; the neuron restarts the engine, the model goes
// through "recovering" back to "loaded"; the next request succeeds.
func TestEngineKilledMidStream(t *testing.T) {
	suite(t)
	n := startNeuron(t, "gpu-crash", modelCrashy)
	s := newStack(t, []*neuronProc{n})
	before := n.engines()
	if len(before) != 1 {
		t.Fatalf("engines of the neuron: %v, want one", before)
	}

	resp := s.chat(t.Context(), modelCrashy, 50, true)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	evs, err := readEvents(resp.Body).rest(t, 20*time.Second)
	if err == nil {
		t.Errorf("the stream of a crashed engine ended cleanly: %q", evs)
	}
	s.settled(time.Second)
	if len(evs) < 2 {
		t.Fatalf("events %q: want tokens, then an error event", evs)
	}
	if code := errorCode(evs[len(evs)-1]); code != cortex.CodeUpstreamConnection {
		t.Errorf("last event %q: want an error event with code %s", evs[len(evs)-1], cortex.CodeUpstreamConnection)
	}
	for _, e := range evs[:len(evs)-1] {
		if e == "[DONE]" || errorCode(e) != "" {
			t.Errorf("event %q before the end of a broken stream", e)
		}
	}
	if s.spent() == 0 {
		t.Error("nothing was charged for the tokens streamed")
	}

	// The neuron notices, restarts the engine, and the model is loaded
	// again, served by a new process.
	var seen []neuron.ModelStatus
	proctest.Eventually(t, 30*time.Second, "the model recovering, then loaded", func() bool {
		st := n.status(t, modelCrashy)
		if len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
		return st == neuron.StatusLoaded && contains(seen, neuron.StatusRecovering)
	})
	t.Logf("statuses after the crash: %v", seen)
	waitGone(t, before)
	proctest.Eventually(t, 10*time.Second, "the restarted model loaded in the gateway's snapshot", func() bool {
		m := s.gw.Fleet().Neuron(n.name).Model(modelCrashy)
		return m != nil && m.Status == neuron.StatusLoaded && m.Restarts > 0
	})
	// Fewer tokens than the engine's crash point: it answers.
	if status, _, body := s.chatOnce(modelCrashy, 3); status != http.StatusOK {
		t.Fatalf("the request after the recovery: status %d: %s", status, body)
	}
	s.settled(time.Second)
	// The neuron frees the admission slot as its handler returns, which
	// can be just after the gateway has read the whole answer.
	proctest.Eventually(t, 10*time.Second, "no request in flight at the neuron", func() bool {
		return n.inFlight(t, modelCrashy) == 0
	})
}

// manualClock is the system clock but for the poller's ticker, which the
// test drives: each tick is one polling round. The gateway's other timers
// and tickers (the recovery poll among them) run in real time, as the
// processes around them do.
type manualClock struct {
	clock.System
	tick chan time.Time
}

func (c manualClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	if d != pollEvery {
		return c.System.NewTicker(d)
	}
	return c.tick, func() {}
}

// pollRound makes the gateway's poller run one round and waits for the
// snapshot it publishes.
func (s *stack) pollRound(c manualClock) {
	s.t.Helper()
	before := s.gw.Fleet()
	select {
	case c.tick <- time.Now():
	case <-time.After(10 * time.Second):
		s.t.Fatal("the poller did not take the tick")
	}
	proctest.Eventually(s.t, 10*time.Second, "the snapshot of the polling round", func() bool { return s.gw.Fleet() != before })
}

// TestNeuronKilled: a neuron process is killed (SIGKILL). Its engines die
// with it. Requests sent before the gateway notices are retried once on
// the replica, the gateway marks the neuron unhealthy at the third failed
// poll (the failure threshold: within three poll intervals), then sends
// everything to the replica; with no replica left it answers 503 with
// Retry-After. The poller's ticks are driven by the test, so that "three
// intervals" is counted in polls, not measured.
func TestNeuronKilled(t *testing.T) {
	suite(t)
	a := startNeuron(t, "gpu-a", modelFast)
	b := startNeuron(t, "gpu-b", modelFast)
	clock := manualClock{tick: make(chan time.Time)}
	s := newStack(t, []*neuronProc{a, b}, cortex.WithClock(clock),
		cortex.WithPollerOptions(route.WithFailureThreshold(3)))
	retries := func() int { return strings.Count(s.logs.String(), "retrying on another replica") }

	engines := a.engines()
	if len(engines) != 1 {
		t.Fatalf("engines of gpu-a: %v, want one", engines)
	}
	a.kill()
	waitGone(t, engines) // Pdeathsig: the engine does not outlive its neuron

	// The snapshot still shows gpu-a healthy, and it wins the tie with
	// gpu-b: the first connection fails, the request goes to gpu-b.
	if status, _, body := s.chatOnce(modelFast, 3); status != http.StatusOK {
		t.Fatalf("non-streaming request after the kill: status %d: %s", status, body)
	}
	resp := s.chat(t.Context(), modelFast, 3, true)
	evs, err := readEvents(resp.Body).rest(t, 20*time.Second)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || len(evs) == 0 || evs[len(evs)-1] != "[DONE]" {
		t.Fatalf("stream after the kill: status %d, err %v, events %q", resp.StatusCode, err, evs)
	}
	if got := retries(); got != 2 {
		t.Errorf("%d retries logged, want 2 (one per request)", got)
	}
	if !strings.Contains(s.logs.String(), "neuron=gpu-a") {
		t.Error("the retry does not name gpu-a")
	}

	for i := 1; i <= 3; i++ {
		s.pollRound(clock)
		ns := s.gw.Fleet().Neuron("gpu-a")
		if ns.Failures != i || ns.Healthy != (i < 3) {
			t.Fatalf("after %d failed polls: failures %d, healthy %v; want %d, %v", i, ns.Failures, ns.Healthy, i, i < 3)
		}
		if !s.gw.Fleet().Neuron("gpu-b").Healthy {
			t.Fatal("gpu-b unhealthy")
		}
	}
	// Routed to the replica at once now.
	if status, _, body := s.chatOnce(modelFast, 3); status != http.StatusOK {
		t.Fatalf("request with gpu-a unhealthy: status %d: %s", status, body)
	}
	if got := retries(); got != 2 {
		t.Errorf("%d retries logged, want still 2: the unhealthy neuron was tried", got)
	}
	s.settled(time.Second)

	// No replica left.
	engines = b.engines()
	b.kill()
	waitGone(t, engines)
	for range 3 {
		s.pollRound(clock)
	}
	status, hdr, body := s.chatOnce(modelFast, 3)
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("with every neuron down: status %d, Retry-After %q: %s", status, hdr.Get("Retry-After"), body)
	}
	if code := errorCode(body); code != cortex.CodeServiceUnavailable {
		t.Errorf("code %q, want %q", code, cortex.CodeServiceUnavailable)
	}
	s.settled(time.Second)
}

// TestStalledStream: an engine that stops sending mid-stream (helexa-sim
// --hang) is cut by the stream idle timeout: the stream ends with an error
// event, the reservation is settled and the neuron's request is cancelled.
// A slow but steady stream that lasts longer than the idle timeout is not
// cut.
func TestStalledStream(t *testing.T) {
	suite(t)
	const idle = time.Second
	n := startNeuron(t, "gpu-stall", modelHang, modelSlow)
	s := newStack(t, []*neuronProc{n}, cortex.WithStreamIdleTimeout(idle))

	resp := s.chat(t.Context(), modelHang, 20, true)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ev := readEvents(resp.Body)
	if first, ok := ev.next(t, 10*time.Second); !ok || errorCode(first) != "" {
		t.Fatalf("first event %q (ok %v): want the first token", first, ok)
	}
	evs, err := ev.rest(t, 10*idle)
	if err == nil {
		t.Errorf("the stalled stream ended cleanly: %q", evs)
	}
	if len(evs) == 0 || errorCode(evs[len(evs)-1]) != cortex.CodeUpstreamTimeout {
		t.Errorf("events after the first %q: want an error event with code %s last", evs, cortex.CodeUpstreamTimeout)
	}
	s.settled(time.Second)
	if s.spent() == 0 {
		t.Error("nothing was charged for the stalled stream")
	}
	proctest.Eventually(t, 10*time.Second, "the stalled request gone from the neuron", func() bool { return n.inFlight(t, modelHang) == 0 })

	// 8 tokens at 5 per second: about 1.6 s, longer than the idle timeout,
	// with a token every 200 ms.
	start := time.Now()
	resp = s.chat(t.Context(), modelSlow, 8, true)
	defer resp.Body.Close()
	evs, err = readEvents(resp.Body).rest(t, 30*time.Second)
	took := time.Since(start)
	if err != nil || len(evs) == 0 || evs[len(evs)-1] != "[DONE]" {
		t.Fatalf("slow stream: err %v, events %q; want a clean end", err, evs)
	}
	for _, e := range evs {
		if errorCode(e) != "" {
			t.Errorf("error event in the slow stream: %s", e)
		}
	}
	if took < idle {
		t.Errorf("the slow stream took %v, less than the idle timeout %v: the test proves nothing", took, idle)
	}
	s.settled(time.Second)
}

// TestClientDisconnect: a client that goes away mid-stream cancels the
// request to the neuron (its admission slot is freed long before the
// answer would have ended), and its reservation is settled.
func TestClientDisconnect(t *testing.T) {
	suite(t)
	n := startNeuron(t, "gpu-gone", modelSlow)
	s := newStack(t, []*neuronProc{n})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	resp := s.chat(ctx, modelSlow, 200, true) // 40 s of tokens
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ev := readEvents(resp.Body)
	for range 2 {
		if _, ok := ev.next(t, 10*time.Second); !ok {
			t.Fatal("the stream ended early")
		}
	}
	if got := n.inFlight(t, modelSlow); got != 1 {
		t.Fatalf("%d requests at the neuron, want 1", got)
	}
	cancel()
	resp.Body.Close()
	_, _ = ev.rest(t, 10*time.Second)

	proctest.Eventually(t, 10*time.Second, "the neuron's admission slot freed", func() bool { return n.inFlight(t, modelSlow) == 0 })
	proctest.Eventually(t, 10*time.Second, "the gateway's request finished", func() bool { return s.gw.InFlight() == 0 })
	s.settled(time.Second)
	if s.spent() == 0 {
		t.Error("nothing was charged for the tokens streamed before the client left")
	}
}

// TestGatewayGracefulShutdown: Shutdown of the gateway lets a stream in
// flight finish, refuses new requests with 503 shutting_down and
// Retry-After, and leaves nothing reserved.
func TestGatewayGracefulShutdown(t *testing.T) {
	suite(t)
	n := startNeuron(t, "gpu-drain", modelSlow, modelFast)
	s := newStack(t, []*neuronProc{n})

	resp := s.chat(t.Context(), modelSlow, 10, true) // about 2 s
	defer resp.Body.Close()
	ev := readEvents(resp.Body)
	if _, ok := ev.next(t, 10*time.Second); !ok {
		t.Fatal("the stream ended before the shutdown")
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		shut <- s.gw.Shutdown(ctx)
	}()
	proctest.Eventually(t, 5*time.Second, "new requests refused", func() bool {
		status, hdr, body := s.chatOnce(modelFast, 1)
		if status != http.StatusServiceUnavailable {
			return false
		}
		if code := errorCode(body); code != cortex.CodeShuttingDown || hdr.Get("Retry-After") == "" {
			t.Errorf("refused with %s, Retry-After %q; want %s with Retry-After", body, hdr.Get("Retry-After"), cortex.CodeShuttingDown)
		}
		return true
	})
	evs, err := ev.rest(t, 20*time.Second)
	if err != nil || len(evs) == 0 || evs[len(evs)-1] != "[DONE]" {
		t.Errorf("the stream in flight: err %v, events %q; want it finished", err, evs)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown did not return after the last stream ended")
	}
	s.settled(time.Second)
}

// TestNeuronGracefulShutdown: SIGTERM to a neuron process lets its stream
// in flight finish, refuses new requests with 503 (at the neuron, and
// through the gateway), stops its engines and exits 0, with nothing left
// reserved.
func TestNeuronGracefulShutdown(t *testing.T) {
	suite(t)
	n := startNeuron(t, "gpu-term", modelSlow, modelFast)
	s := newStack(t, []*neuronProc{n})
	engines := n.engines()
	if len(engines) != 2 {
		t.Fatalf("engines of the neuron: %v, want two", engines)
	}

	resp := s.chat(t.Context(), modelSlow, 15, true) // about 3 s
	defer resp.Body.Close()
	ev := readEvents(resp.Body)
	if _, ok := ev.next(t, 10*time.Second); !ok {
		t.Fatal("the stream ended before the shutdown")
	}
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 5*time.Second, "the neuron refusing new requests", func() bool {
		status, body := n.post(t, "/v1/chat/completions", `{"model":"fast","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`)
		if status != http.StatusServiceUnavailable {
			return false
		}
		if code := errorCode(body); code != neuron.CodeShuttingDown {
			t.Errorf("refused with %s, want %s", body, neuron.CodeShuttingDown)
		}
		return true
	})
	status, hdr, body := s.chatOnce(modelFast, 1)
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("through the gateway: status %d, Retry-After %q: %s; want 503 with Retry-After", status, hdr.Get("Retry-After"), body)
	}
	evs, err := ev.rest(t, 20*time.Second)
	if err != nil || len(evs) == 0 || evs[len(evs)-1] != "[DONE]" {
		t.Errorf("the stream in flight: err %v, events %q; want it finished", err, evs)
	}
	select {
	case <-n.done:
		if n.err != nil {
			t.Errorf("the neuron exited with %v; logs:\n%s", n.err, n.logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the neuron did not exit after draining")
	}
	waitGone(t, engines)
	s.settled(time.Second)
}

// post sends a JSON body to the neuron with its token and returns the
// status and body.
func (n *neuronProc) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, n.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+neuronToken)
	resp, err := n.hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// errorCode returns the code of an OpenAI error envelope, or "" when s is
// not one.
func errorCode(s string) string {
	var v struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(s), &v) != nil || v.Error == nil {
		return ""
	}
	return v.Error.Code
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
