package house

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// GrantConfig turns on credit grants in a Client: for a busy account, the
// client holds credit from the house and decides the reserves and settles
// it covers locally, with no round trip. See the package documentation.
type GrantConfig struct {
	// FlushInterval is how often the spend inside grants is reported to
	// the house, grants are resized and busy accounts get one: what a
	// snapshot at the house lags behind, and the spend a crashed gateway
	// can lose. Default 100 ms.
	FlushInterval time.Duration
	// BusyReserves is how many reserves of an account in one interval
	// make it busy enough for a grant. Default 4.
	BusyReserves int
	// Headroom is the credit asked for, in intervals of the account's
	// recent demand (the amounts reserved per interval, smoothed).
	// Default 4.
	Headroom float64
	// MinCredit is the smallest grant worth holding; a smaller one is
	// given back and the account reserves directly. Default 1.
	MinCredit entitlements.Amount
	// MaxCredit bounds a grant. Default: no bound.
	MaxCredit entitlements.Amount
	// Journal, when set, is the path of a file where every settle inside
	// a grant is written, and fsynced, before Settle returns (settles
	// that arrive together share one fsync), and every report of the
	// spend before it is sent and once it is answered. A client started
	// on the journal of one that crashed reports what that one had not:
	// the house hears of every settle a gateway acknowledged. Without a
	// journal, a crash loses the spend of the last flush interval inside
	// grants (at most FlushInterval times the rate of spend). One client
	// at a time per file; Close empties it once everything was reported.
	// Restart within the house's idempotency TTL (10 minutes by default):
	// a report resent later, whose first delivery had landed, is counted
	// twice.
	Journal string
	// NoFlusher leaves the reports to Flush, for tests that drive them.
	// Default false: a goroutine flushes every FlushInterval until Close.
	NoFlusher bool
}

// WithGrants turns credit grants on.
func WithGrants(g GrantConfig) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.grants = &g })
}

// grantClient is the Client's side of grants.
type grantClient struct {
	c   *Client
	cfg GrantConfig

	mu    sync.Mutex
	accts map[string]*acctGrant

	flushMu sync.Mutex // one flush at a time
	journal *journal   // nil without GrantConfig.Journal
	stop    chan struct{}
	done    chan struct{}
}

// acctGrant is what a client knows of one account's grants.
type acctGrant struct {
	mu        sync.Mutex
	p         entitlements.Principal       // the principal reports are made for
	cur       *grantPart                   // the grant new reserves draw on; nil when none
	old       []*grantPart                 // ended grants with requests in flight or spend unreported
	shrinking bool                         // a report that may lower the credit is in flight
	expires   time.Time                    // of cur, as the house's last answer set it
	count     int                          // reserves this interval
	demand    entitlements.Amount          // amounts reserved this interval
	rate      float64                      // smoothed demand per interval
	pending   *pendingCall                 // a call whose answer was lost, resent as is
	journal   *journal                     // the grant client's; nil without one
	budget    *entitlements.BudgetSnapshot // as the house's last grant answer had it
}

// grantPart is one grant id's credit on the client.
type grantPart struct {
	id       string
	credit   entitlements.Amount
	inflight entitlements.Amount // reserved by requests not yet ended
	spent    entitlements.Amount // settled locally, not yet reported
}

// pendingCall is a grant call sent without an answer: it is sent again,
// with the same idempotency id, before anything else of the account.
type pendingCall struct {
	op   string
	req  any
	part *grantPart
	d    entitlements.Amount // the spend it reports

	journaled bool // the report is in the journal
}

func newGrantClient(c *Client, cfg GrantConfig) (*grantClient, error) {
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 100 * time.Millisecond
	}
	if cfg.BusyReserves == 0 {
		cfg.BusyReserves = 4
	}
	if cfg.Headroom == 0 {
		cfg.Headroom = 4
	}
	if cfg.MinCredit == 0 {
		cfg.MinCredit = 1
	}
	if cfg.FlushInterval < 0 || cfg.BusyReserves < 0 || cfg.Headroom < 0 || cfg.MinCredit < 0 || cfg.MaxCredit < 0 {
		return nil, errors.New("house: grant settings must be >= 0")
	}
	g := &grantClient{c: c, cfg: cfg, accts: make(map[string]*acctGrant)}
	if cfg.Journal != "" {
		j, left, err := openJournal(cfg.Journal)
		if err != nil {
			return nil, err
		}
		g.journal = j
		// What a crashed client had not reported: ended grants, reported
		// (and closed) at the next flush; a report it sent without an
		// answer is sent again first, as is.
		for id, l := range left {
			a := g.acct(l.p)
			gp := &grantPart{id: id, spent: l.spent}
			a.old = append(a.old, gp)
			if l.pending != nil && a.pending == nil {
				a.pending = &pendingCall{op: opGrantReport, req: *l.pending, part: gp, d: entitlements.Amount(l.pending.Spent), journaled: true}
			}
		}
	}
	if !cfg.NoFlusher {
		g.stop, g.done = make(chan struct{}), make(chan struct{})
		go g.loop()
	}
	return g, nil
}

func (g *grantClient) loop() {
	defer close(g.done)
	tick, stop := g.c.clock.NewTicker(g.cfg.FlushInterval)
	defer stop()
	for {
		select {
		case <-g.stop:
			return
		case <-tick:
			ctx, cancel := context.WithTimeout(context.Background(), g.cfg.FlushInterval+g.c.timeout)
			_ = g.flush(ctx, false)
			cancel()
		}
	}
}

func (g *grantClient) acct(p entitlements.Principal) *acctGrant {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.accts[p.AccountID]
	if a == nil {
		a = &acctGrant{p: p, journal: g.journal}
		g.accts[p.AccountID] = a
	}
	return a
}

// reserve takes amount from p's grant, or returns nil (the caller
// reserves directly). It counts the demand either way.
func (g *grantClient) reserve(p entitlements.Principal, amount entitlements.Amount) entitlements.Reservation {
	a := g.acct(p)
	now := g.c.clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.count++
	a.demand += amount
	gp := a.cur
	if gp == nil || a.shrinking || !now.Before(a.expires) || gp.credit-gp.inflight-gp.spent < amount {
		return nil
	}
	gp.inflight += amount
	return &grantReservation{a: a, part: gp, p: p, amount: amount, budget: a.budget}
}

// grantReservation is a reservation decided locally, inside a grant.
type grantReservation struct {
	a      *acctGrant
	part   *grantPart
	p      entitlements.Principal
	amount entitlements.Amount
	budget *entitlements.BudgetSnapshot // nil: the house sent none
	done   bool                         // under a.mu
}

var (
	_ entitlements.Renewer        = (*grantReservation)(nil)
	_ entitlements.BudgetReporter = (*grantReservation)(nil)
)

// Budget implements entitlements.BudgetReporter: the account's budget as
// the house's last answer about the grant had it, up to one flush
// interval old, so that a gateway sets its rate limit headers without a
// round trip. Its Reserved leaves out the grant's own credit.
func (r *grantReservation) Budget() (entitlements.BudgetSnapshot, bool) {
	if r.budget == nil {
		return entitlements.BudgetSnapshot{}, false
	}
	return *r.budget, true
}

func (r *grantReservation) Principal() entitlements.Principal { return r.p }
func (r *grantReservation) Amount() entitlements.Amount       { return r.amount }

// Settle implements entitlements.Reservation: the spend is recorded
// locally and reaches the house with the grant's next report.
func (r *grantReservation) Settle(ctx context.Context, actual entitlements.Amount) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if actual < 0 {
		return fmt.Errorf("%w: settle %d", entitlements.ErrInvalidAmount, actual)
	}
	return r.end(actual)
}

// Release implements entitlements.Reservation.
func (r *grantReservation) Release(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.end(0)
}

// Renew implements entitlements.Renewer: the grant, not the request,
// holds the credit, and the grant's reports renew it.
func (r *grantReservation) Renew(ctx context.Context, _ time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.a.mu.Lock()
	defer r.a.mu.Unlock()
	if r.done {
		return entitlements.ErrReservationSettled
	}
	return nil
}

func (r *grantReservation) end(actual entitlements.Amount) error {
	r.a.mu.Lock()
	if r.done {
		r.a.mu.Unlock()
		return entitlements.ErrReservationSettled
	}
	r.done = true
	r.part.inflight -= r.amount
	// The record is appended before the spend is counted, under a.mu: a
	// report, which reads the count under a.mu, follows in the journal
	// every settle it covers.
	var seq uint64
	j := r.a.journal
	if j != nil && actual > 0 {
		seq = j.append(journalRecord{Grant: r.part.id, Settle: int64(actual)})
	}
	r.part.spent += actual
	r.a.mu.Unlock()
	if seq > 0 {
		return j.sync(seq)
	}
	return nil
}

// Flush reports the spend inside grants to the house now, resizes the
// grants, and asks for grants for busy accounts; the background flusher
// calls it every FlushInterval. With closing, it gives back every grant's
// unused credit (a grant with requests in flight keeps what they hold).
// It returns the first error; what failed is retried at the next flush.
func (c *Client) Flush(ctx context.Context, closing bool) error {
	if c.grants == nil {
		return nil
	}
	return c.grants.flush(ctx, closing)
}

// Close stops the flusher and gives the unused credit of every grant back
// to the house, reporting what was spent in them. Call it when the
// gateway shuts down, after its requests ended.
func (c *Client) Close(ctx context.Context) error {
	if c.grants == nil {
		return nil
	}
	if c.grants.stop != nil {
		select {
		case <-c.grants.stop:
		default:
			close(c.grants.stop)
		}
		<-c.grants.done
	}
	err := c.grants.flush(ctx, true)
	if j := c.grants.journal; j != nil {
		err = errors.Join(err, j.close(err == nil && c.grants.idle()))
	}
	return err
}

// idle reports whether no grant has anything left to report.
func (g *grantClient) idle() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range g.accts {
		a.mu.Lock()
		busy := a.cur != nil || len(a.old) > 0 || a.pending != nil
		a.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

func (g *grantClient) flush(ctx context.Context, closing bool) error {
	g.flushMu.Lock()
	defer g.flushMu.Unlock()
	g.mu.Lock()
	accts := make([]*acctGrant, 0, len(g.accts))
	for _, a := range g.accts {
		accts = append(accts, a)
	}
	g.mu.Unlock()
	var first error
	for _, a := range accts {
		if err := g.flushAcct(ctx, a, closing); err != nil && first == nil {
			first = err
		}
	}
	if g.journal != nil && !closing {
		if err := g.compact(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// compact rewrites a journal grown past journalCompactBytes as what the
// grants still have to report. g.flushMu is held (no report changes);
// every account's lock is taken, so that no settle lands in between.
func (g *grantClient) compact() error {
	j := g.journal
	j.mu.Lock()
	small := j.size < j.compactAt
	j.mu.Unlock()
	if small {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	ids := make([]string, 0, len(g.accts))
	for id := range g.accts {
		ids = append(ids, id)
	}
	slices.Sort(ids) // one order for the locks
	var records []journalRecord
	for _, id := range ids {
		a := g.accts[id]
		a.mu.Lock()
		defer a.mu.Unlock()
		p := principalToWire(a.p)
		parts := a.old
		if a.cur != nil {
			parts = append([]*grantPart{a.cur}, parts...)
		}
		for _, gp := range parts {
			records = append(records, journalRecord{Grant: gp.id, Principal: &p})
			if gp.spent > 0 {
				records = append(records, journalRecord{Grant: gp.id, Settle: int64(gp.spent)})
			}
		}
		if pc := a.pending; pc != nil && pc.op == opGrantReport {
			req := pc.req.(grantReportRequest)
			records = append(records, journalRecord{Report: &req})
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rewrite(records)
}

// flushAcct settles one account's grants with the house. Only the flusher
// changes cur, old and pending (under flushMu); reserves and settles
// change the amounts (under a.mu).
func (g *grantClient) flushAcct(ctx context.Context, a *acctGrant, closing bool) error {
	if a.pending != nil {
		if err := g.send(ctx, a, a.pending); err != nil {
			return err
		}
	}
	// Ended grants: report their spend until their requests are done.
	for _, gp := range append([]*grantPart(nil), a.old...) {
		a.mu.Lock()
		d, need := gp.spent, gp.inflight
		a.mu.Unlock()
		if d > 0 {
			req := grantReportRequest{IdempotencyID: randomID(), GrantID: gp.id, Principal: principalToWire(a.p), Spent: int64(d), Close: true}
			if err := g.send(ctx, a, &pendingCall{op: opGrantReport, req: req, part: gp, d: d}); err != nil {
				return err
			}
		}
		if need == 0 {
			a.mu.Lock()
			if gp.inflight == 0 && gp.spent == 0 {
				a.old = remove(a.old, gp)
			}
			a.mu.Unlock()
		}
	}
	a.mu.Lock()
	rate := 0.5*a.rate + 0.5*float64(a.demand)
	busy := a.count >= g.cfg.BusyReserves
	a.rate, a.count, a.demand = rate, 0, 0
	want := entitlements.Amount(rate * g.cfg.Headroom)
	if g.cfg.MaxCredit > 0 {
		want = min(want, g.cfg.MaxCredit)
	}
	if !busy || closing {
		want = 0
	}
	gp := a.cur
	var d, need entitlements.Amount
	if gp != nil {
		d, need = gp.spent, gp.inflight
		want += need
		if want < gp.credit-d {
			// Asking for less: no reserve draws on the grant until the
			// answer, so the requests in flight are all it must keep.
			a.shrinking = true
		} else {
			// Reserves go on drawing on the grant's unspent credit while
			// the report is in flight, beyond what is in flight now: the
			// house must keep all of it, or they would settle past what
			// it holds for them (and, near the cap, past the cap).
			need = gp.credit - d
		}
	}
	a.mu.Unlock()
	if gp == nil {
		if want < g.cfg.MinCredit {
			return nil
		}
		req := grantRequest{IdempotencyID: randomID(), Principal: principalToWire(a.p), Want: int64(want)}
		return g.send(ctx, a, &pendingCall{op: opGrant, req: req})
	}
	req := grantReportRequest{IdempotencyID: randomID(), GrantID: gp.id, Principal: principalToWire(a.p), Spent: int64(d), Need: int64(need), Want: int64(want), Close: want == 0 && need == 0}
	return g.send(ctx, a, &pendingCall{op: opGrantReport, req: req, part: gp, d: d})
}

// send sends a grant call and applies its answer; a call that may have
// landed without an answer stays pending, to be sent again as is.
func (g *grantClient) send(ctx context.Context, a *acctGrant, pc *pendingCall) error {
	if j := g.journal; j != nil && pc.op == opGrantReport && !pc.journaled {
		// On disk before it is sent: else a crash after the house
		// settled it would have the next client report its spend again.
		req := pc.req.(grantReportRequest)
		if err := j.sync(j.append(journalRecord{Report: &req})); err != nil {
			return err
		}
		pc.journaled = true
	}
	var out grantResponse
	// The grant's TTL runs from before the call: the house starts it when
	// it answers, later, so the gateway stops drawing on the grant no
	// later than the house would expire it.
	sent := g.c.clock.Now()
	err := g.c.call(ctx, pc.op, pc.req, &out)
	if _, ok := errors.AsType[*entitlements.UnavailableError](err); ok || ctx.Err() != nil {
		a.pending = pc
		return err
	}
	a.pending = nil
	if g.journal != nil {
		if pc.op == opGrantReport {
			g.journal.append(journalRecord{Answered: pc.req.(grantReportRequest).IdempotencyID})
		} else if out.GrantID != "" {
			p := principalToWire(a.p)
			g.journal.append(journalRecord{Grant: out.GrantID, Principal: &p})
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.shrinking = false
	if out.Budget != nil {
		if s, err := out.Budget.snapshot(); err == nil {
			a.budget = &s
		}
	}
	if pc.part != nil && err == nil {
		pc.part.spent -= pc.d
	}
	if err != nil {
		// The house refused the call (it is not one it can ever accept);
		// stop using the grant.
		if pc.part != nil {
			pc.part.spent -= pc.d
			g.end(a, pc.part)
		}
		return err
	}
	switch {
	case pc.op == opGrant && out.GrantID != "":
		a.cur = &grantPart{id: out.GrantID, credit: entitlements.Amount(out.Credit)}
		a.expires = sent.Add(time.Duration(out.TTLMS) * time.Millisecond)
	case pc.op == opGrantReport && pc.part == a.cur && pc.part != nil:
		if out.GrantID == "" {
			pc.part.credit = 0
			g.end(a, pc.part)
			return nil
		}
		pc.part.credit = entitlements.Amount(out.Credit)
		a.expires = sent.Add(time.Duration(out.TTLMS) * time.Millisecond)
	}
	return nil
}

// end retires gp from new reserves; a.mu is held.
func (g *grantClient) end(a *acctGrant, gp *grantPart) {
	if a.cur == gp {
		a.cur = nil
	}
	if (gp.inflight > 0 || gp.spent > 0) && !contains(a.old, gp) {
		a.old = append(a.old, gp)
	}
}

func remove(s []*grantPart, gp *grantPart) []*grantPart {
	for i, x := range s {
		if x == gp {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

func contains(s []*grantPart, gp *grantPart) bool {
	for _, x := range s {
		if x == gp {
			return true
		}
	}
	return false
}
