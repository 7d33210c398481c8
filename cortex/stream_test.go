package cortex_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/helexa-ai/helexa-go/neuron"
)

// eventReader reads an SSE stream event by event.
type eventReader struct{ br *bufio.Reader }

func newEventReader(r io.Reader) *eventReader { return &eventReader{bufio.NewReader(r)} }

// next returns the data of the next event, without "data: ".
func (e *eventReader) next() (string, error) {
	var data string
	for {
		line, err := e.br.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if data != "" {
				return data, nil
			}
			continue
		}
		if d, ok := strings.CutPrefix(line, "data:"); ok {
			data = strings.TrimPrefix(d, " ")
		}
	}
}

// all returns the data of every remaining event, and the error that ended
// the stream (nil at a clean end).
func (e *eventReader) all() ([]string, error) {
	var out []string
	for {
		d, err := e.next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, d)
	}
}

// nextWithin reads the next event, failing the test when none arrives
// within d.
func nextWithin(t *testing.T, er *eventReader, d time.Duration, what string) string {
	t.Helper()
	type result struct {
		data string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		data, err := er.next()
		ch <- result{data, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		return r.data
	case <-timer.C:
		t.Fatalf("%s: nothing within %v", what, d)
	}
	return ""
}

// stepEngine is an engine whose stream sends chunk k+1 only after the test
// receives chunk k and lets it go on.
type stepEngine struct {
	chunks   int
	steps    chan struct{} // one value per chunk after the first
	canceled chan struct{} // closed when the client of the engine left early
	sawUsage atomic.Bool   // the request asked for stream_options.include_usage
}

func newStepEngine(chunks int) *stepEngine {
	return &stepEngine{chunks: chunks, steps: make(chan struct{}), canceled: make(chan struct{})}
}

func (e *stepEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	e.sawUsage.Store(req.StreamOptions.IncludeUsage)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for k := range e.chunks {
		if k > 0 {
			select {
			case <-e.steps:
			case <-r.Context().Done():
				close(e.canceled)
				return
			}
		}
		fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w%d \"}}]}\n\n", k)
		_ = rc.Flush()
	}
	if req.StreamOptions.IncludeUsage {
		fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":%d}}\n\n", e.chunks)
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
}

func TestStreamArrivesIncrementally(t *testing.T) {
	t.Parallel()
	const chunks = 5
	eng := newStepEngine(chunks)
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: eng, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
	resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"stream":true`))
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	er := newEventReader(resp.Body)
	for k := range chunks {
		// The engine sends chunk k+1 only after this read: a gateway that
		// buffers never delivers chunk k.
		data := nextWithin(t, er, 10*time.Second, fmt.Sprintf("chunk %d", k))
		if want := fmt.Sprintf(`"content":"w%d "`, k); !strings.Contains(data, want) {
			t.Fatalf("chunk %d = %s, want %s", k, data, want)
		}
		if k+1 < chunks {
			eng.steps <- struct{}{}
		}
	}
	rest, err := er.all()
	if err != nil {
		t.Fatalf("end of stream: %v", err)
	}
	// The gateway asked for usage; the client did not, so it sees no usage chunk.
	if !eng.sawUsage.Load() {
		t.Error("the engine was not asked for usage")
	}
	if len(rest) != 1 || rest[0] != "[DONE]" {
		t.Errorf("after the content: %q, want only [DONE]", rest)
	}
}

func TestUsageChunkHiddenUnlessRequested(t *testing.T) {
	t.Parallel()
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{{Key: "k", AccountID: "acct"}}})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t),
		cortex.WithProvider(local))
	stream := func(extra ...string) (content int, usage []string) {
		t.Helper()
		resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-a", append([]string{`"stream":true`, `"max_tokens":4`}, extra...)...),
			"Authorization", "Bearer k")
		defer resp.Body.Close()
		events, err := newEventReader(resp.Body).all()
		if err != nil {
			t.Fatal(err)
		}
		if len(events) == 0 || events[len(events)-1] != "[DONE]" {
			t.Fatalf("stream does not end with [DONE]: %q", events)
		}
		for _, e := range events[:len(events)-1] {
			if strings.Contains(e, `"usage"`) {
				usage = append(usage, e)
			} else {
				content++
			}
		}
		return content, usage
	}
	spent := func() entitlements.Amount {
		snap, err := local.Snapshot(t.Context(), entitlements.Principal{AccountID: "acct", KeyID: "acct"})
		if err != nil {
			t.Fatal(err)
		}
		return snap.Spent
	}

	content, usage := stream()
	if content == 0 || len(usage) != 0 {
		t.Errorf("not requested: %d content events, usage events %q; want content and no usage", content, usage)
	}
	// The usage the client did not see was still settled.
	if got := spent(); got <= 4 {
		t.Errorf("spent %d after a hidden usage chunk, want the prompt and 4 completion tokens", got)
	}
	before := spent()
	_, usage = stream(`"stream_options":{"include_usage":true}`)
	if len(usage) != 1 || !strings.Contains(usage[0], `"choices":[]`) {
		t.Fatalf("requested: usage events %q, want one", usage)
	}
	var u struct {
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(usage[0]), &u); err != nil {
		t.Fatal(err)
	}
	if got, want := spent()-before, entitlements.Amount(u.Usage.PromptTokens+u.Usage.CompletionTokens); got != want || u.Usage.CompletionTokens != 4 {
		t.Errorf("settled %d for usage %+v, want %d", got, u.Usage, want)
	}
	// stream_options without include_usage is completed, not duplicated.
	_, usage = stream(`"stream_options":{}`)
	if len(usage) != 0 {
		t.Errorf("stream_options {}: usage events %q, want none", usage)
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	t.Parallel()
	eng := newStepEngine(3) // stalls after the first chunk: the test never steps it
	clock := newFakeClock()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: eng, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t),
		cortex.WithStreamIdleTimeout(time.Minute), cortex.WithClock(clock))
	resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"stream":true`))
	defer resp.Body.Close()
	er := newEventReader(resp.Body)
	nextWithin(t, er, 10*time.Second, "first chunk")
	waitArmed(t, clock, 1) // the idle timer
	clock.Advance(time.Minute)
	type result struct {
		events []string
		err    error
	}
	rest := make(chan result, 1)
	go func() {
		events, err := er.all()
		rest <- result{events, err}
	}()
	select {
	case <-eng.canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled stream was not cut: the engine's request is still open")
	}
	r := <-rest
	if r.err == nil {
		t.Errorf("a cut stream ended cleanly, after %q", r.events)
	}
	for _, e := range r.events {
		if e == "[DONE]" {
			t.Errorf("a cut stream sent [DONE]")
		}
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	t.Parallel()
	eng := newStepEngine(3)
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: eng, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
	ctx, cancel := context.WithCancel(t.Context())
	resp := s.doCtx(ctx, http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"stream":true`))
	defer resp.Body.Close()
	nextWithin(t, newEventReader(resp.Body), 10*time.Second, "first chunk")
	cancel()
	select {
	case <-eng.canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the engine's request was not cancelled after the client left")
	}
	waitFor(t, "the gateway to finish the request", func() bool { return s.gw.InFlight() == 0 })
}

// A stream that ends without the usage the gateway asked for is settled at
// its whole reservation: nothing it counted is a bound of what the engine
// generated.
func TestStreamWithoutUsageSettlesTheReservation(t *testing.T) {
	t.Parallel()
	engine := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for k := range 3 {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w%d\"}}]}\n\n", k)
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	})
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{{Key: "k", AccountID: "acct"}}})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: engine, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t),
		cortex.WithProvider(local))
	// "Hello there" is 11 characters: ceil(11/4) = 3 tokens, plus 4 for the message.
	resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"stream":true`), "x-api-key", "k")
	events, err := newEventReader(resp.Body).all()
	resp.Body.Close()
	if err != nil || len(events) != 4 {
		t.Fatalf("events %q, %v", events, err)
	}
	snap, err := local.Snapshot(t.Context(), entitlements.Principal{AccountID: "acct", KeyID: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	if want := entitlements.Amount(3 + 4 + 64); snap.Spent != want || snap.Reserved != 0 {
		t.Errorf("spent %d reserved %d, want spent %d (estimate 7 + the 64 output tokens reserved)", snap.Spent, snap.Reserved, want)
	}
}

func TestResponsesStreamPassesThrough(t *testing.T) {
	t.Parallel()
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t))
	resp := s.do(http.MethodPost, "/v1/responses", `{"model":"fast","input":"Hello","stream":true,"max_output_tokens":3}`)
	defer resp.Body.Close()
	events, err := newEventReader(resp.Body).all()
	if err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 || !strings.Contains(events[len(events)-1], `"response.completed"`) {
		t.Fatalf("events %q: want the stream to end with response.completed", events)
	}
	_, sent := s.fleet.Neuron("n1").LastRequest()
	if strings.Contains(string(sent), "stream_options") || !strings.Contains(string(sent), `"model":"chat-a"`) {
		t.Errorf("the neuron got %s: want the model id and no stream_options", sent)
	}
}
