package cortex_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
)

// authorityDown is a Local provider that cannot be reached for one key:
// its Resolve answers *entitlements.UnavailableError for it.
type authorityDown struct {
	*entitlements.Local
	down string
}

func (p authorityDown) Resolve(ctx context.Context, key string) (entitlements.Principal, error) {
	if key == p.down {
		return entitlements.Principal{}, &entitlements.UnavailableError{RetryAfter: 3 * time.Second, Err: errors.New("redis: connection refused")}
	}
	return p.Local.Resolve(ctx, key)
}

// The auth outcomes: require_auth on or off, times a key that is absent,
// unknown, valid, or held by an authority that cannot be reached.
// Principal headers a client sends never reach the neuron: the gateway
// stamps its own, and none for an anonymous caller.
func TestAuthOutcomes(t *testing.T) {
	t.Parallel()
	stacks := map[bool]*stack{}
	for _, require := range []bool{true, false} {
		p := authorityDown{Local: newLocal(t, entitlements.KeyConfig{Key: "sk-valid", AccountID: "acct", KeyID: "ci", HardCap: ptr(int64(1000))}), down: "sk-down"}
		stacks[require] = newStack(t, []cortextest.Spec{{Name: "n1", Token: "neuron-secret", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}},
			testCatalogue(t), cortex.WithProvider(p), cortex.WithRequireAuth(require))
	}
	tests := []struct {
		name        string
		requireAuth bool
		key         string // "" sends none
		wantStatus  int
		wantCode    string
		wantAccount string // the principal header the neuron gets
		wantRetry   string
		wantBudget  bool // rate limit headers
	}{
		{name: "required, absent", requireAuth: true, wantStatus: http.StatusUnauthorized, wantCode: cortex.CodeInvalidAPIKey},
		{name: "required, unknown", requireAuth: true, key: "sk-nope", wantStatus: http.StatusUnauthorized, wantCode: cortex.CodeInvalidAPIKey},
		{name: "required, valid", requireAuth: true, key: "sk-valid", wantStatus: http.StatusOK, wantAccount: "acct", wantBudget: true},
		{name: "required, unavailable", requireAuth: true, key: "sk-down", wantStatus: http.StatusServiceUnavailable,
			wantCode: cortex.CodeServiceUnavailable, wantRetry: "3"},
		{name: "optional, absent", wantStatus: http.StatusOK},
		{name: "optional, unknown", key: "sk-nope", wantStatus: http.StatusOK},
		{name: "optional, valid", key: "sk-valid", wantStatus: http.StatusOK, wantAccount: "acct", wantBudget: true},
		{name: "optional, unavailable", key: "sk-down", wantStatus: http.StatusServiceUnavailable,
			wantCode: cortex.CodeServiceUnavailable, wantRetry: "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := stacks[tt.requireAuth]
			n := s.fleet.Neuron("n1")
			before := n.Requests()
			hdr := []string{neuron.HeaderAccountID, "forged", neuron.HeaderKeyID, "forged"}
			if tt.key != "" {
				hdr = append(hdr, "Authorization", "Bearer "+tt.key)
			}
			status, h, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`), hdr...)
			if status != tt.wantStatus {
				t.Fatalf("status %d: %s; want %d", status, body, tt.wantStatus)
			}
			if tt.wantCode != "" {
				if e := envelope(t, body); e.Code != tt.wantCode || strings.Contains(e.Message, "redis") {
					t.Errorf("envelope %+v: want code %s and no cause", e, tt.wantCode)
				}
			}
			if got := h.Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, tt.wantRetry)
			}
			if got := h.Get(cortex.HeaderLimitTokens) != ""; got != tt.wantBudget {
				t.Errorf("rate limit headers: %v, want %v", got, tt.wantBudget)
			}
			if tt.wantStatus != http.StatusOK {
				if n.Requests() != before {
					t.Error("a refused request reached the neuron")
				}
				return
			}
			sent, _ := n.LastRequest()
			if got := sent.Get(neuron.HeaderAccountID); got != tt.wantAccount {
				t.Errorf("the neuron got account %q, want %q", got, tt.wantAccount)
			}
			if got, want := sent.Get(neuron.HeaderKeyID), map[bool]string{true: "ci", false: ""}[tt.wantAccount != ""]; got != want {
				t.Errorf("the neuron got key id %q, want %q", got, want)
			}
			if got := sent.Get("Authorization"); got != "Bearer neuron-secret" {
				t.Errorf("the neuron got Authorization %q, want its own token", got)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer for a logger shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An API key never appears in a log line, a metric, an error body, a meter
// record or a header sent to a neuron, whatever becomes of the request.
func TestAPIKeyNeverLeaks(t *testing.T) {
	t.Parallel()
	const (
		rich   = "sk-secret-rich-0123456789"
		poor   = "sk-secret-poor-0123456789"
		down   = "sk-secret-down-0123456789"
		nobody = "sk-secret-unknown-0123456789"
	)
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := authorityDown{Local: newLocal(t,
		entitlements.KeyConfig{Key: rich, AccountID: "rich"},
		entitlements.KeyConfig{Key: poor, AccountID: "poor", HardCap: ptr(int64(1))},
	), down: down}
	rec := &recorder{}
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t),
		cortex.WithProvider(p), cortex.WithRequireAuth(true), cortex.WithMeter(rec), cortex.WithLogger(logger))
	var seen strings.Builder
	for _, key := range []string{rich, poor, down, nobody} {
		for _, hdr := range [][]string{{"Authorization", "Bearer " + key}, {"X-Api-Key", key}} {
			for _, body := range []string{chatBody("chat-a", `"max_tokens":2`), chatBody("no-such-model"), `{"model":`} {
				_, h, answer := s.post("/v1/chat/completions", body, hdr...)
				seen.WriteString(answer)
				for k, vv := range h {
					seen.WriteString(k + ": " + strings.Join(vv, ",") + "\n")
				}
			}
			resp := s.do(http.MethodGet, "/v1/me", "", hdr...)
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			seen.WriteString(b.String())
		}
	}
	s.budgetOf(p, "rich")
	w := httptest.NewRecorder()
	s.gw.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	recs, _ := json.Marshal(rec.records())
	sent, _ := s.fleet.Neuron("n1").LastRequest()
	places := map[string]string{
		"logs":           logs.String(),
		"metrics":        w.Body.String(),
		"answers":        seen.String(),
		"meter records":  string(recs),
		"neuron headers": strings.Join(sent.Values("Authorization"), ",") + strings.Join(sent.Values("X-Api-Key"), ","),
	}
	for where, text := range places {
		if strings.Contains(text, "sk-secret") {
			t.Errorf("an API key in the %s:\n%s", where, text)
		}
	}
	if len(rec.records()) == 0 || !strings.Contains(logs.String(), `"account":"rich"`) {
		t.Error("nothing was metered or logged: the test checks nothing")
	}
}
