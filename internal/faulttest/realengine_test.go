//go:build linux

package faulttest_test

import (
	"encoding/json"
	"fmt"
	"github.com/helexa-ai/helexa-go/internal/proctest"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/neuron"
)

// The real-engine suite: a neuron process (cmd/neuron) running llama.cpp's
// llama-server as its engines, behind a Gateway in the test process. It
// runs when both variables name files, and is skipped otherwise (failed
// under HELEXA_REQUIRE_REALENGINE=1, as in CI).
const (
	envLlamaServer       = "HELEXA_LLAMA_SERVER" // path of a llama-server binary
	envLlamaModel        = "HELEXA_LLAMA_MODEL"  // path of a GGUF model it loads
	envRequireRealEngine = "HELEXA_REQUIRE_REALENGINE"
)

// The models of the suite: two catalogue ids for the same GGUF, served by
// one engine template. The neuron's one device has room for one of them
// at a time, so loading either evicts the other.
const (
	realModel  = "tiny"   // chat, streams and embeddings
	realOther  = "tiny-2" // the model whose load evicts realModel
	realEngine = "llama-server"
	realVRAMMB = 1000 // per model
	realDevMB  = 1500 // the neuron's one device
	// realContext is the context of the engine, the tiny model's own:
	// every prompt and answer of the suite stays well inside it.
	realContext = 256
	realCap     = 20_000 // the key's hard cap, in tokens (the models are not priced)
)

// realArgs are the flags of every llama-server: one slot of the model's
// context, one compute thread (more spin against each other on a small
// machine), and embeddings with mean pooling, which leave chat working.
var realArgs = []string{"--threads", "1", "--ctx-size", fmt.Sprint(realContext), "--parallel", "1",
	"--embeddings", "--pooling", "mean"}

// llamaPaths returns the paths of llama-server and its model from the
// environment, skipping the test when they are not set.
func llamaPaths(t *testing.T) (server, gguf string) {
	t.Helper()
	if testing.Short() {
		t.Skip("faulttest: the real-engine suite runs real neuron and llama-server processes; skipped under -short")
	}
	server, gguf = os.Getenv(envLlamaServer), os.Getenv(envLlamaModel)
	var err error
	switch {
	case server == "" || gguf == "":
		err = fmt.Errorf("set %s to a llama-server binary and %s to a GGUF model to run it", envLlamaServer, envLlamaModel)
	default:
		var fi os.FileInfo
		if fi, err = os.Stat(server); err == nil && fi.Mode()&0o111 == 0 {
			err = fmt.Errorf("%s=%s is not executable", envLlamaServer, server)
		}
		if err == nil {
			_, err = os.Stat(gguf)
		}
	}
	if err != nil {
		if os.Getenv(envRequireRealEngine) == "1" {
			t.Fatalf("faulttest: the real engine is missing (%s=1): %v", envRequireRealEngine, err)
		}
		t.Skipf("faulttest: real-engine suite skipped: %v", err)
	}
	t.Parallel()
	binaries(t)
	return server, gguf
}

// realSetup is what a test of the suite runs on.
type realSetup struct {
	n            *neuronProc
	s            *stack
	dir          string // the test's directory: every llama-server's command line names it
	server, gguf string // llama-server and the model, from the environment
}

// realOptions are a neuron's extra engine settings and default models.
type realOptions struct {
	engineTOML string   // more keys of the engine template
	defaults   []string // models loaded at start
}

// startReal starts a neuron running llama-server for the models, and a
// gateway over it with one key capped at realCap. The model file is
// linked into the test's directory, so that the command line of each of
// the test's llama-servers names that directory; the cleanups check that
// none of them is left.
func startReal(t *testing.T, o realOptions) *realSetup {
	t.Helper()
	server, gguf := llamaPaths(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "model.gguf")
	if err := os.Symlink(gguf, model); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { noLlamaLeft(t, dir) })
	var lastErr error
	var n *neuronProc
	for range 3 { // a port taken between the pick and the neuron's bind
		if n, lastErr = tryRealNeuron(t, server, model, o); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("the neuron did not start: %v", lastErr)
	}
	return &realSetup{n: n, s: realStack(t, n, model), dir: dir, server: server, gguf: gguf}
}

func tryRealNeuron(t *testing.T, server, model string, o realOptions) (*neuronProc, error) {
	t.Helper()
	argv := append([]string{server, "--model", "{model}", "--alias", "{id}", "--host", "{host}", "--port", "{port}"}, realArgs...)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "drain_timeout = \"5s\"\n")
	fmt.Fprintf(&cfg, "[discovery]\nkind = \"static\"\nhostname = \"real\"\n[[discovery.devices]]\nindex = 0\ntotal_mb = %d\n", realDevMB)
	fmt.Fprintf(&cfg, "[admission]\nmax_in_flight = 4\nmax_queue = 16\nmax_wait = \"10s\"\n")
	fmt.Fprintf(&cfg, "[[engines]]\nname = %q\ncommand = [%s]\nstart_timeout = \"30s\"\nstop_timeout = \"2s\"\n%s",
		realEngine, proctest.QuoteAll(argv), o.engineTOML)
	for _, id := range o.defaults {
		fmt.Fprintf(&cfg, "[[default_models]]\nmodel_id = %q\nengine = %q\nsource = %q\nvram_mb = %d\n", id, realEngine, model, realVRAMMB)
	}
	n := spawnNeuron(t, "real", cfg.String(), 10*time.Second)
	if err := n.awaitServing(t, len(o.defaults)); err != nil {
		return nil, err
	}
	t.Cleanup(func() { n.stop(t) })
	return n, nil
}

// realStack is a stack over n for the real engine's catalogue, with the
// key capped at realCap.
func realStack(t *testing.T, n *neuronProc, model string) *stack {
	t.Helper()
	var models []catalogue.Model
	for _, id := range []string{realModel, realOther} {
		models = append(models, catalogue.Model{ID: id, Engine: realEngine, Source: model, VRAMMB: realVRAMMB,
			Limit: catalogue.Limit{Context: realContext}})
	}
	cat, err := catalogue.New(models, nil)
	if err != nil {
		t.Fatal(err)
	}
	return serveStack(t, []*neuronProc{n}, cat, realCap)
}

// realAnswer is what a client got for one request.
type realAnswer struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
}

// realPost sends body to path with the key and reads the whole answer.
func realPost(t *testing.T, s *stack, path, body string) realAnswer {
	t.Helper()
	start := time.Now()
	resp := realSend(t, s, path, body)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the answer: %v", path, err)
	}
	return realAnswer{status: resp.StatusCode, header: resp.Header, body: b, took: time.Since(start)}
}

// realSend sends body to path with the key; the caller closes the body.
func realSend(t *testing.T, s *stack, path, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return resp
}

func realChatBody(model string, maxTokens int, stream bool) string {
	extra := ""
	if stream {
		extra = `,"stream":true,"stream_options":{"include_usage":true}`
	}
	return fmt.Sprintf(`{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":"tell me a story"}]%s}`,
		model, maxTokens, extra)
}

// realUsage is the usage of an answer or of a stream's usage chunk.
type realUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// cached returns the prompt tokens llama-server read from its prompt
// cache (prompt_tokens_details.cached_tokens; 0 when absent).
func (u realUsage) cached() int64 { return u.PromptTokensDetails.CachedTokens }

// usageOf returns the usage of a JSON answer, failing the test without one.
func usageOf(t *testing.T, body []byte) realUsage {
	t.Helper()
	var v struct {
		Usage *realUsage `json:"usage"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Usage == nil {
		t.Fatalf("no usage in the answer (%v): %.300s", err, body)
	}
	return *v.Usage
}

// realStream is what a client read of a streamed chat answer.
type realStream struct {
	tokens int        // chunks that carry content
	usage  *realUsage // the usage chunk, if any
	done   bool       // data: [DONE]
	last   string     // the last event's data
	err    error      // what ended the stream (nil at a clean end)
}

// readRealStream reads the rest of a stream, failing the test when it does
// not end within d.
func readRealStream(t *testing.T, evs *events, d time.Duration) realStream {
	t.Helper()
	data, err := evs.rest(t, d)
	st := realStream{err: err}
	for _, e := range data {
		st.last = e
		if e == "[DONE]" {
			st.done = true
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *realUsage `json:"usage"`
		}
		if json.Unmarshal([]byte(e), &c) != nil {
			continue
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != "" {
				st.tokens++
			}
		}
		if c.Usage != nil {
			st.usage = c.Usage
		}
	}
	return st
}

// firstToken reads events until one carries content, and returns how many
// it read.
func firstToken(t *testing.T, evs *events) int {
	t.Helper()
	for i := 1; ; i++ {
		data, ok := evs.next(t, 20*time.Second)
		if !ok {
			t.Fatalf("the stream ended before its first token")
		}
		if strings.Contains(data, `"content":"`) && !strings.Contains(data, `"content":""`) {
			return i
		}
	}
}

// engine returns the pid of the neuron's one llama-server, failing the
// test when it runs another number of engines.
func (r *realSetup) engine(t *testing.T) int {
	t.Helper()
	pids := r.n.engines()
	if len(pids) != 1 {
		t.Fatalf("the neuron runs engines %v, want one", pids)
	}
	return pids[0]
}

// info returns the neuron's view of model (nil when it does not list it).
func (r *realSetup) info(t *testing.T, model string) *neuron.ModelInfo {
	t.Helper()
	ms, err := r.n.client.Models(t.Context())
	if err != nil {
		t.Fatalf("neuron models: %v", err)
	}
	for i := range ms {
		if ms[i].ID == model {
			return &ms[i]
		}
	}
	return nil
}

// restarted waits until model's engine is a process other than old, loaded
// at the neuron and in the gateway's snapshot, after a failure of kind,
// and returns the neuron's view and how long it took.
func (r *realSetup) restarted(t *testing.T, model string, old int, kind neuron.FailureKind) (neuron.ModelInfo, time.Duration) {
	t.Helper()
	start := time.Now()
	var seen []neuron.ModelStatus
	var info neuron.ModelInfo
	proctest.Eventually(t, 30*time.Second, "the engine restarted and the model loaded", func() bool {
		i := r.info(t, model)
		if i == nil {
			return false
		}
		if len(seen) == 0 || seen[len(seen)-1] != i.Status {
			seen = append(seen, i.Status)
		}
		pids := r.n.engines()
		info = *i
		return i.Status == neuron.StatusLoaded && i.Failures > 0 && len(pids) == 1 && pids[0] != old
	})
	took := time.Since(start)
	waitGone(t, []int{old})
	if info.LastFailure != kind {
		t.Errorf("last failure %q (%s), want %q", info.LastFailure, info.LastFailureReason, kind)
	}
	t.Logf("statuses at the neuron: %v; loaded again after %v: restarts %d, failures %d, last %q (%s)",
		seen, took.Round(time.Millisecond), info.Restarts, info.Failures, info.LastFailure, info.LastFailureReason)
	proctest.Eventually(t, 10*time.Second, "the restarted model loaded in the gateway's snapshot", func() bool {
		m := r.s.gw.Fleet().Neuron(r.n.name).Model(model)
		return m != nil && m.Status == neuron.StatusLoaded && m.Restarts > 0
	})
	return info, took
}

// insideRE matches an IPv4 address or a host:port.
var insideRE = regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}\b|\blocalhost:\d+`)

// noInside checks that what a client was told names no address, no port
// and none of the paths of the suite: the test's directory (the model's
// link), llama-server's and the model's own.
func (r *realSetup) noInside(t *testing.T, what, told string) {
	t.Helper()
	if m := insideRE.FindString(told); m != "" {
		t.Errorf("%s names %q: %.300s", what, m, told)
	}
	for _, p := range []string{r.dir, filepath.Dir(r.server), filepath.Dir(r.gguf)} {
		if strings.Contains(told, p) {
			t.Errorf("%s names the path %s: %.300s", what, p, told)
		}
	}
}

// noLlamaLeft checks, for up to 10 s, that no process whose command line
// names dir is left, and kills any that is.
func noLlamaLeft(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := proctest.ProcessesNaming(dir)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("llama-server processes left after the test: %v", left)
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRealEngineServes: a cold load, chat, a stream with usage,
// embeddings, eviction both ways, and a spend equal to the usage
// llama-server reported, through a gateway with a capped key.
func TestRealEngineServes(t *testing.T) {
	r := startReal(t, realOptions{})
	s := r.s
	if ms, err := r.n.client.Models(t.Context()); err != nil || len(ms) != 0 || len(r.n.engines()) != 0 {
		t.Fatalf("at start the neuron lists %+v (%v) and runs engines %v; want nothing", ms, err, r.n.engines())
	}
	var usage realUsage // the sum of the usage of every answer
	// chats are the prompt tokens and cached prompt tokens of the chat
	// answers of realModel: what the gateway's hit ratio is made of.
	var chats cortex.PromptCache
	add := func(u realUsage) {
		usage.PromptTokens += u.PromptTokens
		usage.CompletionTokens += u.CompletionTokens
	}
	addChat := func(u realUsage) {
		add(u)
		chats.PromptTokens += u.PromptTokens
		chats.CachedTokens += u.cached()
	}

	t.Run("cold load", func(t *testing.T) {
		a := realPost(t, s, "/v1/chat/completions", realChatBody(realModel, 8, false))
		if a.status != http.StatusOK {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		u := usageOf(t, a.body)
		addChat(u)
		if u.CompletionTokens != 8 {
			t.Errorf("completion tokens %d, want 8 (the tiny model runs to max_tokens)", u.CompletionTokens)
		}
		if i := r.info(t, realModel); i == nil || i.Status != neuron.StatusLoaded {
			t.Errorf("after the cold load the neuron reports %+v", i)
		}
		r.engine(t)
		t.Logf("cold load and answer: status %d in %v, usage %+v", a.status, a.took.Round(time.Millisecond), u)
	})

	t.Run("chat", func(t *testing.T) {
		a := realPost(t, s, "/v1/chat/completions", realChatBody(realModel, 16, false))
		if a.status != http.StatusOK {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		var v struct {
			Model   string `json:"model"`
			Choices []struct {
				FinishReason string `json:"finish_reason"`
				Message      struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(a.body, &v); err != nil || len(v.Choices) != 1 || v.Choices[0].Message.Content == "" {
			t.Errorf("answer %.300s (%v): want one choice with content", a.body, err)
		}
		// The engine is started with --alias {id}: the answer names the
		// model the client asked for, not the model's file.
		if v.Model != realModel {
			t.Errorf("the answer names the model %q, want %q", v.Model, realModel)
		}
		u := usageOf(t, a.body)
		addChat(u)
		t.Logf("warm chat: status %d in %v, usage %+v", a.status, a.took.Round(time.Millisecond), u)
	})

	t.Run("stream with usage", func(t *testing.T) {
		start := time.Now()
		resp := realSend(t, s, "/v1/chat/completions", realChatBody(realModel, 16, true))
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		st := readRealStream(t, readEvents(resp.Body), 20*time.Second)
		if st.err != nil || !st.done || st.tokens != 16 || st.usage == nil {
			t.Fatalf("stream: %d tokens, usage %v, [DONE] %v, ended by %v; want 16 tokens, usage, [DONE], a clean end",
				st.tokens, st.usage, st.done, st.err)
		}
		if st.usage.CompletionTokens != 16 {
			t.Errorf("streamed usage %+v: want 16 completion tokens", *st.usage)
		}
		addChat(*st.usage)
		t.Logf("stream: %d tokens and usage %+v in %v", st.tokens, *st.usage, time.Since(start).Round(time.Millisecond))
	})

	t.Run("prompt cache", func(t *testing.T) {
		// llama-server keeps the slot's KV (cache_prompt): the same
		// prompt again is read from it, all but its last token, which it
		// reports as prompt_tokens_details.cached_tokens, streamed or
		// not; the gateway's hit ratio adds up what it reported.
		for _, stream := range []bool{false, true} {
			var u realUsage
			if stream {
				resp := realSend(t, s, "/v1/chat/completions", realChatBody(realModel, 4, true))
				st := readRealStream(t, readEvents(resp.Body), 20*time.Second)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || st.usage == nil {
					t.Fatalf("stream: status %d, usage %v, ended by %v", resp.StatusCode, st.usage, st.err)
				}
				u = *st.usage
			} else {
				a := realPost(t, s, "/v1/chat/completions", realChatBody(realModel, 4, false))
				if a.status != http.StatusOK {
					t.Fatalf("status %d: %s", a.status, a.body)
				}
				u = usageOf(t, a.body)
			}
			addChat(u)
			if c := u.cached(); c <= 0 || c >= u.PromptTokens {
				t.Errorf("stream %v: the same prompt again reports usage %+v, cached %d: want between 0 and the %d prompt tokens",
					stream, u, c, u.PromptTokens)
			}
		}
		var got *cortex.PromptCache
		for _, m := range s.gw.Status(t.Context(), false).Models {
			if m.ID == realModel {
				got = m.PromptCache
			}
		}
		if got == nil || got.PromptTokens != chats.PromptTokens || got.CachedTokens != chats.CachedTokens {
			t.Fatalf("the gateway's prompt cache of %s is %+v; llama-server reported %d cached of %d prompt tokens",
				realModel, got, chats.CachedTokens, chats.PromptTokens)
		}
		t.Logf("prompt cache: %d of %d prompt tokens cached, hit ratio %.3f", got.CachedTokens, got.PromptTokens, got.HitRatio)
	})

	t.Run("embeddings", func(t *testing.T) {
		a := realPost(t, s, "/v1/embeddings", fmt.Sprintf(`{"model":%q,"input":["hello there","general kenobi"]}`, realModel))
		if a.status != http.StatusOK {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		var v struct {
			Data []struct {
				Embedding []float64 `json:"embedding"`
			} `json:"data"`
		}
		if err := json.Unmarshal(a.body, &v); err != nil || len(v.Data) != 2 || len(v.Data[0].Embedding) == 0 {
			t.Fatalf("answer %.300s (%v): want two embeddings", a.body, err)
		}
		u := usageOf(t, a.body)
		if u.PromptTokens == 0 {
			t.Errorf("embeddings usage %+v: want prompt tokens", u)
		}
		add(u)
		t.Logf("embeddings: status %d in %v, %d vectors of %d, usage %+v",
			a.status, a.took.Round(time.Millisecond), len(v.Data), len(v.Data[0].Embedding), u)
	})

	t.Run("eviction", func(t *testing.T) {
		// The device has room for one model: each load evicts the other,
		// and its engine exits.
		for _, c := range []struct{ load, evicted string }{{realOther, realModel}, {realModel, realOther}} {
			old := r.engine(t)
			// The gateway evicts no model that its last poll of the
			// neuron saw busy, and then sends the load without a victim,
			// which the neuron refuses (503 service_unavailable, and the
			// model's loads back off): wait for a poll that saw the
			// resident model idle.
			start := time.Now()
			proctest.Eventually(t, 10*time.Second, c.evicted+" idle in the gateway's snapshot", func() bool {
				m := s.gw.Fleet().Neuron(r.n.name).Model(c.evicted)
				return m != nil && m.Outstanding() == 0
			})
			if d := time.Since(start); d > time.Millisecond {
				t.Logf("%s was idle in the gateway's snapshot after %v", c.evicted, d.Round(time.Millisecond))
			}
			a := realPost(t, s, "/v1/chat/completions", realChatBody(c.load, 8, false))
			if a.status != http.StatusOK {
				t.Fatalf("%s: status %d: %s", c.load, a.status, a.body)
			}
			add(usageOf(t, a.body))
			if i := r.info(t, c.evicted); i != nil {
				t.Errorf("after loading %s the neuron still lists %s: %+v", c.load, c.evicted, *i)
			}
			if i := r.info(t, c.load); i == nil || i.Status != neuron.StatusLoaded {
				t.Errorf("%s at the neuron: %+v, want loaded", c.load, i)
			}
			waitGone(t, []int{old})
			if now := r.engine(t); now == old {
				t.Errorf("%s is served by the evicted model's engine %d", c.load, old)
			}
			t.Logf("%s evicted %s: status %d in %v", c.load, c.evicted, a.status, a.took.Round(time.Millisecond))
		}
	})

	t.Run("spend", func(t *testing.T) {
		s.settled(time.Second)
		spent := int64(s.spent())
		t.Logf("spent %d of cap %d; the answers' usage: prompt %d + completion %d",
			spent, realCap, usage.PromptTokens, usage.CompletionTokens)
		if want := usage.PromptTokens + usage.CompletionTokens; spent != want {
			t.Errorf("the ledger says %d spent, the usage llama-server reported adds up to %d", spent, want)
		}
	})
}

// TestRealEngineKilledMidStream: llama-server is killed (SIGKILL) in the
// middle of a stream. The client's stream ends with an error event, the
// neuron restarts the engine, and the next request succeeds.
func TestRealEngineKilledMidStream(t *testing.T) {
	r := startReal(t, realOptions{defaults: []string{realModel}})
	s := r.s
	pid := r.engine(t)

	resp := realSend(t, s, "/v1/chat/completions", realChatBody(realModel, 200, true))
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	evs := readEvents(resp.Body)
	read := firstToken(t, evs)
	// Stopped first, so that it is still mid-answer when it is killed: it
	// generates 200 tokens in a fraction of a second.
	proctest.Stop(t, pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	st := readRealStream(t, evs, 20*time.Second)
	ended := time.Since(killed)
	t.Logf("stream: %d events before the kill, then %d tokens; ended %v after the kill by %v, last event %.200s",
		read, st.tokens, ended.Round(time.Millisecond), st.err, st.last)
	if st.done || st.usage != nil {
		t.Errorf("the stream of a killed engine ended as a whole answer ([DONE] %v, usage %v)", st.done, st.usage)
	}
	if code := errorCode(st.last); code == "" {
		t.Errorf("the last event %q is no error event", st.last)
	}
	r.noInside(t, "the error event", st.last)
	s.settled(time.Second)

	r.restarted(t, realModel, pid, neuron.FailureCrash)
	a := realPost(t, s, "/v1/chat/completions", realChatBody(realModel, 8, false))
	if a.status != http.StatusOK {
		t.Fatalf("the request after the restart: status %d: %s", a.status, a.body)
	}
	t.Logf("after the restart: status %d in %v", a.status, a.took.Round(time.Millisecond))
}

// realLiveness is the liveness probing of the hung-engine test's engine:
// a stopped llama-server is taken for hung after three probes in a row
// time out, within about 3 × (interval + timeout) = 3.9 s.
const realLiveness = "liveness_interval = \"300ms\"\nliveness_timeout = \"1s\"\nliveness_failures = 3\n"

// realHangBound is how long a client may wait on a hung engine: the
// liveness bound, the restart, and room for a busy machine.
const realHangBound = 15 * time.Second

// TestRealEngineHung: llama-server is stopped (SIGSTOP), mid-stream and
// then while idle. The neuron's liveness probes find it hung, kill it
// and restart it; the stream ends with an error event and a request sent
// to the stopped engine gets an answer, both within realHangBound.
func TestRealEngineHung(t *testing.T) {
	r := startReal(t, realOptions{engineTOML: realLiveness, defaults: []string{realModel}})
	s := r.s

	t.Run("mid-stream", func(t *testing.T) {
		pid := r.engine(t)
		resp := realSend(t, s, "/v1/chat/completions", realChatBody(realModel, 200, true))
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		evs := readEvents(resp.Body)
		firstToken(t, evs)
		proctest.Stop(t, pid)
		stopped := time.Now()
		st := readRealStream(t, evs, realHangBound)
		ended := time.Since(stopped)
		t.Logf("stream ended %v after the SIGSTOP by %v, %d tokens after the first, last event %.200s",
			ended.Round(time.Millisecond), st.err, st.tokens, st.last)
		if st.done || st.usage != nil {
			t.Errorf("the stream of a stopped engine ended as a whole answer ([DONE] %v, usage %v)", st.done, st.usage)
		}
		if code := errorCode(st.last); code == "" {
			t.Errorf("the last event %q is no error event", st.last)
		}
		r.noInside(t, "the error event", st.last)
		s.settled(time.Second)
		r.restarted(t, realModel, pid, neuron.FailureUnresponsive)
	})

	t.Run("idle", func(t *testing.T) {
		pid := r.engine(t)
		proctest.Stop(t, pid)
		a := realPost(t, s, "/v1/chat/completions", realChatBody(realModel, 8, false))
		t.Logf("request to the stopped engine: status %d (Retry-After %q) in %v: %.300s",
			a.status, a.header.Get("Retry-After"), a.took.Round(time.Millisecond), a.body)
		if a.took > realHangBound {
			t.Errorf("the answer took %v, want at most %v", a.took, realHangBound)
		}
		switch {
		case a.status == http.StatusOK:
		case errorCode(string(a.body)) == "":
			t.Errorf("status %d without an error code: %.300s", a.status, a.body)
		case a.status == http.StatusServiceUnavailable && a.header.Get("Retry-After") == "":
			t.Errorf("503 without Retry-After: %.300s", a.body)
		}
		if a.status != http.StatusOK {
			r.noInside(t, "the error", string(a.body))
		}
		s.settled(time.Second)
		r.restarted(t, realModel, pid, neuron.FailureUnresponsive)
		if a := realPost(t, s, "/v1/chat/completions", realChatBody(realModel, 8, false)); a.status != http.StatusOK {
			t.Fatalf("the request after the restart: status %d: %s", a.status, a.body)
		}
	})
}
