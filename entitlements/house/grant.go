package house

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// The house's side of credit grants: a grant is one reservation of the
// provider, held by the house for a gateway, that the gateway spends
// locally and reports on in batches. See the package documentation.

const (
	opGrant       = "grant"
	opGrantReport = "grant/report"
)

// Defaults of the grant policy; WithGrantPolicy changes them.
const (
	// DefaultGrantShare is the largest share of an account's remaining
	// budget one grant may hold (1/2): a second gateway always finds at
	// least as much as the first holds, and an account near its cap
	// gets grants too small to be worth it, so its gateways reserve
	// directly.
	DefaultGrantShare = 0.5
	// DefaultGrantTTL is how long a grant lives without a report (30 s):
	// what a crashed gateway's credit is held for.
	DefaultGrantTTL = 30 * time.Second
)

type grantPolicy struct {
	share float64
	ttl   time.Duration
}

func defaultGrantPolicy() grantPolicy {
	return grantPolicy{share: DefaultGrantShare, ttl: DefaultGrantTTL}
}

func (g grantPolicy) validate() error {
	if !(g.share > 0 && g.share <= 1) || g.ttl <= 0 {
		return fmt.Errorf("house: grant share %v must be in (0, 1] and TTL %v > 0", g.share, g.ttl)
	}
	return nil
}

// WithGrantPolicy sets the largest share of an account's remaining budget
// a grant may hold, in (0, 1], and the TTL of a grant without a report.
// Defaults DefaultGrantShare and DefaultGrantTTL.
func WithGrantPolicy(share float64, ttl time.Duration) Option {
	return optionFunc(func(c *handlerConfig) { c.grants = grantPolicy{share: share, ttl: ttl} })
}

type grantRequest struct {
	IdempotencyID string        `json:"idempotency_id"`
	Principal     principalJSON `json:"principal"`
	// Want is the credit the gateway asks for.
	Want int64 `json:"want"`
}

type grantReportRequest struct {
	IdempotencyID string        `json:"idempotency_id"`
	GrantID       string        `json:"grant_id"`
	Principal     principalJSON `json:"principal"`
	// Spent is what the grant's requests spent since the last report.
	Spent int64 `json:"spent"`
	// Need is the least credit the grant must keep: what the gateway's
	// requests may draw on until the answer arrives. While the gateway
	// keeps reserving inside the grant, that is the grant's unspent
	// credit; while it shrinks the grant (and reserves directly), what its
	// requests in flight hold. It never passes the credit the report's
	// settle frees.
	Need int64 `json:"need"`
	// Want is the credit the gateway asks for from now on (>= Need).
	Want int64 `json:"want"`
	// Close ends the grant (Need must be 0).
	Close bool `json:"close,omitempty"`
}

// grantResponse answers both calls. Credit 0 and an empty GrantID mean no
// grant: the gateway reserves directly.
type grantResponse struct {
	GrantID string        `json:"grant_id,omitempty"`
	Credit  int64         `json:"credit"`
	TTLMS   int64         `json:"ttl_ms"`
	Budget  *snapshotJSON `json:"budget,omitempty"`
}

type grantState uint8

const (
	grantOpen grantState = iota
	grantEnded
)

type grantEntry struct {
	id      string
	gateway string
	p       entitlements.Principal
	res     entitlements.Reservation // the credit held; nil once ended
	credit  entitlements.Amount
	expires time.Time
	state   grantState
}

// grantTable holds the grants and the per-account locks that make a
// report's settle-then-reserve atomic against other reserves of the
// account through this house.
type grantTable struct {
	mu        sync.Mutex
	byID      map[string]*grantEntry
	lastSweep time.Time
	locks     sync.Map // account -> *sync.RWMutex
}

func newGrantTable() *grantTable { return &grantTable{byID: make(map[string]*grantEntry)} }

// lock returns the lock of account: reserves hold it shared, grant
// reports exclusively, so that no reserve takes the credit a report frees
// before the report takes it again.
func (t *grantTable) lock(account string) *sync.RWMutex {
	if l, ok := t.locks.Load(account); ok {
		return l.(*sync.RWMutex)
	}
	l, _ := t.locks.LoadOrStore(account, new(sync.RWMutex))
	return l.(*sync.RWMutex)
}

// size returns the credit to hold: want, bounded by the policy's share of
// what the account has left (plus what the grant itself frees), never
// below need.
func (h *Handler) size(ctx context.Context, p entitlements.Principal, want, need entitlements.Amount) (entitlements.Amount, *snapshotJSON, error) {
	s, err := h.provider.Snapshot(ctx, p)
	if err != nil {
		return 0, nil, err
	}
	w := want
	if rem, capped := s.Remaining(); capped {
		w = min(w, entitlements.Amount(float64(rem)*h.grantOpts.share))
	}
	return max(w, need, 0), snapshotToWire(s), nil
}

func (h *Handler) grant(ctx context.Context, gw *gatewayEntry, req *grantRequest) (any, error) {
	p, err := gw.principal(req.Principal)
	if err != nil {
		return nil, err
	}
	if req.Want < 0 {
		return nil, fmt.Errorf("%w: grant %d", entitlements.ErrInvalidAmount, req.Want)
	}
	l := h.grants.lock(p.AccountID)
	l.RLock()
	defer l.RUnlock()
	credit, snap, err := h.size(ctx, p, entitlements.Amount(req.Want), 0)
	if err != nil {
		return nil, err
	}
	out := grantResponse{TTLMS: h.grantOpts.ttl.Milliseconds(), Budget: snap}
	if credit <= 0 {
		return out, nil
	}
	res, err := h.provider.Reserve(ctx, p, credit)
	if _, ok := errors.AsType[*entitlements.BudgetError](err); ok {
		return out, nil
	} else if err != nil {
		return nil, err
	}
	g := &grantEntry{id: "g." + randomID(), gateway: gw.name, p: p, res: res, credit: credit, expires: h.clock.Now().Add(h.grantOpts.ttl)}
	h.grants.mu.Lock()
	h.grants.byID[g.id] = g
	h.grants.mu.Unlock()
	h.metrics.grants.Inc()
	out.GrantID, out.Credit = g.id, int64(credit)
	return out, nil
}

func (h *Handler) grantReport(ctx context.Context, gw *gatewayEntry, req *grantReportRequest) (any, error) {
	p, err := gw.principal(req.Principal)
	if err != nil {
		return nil, err
	}
	if req.Spent < 0 || req.Need < 0 || req.Want < 0 || (req.Close && req.Need > 0) {
		return nil, fmt.Errorf("%w: spent, need and want must be >= 0, need 0 to close", entitlements.ErrInvalidAmount)
	}
	h.grants.mu.Lock()
	g := h.grants.byID[req.GrantID]
	h.grants.mu.Unlock()
	if g != nil && (g.gateway != gw.name || g.p.AccountID != p.AccountID) {
		return nil, entitlements.ErrUnknownReservation
	}
	l := h.grants.lock(p.AccountID)
	l.Lock()
	defer l.Unlock()
	out := grantResponse{TTLMS: h.grantOpts.ttl.Milliseconds()}
	spent := entitlements.Amount(req.Spent)
	if g == nil || g.state == grantEnded {
		// The grant expired, was closed, or is unknown to a restarted
		// house: its spend is still recorded, on a reservation of its own.
		if spent > 0 {
			if err := lateSettle(ctx, h.provider, p, spent); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if err := g.res.Settle(ctx, spent); err != nil && !errors.Is(err, entitlements.ErrReservationSettled) {
		return nil, err
	}
	// From here the old credit is consumed: the grant ends unless it is
	// reserved again.
	g.state, g.res, g.credit = grantEnded, nil, 0
	h.metrics.grants.Dec()
	if req.Close {
		return out, nil
	}
	credit, snap, err := h.size(ctx, p, entitlements.Amount(req.Want), entitlements.Amount(req.Need))
	out.Budget = snap
	if err != nil || credit <= 0 {
		return out, nil
	}
	res, err := h.provider.Reserve(ctx, p, credit)
	if err != nil {
		// Only an unreachable ledger fails here: the settle above freed
		// at least need under the account's lock. The in-flight requests
		// report their spend to the ended grant.
		return out, nil
	}
	g.res, g.credit, g.state, g.expires = res, credit, grantOpen, h.clock.Now().Add(h.grantOpts.ttl)
	h.metrics.grants.Inc()
	out.GrantID, out.Credit = g.id, int64(credit)
	return out, nil
}

// expireGrants releases the grants whose TTL passed without a report, at
// most once a second, and forgets ended grants after a further TTL.
func (h *Handler) expireGrants(ctx context.Context, now time.Time) {
	t := h.grants
	t.mu.Lock()
	if now.Sub(t.lastSweep) < time.Second {
		t.mu.Unlock()
		return
	}
	t.lastSweep = now
	var due []*grantEntry
	for id, g := range t.byID {
		if now.Before(g.expires) {
			continue
		}
		if g.state == grantEnded {
			delete(t.byID, id)
			continue
		}
		due = append(due, g)
	}
	t.mu.Unlock()
	for _, g := range due {
		l := t.lock(g.p.AccountID)
		l.Lock()
		if g.state == grantOpen && !now.Before(g.expires) {
			if err := g.res.Release(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, entitlements.ErrReservationSettled) {
				h.log.Warn("house: releasing an expired grant failed", "gateway", g.gateway, "account", g.p.AccountID, "err", err)
			}
			g.state, g.res, g.credit = grantEnded, nil, 0
			g.expires = now.Add(h.grantOpts.ttl)
			h.metrics.grants.Dec()
			h.metrics.expired.Inc()
		}
		l.Unlock()
	}
}
