package cortex_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// allowCatalogue has a chat model, an embeddings model, a model without
// capabilities, and aliases, one of them pointing at a model the
// restricted key may not use by id.
func allowCatalogue(t testing.TB) *catalogue.Catalogue {
	return newCatalogue(t, []catalogue.Model{
		{ID: "llama-8b", VRAMMB: 1000, Capabilities: []string{"chat", "completions"}},
		{ID: "org/embed-small", VRAMMB: 1000, Capabilities: []string{"embeddings"}},
		{ID: "secret-70b", VRAMMB: 1000, Capabilities: []string{"chat"}},
		{ID: "anything", VRAMMB: 1000},
	}, map[string]string{"cheap": "llama-8b", "llama-big": "secret-70b", "granted": "secret-70b"})
}

// allowStack serves allowCatalogue with every model loaded, a restricted
// key "sk-some" (llama-*, org/*, granted) and an unrestricted "sk-all".
func allowStack(t *testing.T) *stack {
	t.Helper()
	models := []string{"llama-8b", "org/embed-small", "secret-70b", "anything"}
	var specs []neuron.LoadSpec
	for _, m := range models {
		specs = append(specs, loadedSpec(m, 1000))
	}
	local, err := entitlements.NewLocal(entitlements.Config{Keys: []entitlements.KeyConfig{
		{Key: "sk-some", AccountID: "some", Models: &[]string{"llama-*", "org/*", "granted"}},
		{Key: "sk-all", AccountID: "all"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: specs}}, allowCatalogue(t),
		cortex.WithProvider(local), cortex.WithRequireAuth(true))
	s.refresh()
	return s
}

func TestAllowList(t *testing.T) {
	t.Parallel()
	s := allowStack(t)
	some := []string{"Authorization", "Bearer sk-some"}
	all := []string{"Authorization", "Bearer sk-all"}
	tests := []struct {
		name   string
		key    []string
		path   string
		body   string
		status int
		code   string
	}{
		{"allowed by id", some, "/v1/chat/completions", chatBody("llama-8b", `"max_tokens":2`), http.StatusOK, ""},
		{"alias of an allowed id", some, "/v1/chat/completions", chatBody("cheap", `"max_tokens":2`), http.StatusOK, ""},
		{"allowed alias of a refused id", some, "/v1/chat/completions", chatBody("granted", `"max_tokens":2`), http.StatusOK, ""},
		{"refused id", some, "/v1/chat/completions", chatBody("secret-70b", `"max_tokens":2`), http.StatusForbidden, cortex.CodeModelNotAllowed},
		// The alias matches the pattern llama-*, and names secret-70b:
		// the operator allowed that alias by pattern, so it serves.
		{"alias matched by pattern", some, "/v1/chat/completions", chatBody("llama-big", `"max_tokens":2`), http.StatusOK, ""},
		{"case variant", some, "/v1/chat/completions", chatBody("Secret-70b", `"max_tokens":2`), http.StatusForbidden, cortex.CodeModelNotAllowed},
		{"escape variant", some, "/v1/chat/completions", chatBody(`secret\u002d70b`, `"max_tokens":2`), http.StatusForbidden, cortex.CodeModelNotAllowed},
		{"escape variant of an allowed id", some, "/v1/chat/completions", chatBody(`llama\u002d8b`, `"max_tokens":2`), http.StatusOK, ""},
		{"duplicate model field", some, "/v1/chat/completions",
			`{"model":"llama-8b","model":"secret-70b","messages":[{"role":"user","content":"hi"}]}`, http.StatusBadRequest, cortex.CodeAmbiguousRequest},
		// Outside the allow-list, a missing model is refused like an
		// existing one: a key cannot probe the catalogue.
		{"unknown outside the list", some, "/v1/chat/completions", chatBody("no-such-model"), http.StatusForbidden, cortex.CodeModelNotAllowed},
		{"unknown inside the list", some, "/v1/chat/completions", chatBody("llama-none"), http.StatusNotFound, cortex.CodeModelNotFound},
		{"unrestricted key", all, "/v1/chat/completions", chatBody("secret-70b", `"max_tokens":2`), http.StatusOK, ""},
		{"embeddings allowed", some, "/v1/embeddings", `{"model":"org/embed-small","input":"hi"}`, http.StatusOK, ""},
		{"count_tokens refused", some, "/v1/messages/count_tokens",
			`{"model":"secret-70b","messages":[{"role":"user","content":"hi"}]}`, http.StatusForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := s.post(tt.path, tt.body, tt.key...)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.code != "" {
				if got := envelope(t, body).Code; got != tt.code {
					t.Errorf("code %q, want %q", got, tt.code)
				}
			}
		})
	}
}

func TestAllowListMessagesAnswersAnthropicError(t *testing.T) {
	t.Parallel()
	s := allowStack(t)
	status, _, body := s.post("/v1/messages", `{"model":"secret-70b","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`,
		"x-api-key", "sk-some", "anthropic-version", "2023-06-01")
	if status != http.StatusForbidden {
		t.Fatalf("status %d: %s", status, body)
	}
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Type != "error" || e.Error.Type != "permission_error" ||
		!strings.Contains(e.Error.Message, "secret-70b") {
		t.Errorf("answer %s (%v), want an Anthropic permission_error naming the model", body, err)
	}
}

func TestCapabilities(t *testing.T) {
	t.Parallel()
	s := allowStack(t)
	key := []string{"Authorization", "Bearer sk-all"}
	tests := []struct {
		name   string
		path   string
		body   string
		status int
	}{
		{"chat on embeddings", "/v1/chat/completions", chatBody("org/embed-small"), http.StatusBadRequest},
		{"messages on embeddings", "/v1/messages", `{"model":"org/embed-small","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`, http.StatusBadRequest},
		{"completions on embeddings", "/v1/completions", `{"model":"org/embed-small","prompt":"hi"}`, http.StatusBadRequest},
		{"responses on embeddings", "/v1/responses", `{"model":"org/embed-small","input":"hi"}`, http.StatusBadRequest},
		{"embeddings on chat", "/v1/embeddings", `{"model":"llama-8b","input":"hi"}`, http.StatusBadRequest},
		{"embeddings on chat by alias", "/v1/embeddings", `{"model":"cheap","input":"hi"}`, http.StatusBadRequest},
		{"completions on chat only", "/v1/completions", `{"model":"secret-70b","prompt":"hi","max_tokens":2}`, http.StatusBadRequest},
		{"chat on chat", "/v1/chat/completions", chatBody("llama-8b", `"max_tokens":2`), http.StatusOK},
		{"completions declared", "/v1/completions", `{"model":"llama-8b","prompt":"hi","max_tokens":2}`, http.StatusOK},
		{"embeddings on embeddings", "/v1/embeddings", `{"model":"org/embed-small","input":"hi"}`, http.StatusOK},
		{"no capabilities: chat", "/v1/chat/completions", chatBody("anything", `"max_tokens":2`), http.StatusOK},
		{"no capabilities: embeddings", "/v1/embeddings", `{"model":"anything","input":"hi"}`, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := s.post(tt.path, tt.body, key...)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			want := cortex.CodeCapabilityUnsupported
			if tt.path == "/v1/messages" {
				want = "does not support /v1/messages" // Anthropic's errors have no code
			}
			if status == http.StatusBadRequest && !strings.Contains(body, want) {
				t.Errorf("answer %s does not carry %s", body, want)
			}
		})
	}
}

func TestModelsListFollowsAllowList(t *testing.T) {
	t.Parallel()
	s := allowStack(t)
	ids := func(key string, header ...string) []string {
		resp := s.do(http.MethodGet, "/v1/models", "", append([]string{"Authorization", "Bearer " + key}, header...)...)
		defer resp.Body.Close()
		var l struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/models: %d, %v", resp.StatusCode, err)
		}
		var out []string
		for _, d := range l.Data {
			out = append(out, d.ID)
		}
		return out
	}
	want := []string{"llama-8b", "org/embed-small", "cheap", "granted", "llama-big"}
	if got := ids("sk-some"); !slices.Equal(got, want) {
		t.Errorf("restricted key sees %q, want %q", got, want)
	}
	if got := ids("sk-some", "anthropic-version", "2023-06-01"); !slices.Equal(got, want) {
		t.Errorf("restricted key (Anthropic shape) sees %q, want %q", got, want)
	}
	if got := ids("sk-all"); len(got) != 7 {
		t.Errorf("unrestricted key sees %q, want all 4 models and 3 aliases", got)
	}
}

func TestGetModel(t *testing.T) {
	t.Parallel()
	s := allowStack(t)
	get := func(id, key string, header ...string) (int, string) {
		resp := s.do(http.MethodGet, "/v1/models/"+id, "", append([]string{"Authorization", "Bearer " + key}, header...)...)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := get("org/embed-small", "sk-some")
	var m cortex.ModelEntry
	if err := json.Unmarshal([]byte(body), &m); status != http.StatusOK || err != nil {
		t.Fatalf("GET org/embed-small: %d %s", status, body)
	}
	if m.ID != "org/embed-small" || m.Object != "model" || m.OwnedBy != "helexa" || m.Created == 0 {
		t.Errorf("entry %+v, want OpenAI's model shape with a created time", m)
	}
	// An alias answers too; the escaped slash is the same id.
	if status, body := get("cheap", "sk-some"); status != http.StatusOK || !strings.Contains(body, `"alias_of":"llama-8b"`) {
		t.Errorf("GET cheap: %d %s", status, body)
	}
	if status, body := get("org%2Fembed-small", "sk-some"); status != http.StatusOK {
		t.Errorf("GET org%%2Fembed-small: %d %s", status, body)
	}
	// Not allowed and not there answer the same.
	for _, id := range []string{"secret-70b", "no-such-model"} {
		status, body := get(id, "sk-some")
		if status != http.StatusNotFound || envelope(t, body).Code != cortex.CodeModelNotFound {
			t.Errorf("GET %s with the restricted key: %d %s, want 404 model_not_found", id, status, body)
		}
	}
	if status, _ := get("secret-70b", "sk-all"); status != http.StatusOK {
		t.Errorf("GET secret-70b with the unrestricted key: %d", status)
	}

	// Anthropic's shape.
	status, body = get("llama-8b", "sk-some", "anthropic-version", "2023-06-01")
	var am cortex.AnthropicModel
	if err := json.Unmarshal([]byte(body), &am); status != http.StatusOK || err != nil {
		t.Fatalf("GET llama-8b (Anthropic): %d %s", status, body)
	}
	if am.Type != "model" || am.ID != "llama-8b" || am.DisplayName != "llama-8b" || !strings.HasSuffix(am.CreatedAt, "Z") {
		t.Errorf("Anthropic model %+v", am)
	}
	status, body = get("secret-70b", "sk-some", "anthropic-version", "2023-06-01")
	if status != http.StatusNotFound || !strings.Contains(body, `"not_found_error"`) {
		t.Errorf("GET secret-70b (Anthropic): %d %s, want 404 not_found_error", status, body)
	}
	resp := s.do(http.MethodGet, "/v1/models", "", "x-api-key", "sk-some", "anthropic-version", "2023-06-01")
	defer resp.Body.Close()
	var al cortex.AnthropicModelList
	if err := json.NewDecoder(resp.Body).Decode(&al); err != nil {
		t.Fatal(err)
	}
	if al.HasMore || al.FirstID == nil || *al.FirstID != "llama-8b" || al.LastID == nil || *al.LastID != "llama-big" {
		t.Errorf("Anthropic list %+v", al)
	}
}
