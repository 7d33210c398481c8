package cortex_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// cachingEngine answers chat completions with the usage an engine with a
// prompt cache reports: prompt tokens of which cached were read from the
// cache (prompt_tokens_details.cached_tokens, as OpenAI, vLLM and
// llama-server report them), and completion tokens of output, streamed one
// per chunk with the usage in the last chunk.
type cachingEngine struct {
	prompt, completion int64
	cached             atomic.Int64 // may be set between requests
}

func (e *cachingEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct{ Stream bool }
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &req)
	usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":%d}}`,
		e.prompt, e.completion, e.prompt+e.completion, e.cached.Load())
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"%s"},"finish_reason":"stop"}],"usage":%s}`,
			strings.Repeat("x ", int(e.completion)), usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for range e.completion {
		fmt.Fprint(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x \"}}]}\n\n")
	}
	fmt.Fprint(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
	fmt.Fprintf(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":%s}\n\ndata: [DONE]\n\n", usage)
}

// cacheStack serves the model "cached" (USD 1 per 1M input tokens, 2 per 1M
// output tokens, 0.1 per 1M cached prompt tokens: 1, 2 and 0.1 micro-dollars
// a token) and "uncached" (the same without a cache_read price) from e, to
// an uncapped USD key "sk-usd" and an uncapped token key "sk-tok", with
// every record kept.
func cacheStack(t *testing.T, e *cachingEngine) (*stack, *entitlements.Local, *recorder) {
	t.Helper()
	cat := newCatalogue(t, []catalogue.Model{
		{ID: "cached", VRAMMB: 1000, Cost: &catalogue.Cost{Input: 1, Output: 2, CacheRead: ptr(0.1)}},
		{ID: "uncached", VRAMMB: 1000, Cost: &catalogue.Cost{Input: 1, Output: 2}},
	}, nil)
	local := newLocal(t,
		entitlements.KeyConfig{Key: "sk-usd", AccountID: "usd", Unit: "usd"},
		entitlements.KeyConfig{Key: "sk-tok", AccountID: "tok"},
	)
	rec := &recorder{}
	s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: e,
		Models: []neuron.LoadSpec{loadedSpec("cached", 1000), loadedSpec("uncached", 1000)}}},
		cat, cortex.WithProvider(local), cortex.WithMeter(rec))
	return s, local, rec
}

// metricsText scrapes the gateway's /metrics.
func metricsText(s *stack) string {
	w := httptest.NewRecorder()
	s.gw.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return w.Body.String()
}

// promptCacheOf returns the prompt cache of model in /status.json; nil
// when it has none.
func promptCacheOf(t *testing.T, s *stack, model string) *cortex.PromptCache {
	t.Helper()
	for _, m := range getStatus(t, s).Models {
		if m.ID == model {
			return m.PromptCache
		}
	}
	t.Fatalf("/status.json lists no model %s", model)
	return nil
}

// Cached prompt tokens reach the meter record, the metrics and the status
// page, and are settled at the model's cache_read price (at the input
// price for a model without one, and at full size for a token budget),
// streamed or not, on every route that reports them.
func TestCachedPromptTokensArePricedAndCounted(t *testing.T) {
	t.Parallel()
	// 10,000 prompt tokens, 8,000 of them cached, 5 of output: at the
	// cache price 2,000×1 + 8,000×0.1 + 5×2 = 2,810 micro-dollars; 10,010
	// at the input price.
	e := &cachingEngine{prompt: 10_000, completion: 5}
	e.cached.Store(8_000)
	s, local, rec := cacheStack(t, e)
	var spentUSD, spentTok entitlements.Amount

	for _, tt := range []struct {
		name, path, body, key, account string
		stream                         bool
		want                           entitlements.Amount
	}{
		{name: "chat", path: "/v1/chat/completions", body: chatBody("cached", `"max_tokens":5`), key: "sk-usd", want: 2810},
		{name: "chat stream", path: "/v1/chat/completions", body: chatBody("cached", `"max_tokens":5`, `"stream":true`), key: "sk-usd", stream: true, want: 2810},
		{name: "messages", path: "/v1/messages", body: messagesBody("cached"), key: "sk-usd", want: 2810},
		{name: "messages stream", path: "/v1/messages", body: messagesBody("cached", `"stream":true`), key: "sk-usd", stream: true, want: 2810},
		{name: "no cache price", path: "/v1/chat/completions", body: chatBody("uncached", `"max_tokens":5`), key: "sk-usd", want: 10_010},
		{name: "token budget", path: "/v1/chat/completions", body: chatBody("cached", `"max_tokens":5`, `"stream":true`), key: "sk-tok", stream: true, want: 10_005},
	} {
		resp := s.do(http.MethodPost, tt.path, tt.body, "x-api-key", tt.key)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d (%v): %s", tt.name, resp.StatusCode, err, b)
		}
		if tt.path == "/v1/messages" {
			// What the Anthropic client reads: the cached tokens apart.
			want := `"cache_read_input_tokens":8000`
			if !strings.Contains(string(b), want) || !strings.Contains(string(b), `"input_tokens":2000`) {
				t.Errorf("%s: the answer lacks input_tokens 2000 and %s: %s", tt.name, want, b)
			}
		}
		if tt.key == "sk-usd" {
			spentUSD += tt.want
			s.checkBudget(local, "usd", spentUSD)
		} else {
			spentTok += tt.want
			s.checkBudget(local, "tok", spentTok)
		}
		r := rec.last(t)
		if r.PromptTokens != 10_000 || r.CachedTokens != 8_000 || r.CompletionTokens != 5 || r.Settled != tt.want ||
			r.Stream != tt.stream || r.UsageSource != metering.UsageEngine {
			t.Errorf("%s: meter record %+v: want 10000 prompt tokens, 8000 cached, 5 completion, settled %d, stream %v, engine usage",
				tt.name, r, tt.want, tt.stream)
		}
	}

	text := metricsText(s)
	for _, want := range []string{
		`helexa_cached_prompt_tokens_total{model="cached",neuron="n1"} 40000`,
		`helexa_prompt_tokens_total{model="cached",neuron="n1"} 50000`,
		`helexa_cached_prompt_tokens_total{model="uncached",neuron="n1"} 8000`,
		`helexa_prompt_cache_hit_ratio{model="cached"} 0.8`,
		`helexa_prompt_cache_hit_ratio{model="uncached"} 0.8`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
	if pc := promptCacheOf(t, s, "cached"); pc == nil || *pc != (cortex.PromptCache{PromptTokens: 50_000, CachedTokens: 40_000, HitRatio: 0.8}) {
		t.Errorf("/status.json: prompt cache of cached %+v, want 40000 of 50000, 0.8", pc)
	}
	if _, _, page := getPage(t, s, "/status"); !strings.Contains(page, "80.0%") {
		t.Error("the status page does not show the hit ratio 80.0%")
	}
}

// An engine that reports more cached tokens than prompt tokens (hostile or
// broken) gets no more than the whole prompt at the cache price: the
// cached tokens are clamped to the prompt, in the settle, the record, the
// metrics and the Anthropic translation.
func TestCachedTokensBeyondThePromptAreClamped(t *testing.T) {
	t.Parallel()
	e := &cachingEngine{prompt: 10_000, completion: 5}
	e.cached.Store(1 << 40)
	s, local, rec := cacheStack(t, e)
	// 10,000×0.1 + 5×2 = 1,010 micro-dollars per request.
	var spent entitlements.Amount
	for i, body := range []string{chatBody("cached", `"max_tokens":5`), chatBody("cached", `"max_tokens":5`, `"stream":true`)} {
		resp := s.do(http.MethodPost, "/v1/chat/completions", body, "x-api-key", "sk-usd")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d: %s", i, resp.StatusCode, b)
		}
		spent += 1010
		s.checkBudget(local, "usd", spent)
		if r := rec.last(t); r.PromptTokens != 10_000 || r.CachedTokens != 10_000 || r.Settled != 1010 {
			t.Errorf("request %d: meter record %+v: want 10000 prompt tokens, 10000 cached, settled 1010", i, r)
		}
	}
	status, _, body := s.post("/v1/messages", messagesBody("cached"), "x-api-key", "sk-usd")
	if status != http.StatusOK || !strings.Contains(body, `"input_tokens":0,`) || !strings.Contains(body, `"cache_read_input_tokens":10000`) {
		t.Errorf("messages: status %d: %s; want input_tokens 0 and cache_read_input_tokens 10000", status, body)
	}
	spent += 1010
	s.checkBudget(local, "usd", spent)
	if text := metricsText(s); !strings.Contains(text, `helexa_cached_prompt_tokens_total{model="cached",neuron="n1"} 30000`) ||
		!strings.Contains(text, `helexa_prompt_cache_hit_ratio{model="cached"} 1`+"\n") {
		t.Errorf("metrics: want 30000 cached prompt tokens and a hit ratio of 1:\n%s", text)
	}
}

// Without cached tokens in the engine's usage the model has no prompt
// cache line on the status page until a request reports usage, then a hit
// ratio of 0; embeddings do not count toward it.
func TestPromptCacheWithoutHits(t *testing.T) {
	t.Parallel()
	e := &cachingEngine{prompt: 100, completion: 5}
	s, local, _ := cacheStack(t, e)
	if pc := promptCacheOf(t, s, "cached"); pc != nil {
		t.Errorf("before any request: prompt cache %+v, want none", *pc)
	}
	if status, _, body := s.post("/v1/chat/completions", chatBody("cached", `"max_tokens":5`), "x-api-key", "sk-usd"); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	// 100×1 + 5×2.
	s.checkBudget(local, "usd", 110)
	if status, _, body := s.post("/v1/embeddings", `{"model":"cached","input":"Hello there"}`, "x-api-key", "sk-usd"); status != http.StatusOK {
		t.Fatalf("embeddings: status %d: %s", status, body)
	}
	if pc := promptCacheOf(t, s, "cached"); pc == nil || *pc != (cortex.PromptCache{PromptTokens: 100}) {
		t.Errorf("prompt cache %+v, want 0 of 100", pc)
	}
	if text := metricsText(s); !strings.Contains(text, `helexa_prompt_cache_hit_ratio{model="cached"} 0`+"\n") {
		t.Errorf("metrics: want a hit ratio of 0 for cached:\n%s", text)
	}
}
