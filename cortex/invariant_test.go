package cortex_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// The tests of the budget invariant (see the package documentation) at
// the gateway's edge: the engine generates no more than was reserved, the
// model served is the one priced, what was served is settled, and nothing
// stays reserved.

// greedy is an engine that ignores every bound: it streams tokens until
// its client goes away (or forever), or answers a non-streaming request
// with a large body and true usage. It records what it was sent.
type greedy struct {
	generated atomic.Int64
	mu        sync.Mutex
	url       string
	header    http.Header
	body      []byte
	answer    int // tokens of a non-streaming answer
}

func (g *greedy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	g.url, g.header, g.body = r.URL.String(), r.Header.Clone(), body
	g.mu.Unlock()
	var req struct{ Stream bool }
	_ = json.Unmarshal(body, &req)
	w.Header().Set("Server", "llama.cpp")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("X-Engine-Secret", "internal")
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		var b strings.Builder
		b.WriteString(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"`)
		for range g.answer {
			b.WriteString("word ")
		}
		g.generated.Add(int64(g.answer))
		fmt.Fprintf(&b, `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":%d}}`, g.answer)
		_, _ = io.WriteString(w, b.String())
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for i := 0; ; i++ {
		if _, err := fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t%d \"}}]}\n\n", i); err != nil {
			return
		}
		g.generated.Add(1)
		w.(http.Flusher).Flush()
		if r.Context().Err() != nil {
			return
		}
	}
}

func (g *greedy) last() (string, http.Header, []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.url, g.header, g.body
}

func greedyStack(t *testing.T, g *greedy, cap int64, opts ...cortex.GatewayOption) (*stack, *entitlements.Local) {
	t.Helper()
	local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", HardCap: ptr(cap)})
	opts = append([]cortex.GatewayOption{cortex.WithProvider(local)}, opts...)
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: g, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000), loadedSpec("chat-b", 4000)}}},
		testCatalogue(t), opts...)
	return s, local
}

// TestGreedyEngineIsCutAtTheAllowance: an engine that ignores max_tokens
// streams no more than was reserved to the client, and the whole
// reservation is settled.
func TestGreedyEngineIsCutAtTheAllowance(t *testing.T) {
	t.Parallel()
	g := &greedy{}
	s, local := greedyStack(t, g, 1000)
	resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"stream":true`, `"max_tokens":10`), "x-api-key", "k")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.Count(string(body), `"content":"t`); got > 10 {
		t.Errorf("the client got %d tokens, 10 reserved", got)
	}
	snap := s.budgetOf(local, "acct")
	if want := entitlements.Amount(helloEstimate + 10); snap.Spent != want || snap.Reserved != 0 {
		t.Errorf("spent %d reserved %d, want the whole reservation %d and 0", snap.Spent, snap.Reserved, want)
	}
}

// TestPartialReadOfALargeAnswerIsSettled: a client that reads a few bytes
// of a large non-streaming answer and leaves is charged the engine's usage,
// which the gateway reads to the end of the body.
func TestPartialReadOfALargeAnswerIsSettled(t *testing.T) {
	t.Parallel()
	// 2 MB: far more than the connections' buffers hold.
	g := &greedy{answer: 400000}
	s, local := greedyStack(t, g, 1<<40)
	resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-b", `"max_tokens":500000`), "x-api-key", "k")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	snap := s.budgetOf(local, "acct")
	if want := entitlements.Amount(7 + 400000); snap.Spent != want || snap.Reserved != 0 {
		t.Errorf("spent %d reserved %d, want the engine's usage %d and 0", snap.Spent, snap.Reserved, want)
	}
}

// TestOnlyWhatTheEngineNeedsReachesIt: the client's query string does not
// reach the engine, and the engine's own headers do not reach the client.
func TestOnlyWhatTheEngineNeedsReachesIt(t *testing.T) {
	t.Parallel()
	g := &greedy{answer: 2}
	s, _ := greedyStack(t, g, 1000)
	status, hdr, body := s.post("/v1/chat/completions?api_key=secret&debug=1", chatBody("chat-a", `"max_tokens":2`), "x-api-key", "k")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	url, _, _ := g.last()
	if strings.Contains(url, "?") || strings.Contains(url, "secret") {
		t.Errorf("the engine got %q", url)
	}
	for _, k := range []string{"Server", "Access-Control-Allow-Origin", "X-Engine-Secret"} {
		if v := hdr.Get(k); v != "" {
			t.Errorf("the client got the engine's %s: %q", k, v)
		}
	}
}

// TestEveryBoundIsTheReservedOne: the bounds an engine obeys, the client's
// and the engine's own, reach it as the value reserved.
func TestEveryBoundIsTheReservedOne(t *testing.T) {
	t.Parallel()
	g := &greedy{answer: 2}
	s, _ := greedyStack(t, g, 1000)
	status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":5`, `"n_predict":100000`, `"max_new_tokens":null`), "x-api-key", "k")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	_, hdr, sent := g.last()
	var v map[string]any
	if err := json.Unmarshal(sent, &v); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"max_tokens", "n_predict", "max_new_tokens"} {
		if v[k] != 5.0 {
			t.Errorf("the engine got %s = %v, want 5", k, v[k])
		}
	}
	if h := hdr.Get(neuron.HeaderMaxOutputTokens); h != "" {
		t.Errorf("the engine got the allowance header %q", h)
	}
}

// TestAmbiguousBodies: a body decoders could read differently is refused
// before anything is reserved or routed, in the route's error shape.
func TestAmbiguousBodies(t *testing.T) {
	t.Parallel()
	g := &greedy{answer: 2}
	s, local := greedyStack(t, g, 1000)
	for _, tt := range []struct{ path, body, want string }{
		{"/v1/chat/completions", `{"model":"chat-a","model":"chat-b","messages":[{"role":"user","content":"hi"}]}`, `"code":"ambiguous_request"`},
		{"/v1/chat/completions", chatBody("chat-a", `"max_tokens":5`, `"Max_Tokens":100000`), `"code":"ambiguous_request"`},
		{"/v1/completions", `{"model":"chat-a","prompt":"hi","\u006e":100}`, `"code":"ambiguous_request"`},
		{"/v1/messages", `{"model":"chat-a","max_tokens":5,"max_tokens":60,"messages":[{"role":"user","content":"hi"}]}`, `"type":"error"`},
	} {
		status, _, body := s.post(tt.path, tt.body, "x-api-key", "k")
		if status != http.StatusBadRequest || !strings.Contains(body, tt.want) || !strings.Contains(body, "ambiguous") {
			t.Errorf("%s %s: status %d: %s; want 400 with %s", tt.path, tt.body, status, body, tt.want)
		}
	}
	if snap := s.budgetOf(local, "acct"); snap.Spent != 0 || snap.Reserved != 0 {
		t.Errorf("spent %d reserved %d after refusals, want 0 and 0", snap.Spent, snap.Reserved)
	}
	if _, _, b := g.last(); b != nil {
		t.Errorf("the engine got %s", b)
	}
}

// TestOutputLimitIsAHardBound: a request for more output than the model's
// limit.output is refused.
func TestOutputLimitIsAHardBound(t *testing.T) {
	t.Parallel()
	g := &greedy{answer: 2}
	s, _ := greedyStack(t, g, 1000)
	status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":65`), "x-api-key", "k")
	if status != http.StatusBadRequest || !strings.Contains(body, "over the 64") {
		t.Errorf("status %d: %s; want 400 naming the limit of 64", status, body)
	}
}

// TestPromptArraysAreReserved: every prompt of a completion's prompt array
// is reserved, times n.
func TestPromptArraysAreReserved(t *testing.T) {
	t.Parallel()
	g := &greedy{answer: 2}
	s, local := greedyStack(t, g, 200)
	// 4 prompts x 2 x 30 tokens do not fit 200; one prompt does.
	status, _, body := s.post("/v1/completions", `{"model":"chat-a","prompt":["a","b","c","d"],"n":2,"max_tokens":30}`, "x-api-key", "k")
	if status != http.StatusTooManyRequests {
		t.Errorf("status %d: %s; want 429", status, body)
	}
	status, _, body = s.post("/v1/completions", `{"model":"chat-a","prompt":"a","n":2,"max_tokens":30}`, "x-api-key", "k")
	if status != http.StatusOK {
		t.Errorf("status %d: %s", status, body)
	}
	if snap := s.budgetOf(local, "acct"); snap.Reserved != 0 {
		t.Errorf("reserved %d, want 0", snap.Reserved)
	}
}

// TestClientThatStopsReadingIsCut: a streaming client whose socket accepts
// nothing more is cut after the stream idle timeout; its key's slot is
// freed and what was served is settled.
func TestClientThatStopsReadingIsCut(t *testing.T) {
	t.Parallel()
	g := &greedy{}
	local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", HardCap: ptr(int64(1 << 40)), MaxInFlight: 1})
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: g, Models: []neuron.LoadSpec{loadedSpec("chat-b", 4000)}}},
		testCatalogue(t), cortex.WithProvider(local), cortex.WithStreamIdleTimeout(300*time.Millisecond))
	addr := strings.TrimPrefix(s.srv.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	body := chatBody("chat-b", `"stream":true`, `"max_tokens":100000000`)
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Api-Key: k\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	// Read the headers, then nothing.
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status line %q, %v", line, err)
	}
	waitFor(t, "the gateway to cut the client", func() bool { return s.gw.InFlight() == 0 })
	snap := s.budgetOf(local, "acct")
	if want := entitlements.Amount(helloEstimate + 100000000); snap.Reserved != 0 || snap.Spent != want {
		t.Errorf("spent %d reserved %d, want the whole reservation %d; the engine generated %d", snap.Spent, snap.Reserved, want, g.generated.Load())
	}
	// The key's one slot is free again.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp := s.doCtx(ctx, http.MethodPost, "/v1/chat/completions", chatBody("chat-b", `"max_tokens":2`), "x-api-key", "k")
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests {
		t.Errorf("status %d: the cut stream still holds the key's slot", resp.StatusCode)
	}
}
