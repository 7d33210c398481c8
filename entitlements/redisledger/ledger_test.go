package redisledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
	"github.com/redis/go-redis/v9"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	client := newClient(t, sharedRedis(t).addr)
	// Pipelined (the default) and one round trip per call.
	for _, n := range []int{redisledger.DefaultPipelines, 0} {
		t.Run(fmt.Sprintf("pipelines=%d", n), func(t *testing.T) {
			entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
				l := newLedger(t, client, redisledger.WithClock(clock), redisledger.WithPipelines(n))
				for _, k := range keys {
					err := l.AddKey(t.Context(), entitlements.Key{Digest: entitlements.KeyDigest(k.Secret), Principal: k.Principal, Budget: k.Budget})
					if err != nil {
						t.Fatalf("AddKey(%+v): %v", k.Principal, err)
					}
				}
				return l
			}, entitlementstest.Budgets, entitlementstest.Leases, entitlementstest.Limits)
		})
	}
}

// TestChainConformance: a Chain over two Ledgers, its accounts split
// between them, forwards every capability of theirs: it passes what a
// Ledger passes, leases and per-key limits included.
func TestChainConformance(t *testing.T) {
	t.Parallel()
	client := newClient(t, sharedRedis(t).addr)
	entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
		ledgers := [2]*redisledger.Ledger{}
		for i := range ledgers {
			ledgers[i] = newLedger(t, client, redisledger.WithClock(clock))
		}
		side := map[string]int{}
		for _, k := range keys {
			i, ok := side[k.Principal.AccountID]
			if !ok {
				i = len(side) % 2
				side[k.Principal.AccountID] = i
			}
			addKey(t, ledgers[i], k.Secret, k.Principal, k.Budget)
		}
		c, err := entitlements.NewChain(ledgers[0], ledgers[1])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}, entitlementstest.Budgets, entitlementstest.Leases, entitlementstest.Limits)
}

// TestReplicas runs three Ledgers, each with its own client, on one Redis:
// 1000 concurrent reserves of random sizes spread over them against one cap,
// each settled (at most what it reserved) or released at random on its
// replica, while snapshots watch. Spend never exceeds the cap and Reserved
// returns to 0.
func TestReplicas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		window entitlements.CapWindow
		clock  bool // a fixed injected clock instead of the server's
	}{
		{name: "balance, server clock", window: entitlements.Balance()},
		{name: "rolling, injected clock", window: entitlements.Rolling(3600), clock: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const (
				workers = 1000
				hardCap = 10_000
			)
			addr := sharedRedis(t).addr
			prefix := uniquePrefix(t)
			var opts []redisledger.Option
			opts = append(opts, redisledger.WithKeyPrefix(prefix))
			if tt.clock {
				clock := entitlementstest.NewClock(time.Date(2026, 1, 1, 0, 20, 0, 0, time.UTC))
				opts = append(opts, redisledger.WithClock(clock))
			}
			var replicas [3]*redisledger.Ledger
			for i := range replicas {
				replicas[i] = newLedger(t, newClient(t, addr), opts...)
			}
			b := entitlements.Budget{HardCap: entitlements.Cap(hardCap), Window: tt.window}
			p := addKey(t, replicas[0], "sk-replicas", entitlements.Principal{AccountID: "acme", KeyID: "k"}, b)
			ctx := t.Context()

			stop := make(chan struct{})
			watched := make(chan error, 1)
			go func() {
				n := 0
				for {
					select {
					case <-stop:
						if n == 0 {
							watched <- errors.New("no snapshot was taken")
						} else {
							watched <- nil
						}
						return
					default:
					}
					s, err := replicas[n%3].Snapshot(ctx, p)
					if err != nil {
						watched <- err
						return
					}
					if s.Spent+s.Reserved > hardCap || s.Reserved < 0 {
						watched <- fmt.Errorf("snapshot %d: spent %d + reserved %d exceeds cap %d", n, s.Spent, s.Reserved, hardCap)
						return
					}
					n++
				}
			}()

			var (
				spent, admitted, refused atomic.Int64
				wg                       sync.WaitGroup
				gate                     = make(chan struct{})
			)
			for i := range workers {
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				amount := entitlements.Amount(1 + rng.IntN(40)) // ~2x the cap in all
				actual := entitlements.Amount(rng.IntN(int(amount) + 1))
				settle := rng.IntN(3) != 0
				l := replicas[i%3]
				wg.Go(func() {
					<-gate
					r, err := l.Reserve(ctx, p, amount)
					var be *entitlements.BudgetError
					switch {
					case errors.As(err, &be):
						refused.Add(1)
						return
					case err != nil:
						t.Errorf("worker %d: Reserve(%d): %v", i, amount, err)
						return
					}
					admitted.Add(1)
					if settle {
						err = r.Settle(ctx, actual)
						spent.Add(int64(actual))
					} else {
						err = r.Release(ctx)
					}
					if err != nil {
						t.Errorf("worker %d: settle: %v", i, err)
					}
				})
			}
			close(gate)
			wg.Wait()
			close(stop)
			if err := <-watched; err != nil {
				t.Fatal(err)
			}
			if admitted.Load() == 0 || refused.Load() == 0 {
				t.Errorf("admitted %d, refused %d; the test needs both", admitted.Load(), refused.Load())
			}
			got, err := replicas[1].Snapshot(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			got.ResetsAt = time.Time{}
			want := entitlements.BudgetSnapshot{HardCap: b.HardCap, Spent: entitlements.Amount(spent.Load()), Window: b.Window}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("final snapshot mismatch (-got +want):\n%s", diff)
			}
			if got.Spent > hardCap {
				t.Errorf("spent %d exceeds the cap %d", got.Spent, hardCap)
			}
		})
	}
}

// leaseEnv is two replicas on one ledger sharing a manual clock, with one
// account capped at 100.
type leaseEnv struct {
	clock         *entitlementstest.Clock
	crashed, live *redisledger.Ledger
	p             entitlements.Principal
}

func newLeaseEnv(t *testing.T, ttl time.Duration, opts ...redisledger.Option) *leaseEnv {
	t.Helper()
	addr := sharedRedis(t).addr
	e := &leaseEnv{clock: entitlementstest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))}
	opts = append([]redisledger.Option{
		redisledger.WithKeyPrefix(uniquePrefix(t)),
		redisledger.WithClock(e.clock),
		redisledger.WithLeaseTTL(ttl),
	}, opts...)
	e.crashed = newLedger(t, newClient(t, addr), opts...)
	e.live = newLedger(t, newClient(t, addr), opts...)
	e.p = addKey(t, e.live, "sk-lease", entitlements.Principal{AccountID: "acme", KeyID: "k"},
		entitlements.Budget{HardCap: entitlements.Cap(100)})
	return e
}

func (e *leaseEnv) reserve(t *testing.T, l *redisledger.Ledger, amount entitlements.Amount) entitlements.Reservation {
	t.Helper()
	r, err := l.Reserve(t.Context(), e.p, amount)
	if err != nil {
		t.Fatalf("Reserve(%d): %v", amount, err)
	}
	return r
}

func (e *leaseEnv) want(t *testing.T, spent, reserved entitlements.Amount) {
	t.Helper()
	got, err := e.live.Snapshot(t.Context(), e.p)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	want := entitlements.BudgetSnapshot{HardCap: entitlements.Cap(100), Spent: spent, Reserved: reserved, Window: entitlements.Balance()}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Snapshot mismatch (-got +want):\n%s", diff)
	}
}

// TestLeaseExpiry: a replica that "crashes" holding reservations does not
// hold the quota for longer than the lease TTL.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	e := newLeaseEnv(t, time.Minute)
	r1 := e.reserve(t, e.crashed, 60)
	r2 := e.reserve(t, e.crashed, 40)
	if _, err := e.live.Reserve(t.Context(), e.p, 1); !isBudgetError(err) {
		t.Fatalf("Reserve on the other replica = %v, want a BudgetError", err)
	}
	e.clock.Advance(time.Minute - time.Millisecond)
	e.want(t, 0, 100)

	e.clock.Advance(time.Millisecond) // the TTL has passed: the quota is back
	r3 := e.reserve(t, e.live, 100)
	e.want(t, 0, 100)
	a, err := e.live.Account(t.Context(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if a.ExpiredLeases != 2 {
		t.Errorf("ExpiredLeases = %d, want 2", a.ExpiredLeases)
	}
	if err := r3.Release(t.Context()); err != nil {
		t.Fatal(err)
	}

	// The crashed replica comes back: its late settle still records the
	// work served, exactly once; its late release is reported.
	if err := r1.Settle(t.Context(), 60); err != nil {
		t.Errorf("late Settle = %v, want nil", err)
	}
	if err := r1.Settle(t.Context(), 60); !errors.Is(err, entitlements.ErrReservationSettled) {
		t.Errorf("second late Settle = %v, want ErrReservationSettled", err)
	}
	if err := r2.Release(t.Context()); !errors.Is(err, redisledger.ErrLeaseExpired) {
		t.Errorf("late Release = %v, want ErrLeaseExpired", err)
	}
	if err := r2.Release(t.Context()); !errors.Is(err, entitlements.ErrReservationSettled) {
		t.Errorf("second late Release = %v, want ErrReservationSettled", err)
	}
	e.want(t, 60, 0)
	want := redisledger.Stats{LateSettles: 1, LateReleases: 1}
	if diff := cmp.Diff(e.crashed.Stats(), want); diff != "" {
		t.Errorf("Stats mismatch (-got +want):\n%s", diff)
	}
}

// TestLeaseRetention: an expired lease is forgotten after
// ExpiredLeaseRetention; a settle later than that records nothing.
func TestLeaseRetention(t *testing.T) {
	t.Parallel()
	e := newLeaseEnv(t, time.Minute)
	r := e.reserve(t, e.crashed, 10)
	e.clock.Advance(time.Minute)
	e.want(t, 0, 0)
	e.clock.Advance(redisledger.ExpiredLeaseRetention)
	e.want(t, 0, 0) // purges the expired lease
	if err := r.Settle(t.Context(), 10); !errors.Is(err, entitlements.ErrReservationSettled) {
		t.Errorf("Settle after the retention = %v, want ErrReservationSettled", err)
	}
	e.want(t, 0, 0)
}

func TestRenew(t *testing.T) {
	t.Parallel()
	e := newLeaseEnv(t, time.Minute)
	l := e.live
	var _ entitlements.Leaser = l
	r := e.reserve(t, l, 10)
	e.clock.Advance(50 * time.Second)
	if err := r.(entitlements.Renewer).Renew(t.Context(), 0); err != nil { // the default TTL
		t.Fatalf("Renew: %v", err)
	}
	e.clock.Advance(50 * time.Second) // 100 s after Reserve, 50 s after Renew
	e.want(t, 0, 10)
	if err := r.(entitlements.Renewer).Renew(t.Context(), 2*time.Minute); err != nil {
		t.Fatalf("Renew(2m): %v", err)
	}
	e.clock.Advance(2*time.Minute - time.Millisecond)
	e.want(t, 0, 10)
	e.clock.Advance(time.Millisecond)
	e.want(t, 0, 0)
	if err := r.(entitlements.Renewer).Renew(t.Context(), 0); !errors.Is(err, redisledger.ErrLeaseExpired) {
		t.Errorf("Renew after expiry = %v, want ErrLeaseExpired", err)
	}
	if err := r.Settle(t.Context(), 7); err != nil {
		t.Fatalf("Settle after expiry: %v", err)
	}
	e.want(t, 7, 0)
	if err := r.(entitlements.Renewer).Renew(t.Context(), 0); !errors.Is(err, entitlements.ErrReservationSettled) {
		t.Errorf("Renew after Settle = %v, want ErrReservationSettled", err)
	}
}

// TestLeaseBounds: the ledger looks for expired leases and for expired
// leases to forget only when its stored bounds say one may be due; the
// bounds follow every lease, however expiries are ordered.
func TestLeaseBounds(t *testing.T) {
	t.Parallel()
	e := newLeaseEnv(t, time.Minute)
	l := e.live

	// A renewal that shortens a lease moves the bound earlier.
	r := e.reserve(t, l, 10)
	if err := r.(entitlements.Renewer).Renew(t.Context(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(10 * time.Second)
	e.want(t, 0, 0)

	// Leases expiring one after another are each reclaimed on time: after a
	// reclaim the bound moves to the next lease, not past it.
	a := e.reserve(t, l, 20)          // expires at +60 s
	e.clock.Advance(30 * time.Second) // +30 s
	b := e.reserve(t, l, 30)          // expires at +90 s
	c := e.reserve(t, l, 5)           // settled before it expires
	e.clock.Advance(30*time.Second - time.Millisecond)
	e.want(t, 0, 55)
	e.clock.Advance(time.Millisecond) // +60 s: a expires
	e.want(t, 0, 35)
	if err := c.Settle(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(30 * time.Second) // +90 s: b expires
	e.want(t, 5, 0)

	// Expired leases are forgotten one after another too.
	forgotten := func(lr entitlements.Reservation) {
		t.Helper()
		if err := lr.Settle(t.Context(), 1); !errors.Is(err, entitlements.ErrReservationSettled) {
			t.Errorf("Settle of a forgotten lease = %v, want ErrReservationSettled", err)
		}
	}
	e.clock.Advance(redisledger.ExpiredLeaseRetention - 30*time.Second) // r and a are forgotten
	e.want(t, 5, 0)
	forgotten(r)
	forgotten(a)
	e.clock.Advance(30 * time.Second) // and b
	e.want(t, 5, 0)
	forgotten(b)
	e.want(t, 5, 0)
}

// TestSettleIdempotent: of many concurrent Settles of one reservation
// exactly one counts.
func TestSettleIdempotent(t *testing.T) {
	t.Parallel()
	e := newLeaseEnv(t, time.Minute)
	r := e.reserve(t, e.live, 50)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-gate
			errs[i] = r.Settle(t.Context(), 30)
		})
	}
	close(gate)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, entitlements.ErrReservationSettled):
			t.Errorf("Settle %d: %v", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d Settles succeeded, want 1", ok)
	}
	e.want(t, 30, 0)
}

// cancelAfterHook lets the first script call reach Redis, then cancels its
// context, as when a caller gives up while the reply is on its way. With
// reportErr the call also fails with ctx.Err(), as a read cut short by the
// ctx would; without it the reply arrives intact and only the ledger can
// notice that its caller gave up.
type cancelAfterHook struct {
	cancel    context.CancelFunc
	reportErr bool
	fired     atomic.Bool
}

func (h *cancelAfterHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *cancelAfterHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if strings.HasPrefix(cmds[0].Name(), "eval") && h.fired.CompareAndSwap(false, true) {
			h.cancel()
		}
		return err
	}
}

func (h *cancelAfterHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if strings.HasPrefix(cmd.Name(), "eval") && h.fired.CompareAndSwap(false, true) {
			h.cancel()
			if h.reportErr {
				return ctx.Err()
			}
		}
		return err
	}
}

// TestReserveCancelledInFlight: a Reserve whose context ends after its script
// ran holds no quota, whether it went alone or in a pipeline.
func TestReserveCancelledInFlight(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, redisledger.DefaultPipelines} {
		t.Run(fmt.Sprintf("pipelines=%d", n), func(t *testing.T) {
			client := newClient(t, sharedRedis(t).addr)
			l := newLedger(t, client, redisledger.WithPipelines(n))
			p := addKey(t, l, "sk-cancel", entitlements.Principal{AccountID: "acme"}, entitlements.Budget{HardCap: entitlements.Cap(100)})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			client.AddHook(&cancelAfterHook{cancel: cancel, reportErr: n == 0})
			if r, err := l.Reserve(ctx, p, 60); !errors.Is(err, context.Canceled) {
				t.Fatalf("Reserve = %v, %v; want context.Canceled", r, err)
			}
			s, err := l.Snapshot(t.Context(), p)
			if err != nil {
				t.Fatal(err)
			}
			if s.Reserved != 0 {
				t.Errorf("Reserved = %d after a cancelled Reserve, want 0", s.Reserved)
			}
		})
	}
}

func TestAmountLimits(t *testing.T) {
	t.Parallel()
	l := newLedger(t, newClient(t, sharedRedis(t).addr))
	p := addKey(t, l, "sk-big", entitlements.Principal{AccountID: "big"}, entitlements.Budget{})
	ctx := t.Context()
	if _, err := l.Reserve(ctx, p, redisledger.MaxAmount+1); !errors.Is(err, entitlements.ErrInvalidAmount) {
		t.Errorf("Reserve(MaxAmount+1) = %v, want ErrInvalidAmount", err)
	}
	r, err := l.Reserve(ctx, p, redisledger.MaxAmount)
	if err != nil {
		t.Fatalf("Reserve(MaxAmount): %v", err)
	}
	if _, err := l.Reserve(ctx, p, 1); !errors.Is(err, entitlements.ErrInvalidAmount) {
		t.Errorf("Reserve over an uncapped ledger's maximum = %v, want ErrInvalidAmount", err)
	}
	if err := r.Settle(ctx, 1<<62); err != nil {
		t.Fatal(err)
	}
	settled, err := l.Reserve(ctx, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := settled.Settle(ctx, 5); err != nil {
		t.Fatal(err)
	}
	s, err := l.Snapshot(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Spent != redisledger.MaxAmount || s.Reserved != 0 {
		t.Errorf("Snapshot = %+v, want Spent saturated at MaxAmount, Reserved 0", s)
	}
}

// TestServerClock runs a rolling window on the Redis server's clock (the
// default).
func TestServerClock(t *testing.T) {
	t.Parallel()
	l := newLedger(t, newClient(t, sharedRedis(t).addr))
	b := entitlements.Budget{HardCap: entitlements.Cap(100), Window: entitlements.Rolling(3600)}
	p := addKey(t, l, "sk-clock", entitlements.Principal{AccountID: "acme"}, b)
	ctx := t.Context()
	before := time.Now()
	r, err := l.Reserve(ctx, p, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Settle(ctx, 90); err != nil {
		t.Fatal(err)
	}
	_, err = l.Reserve(ctx, p, 20)
	var be *entitlements.BudgetError
	if !errors.As(err, &be) || be.Kind != entitlements.RateLimited || be.Available != 10 {
		t.Fatalf("Reserve over the cap = %v, want a RateLimited BudgetError with Available 10", err)
	}
	if be.RetryAfter < time.Second || be.RetryAfter > time.Hour {
		t.Errorf("RetryAfter = %v, want within [1s, 1h]", be.RetryAfter)
	}
	s, err := l.Snapshot(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	// Redis runs on this machine: its clock is ours, give or take a window.
	if s.ResetsAt.Unix()%3600 != 0 || !s.ResetsAt.After(before.Add(-time.Hour)) || s.ResetsAt.After(before.Add(2*time.Hour)) {
		t.Errorf("ResetsAt = %v, want an hour boundary near %v", s.ResetsAt, before)
	}
	if s.Spent != 90 {
		t.Errorf("Spent = %d, want 90", s.Spent)
	}
}

func isBudgetError(err error) bool {
	var be *entitlements.BudgetError
	return errors.As(err, &be)
}

func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	var ue *entitlements.UnavailableError
	if !errors.As(err, &ue) {
		t.Errorf("%s = %v, want an *UnavailableError", what, err)
		return
	}
	if ue.RetryAfter != time.Second || ue.Err == nil {
		t.Errorf("%s: UnavailableError{RetryAfter: %v, Err: %v}, want RetryAfter 1s and a cause", what, ue.RetryAfter, ue.Err)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestFailClosedNoServer(t *testing.T) {
	t.Parallel()
	redisPath(t)
	l := newLedger(t, newClient(t, closedAddr(t)))
	ctx := t.Context()
	p := entitlements.Principal{AccountID: "acme", KeyID: "acme"}
	_, err := l.Resolve(ctx, "sk-any")
	wantUnavailable(t, "Resolve", err)
	r, err := l.Reserve(ctx, p, 1)
	wantUnavailable(t, "Reserve", err)
	if r != nil {
		t.Errorf("failed Reserve returned a reservation")
	}
	_, err = l.Snapshot(ctx, p)
	wantUnavailable(t, "Snapshot", err)
	wantUnavailable(t, "Ping", l.Ping(ctx))
	_, err = l.Keys(ctx)
	wantUnavailable(t, "Keys", err)
	wantUnavailable(t, "AddKey", l.AddKey(ctx, entitlements.Key{Digest: entitlements.KeyDigest("sk"), Principal: p}))
}

// TestFailClosedServerDies: after the server dies, calls fail closed, and a
// reservation taken before can still not be settled (its settle must not be
// lost silently).
func TestFailClosedServerDies(t *testing.T) {
	t.Parallel()
	srv := privateRedis(t)
	l := newLedger(t, newClient(t, srv.addr), redisledger.WithFailOpen(false))
	p := addKey(t, l, "sk-die", entitlements.Principal{AccountID: "acme"}, entitlements.Budget{HardCap: entitlements.Cap(100)})
	ctx := t.Context()
	r, err := l.Reserve(ctx, p, 10)
	if err != nil {
		t.Fatal(err)
	}
	srv.stop()
	_, err = l.Resolve(ctx, "sk-die")
	wantUnavailable(t, "Resolve", err)
	_, err = l.Reserve(ctx, p, 1)
	wantUnavailable(t, "Reserve", err)
	wantUnavailable(t, "Settle", r.Settle(ctx, 10))
	wantUnavailable(t, "Release", r.Release(ctx))
	wantUnavailable(t, "Renew", r.(entitlements.Renewer).Renew(ctx, 0))
	if got := l.Stats(); got != (redisledger.Stats{}) {
		t.Errorf("Stats = %+v, want zero", got)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
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

func TestFailOpen(t *testing.T) {
	t.Parallel()
	srv := privateRedis(t)
	var logs syncBuffer
	l := newLedger(t, newClient(t, srv.addr), redisledger.WithFailOpen(true),
		redisledger.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	p := addKey(t, l, "sk-open", entitlements.Principal{AccountID: "acme"}, entitlements.Budget{HardCap: entitlements.Cap(100)})
	ctx := t.Context()
	recorded, err := l.Reserve(ctx, p, 10)
	if err != nil {
		t.Fatal(err)
	}
	// With Redis up, fail-open changes nothing.
	if _, err := l.Reserve(ctx, p, 91); !isBudgetError(err) {
		t.Fatalf("Reserve over the cap = %v, want a BudgetError", err)
	}
	srv.stop()

	got, err := l.Resolve(ctx, "sk-open")
	if err != nil || got != p {
		t.Errorf("Resolve of a known key = %+v, %v; want %+v from memory", got, err, p)
	}
	_, err = l.Resolve(ctx, "sk-never-seen")
	wantUnavailable(t, "Resolve of an unseen key", err)

	r, err := l.Reserve(ctx, p, 1000)
	if err != nil {
		t.Fatalf("Reserve while failing open: %v", err)
	}
	if r.Amount() != 1000 || r.Principal() != p {
		t.Errorf("reservation = %d for %+v, want 1000 for %+v", r.Amount(), r.Principal(), p)
	}
	if id := r.(interface{ LeaseID() string }).LeaseID(); id != "" {
		t.Errorf("LeaseID of an unrecorded reservation = %q, want empty", id)
	}
	if err := r.(entitlements.Renewer).Renew(ctx, 0); err != nil {
		t.Errorf("Renew of an unrecorded reservation = %v, want nil", err)
	}
	if err := r.Settle(ctx, 900); err != nil {
		t.Errorf("Settle of an unrecorded reservation = %v, want nil", err)
	}
	if err := r.Release(ctx); !errors.Is(err, entitlements.ErrReservationSettled) {
		t.Errorf("Release after Settle = %v, want ErrReservationSettled", err)
	}
	if _, err := l.Reserve(ctx, p, 1); err != nil {
		t.Fatalf("second Reserve while failing open: %v", err)
	}
	// A recorded reservation is not silently dropped.
	wantUnavailable(t, "Settle of a recorded reservation", recorded.Settle(ctx, 10))
	_, err = l.Snapshot(ctx, p)
	wantUnavailable(t, "Snapshot", err)

	want := redisledger.Stats{FailOpenReserves: 2, FailOpenResolves: 1}
	if diff := cmp.Diff(l.Stats(), want); diff != "" {
		t.Errorf("Stats mismatch (-got +want):\n%s", diff)
	}
	if n := strings.Count(logs.String(), "fail_open"); n != 1 {
		t.Errorf("logged the outage %d times, want once:\n%s", n, logs.String())
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })
	tests := []struct {
		name    string
		client  redis.UniversalClient
		opts    []redisledger.Option
		wantErr string
	}{
		{name: "nil client", wantErr: "needs a Redis client"},
		{name: "short TTL", client: client, opts: []redisledger.Option{redisledger.WithLeaseTTL(time.Millisecond)}, wantErr: "under the minimum"},
		{name: "prefix with a brace", client: client, opts: []redisledger.Option{redisledger.WithKeyPrefix("a{b")}, wantErr: "contains"},
		{name: "negative pipelines", client: client, opts: []redisledger.Option{redisledger.WithPipelines(-1)}, wantErr: "-1 pipelines"},
		{name: "defaults", client: client},
		{name: "empty prefix", client: client, opts: []redisledger.Option{redisledger.WithKeyPrefix("")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := redisledger.New(tt.client, tt.opts...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New = %v", err)
				}
				if l.LeaseTTL() != redisledger.DefaultLeaseTTL {
					t.Errorf("LeaseTTL = %v, want the default %v", l.LeaseTTL(), redisledger.DefaultLeaseTTL)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      entitlements.RedisConfig
		wantErr string
	}{
		{name: "no url", in: entitlements.RedisConfig{}, wantErr: "needs a Redis URL"},
		{name: "bad scheme", in: entitlements.RedisConfig{URL: "http://127.0.0.1:6379"}, wantErr: "invalid URL scheme"},
		{name: "negative ttl", in: entitlements.RedisConfig{URL: "redis://127.0.0.1:1", LeaseTTL: -1}, wantErr: "negative"},
		{name: "bad prefix", in: entitlements.RedisConfig{URL: "redis://127.0.0.1:1", KeyPrefix: "}"}, wantErr: "contains"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := redisledger.Open(tt.in)
			if err == nil {
				_ = l.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestReserveReportsBudget: a reservation reports the budget as its
// Reserve left it, the same as a Snapshot taken then, so the gateway needs
// no Snapshot call.
func TestReserveReportsBudget(t *testing.T) {
	t.Parallel()
	for _, w := range []entitlements.CapWindow{entitlements.Balance(), entitlements.Rolling(3600)} {
		e := newLeaseEnv(t, time.Minute)
		p := addKey(t, e.live, "sk-report-"+w.Kind.String(), entitlements.Principal{AccountID: "report-" + w.Kind.String()},
			entitlements.Budget{HardCap: entitlements.Cap(100), Window: w})
		r1, err := e.live.Reserve(t.Context(), p, 10)
		if err != nil {
			t.Fatal(err)
		}
		if err := r1.Settle(t.Context(), 4); err != nil {
			t.Fatal(err)
		}
		r, err := e.live.Reserve(t.Context(), p, 30)
		if err != nil {
			t.Fatal(err)
		}
		br, ok := r.(entitlements.BudgetReporter)
		if !ok {
			t.Fatalf("reservation %T reports no budget", r)
		}
		got, ok := br.Budget()
		want, err := e.live.Snapshot(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || want.Reserved != 30 || want.Spent != 4 {
			t.Fatalf("Budget() ok %v, Snapshot %+v: want a budget with 4 spent and 30 reserved", ok, want)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("%s: Budget() mismatch with Snapshot (-got +want):\n%s", w.Kind, diff)
		}
	}
}
