package cortex

import (
	"context"
	"net/http"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// MeReport is the answer of GET /v1/me: who the calling key is, its
// limits and its account's budget. Amounts are in Unit: tokens, or
// micro-dollars for "usd".
type MeReport struct {
	// Object is "principal".
	Object string `json:"object"`
	// Anonymous is true for a caller without a key, served because auth
	// is not required; it has no account, limits or budget.
	Anonymous bool `json:"anonymous"`
	// AccountID and KeyID name the key (never the key itself).
	AccountID string `json:"account_id"`
	KeyID     string `json:"key_id"`
	// Unit is what the budget counts: "tokens" or "usd".
	Unit string `json:"unit"`
	// Limits are the key's own limits; 0 and false mean none.
	Limits MeLimits `json:"limits"`
	// InFlight counts the key's requests in this gateway now, when the key
	// has limits that this gateway counts itself (not when the provider
	// counts them over every replica); else 0.
	InFlight int `json:"in_flight"`
	// Budget is the account's budget now; nil for an anonymous caller.
	Budget *MeBudget `json:"budget"`
}

// MeLimits are a key's limits in a MeReport.
type MeLimits struct {
	ClampMaxTokens bool `json:"clamp_max_tokens"`
	MaxInFlight    int  `json:"max_in_flight"`
	RPM            int  `json:"rpm"`
	// Models are the key's allow-list patterns; absent: every model.
	Models []string `json:"models,omitempty"`
}

// MeBudget is an account's budget in a MeReport.
type MeBudget struct {
	// HardCap is the cap per window; nil when uncapped.
	HardCap *int64 `json:"hard_cap"`
	// Spent is what settled requests cost in the current window (for
	// ever, for a balance); it may exceed HardCap after an overspend.
	Spent int64 `json:"spent"`
	// Reserved is what requests in flight hold.
	Reserved int64 `json:"reserved"`
	// Remaining is what can still be reserved; nil when uncapped.
	Remaining *int64 `json:"remaining"`
	// Window is "balance" or "rolling".
	Window string `json:"window"`
	// WindowSeconds is the length of a rolling window; 0 for a balance.
	WindowSeconds int64 `json:"window_seconds"`
	// ResetsAt is when the current rolling window ends; nil for a
	// balance.
	ResetsAt *time.Time `json:"resets_at"`
}

// Me returns the report of GET /v1/me for p: the principal, its limits,
// its live in-flight count and its account's budget (from the Provider's
// Snapshot, whose error it returns).
func (g *Gateway) Me(ctx context.Context, p entitlements.Principal) (MeReport, error) {
	r, _, err := g.me(ctx, p)
	return r, err
}

// me is Me, also returning the snapshot (nil for an anonymous caller).
func (g *Gateway) me(ctx context.Context, p entitlements.Principal) (MeReport, *entitlements.BudgetSnapshot, error) {
	r := MeReport{
		Object:    "principal",
		Anonymous: p.IsAnonymous(),
		AccountID: p.AccountID,
		KeyID:     p.KeyID,
		Unit:      p.Unit.String(),
		Limits:    MeLimits{ClampMaxTokens: p.Limits.ClampMaxTokens, MaxInFlight: p.Limits.MaxInFlight, RPM: p.Limits.RPM, Models: p.Limits.Models.Patterns()},
	}
	if p.IsAnonymous() || g.cfg.provider == nil {
		return r, nil, nil
	}
	if entitlements.Limited(p) {
		r.InFlight = g.limits.InFlight(p)
	}
	s, err := g.cfg.provider.Snapshot(ctx, p)
	if err != nil {
		return MeReport{}, nil, err
	}
	b := &MeBudget{Spent: int64(s.Spent), Reserved: int64(s.Reserved), Window: s.Window.Kind.String()}
	if s.HardCap != nil {
		hc := int64(*s.HardCap)
		rem, _ := s.Remaining()
		left := int64(rem)
		b.HardCap, b.Remaining = &hc, &left
	}
	if s.Window.Kind == entitlements.WindowRolling {
		b.WindowSeconds = s.Window.Seconds
		if !s.ResetsAt.IsZero() {
			at := s.ResetsAt.UTC()
			b.ResetsAt = &at
		}
	}
	r.Budget = b
	return r, &s, nil
}

// serveMe answers GET /v1/me: 401 for a missing or unknown key when auth
// is required, else the caller's MeReport, with the rate limit headers.
func (g *Gateway) serveMe(w http.ResponseWriter, r *http.Request) {
	p, err := g.principal(r)
	if err != nil {
		writeError(w, err, g.cfg.retryAfter)
		return
	}
	rep, snap, err := g.me(r.Context(), p)
	if err != nil {
		writeError(w, providerError(r.Context(), err), g.cfg.retryAfter)
		return
	}
	setBudgetHeaders(w.Header(), p, snap, g.clock.Now())
	writeJSON(w, http.StatusOK, rep)
}
