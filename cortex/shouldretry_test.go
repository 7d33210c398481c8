package cortex_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// The gateway's answers that retrying cannot change carry x-should-retry:
// false, so that the OpenAI and Anthropic clients, which retry every 408,
// 409, 429 and 5xx unless told otherwise, do not send them again: a spent
// balance, a missing key, a bad body, an unknown model. A rate limit with
// Retry-After and a 503 keep the clients' retries.
func TestShouldRetryHeader(t *testing.T) {
	t.Parallel()
	local := newLocal(t,
		entitlements.KeyConfig{Key: "sk-ok", AccountID: "ok"},
		entitlements.KeyConfig{Key: "sk-balance", AccountID: "balance", HardCap: ptr(int64(100))},
		entitlements.KeyConfig{Key: "sk-rolling", AccountID: "rolling", HardCap: ptr(int64(100)), Window: entitlements.WindowConfig{Kind: "rolling", Seconds: 3600}},
	)
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local), cortex.WithRequireAuth(true))
	rolling := entitlements.Principal{AccountID: "rolling", KeyID: "rolling"}
	r, err := local.Reserve(t.Context(), rolling, 90)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Release(context.Background()) }()

	for _, tt := range []struct {
		name, path, body, key string
		status                int
		want                  string // x-should-retry; "": none
	}{
		{"insufficient_quota", "/v1/chat/completions", chatBody("chat-b", `"max_tokens":500`), "sk-balance", http.StatusTooManyRequests, "false"},
		{"no key", "/v1/chat/completions", chatBody("chat-a"), "", http.StatusUnauthorized, "false"},
		{"no key, Anthropic", "/v1/messages", `{"model":"chat-a","max_tokens":2,"messages":[{"role":"user","content":"Hi"}]}`, "", http.StatusUnauthorized, "false"},
		{"bad body", "/v1/chat/completions", `{"model":`, "sk-ok", http.StatusBadRequest, "false"},
		{"unknown model", "/v1/chat/completions", chatBody("no-such-model"), "sk-ok", http.StatusNotFound, "false"},
		{"rate limited", "/v1/chat/completions", chatBody("chat-a", `"max_tokens":20`), "sk-rolling", http.StatusTooManyRequests, ""},
		{"served", "/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`), "sk-ok", http.StatusOK, ""},
	} {
		var header []string
		if tt.key != "" {
			header = []string{"Authorization", "Bearer " + tt.key}
		}
		status, h, body := s.post(tt.path, tt.body, header...)
		if status != tt.status || h.Get(cortex.HeaderShouldRetry) != tt.want {
			t.Errorf("%s: %d, x-should-retry %q; want %d, %q (%s)", tt.name, status, h.Get(cortex.HeaderShouldRetry), tt.status, tt.want, body)
		}
		if tt.want == "" && tt.status == http.StatusTooManyRequests && h.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", tt.name)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.gw.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	status, h, _ := s.post("/v1/chat/completions", chatBody("chat-a"), "Authorization", "Bearer sk-ok")
	if status != http.StatusServiceUnavailable || h.Get(cortex.HeaderShouldRetry) != "" {
		t.Errorf("shutting down: %d, x-should-retry %q; want 503 and none", status, h.Get(cortex.HeaderShouldRetry))
	}
}
