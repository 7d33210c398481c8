package cortex

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// settleJob is one Settle or Release of a reservation, from its first
// attempt until it lands or the gateway gives up.
type settleJob struct {
	id      string // the outbox's id and the meter's SettleID
	res     entitlements.Reservation
	release bool
	amount  entitlements.Amount // what Settle is given; 0 for a release
	renewal *renewal            // keeps the lease while the settle is pending; may be nil
	rec     metering.Record     // the request's identity, for the settle record
	start   time.Time           // when the request ended: the retry window counts from it

	// recorded is closed once the request's meter record is written, so
	// that the settle record never comes before it; nil when replayed.
	recorded chan struct{}

	inOutbox bool // its settle line is in the outbox
	replayed bool // resumed from the outbox at start: the first attempt's outcome is unknown
}

// settler settles reservations: the first attempt on the request path,
// the retries of those that failed in goroutines of their own, one per
// pending settle, which exist only while it is pending. It is owned by the
// Gateway, which drains and stops it in Shutdown.
type settler struct {
	resumer  entitlements.Resumer // nil: reservations cannot outlive the process
	leaseTTL time.Duration        // of the renewals of resumed leases
	ob       *outbox              // nil: no outbox
	log      *slog.Logger
	clock    clock.Clock           // the gateway's: the records' times, the retry timers
	record   func(metering.Record) // nil: no meter
	window   time.Duration         // how long a pending settle is retried
	base     time.Duration         // first backoff
	maxWait  time.Duration         // backoff cap
	metrics  *settleMetrics

	life context.Context // ends at stop: cancels the attempts in progress
	stop context.CancelFunc

	mu      sync.Mutex
	jobs    map[*settleJob]struct{} // pending in the background
	changed chan struct{}           // closed and replaced when a job ends
	closed  bool
	wg      sync.WaitGroup
}

// settleMetrics are the settler's Prometheus metrics.
type settleMetrics struct {
	settles *prometheus.CounterVec // by state at the end of the request
	late    *prometheus.CounterVec // pending settles ended, by state
	retries prometheus.Counter
	pending prometheus.Gauge
}

func newSettleMetrics(reg *prometheus.Registry) (*settleMetrics, error) {
	m := &settleMetrics{
		settles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_settles_total",
			Help: "Reservations ended by requests, by what the ledger had recorded when the request ended: settled, released, pending or failed.",
		}, []string{"state"}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_settles_late_total",
			Help: "Pending settles that ended in the background, by state: settled, released or failed.",
		}, []string{"state"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "helexa_settle_retries_total",
			Help: "Attempts to settle or release a reservation after the first one failed.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "helexa_settles_pending",
			Help: "Settles the gateway is retrying in the background.",
		}),
	}
	for _, s := range []metering.SettleState{metering.SettleSettled, metering.SettleReleased, metering.SettlePending, metering.SettleFailed} {
		m.settles.WithLabelValues(string(s))
		if s != metering.SettlePending {
			m.late.WithLabelValues(string(s))
		}
	}
	if err := registerAll(reg, m.settles, m.late, m.retries, m.pending); err != nil {
		return nil, err
	}
	return m, nil
}

// newSettler returns the settler of g's provider; ob may be nil.
func newSettler(g *Gateway, ob *outbox, m *settleMetrics) *settler {
	s := &settler{
		leaseTTL: g.leaseTTL,
		ob:       ob,
		log:      g.log,
		clock:    g.clock,
		window:   g.cfg.settleWindow,
		base:     g.cfg.settleBackoff,
		maxWait:  g.cfg.settleMaxBackoff,
		metrics:  m,
		jobs:     make(map[*settleJob]struct{}),
		changed:  make(chan struct{}),
	}
	s.resumer, _ = g.cfg.provider.(entitlements.Resumer)
	if g.meter != nil {
		s.record = g.record
	}
	s.life, s.stop = context.WithCancel(context.Background())
	return s
}

// first makes the first attempt of j on the request path, within ctx, and
// returns what the ledger recorded: settled or released when it landed,
// failed when the provider refused it for good, pending when it failed
// otherwise and j goes on in the background. With an outbox, j is written
// to it before the attempt.
func (s *settler) first(ctx context.Context, j *settleJob) metering.SettleState {
	if s.ob != nil && s.resumer != nil {
		if tok, ok := s.resumer.ReservationToken(j.res); ok {
			if j.id == "" {
				j.id = rand.Text()
			}
			if err := s.ob.add(j.outboxLine(tok)); err != nil {
				s.log.Error("cortex: writing a settle to the outbox failed; it is not kept across a restart",
					"account", j.rec.AccountID, "key", j.rec.KeyID, "amount", j.amount, "err", err)
			} else {
				j.inOutbox = true
			}
		}
	}
	err := j.attempt(ctx)
	state, final := s.classify(j, err, false)
	if final {
		s.finish(j, state, err)
		s.metrics.settles.WithLabelValues(string(state)).Inc()
		return state
	}
	state = s.handOff(j, err)
	s.metrics.settles.WithLabelValues(string(state)).Inc()
	return state
}

// intent writes to the outbox, right after a reservation, the settle of
// its whole amount: the settle of a request the gateway is interrupted
// while serving (a crash, a kill), which the next gateway on the outbox
// re-issues, since what was served is unknown. The request's own settle
// line, written at its end under the id returned, takes its place. It
// returns "" when there is no outbox, or the provider cannot resume the
// reservation.
func (s *settler) intent(res entitlements.Reservation, rec metering.Record) string {
	if s.ob == nil || s.resumer == nil {
		return ""
	}
	tok, ok := s.resumer.ReservationToken(res)
	if !ok {
		return ""
	}
	rec.Outcome = metering.OutcomeInterrupted
	j := &settleJob{id: rand.Text(), res: res, amount: res.Amount(), start: s.clock.Now(), rec: rec}
	if err := s.ob.add(j.outboxLine(tok)); err != nil {
		s.log.Error("cortex: writing a reservation to the outbox failed; an interruption would lose its settle",
			"account", rec.AccountID, "key", rec.KeyID, "err", err)
		return ""
	}
	return j.id
}

// outboxLine is the settle line of j, with the reservation's token.
func (j *settleJob) outboxLine(token string) outboxLine {
	return outboxLine{
		Op: opSettle, ID: j.id, Time: j.start, Token: token, Release: j.release, Amount: int64(j.amount),
		Account: j.rec.AccountID, KeyID: j.rec.KeyID, Unit: j.rec.Unit.String(), Reserved: int64(j.rec.Reserved),
		Model: j.rec.Model, Neuron: j.rec.Neuron, Route: j.rec.Route, Stream: j.rec.Stream,
		Status: j.rec.Status, Outcome: string(j.rec.Outcome),
	}
}

// attempt settles or releases j's reservation once.
func (j *settleJob) attempt(ctx context.Context) error {
	if j.release {
		return j.res.Release(ctx)
	}
	return j.res.Settle(ctx, j.amount)
}

// classify maps the result of an attempt to a state, and says whether it
// is final. Errors that mean the reservation is consumed or unknown to the
// provider end the retries; any other error is retried. After a failed
// attempt (retry) or a restart (replayed), ErrReservationSettled means an
// earlier attempt landed: an entitlements.Reservation is consumed once.
func (s *settler) classify(j *settleJob, err error, retry bool) (metering.SettleState, bool) {
	landed := metering.SettleSettled
	if j.release {
		landed = metering.SettleReleased
	}
	switch {
	case err == nil:
		return landed, true
	case errors.Is(err, entitlements.ErrReservationSettled) && (retry || j.replayed):
		return landed, true
	case errors.Is(err, entitlements.ErrReservationSettled),
		errors.Is(err, entitlements.ErrUnknownReservation),
		errors.Is(err, entitlements.ErrInvalidAmount):
		return metering.SettleFailed, true
	}
	return metering.SettlePending, false
}

// handOff moves j, whose first attempt failed with err, to the background:
// it writes j's pending line (fsynced) and starts retrying it, keeping its
// lease renewed. Once the settler is stopped nothing is retried: j stays
// in the outbox for the next start when it is there (pending), else it is
// lost (failed).
func (s *settler) handOff(j *settleJob, err error) metering.SettleState {
	if j.id == "" {
		j.id = rand.Text()
	}
	if j.inOutbox {
		if perr := s.ob.pending(j.id); perr != nil {
			s.log.Error("cortex: writing a pending settle to the outbox failed", "settle", j.id, "err", perr)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		j.renewal.stop()
		if j.inOutbox {
			s.log.Warn("cortex: settling a reservation failed while the gateway stops; it is left in the outbox for the next start",
				"settle", j.id, "account", j.rec.AccountID, "key", j.rec.KeyID, "amount", j.amount, "err", err)
			return metering.SettlePending
		}
		s.log.Error("cortex: settling a reservation failed while the gateway stops; it is lost",
			"account", j.rec.AccountID, "key", j.rec.KeyID, "release", j.release, "amount", j.amount, "err", err)
		return metering.SettleFailed
	}
	s.jobs[j] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.metrics.pending.Inc()
	j.renewal.handOff()
	s.log.Warn("cortex: settling a reservation failed; retrying in the background",
		"settle", j.id, "account", j.rec.AccountID, "key", j.rec.KeyID, "release", j.release, "amount", j.amount,
		"outbox", j.inOutbox, "err", err)
	go s.run(j)
	return metering.SettlePending
}

// run retries j until it lands, fails for good, its retry window ends or
// the settler stops.
func (s *settler) run(j *settleJob) {
	defer s.wg.Done()
	if j.recorded != nil {
		t := s.clock.NewTimer(settleTimeout) // in case the record never comes (a panic in between)
		select {
		case <-j.recorded:
		case <-t.C():
		case <-s.life.Done():
		}
		t.Stop()
	}
	for n := 1; ; n++ {
		wait := s.backoff(n)
		if j.replayed && n == 1 {
			wait = 0 // the first attempt of this process
		}
		t := s.clock.NewTimer(wait)
		select {
		case <-s.life.Done():
			t.Stop()
			s.left(j)
			return
		case <-t.C():
		}
		s.metrics.retries.Inc()
		ctx, cancel := context.WithTimeout(s.life, settleTimeout)
		err := j.attempt(ctx)
		cancel()
		if s.life.Err() != nil && err != nil {
			s.left(j)
			return
		}
		state, final := s.classify(j, err, true)
		if !final && s.clock.Now().Sub(j.start) >= s.window {
			state, final = metering.SettleFailed, true
			s.log.Error("cortex: giving up a settle: its retry window is over",
				"settle", j.id, "account", j.rec.AccountID, "key", j.rec.KeyID, "release", j.release,
				"amount", j.amount, "attempts", n, "window", s.window, "err", err)
		}
		if final {
			s.finish(j, state, err)
			s.end(j, state)
			return
		}
		s.log.Debug("cortex: settle retry failed", "settle", j.id, "attempt", n, "err", err)
	}
}

// backoff is the wait before retry n (1 the first): the base doubled n-1
// times, capped, less up to half of it at random.
func (s *settler) backoff(n int) time.Duration {
	d := s.maxWait
	if n < 63 {
		if e := s.base << (n - 1); e > 0 && e < d {
			d = e
		}
	}
	if d <= 1 {
		return d
	}
	return d - mrand.N(d/2)
}

// finish records the end of j: its outbox done line, the end of its
// renewals, a log line for a failure.
func (s *settler) finish(j *settleJob, state metering.SettleState, err error) {
	j.renewal.stop()
	if j.inOutbox {
		if derr := s.ob.done(j.id, state); derr != nil {
			s.log.Error("cortex: marking a settle done in the outbox failed; it will be re-issued at the next start (the ledger applies it once)",
				"settle", j.id, "err", derr)
		}
	}
	switch {
	case state == metering.SettleFailed:
		s.log.Error("cortex: settling the budget failed for good; the ledger did not record it",
			"settle", j.id, "account", j.rec.AccountID, "key", j.rec.KeyID, "release", j.release, "amount", j.amount, "err", err)
	case err != nil:
		s.log.Info("cortex: a settle had already landed", "settle", j.id, "account", j.rec.AccountID, "err", err)
	}
}

// end removes the background job j, which ended in state, and writes its
// settle record.
func (s *settler) end(j *settleJob, state metering.SettleState) {
	s.mu.Lock()
	delete(s.jobs, j)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.metrics.pending.Dec()
	s.metrics.late.WithLabelValues(string(state)).Inc()
	if state != metering.SettleFailed {
		s.log.Info("cortex: a pending settle landed", "settle", j.id, "account", j.rec.AccountID, "key", j.rec.KeyID,
			"state", state, "amount", j.amount)
	}
	if s.record == nil {
		return
	}
	r := j.rec
	r.Time = s.clock.Now()
	r.Kind = metering.KindSettle
	r.SettleState = state
	r.SettleID = j.id
	r.Settled = 0
	if state == metering.SettleSettled {
		r.Settled = j.amount
	}
	s.record(r)
}

// left notes j, still pending when the settler stopped: kept in the outbox
// for the next start, or lost.
func (s *settler) left(j *settleJob) {
	j.renewal.stop()
	s.mu.Lock()
	delete(s.jobs, j)
	s.mu.Unlock()
	s.metrics.pending.Dec()
	if j.inOutbox {
		s.log.Warn("cortex: a pending settle is left in the outbox for the next start", "settle", j.id,
			"account", j.rec.AccountID, "key", j.rec.KeyID, "release", j.release, "amount", j.amount)
		return
	}
	s.log.Error("cortex: a pending settle is lost: the gateway stopped before it landed, and no outbox keeps it",
		"settle", j.id, "account", j.rec.AccountID, "key", j.rec.KeyID, "release", j.release, "amount", j.amount)
	s.metrics.late.WithLabelValues(string(metering.SettleFailed)).Inc()
	if s.record != nil {
		r := j.rec
		r.Time, r.Kind, r.SettleState, r.SettleID, r.Settled = s.clock.Now(), metering.KindSettle, metering.SettleFailed, j.id, 0
		s.record(r)
	}
}

// replay re-issues the settles the outbox held open at start, in the
// background. Without a Resumer provider they cannot be: they stay in the
// outbox, and the gateway logs them.
func (s *settler) replay(entries []outboxEntry) {
	if len(entries) == 0 {
		return
	}
	if s.resumer == nil {
		s.log.Error("cortex: the settle outbox holds settles this provider cannot resume; they are kept in it",
			"count", len(entries))
		return
	}
	for _, e := range entries {
		l := e.line
		unit, err := parseUnit(l.Unit)
		p := entitlements.Principal{AccountID: l.Account, KeyID: l.KeyID, Unit: unit}
		var res entitlements.Reservation
		if err == nil {
			res, err = s.resumer.ResumeReservation(p, l.Token)
		}
		j := &settleJob{
			id: l.ID, res: res, release: l.Release, amount: entitlements.Amount(l.Amount), start: l.Time,
			inOutbox: true, replayed: true,
			rec: metering.Record{
				AccountID: l.Account, KeyID: l.KeyID, Model: l.Model, Neuron: l.Neuron, Route: l.Route,
				Stream: l.Stream, Reserved: entitlements.Amount(l.Reserved), Unit: unit, Status: l.Status,
				Outcome: metering.Outcome(l.Outcome),
			},
		}
		if err != nil {
			s.finish(j, metering.SettleFailed, err)
			s.metrics.late.WithLabelValues(string(metering.SettleFailed)).Inc()
			continue
		}
		if _, ok := res.(entitlements.Renewer); ok {
			j.renewal = newRenewal(res, nil, s.leaseTTL, s.clock, s.log)
			j.renewal.handOff()
		}
		s.mu.Lock()
		s.jobs[j] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.metrics.pending.Inc()
		go s.run(j)
	}
	s.log.Info("cortex: re-issuing the settles the outbox held", "count", len(entries))
}

// parseUnit parses a unit's configuration name.
func parseUnit(s string) (entitlements.Unit, error) {
	switch s {
	case "", entitlements.UnitTokens.String():
		return entitlements.UnitTokens, nil
	case entitlements.UnitMicroUSD.String():
		return entitlements.UnitMicroUSD, nil
	}
	return 0, errors.New("cortex: settle outbox: unknown unit " + s)
}

// drain waits until no settle is pending or ctx ends, then stops the
// settler: attempts in progress are cancelled, what is still pending stays
// in the outbox (or is lost without one), and the outbox is closed.
func (s *settler) drain(ctx context.Context) error {
wait:
	for {
		s.mu.Lock()
		n, ch := len(s.jobs), s.changed
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			break wait
		}
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
	if s.ob == nil {
		return nil
	}
	if n := s.ob.openCount(); n > 0 {
		s.log.Warn("cortex: the settle outbox keeps settles that have not landed, for the next start", "count", n)
	}
	return s.ob.close()
}
