package cortex_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// postAsync sends a POST in a goroutine: with its headers held back until
// a tick, the answer arrives on the channel only once the test ticks.
func postAsync(s *stack, path, body string) <-chan *http.Response {
	ch := make(chan *http.Response, 1)
	go func() {
		resp, err := s.srv.Client().Post(s.srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			ch <- &http.Response{StatusCode: -1, Status: err.Error(), Body: io.NopCloser(strings.NewReader(""))}
			return
		}
		ch <- resp
	}()
	return ch
}

// sseReader reads an event stream line by line.
type sseReader struct {
	t  *testing.T
	br *bufio.Reader
}

// event returns the next event (its lines up to the blank line), or "" at
// the end of the stream.
func (r *sseReader) event() string {
	r.t.Helper()
	var b strings.Builder
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			if err != io.EOF {
				r.t.Fatalf("reading the stream: %v", err)
			}
			return b.String()
		}
		if line == "\n" {
			return b.String()
		}
		b.WriteString(line)
	}
}

func TestStreamWaitingForAColdLoadGetsKeepAlives(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newStack(t, cortextest.Named("n1"), testCatalogue(t), cortex.WithClock(clock))
	release := s.fleet.Neuron("n1").HoldLoads()
	defer release()

	answer := postAsync(s, "/v1/chat/completions", chatBody("fast", `"stream":true`, `"max_tokens":3`))
	waitFor(t, "the load to start", func() bool { return s.fleet.Neuron("n1").Loads() == 1 })
	// The headers come with the first keep-alive, before the model is
	// ready.
	waitArmed(t, clock, 1) // the keep-alive ticker
	clock.Advance(5 * time.Second)
	resp := <-answer
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := &sseReader{t: t, br: bufio.NewReader(resp.Body)}
	if got, want := r.event(), ": loading chat-a 5s\n"; got != want {
		t.Errorf("first keep-alive %q, want %q", got, want)
	}
	clock.Advance(5 * time.Second)
	if got, want := r.event(), ": loading chat-a 10s\n"; got != want {
		t.Errorf("second keep-alive %q, want %q", got, want)
	}

	// While it loads, /v1/models lists where.
	var list cortex.ModelList
	mresp := s.do(http.MethodGet, "/v1/models", "")
	if err := json.NewDecoder(mresp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	mresp.Body.Close()
	if l := list.Data[0].Locations; list.Data[0].ID != "chat-a" || len(l) != 1 || l[0].Status != neuron.StatusLoading || l[0].LoadingSeconds != 10 {
		t.Errorf("chat-a in /v1/models: %+v, want loading on n1 for 10s", list.Data[0])
	}

	release()
	var data []string
	for ev := r.event(); ev != ""; ev = r.event() {
		if !strings.HasPrefix(ev, "data: ") {
			t.Errorf("event %q after the load, want data", ev)
		}
		data = append(data, ev)
	}
	if len(data) < 2 || data[len(data)-1] != "data: [DONE]\n" || !strings.Contains(data[0], `"chat.completion.chunk"`) {
		t.Errorf("the stream after the load: %q", data)
	}
}

func TestStreamWhoseColdLoadFailsEndsWithAnErrorEvent(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	spec := cortextest.Spec{Name: "n1", SimModels: map[string]sim.Config{"chat-a": {FailLoad: true}}}
	s := newStack(t, []cortextest.Spec{spec}, testCatalogue(t), cortex.WithClock(clock))
	release := s.fleet.Neuron("n1").HoldLoads()
	defer release()

	answer := postAsync(s, "/v1/chat/completions", chatBody("chat-a", `"stream":true`))
	waitArmed(t, clock, 1) // the keep-alive ticker
	clock.Advance(5 * time.Second)
	resp := <-answer
	defer resp.Body.Close()
	r := &sseReader{t: t, br: bufio.NewReader(resp.Body)}
	if got := r.event(); resp.StatusCode != http.StatusOK || got != ": loading chat-a 5s\n" {
		t.Fatalf("status %d, first event %q", resp.StatusCode, got)
	}
	release()
	ev := r.event()
	const prefix = "event: error\ndata: "
	if !strings.HasPrefix(ev, prefix) {
		t.Fatalf("event %q, want an error event", ev)
	}
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(ev, prefix)), &env); err != nil {
		t.Fatalf("error event %q: %v", ev, err)
	}
	if env.Error.Code != cortex.CodeModelLoadFailed {
		t.Errorf("error event %+v, want %s", env.Error, cortex.CodeModelLoadFailed)
	}
	if rest := r.event(); rest != "" {
		t.Errorf("more after the error event: %q", rest)
	}
	events := s.gw.Events()
	if len(events) != 1 || events[0].Kind != cortex.EventLoadFailed || events[0].Error == "" {
		t.Errorf("events %+v, want one failed load", events)
	}
}

func TestNonStreamingColdStartWaitIsBounded(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newStack(t, cortextest.Named("n1"), testCatalogue(t), cortex.WithClock(clock),
		cortex.WithColdStartWait(30*time.Second), cortex.WithRetryAfter(4*time.Second))
	n := s.fleet.Neuron("n1")
	release := n.HoldLoads()
	defer release()

	answer := postAsync(s, "/v1/chat/completions", chatBody("fast"))
	waitArmed(t, clock, 1) // the cold-start wait
	clock.Advance(30 * time.Second)
	resp := <-answer
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "4" {
		t.Fatalf("status %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if e := envelope(t, string(b)); e.Code != cortex.CodeServiceUnavailable || !strings.Contains(e.Message, "still loading") {
		t.Errorf("envelope %+v", e)
	}

	// The load went on: once done, the model serves at once.
	release()
	waitFor(t, "the load to end", func() bool { return len(s.gw.Events()) == 1 })
	status, _, body := s.post("/v1/chat/completions", chatBody("fast"))
	if status != http.StatusOK {
		t.Errorf("after the load: status %d: %s", status, body)
	}
	if got := n.LoadCalls(); len(got) != 1 {
		t.Errorf("load calls %q, want one", got)
	}
}

func TestModelsListsNeuronReportedLoadingTime(t *testing.T) {
	t.Parallel()
	// A load that takes an hour on the neuron: the gateway's first poll
	// sees it loading.
	spec := cortextest.Spec{Name: "n1", SimModels: map[string]sim.Config{"chat-a": {LoadTime: time.Hour}}}
	s := newStack(t, []cortextest.Spec{spec}, testCatalogue(t))
	n := s.fleet.Neuron("n1")
	loading := make(chan struct{})
	go func() {
		defer close(loading)
		_, _ = n.Client().Load(context.WithoutCancel(t.Context()), loadedSpec("chat-a", 4000))
	}()
	defer func() {
		// Unloading ends the load, and with it the neuron's handler.
		if err := n.Harness().Unload(context.Background(), "chat-a"); err != nil {
			t.Error(err)
		}
		<-loading
	}()
	waitFor(t, "the neuron to report the load", func() bool {
		s.refresh()
		m := s.gw.Fleet().Neuron("n1").Model("chat-a")
		return m != nil && m.Status == neuron.StatusLoading && m.LoadingSeconds > 0
	})
	for _, e := range s.gw.Models().Data {
		if e.ID != "chat-a" {
			continue
		}
		if len(e.Locations) != 1 || e.Locations[0].Status != neuron.StatusLoading || e.Locations[0].LoadingSeconds < 0 {
			t.Errorf("chat-a: %+v", e.Locations)
		}
	}
	if st := s.gw.Status(t.Context(), false); st.Models[0].State != cortex.ModelLoading {
		t.Errorf("chat-a's state %q, want loading", st.Models[0].State)
	}
}

func TestMessagesStreamColdStartIsBounded(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newStack(t, cortextest.Named("n1"), testCatalogue(t), cortex.WithClock(clock), cortex.WithRetryAfter(3*time.Second))
	release := s.fleet.Neuron("n1").HoldLoads()
	defer release()

	// An Anthropic stream gets no SSE comments while it waits: its answer
	// is translated from the engine's, so it gets a status instead.
	answer := postAsync(s, "/v1/messages", `{"model":"fast","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	waitArmed(t, clock, 1) // the cold-start wait
	clock.Advance(cortex.DefaultColdStartWait)
	resp := <-answer
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("status %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if strings.Contains(string(b), ": loading") {
		t.Errorf("keep-alive comments in an Anthropic answer: %s", b)
	}
}
