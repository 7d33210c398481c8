package house_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
	"github.com/helexa-ai/helexa-go/entitlements/house"
)

// countingDoer counts the round trips to the house.
type countingDoer struct {
	n atomic.Int64
	d house.Doer
}

func (c *countingDoer) Do(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.d.Do(r)
}

func snap(t *testing.T, p entitlements.Provider) entitlements.BudgetSnapshot {
	t.Helper()
	s, err := p.Snapshot(t.Context(), acme)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pair(t *testing.T, p entitlements.Provider, amount, actual entitlements.Amount) {
	t.Helper()
	r, err := p.Reserve(t.Context(), acme, amount)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Settle(t.Context(), actual); err != nil {
		t.Fatal(err)
	}
}

// TestGrantLifecycle: a busy account gets a grant; reserves and settles in
// it make no round trip; the house counts the grant as reserved; reports
// carry the spend; Close gives the credit back.
func TestGrantLifecycle(t *testing.T) {
	t.Parallel()
	clk := entitlementstest.NewClock(epoch())
	l := newLocal(t, clk, []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme, Budget: entitlements.Budget{HardCap: entitlements.Cap(10_000)}}})
	_, url := serve(t, l, house.WithClock(clk))
	doer := &countingDoer{d: http.DefaultClient}
	c := client(t, url, gwToken, house.WithClientClock(clk), house.WithDoer(doer),
		house.WithGrants(house.GrantConfig{NoFlusher: true}))
	for range 5 {
		pair(t, c, 10, 10)
	}
	if err := c.Flush(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if s := snap(t, l); s.Spent != 50 || s.Reserved != 100 {
		t.Fatalf("after a grant: %+v, want spent 50 and the grant (4 intervals of 25) reserved", s)
	}
	before := doer.n.Load()
	for range 5 {
		pair(t, c, 10, 8)
	}
	if n := doer.n.Load() - before; n != 0 {
		t.Errorf("5 pairs inside a grant made %d round trips, want 0", n)
	}
	if s := snap(t, l); s.Spent != 50 {
		t.Errorf("before the report: spent %d, want 50 (the house has not heard yet)", s.Spent)
	}
	if err := c.Flush(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if s := snap(t, l); s.Spent != 90 {
		t.Errorf("after the report: spent %d, want 90", s.Spent)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := snap(t, l); s.Spent != 90 || s.Reserved != 0 {
		t.Errorf("after Close: %+v, want spent 90, reserved 0", s)
	}
}

// TestGrantNearCap: grants hold at most half of what is left, so an
// account near its cap reserves directly and its last units are not
// stranded; a reserve over what the grant has left goes to the house.
func TestGrantNearCap(t *testing.T) {
	t.Parallel()
	clk := entitlementstest.NewClock(epoch())
	l := newLocal(t, clk, []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme, Budget: entitlements.Budget{HardCap: entitlements.Cap(100)}}})
	_, url := serve(t, l, house.WithClock(clk))
	a := client(t, url, gwToken, house.WithClientClock(clk), house.WithGrants(house.GrantConfig{NoFlusher: true}))
	b := client(t, url, gwToken, house.WithClientClock(clk))
	for range 4 {
		pair(t, a, 10, 10)
	}
	if err := a.Flush(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	s := snap(t, l)
	if s.Reserved > (100-40)/2 {
		t.Fatalf("grant %d over half of the 60 left", s.Reserved)
	}
	// b can still take what the grant does not hold.
	r, err := b.Reserve(t.Context(), acme, 100-40-s.Reserved)
	if err != nil {
		t.Fatalf("the units outside the grant: %v", err)
	}
	_ = r.Release(t.Context())
}

// TestGrantCapHolds: two gateways with grants and one without share an
// account under concurrent load: spent never exceeds the cap, and spent
// equals what the gateways served.
func TestGrantCapHolds(t *testing.T) {
	t.Parallel()
	const cap = 20_000
	l := newLocal(t, clockSystem(), []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme, Budget: entitlements.Budget{HardCap: entitlements.Cap(cap)}}})
	_, url := serve(t, l)
	gws := []*house.Client{
		client(t, url, gwToken, house.WithGrants(house.GrantConfig{FlushInterval: 5 * time.Millisecond})),
		client(t, url, gwToken, house.WithGrants(house.GrantConfig{FlushInterval: 5 * time.Millisecond})),
		client(t, url, gwToken),
	}
	var served atomic.Int64
	var load sync.WaitGroup
	for i := range 12 {
		c := gws[i%len(gws)]
		load.Go(func() {
			for range 200 {
				amount := entitlements.Amount(rand.IntN(40) + 1)
				r, err := c.Reserve(t.Context(), acme, amount)
				if _, ok := errors.AsType[*entitlements.BudgetError](err); ok {
					continue
				} else if err != nil {
					t.Error(err)
					return
				}
				actual := entitlements.Amount(rand.Int64N(int64(amount) + 1))
				if err := r.Settle(t.Context(), actual); err != nil {
					t.Error(err)
					return
				}
				served.Add(int64(actual))
			}
		})
	}
	load.Wait()
	for _, c := range gws {
		if err := c.Close(context.WithoutCancel(t.Context())); err != nil {
			t.Fatal(err)
		}
	}
	s := snap(t, l)
	if s.Spent > cap || int64(s.Spent) != served.Load() || s.Reserved != 0 {
		t.Errorf("spent %d (cap %d), served %d, reserved %d: want spent = served <= cap and nothing reserved", s.Spent, cap, served.Load(), s.Reserved)
	}
	t.Logf("spent %d of %d", s.Spent, cap)
}

// TestGrantGatewayKilled: a gateway that dies holding a grant loses the
// spend it had not reported; its credit comes back after the grant's TTL.
func TestGrantGatewayKilled(t *testing.T) {
	t.Parallel()
	clk := entitlementstest.NewClock(epoch())
	l := newLocal(t, clk, []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme, Budget: entitlements.Budget{HardCap: entitlements.Cap(10_000)}}})
	h, url := serve(t, l, house.WithClock(clk))
	c, err := house.NewClient(url, gwToken, house.WithClientClock(clk), house.WithGrants(house.GrantConfig{NoFlusher: true}))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		pair(t, c, 10, 10)
	}
	_ = c.Flush(t.Context(), false)
	for range 5 {
		pair(t, c, 10, 10) // reported
	}
	_ = c.Flush(t.Context(), false)
	pair(t, c, 10, 10) // never reported: the gateway dies here
	if s := snap(t, l); s.Reserved == 0 {
		t.Fatal("no grant outstanding")
	}
	clk.Advance(house.DefaultGrantTTL + time.Second)
	h.Expire(t.Context())
	if s := snap(t, l); s.Spent != 100 || s.Reserved != 0 {
		t.Errorf("after the grant's TTL: %+v, want spent 100 (what was reported) and nothing reserved", s)
	}
}

// TestGrantReservationReportsBudget: a reservation inside a grant reports
// the account's budget as the house's last grant answer had it, so that a
// gateway sets its rate limit headers with no round trip.
func TestGrantReservationReportsBudget(t *testing.T) {
	t.Parallel()
	clk := entitlementstest.NewClock(epoch())
	l := newLocal(t, clk, []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme, Budget: entitlements.Budget{HardCap: entitlements.Cap(10_000)}}})
	_, url := serve(t, l, house.WithClock(clk))
	doer := &countingDoer{d: http.DefaultClient}
	c := client(t, url, gwToken, house.WithClientClock(clk), house.WithDoer(doer),
		house.WithGrants(house.GrantConfig{NoFlusher: true}))
	for range 5 {
		pair(t, c, 10, 10)
	}
	if err := c.Flush(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	before := doer.n.Load()
	r, err := c.Reserve(t.Context(), acme, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Release(t.Context()) }()
	br, ok := r.(entitlements.BudgetReporter)
	if !ok {
		t.Fatalf("%T is no BudgetReporter", r)
	}
	s, ok := br.Budget()
	if !ok {
		t.Fatal("a reservation inside a grant reports no budget")
	}
	if s.HardCap == nil || *s.HardCap != 10_000 || s.Spent != 50 {
		t.Fatalf("budget %+v, want the cap of 10000 and the 50 spent before the grant", s)
	}
	if n := doer.n.Load() - before; n != 0 {
		t.Fatalf("reserve and budget inside a grant made %d round trips, want 0", n)
	}
}

// heldReports is a Doer that, once armed, holds the next grant report
// until released: the report is in flight while the test goes on.
type heldReports struct {
	d       house.Doer
	armed   atomic.Bool
	sent    chan struct{} // closed when the held report has reached the Doer
	release chan struct{}
}

func (h *heldReports) Do(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/grant/report") && h.armed.CompareAndSwap(true, false) {
		close(h.sent)
		<-h.release
	}
	return h.d.Do(r)
}

// TestGrantReportInFlight: reserves a gateway makes inside its grant while
// a report of the grant is in flight are covered by the credit the house
// gives back, even when the account has nothing else left: the house
// keeps the grant's unspent credit unless the gateway asks for less. (The
// house once resized the grant from what the report said was in flight,
// and the reserves made meanwhile then settled past the cap.)
func TestGrantReportInFlight(t *testing.T) {
	t.Parallel()
	const cap = 1000
	clk := entitlementstest.NewClock(epoch())
	l := newLocal(t, clk, []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme, Budget: entitlements.Budget{HardCap: entitlements.Cap(cap)}}})
	_, url := serve(t, l, house.WithClock(clk))
	doer := &heldReports{d: transport(), sent: make(chan struct{}), release: make(chan struct{})}
	gw := client(t, url, gwToken, house.WithDoer(doer), house.WithClientClock(clk), house.WithGrants(house.GrantConfig{NoFlusher: true}))
	other := client(t, url, gwToken, house.WithClientClock(clk)) // reserves directly

	for range 4 { // busy: the next flush asks for a grant
		pair(t, gw, 50, 50)
	}
	if err := gw.Flush(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	s := snap(t, l)
	credit := s.Reserved
	if credit == 0 {
		t.Fatal("no grant")
	}
	for range 4 { // spend most of the grant inside it: busy, not shrinking
		pair(t, gw, credit/5, credit/5)
	}
	// Another gateway takes all the account has left beyond the grant.
	pair(t, other, cap-s.Spent-credit, cap-s.Spent-credit)

	// A report of the grant is in flight while the gateway reserves the
	// rest of the grant's credit.
	doer.armed.Store(true)
	flushed := make(chan error, 1)
	go func() { flushed <- gw.Flush(context.WithoutCancel(t.Context()), false) }()
	<-doer.sent
	rest := credit - 4*(credit/5)
	r, err := gw.Reserve(t.Context(), acme, rest)
	close(doer.release)
	if err != nil {
		t.Fatalf("reserving the rest of the grant (%d) while its report is in flight: %v", rest, err)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	// The other gateway takes whatever the report left free.
	if left, _ := snap(t, l).Remaining(); left > 0 {
		pair(t, other, left, left)
	}
	if err := r.Settle(t.Context(), rest); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := snap(t, l); s.Spent != cap || s.Reserved != 0 {
		t.Errorf("spent %d, reserved %d; want the cap, %d, spent exactly and nothing reserved", s.Spent, s.Reserved, cap)
	}
}

// slowAnswers is a Doer whose answers to grant calls take late: the clock
// moves by late once the house has answered, before the gateway reads it.
type slowAnswers struct {
	d    house.Doer
	clk  *entitlementstest.Clock
	late time.Duration
}

func (s slowAnswers) Do(r *http.Request) (*http.Response, error) {
	resp, err := s.d.Do(r)
	if strings.Contains(r.URL.Path, "/grant") {
		s.clk.Advance(s.late)
	}
	return resp, err
}

// TestGrantExpiresNoLaterOnTheGateway: the gateway stops drawing on a
// grant no later than the house expires it, however late the house's
// answer arrived: a reserve after the house's expiry is held by the house,
// never decided locally against credit the house has released.
func TestGrantExpiresNoLaterOnTheGateway(t *testing.T) {
	t.Parallel()
	clk := entitlementstest.NewClock(epoch())
	l := newLocal(t, clk, []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme, Budget: entitlements.Budget{HardCap: entitlements.Cap(10_000)}}})
	h, url := serve(t, l, house.WithClock(clk))
	const late = 5 * time.Second
	gw := client(t, url, gwToken, house.WithDoer(slowAnswers{d: transport(), clk: clk, late: late}),
		house.WithClientClock(clk), house.WithGrants(house.GrantConfig{NoFlusher: true}))
	for range 4 {
		pair(t, gw, 10, 10)
	}
	if err := gw.Flush(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if snap(t, l).Reserved == 0 {
		t.Fatal("no grant")
	}
	// Past the house's expiry of the grant, within what the gateway would
	// count from the answer's arrival.
	clk.Advance(house.DefaultGrantTTL - late + time.Second)
	h.Expire(t.Context())
	if s := snap(t, l); s.Reserved != 0 {
		t.Fatalf("reserved %d after the grant's expiry, want 0", s.Reserved)
	}
	r, err := gw.Reserve(t.Context(), acme, 10)
	if err != nil {
		t.Fatal(err)
	}
	if s := snap(t, l); s.Reserved != 10 {
		t.Errorf("the house holds %d of a reserve of 10 made after it expired the grant: decided against released credit", s.Reserved)
	}
	if err := r.Settle(t.Context(), 10); err != nil {
		t.Fatal(err)
	}
}
