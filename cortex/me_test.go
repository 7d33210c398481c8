package cortex_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// getMe asks GET /v1/me with the given header pairs.
func (s *stack) getMe(header ...string) (int, http.Header, cortex.MeReport, string) {
	s.t.Helper()
	resp := s.do(http.MethodGet, "/v1/me", "", header...)
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		s.t.Fatalf("GET /v1/me: %v", err)
	}
	var rep cortex.MeReport
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &rep); err != nil {
			s.t.Fatalf("GET /v1/me: %v: %s", err, raw)
		}
	}
	return resp.StatusCode, resp.Header, rep, string(raw)
}

// GET /v1/me reports the calling key: principal, unit, limits and the
// account's budget now.
func TestMe(t *testing.T) {
	t.Parallel()
	local := newLocal(t,
		entitlements.KeyConfig{Key: "sk-rolling", AccountID: "acme", KeyID: "ci", HardCap: ptr(int64(1000)),
			Window: entitlements.WindowConfig{Kind: "rolling", Seconds: 3600}, MaxInFlight: 4, RPM: 60, ClampMaxTokens: true},
		entitlements.KeyConfig{Key: "sk-usd", AccountID: "globex", Unit: "usd", HardCapUSD: ptr(2.5)},
		entitlements.KeyConfig{Key: "sk-free", AccountID: "free"},
	)
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local), cortex.WithRequireAuth(true))

	if status, _, _, body := s.getMe(); status != http.StatusUnauthorized || envelope(t, body).Code != cortex.CodeInvalidAPIKey {
		t.Errorf("without a key: status %d: %s", status, body)
	}
	if status, _, _, body := s.getMe("Authorization", "Bearer sk-nope"); status != http.StatusUnauthorized {
		t.Errorf("unknown key: status %d: %s", status, body)
	}

	if status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`), "x-api-key", "sk-rolling"); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	s.budgetOf(local, "acme")
	ignoreReset := cmpopts.IgnoreFields(cortex.MeBudget{}, "ResetsAt")
	tests := []struct {
		name      string
		key       string
		want      cortex.MeReport
		wantReset bool
		wantLimit string
	}{
		{
			name: "rolling tokens", key: "sk-rolling", wantReset: true, wantLimit: "1000",
			want: cortex.MeReport{Object: "principal", AccountID: "acme", KeyID: "ci", Unit: "tokens",
				Limits: cortex.MeLimits{ClampMaxTokens: true, MaxInFlight: 4, RPM: 60},
				Budget: &cortex.MeBudget{HardCap: ptr(int64(1000)), Spent: helloEstimate + 3, Remaining: ptr(int64(1000 - helloEstimate - 3)),
					Window: "rolling", WindowSeconds: 3600}},
		},
		{
			name: "usd balance", key: "sk-usd", wantLimit: "2500000",
			want: cortex.MeReport{Object: "principal", AccountID: "globex", KeyID: "globex", Unit: "usd",
				Budget: &cortex.MeBudget{HardCap: ptr(int64(2_500_000)), Remaining: ptr(int64(2_500_000)), Window: "balance"}},
		},
		{
			name: "uncapped", key: "sk-free",
			want: cortex.MeReport{Object: "principal", AccountID: "free", KeyID: "free", Unit: "tokens",
				Budget: &cortex.MeBudget{Window: "balance"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, got, body := s.getMe("x-api-key", tt.key)
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			if diff := cmp.Diff(got, tt.want, ignoreReset); diff != "" {
				t.Errorf("report (-got +want):\n%s", diff)
			}
			if (got.Budget.ResetsAt != nil) != tt.wantReset {
				t.Errorf("resets_at %v, want one: %v", got.Budget.ResetsAt, tt.wantReset)
			}
			if hdr.Get(cortex.HeaderLimitTokens) != tt.wantLimit {
				t.Errorf("%s = %q, want %q", cortex.HeaderLimitTokens, hdr.Get(cortex.HeaderLimitTokens), tt.wantLimit)
			}
		})
	}
}

// Without require_auth, a caller without a key is told it is anonymous.
func TestMeAnonymous(t *testing.T) {
	t.Parallel()
	s := newStack(t, cortextest.Named("n1"), testCatalogue(t), cortex.WithProvider(newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "a"})))
	status, _, got, body := s.getMe()
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if diff := cmp.Diff(got, cortex.MeReport{Object: "principal", Anonymous: true, Unit: "tokens"}); diff != "" {
		t.Errorf("report (-got +want):\n%s", diff)
	}
}
