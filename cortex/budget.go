package cortex

import (
	"context"
	"errors"
	"fmt"
	"github.com/helexa-ai/helexa-go/clock"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/reqscan"
)

// Budget timeouts.
const (
	// settleTimeout bounds the Settle or Release at the end of a request.
	settleTimeout = 5 * time.Second
	// snapshotTimeout bounds the Snapshot behind the rate limit headers.
	snapshotTimeout = 2 * time.Second
	// clampAttempts bounds the reservations of a clamped request: other
	// requests of the account may take what a refusal said was available.
	clampAttempts = 3
)

// DefaultLeaseTTL is the lease TTL the gateway renews leases for when
// WithLeaseTTL does not set one and the Provider is no entitlements.Leaser:
// 10 minutes, the default of entitlements/redisledger.
const DefaultLeaseTTL = 10 * time.Minute

// limit takes a slot of the key's per-key limits (max_in_flight, rpm)
// from an entitlements.Limiter: the Provider, when it is one (it counts
// the limits for every gateway that shares it; redisledger: every
// replica), unless it leaves them to the gateway (a nil Slot); else the
// gateway's own, in-process entitlements.KeyLimiter. A refusal is the
// *entitlements.LimitError, answered 429 rate_limit_exceeded.
func (c *exchange) limit() error {
	if !entitlements.Limited(c.principal) {
		return nil
	}
	ctx := c.r.Context()
	if l, ok := c.g.cfg.provider.(entitlements.Limiter); ok {
		s, err := l.Acquire(ctx, c.principal)
		var le *entitlements.LimitError
		switch {
		case errors.As(err, &le):
			return le
		case err != nil:
			return providerError(ctx, err)
		case s != nil:
			c.slot = s
			return nil
		}
	}
	s, err := c.g.limits.Acquire(ctx, c.principal)
	if err != nil {
		return err
	}
	c.slot = s
	return nil
}

// releaseSlot frees the request's slot of its key's limits, once.
func (c *exchange) releaseSlot() {
	if c.slot == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), settleTimeout)
	defer cancel()
	if err := c.slot.Release(ctx); err != nil {
		c.g.log.Error("cortex: releasing the key's slot failed", "account", c.principal.AccountID, "key", c.principal.KeyID, "err", err)
	}
	c.slot = nil
}

// budgeted reports whether the request is held to a budget: a provider is
// set and the caller is not anonymous (anonymous callers have none).
func (c *exchange) budgeted() bool {
	return c.g.cfg.provider != nil && !c.principal.IsAnonymous()
}

// admit reserves the worst case the request can cost against the caller's
// budget, before routing, so that a request over budget never causes a
// cold load: the prompt estimate (with WithStrictCaps its upper bound)
// plus n (or best_of, when more) times the maximum output, priced in the
// key's unit. A request that sets no maximum output is sent with the one
// reserved, so that the engine cannot generate past what was reserved.
// Anonymous callers have no budget.
//
// A refusal is never turned into a smaller reservation, except for a key
// with clamp_max_tokens: then the maximum output is lowered to what the
// budget has left, and the request is refused only when that is not even
// one output token. See ExceedsCapError for a request that can never fit.
func (c *exchange) admit() error {
	if !c.budgeted() {
		return nil
	}
	if c.principal.Unit == entitlements.UnitMicroUSD && c.model.Cost == nil {
		return fmt.Errorf("%w: model %s has no cost in the catalogue, and the key's budget is in US dollars", ErrModelNotPriced, c.model.ID)
	}
	p := c.g.cfg.provider
	ctx := c.r.Context()
	out := c.maxOutput
	for attempt := 1; ; attempt++ {
		res, err := p.Reserve(ctx, c.principal, c.price(c.promptRes, satMul(c.req.Sequences(), out), 0))
		if err == nil {
			c.reservation = res
			break
		}
		var be *entitlements.BudgetError
		switch {
		case errors.Is(err, entitlements.ErrInvalidAmount):
			// Only an absurd maximum output overflows a ledger.
			return &reqscan.Error{Field: "max_tokens", Msg: "the maximum output is too large to reserve"}
		case !errors.As(err, &be):
			return providerError(ctx, err)
		}
		fit := int64(0)
		if c.principal.Limits.ClampMaxTokens && c.maxOutput > 0 {
			fit = min(c.outputFor(be.Available), out-1)
		}
		if fit < 1 || attempt == clampAttempts {
			return c.refusal(be)
		}
		out = fit
	}
	if out < c.maxOutput {
		c.clampTo, c.maxOutput = out, out
	}
	c.settleID = c.g.settler.intent(c.reservation, c.settleRecord())
	if br, ok := c.reservation.(entitlements.BudgetReporter); ok {
		if s, ok := br.Budget(); ok {
			c.snap, c.snapTried = &s, true // no Snapshot call needed
		}
	}
	c.snapshot()
	c.startRenewal()
	return nil
}

// outputFor is the most output tokens per choice that avail covers on top
// of the prompt reserved, in the key's unit; 0 when none.
func (c *exchange) outputFor(avail entitlements.Amount) int64 {
	n := c.req.Sequences()
	left := int64(avail - c.price(c.promptRes, 0, 0))
	if left <= 0 {
		return 0
	}
	if c.principal.Unit == entitlements.UnitMicroUSD {
		// Prompt and output are rounded up separately: the sum never
		// costs more than avail.
		return c.model.Cost.OutputTokensFor(left) / n
	}
	return left / n
}

// refusal is the answer to a refused reservation: the *BudgetError, or an
// *ExceedsCapError when a rolling window's whole cap is smaller than what
// the request needs (its worst case, or with clamping its prompt and one
// output token), since no Retry-After could help it. A balance smaller
// than the request stays insufficient_quota: a top-up can help.
func (c *exchange) refusal(be *entitlements.BudgetError) error {
	s := c.snapshot()
	if s == nil || s.HardCap == nil || s.Window.Kind != entitlements.WindowRolling {
		return be
	}
	need := be.Requested
	if c.principal.Limits.ClampMaxTokens && c.maxOutput > 0 {
		need = c.price(c.promptRes, c.req.Sequences(), 0)
	}
	if need > *s.HardCap {
		return &ExceedsCapError{Requested: need, Cap: *s.HardCap, Unit: c.principal.Unit}
	}
	return be
}

// price is the cost of a request in the principal's unit: tokens, or
// micro-dollars at the model's prices, rounded up (admit refuses a
// USD-priced request for a model without prices before anything is
// reserved; such a request would cost 0 here).
func (c *exchange) price(prompt, completion, cached int64) entitlements.Amount {
	prompt, completion = max(prompt, 0), max(completion, 0)
	if c.principal.Unit == entitlements.UnitMicroUSD {
		if c.model.Cost == nil {
			return 0
		}
		cached = min(max(cached, 0), prompt)
		return entitlements.Amount(c.model.Cost.Charge(catalogue.Usage{Input: prompt - cached, CacheRead: cached, Output: completion}))
	}
	if prompt > math.MaxInt64-completion {
		return math.MaxInt64
	}
	return entitlements.Amount(prompt + completion)
}

// satMul returns a*b for non-negative a and b, or math.MaxInt64 when it
// overflows.
func satMul(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// maxTokensField is the field that caps the output of a request on the
// route, added when a clamped request sets none.
func (k routeKind) maxTokensField() string {
	if k == routeResponses {
		return "max_output_tokens"
	}
	return "max_tokens"
}

// settle consumes the reservation: Settle with what was served, or
// Release when nothing was. The first attempt is made here, before the
// handler returns; one that fails is retried in the background by the
// gateway's settler, which keeps the lease renewed until it lands (see
// the package documentation). The lease renewals stop once it has landed.
func (c *exchange) settle(u usage) {
	if c.reservation == nil {
		c.renewal.stop()
		return
	}
	if c.renewal == nil {
		c.renewal = newRenewal(nil, nil, 0, c.g.clock, c.g.log)
	}
	j := &settleJob{id: c.settleID, res: c.reservation, release: !u.Served, renewal: c.renewal, start: c.g.clock.Now(), recorded: make(chan struct{})}
	c.renewal.recorded = j.recorded
	if u.Served {
		c.settled = c.price(u.Prompt, u.Completion, u.Cached)
		j.amount = c.settled
	}
	j.rec = c.settleRecord()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), settleTimeout)
	defer cancel()
	c.renewal.state = c.g.settler.first(ctx, j)
	if c.renewal.state == metering.SettlePending {
		c.renewal.settleID = j.id
	}
}

// snapshot returns the caller's budget, asking the provider once per
// request; nil for an anonymous caller or when the provider could not
// answer.
func (c *exchange) snapshot() *entitlements.BudgetSnapshot {
	if c.snapTried || !c.budgeted() {
		return c.snap
	}
	c.snapTried = true
	ctx, cancel := context.WithTimeout(c.r.Context(), snapshotTimeout)
	defer cancel()
	s, err := c.g.cfg.provider.Snapshot(ctx, c.principal)
	if err != nil {
		c.g.log.Debug("cortex: no budget snapshot for the rate limit headers", "account", c.principal.AccountID, "err", err)
		return nil
	}
	c.snap = &s
	return c.snap
}

// Rate limit headers of authenticated answers.
const (
	HeaderLimitTokens     = "X-Ratelimit-Limit-Tokens"
	HeaderRemainingTokens = "X-Ratelimit-Remaining-Tokens"
	HeaderResetTokens     = "X-Ratelimit-Reset-Tokens"
	HeaderBudgetUnit      = "X-Helexa-Budget-Unit"
	HeaderClampedMax      = "X-Helexa-Clamped-Max-Tokens"
)

// budgetHeaders sets the rate limit headers of the answer from the
// caller's budget; see the package documentation. It must run before the
// answer's status is written.
func (c *exchange) budgetHeaders() {
	if !c.authed {
		return
	}
	if c.clampTo > 0 {
		c.w.Header().Set(HeaderClampedMax, strconv.FormatInt(c.clampTo, 10))
	}
	setBudgetHeaders(c.w.Header(), c.principal, c.snapshot(), c.g.clock.Now())
}

// setBudgetHeaders sets the rate limit headers from s; nothing for an
// anonymous caller, a nil snapshot or an uncapped budget.
func setBudgetHeaders(h http.Header, p entitlements.Principal, s *entitlements.BudgetSnapshot, now time.Time) {
	if p.IsAnonymous() || s == nil || s.HardCap == nil {
		return
	}
	remaining, _ := s.Remaining()
	h.Set(HeaderLimitTokens, strconv.FormatInt(int64(*s.HardCap), 10))
	h.Set(HeaderRemainingTokens, strconv.FormatInt(int64(remaining), 10))
	if s.Window.Kind == entitlements.WindowRolling && !s.ResetsAt.IsZero() {
		// Rounded up: a window that resets in 0.4 s has not reset yet.
		d := max(s.ResetsAt.Sub(now), 0)
		h.Set(HeaderResetTokens, ((d + time.Second - 1) / time.Second * time.Second).String())
	}
	h.Set(HeaderBudgetUnit, p.Unit.String())
}

// renewal renews the lease of one reservation (an entitlements.Renewer) on
// a timer until stopped, while its request runs and, when its settle
// failed, until the settle lands; it also keeps what became of the
// settle, for the meter record. Its methods accept a nil receiver (no
// renewal).
//
// Renew is called from a timer goroutine while the request runs, possibly
// concurrently with the Settle or Release that ends it (the Renewer makes
// them exclusive). Errors are logged; entitlements.ErrReservationSettled
// and entitlements.ErrUnknownReservation stop the renewals.
type renewal struct {
	lease    entitlements.Renewer // the reservation; nil: no renewals
	p        entitlements.Principal
	ttl      time.Duration
	interval time.Duration
	log      *slog.Logger

	// Set by settle, read by the meter record after it.
	state    metering.SettleState // what the ledger recorded when the request ended
	settleID string               // the settle's id while it is pending
	recorded chan struct{}        // closed by recordDone; nil: nobody waits

	ctx    context.Context // ends at stop: cancels a Renew in progress
	cancel context.CancelFunc
	mu     sync.Mutex
	slot   entitlements.Renewer // the key's slot, renewed with the reservation; nil: none
	t      clock.Timer
	done   bool           // stopped, or the provider refused for good
	wg     sync.WaitGroup // a renewal in progress
}

// startRenewal starts renewing the reservation when it is a lease, and
// the key's slot with it when that is one too.
func (c *exchange) startRenewal() {
	slot, _ := c.slot.(entitlements.Renewer)
	c.renewal = newRenewal(c.reservation, slot, c.g.leaseTTL, c.g.clock, c.g.log)
}

// newRenewal returns the renewal of res (and of the key's slot, when not
// nil), renewing every third of ttl on clk when res is an
// entitlements.Renewer.
func newRenewal(res entitlements.Reservation, slot entitlements.Renewer, ttl time.Duration, clk clock.Clock, log *slog.Logger) *renewal {
	r := &renewal{slot: slot, ttl: ttl, log: log}
	r.lease, _ = res.(entitlements.Renewer)
	if res != nil {
		r.p = res.Principal()
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if r.lease == nil {
		r.done = true
		return r
	}
	r.interval = max(ttl/3, time.Millisecond)
	r.mu.Lock()
	r.t = clk.AfterFunc(r.interval, r.fire)
	r.mu.Unlock()
	return r
}

// fire renews the lease once and schedules the next renewal.
func (r *renewal) fire() {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return
	}
	slot := r.slot
	r.wg.Add(1)
	r.mu.Unlock()
	defer r.wg.Done()

	p := r.p
	ctx, cancel := context.WithTimeout(r.ctx, max(r.interval, time.Second))
	err := r.lease.Renew(ctx, r.ttl)
	if slot != nil {
		if serr := slot.Renew(ctx, r.ttl); serr != nil && r.ctx.Err() == nil {
			r.log.Warn("cortex: renewing the key's slot failed", "account", p.AccountID, "key", p.KeyID, "err", serr)
		}
	}
	cancel()
	final := errors.Is(err, entitlements.ErrReservationSettled) || errors.Is(err, entitlements.ErrUnknownReservation)
	if err != nil && r.ctx.Err() == nil {
		r.log.Warn("cortex: renewing a reservation's lease failed", "account", p.AccountID, "key", p.KeyID, "err", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if final {
		r.done = true
	}
	if !r.done {
		r.t.Reset(r.interval)
	}
}

// handOff keeps renewing the reservation while its settle is retried in
// the background, but no longer the key's slot, which the request has
// released.
func (r *renewal) handOff() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.slot = nil
	r.mu.Unlock()
}

// stop ends the renewals and waits for one in progress, which it cancels.
func (r *renewal) stop() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.done = true
	if r.t != nil {
		r.t.Stop()
	}
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// recordDone says that the request's meter record is written (or that
// there is none), so that a pending settle may go on.
func (r *renewal) recordDone() {
	if r != nil && r.recorded != nil {
		close(r.recorded)
		r.recorded = nil
	}
}

// settleState returns what the ledger recorded of the reservation when the
// request ended, and the id of its settle while pending; "" without a
// reservation.
func (r *renewal) settleState() (metering.SettleState, string) {
	if r == nil {
		return "", ""
	}
	return r.state, r.settleID
}
