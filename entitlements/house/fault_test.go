package house_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
	"github.com/helexa-ai/helexa-go/entitlements/house"
	"github.com/helexa-ai/helexa-go/internal/redistest"
)

// faultProxy is an in-process TCP proxy between gateways and the house
// that drops, delays and resets connections as told.
type faultProxy struct {
	ln       net.Listener
	upstream string
	drop     atomic.Int32 // per mille of new connections closed at once
	reset    atomic.Int32 // per mille of answers cut off: the house acted, the gateway never hears
	delay    atomic.Int64 // most ns each chunk is held
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool // open, to close at the end
}

func newFaultProxy(t *testing.T, upstream string) *faultProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, upstream: upstream, conns: map[net.Conn]bool{}}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *faultProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *faultProxy) off() { p.drop.Store(0); p.reset.Store(0); p.delay.Store(0) }

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if rand.Int32N(1000) < p.drop.Load() {
			_ = c.Close()
			continue
		}
		p.wg.Go(func() { p.pipe(c) })
	}
}

func (p *faultProxy) pipe(c net.Conn) {
	u, err := net.Dial("tcp", p.upstream)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = c.Close()
			_ = u.Close()
			p.mu.Lock()
			delete(p.conns, c)
			delete(p.conns, u)
			p.mu.Unlock()
		})
	}
	defer closeBoth()
	go func() { defer closeBoth(); p.copy(u, c, false) }()
	p.copy(c, u, true)
}

func (p *faultProxy) copy(dst, src net.Conn, answers bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := p.delay.Load(); d > 0 {
				time.Sleep(time.Duration(rand.Int64N(d)))
			}
			if answers && rand.Int32N(1000) < p.reset.Load() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// duplicating sends every request twice, as a network that delivers a
// call twice would: the house must change state once.
type duplicating struct{ d house.Doer }

func (d duplicating) Do(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytesReader(body))
	if resp, err := d.d.Do(r2); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	r.Body = io.NopCloser(bytesReader(body))
	return d.d.Do(r)
}

// swappable is the house behind the proxy, replaced by a restart.
type swappable struct{ h atomic.Pointer[house.Handler] }

func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.h.Load().ServeHTTP(w, r) }

// faultLoad runs reserve+settle pairs from gateways against acme's cap,
// settling as cortex does (a settle that failed is retried until it lands
// or answers that it had), and returns what was served.
func faultLoad(t *testing.T, gws []*house.Client, workers, pairs int, during func(i int)) int64 {
	var served atomic.Int64
	var wg sync.WaitGroup
	var done atomic.Int64
	for w := range workers {
		c := gws[w%len(gws)]
		wg.Go(func() {
			ctx := context.WithoutCancel(t.Context())
			for range pairs {
				if during != nil {
					during(int(done.Add(1)))
				}
				amount := entitlements.Amount(rand.IntN(50) + 1)
				r, err := c.Reserve(ctx, acme, amount)
				if err != nil {
					continue // refused or unavailable: nothing served
				}
				actual := entitlements.Amount(rand.Int64N(int64(amount) + 1))
				for {
					err := r.Settle(ctx, actual)
					if err == nil || errors.Is(err, entitlements.ErrReservationSettled) {
						served.Add(int64(actual))
						break
					}
					if !isUnavailable(err) {
						t.Errorf("settle: %v", err)
						break
					}
				}
			}
		})
	}
	wg.Wait()
	return served.Load()
}

// TestFaults: dropped, delayed and reset connections, duplicate delivery,
// a house restarted under load and a gateway with grants, between two
// gateways and one house: spent <= cap, spent = served (settled >= served
// and no double charge), and Reserved back at 0 once leases expire.
func TestFaults(t *testing.T) {
	t.Parallel()
	const cap = 10_000
	type setup struct{ drop, reset, delay int64 }
	tests := []struct {
		name    string
		faults  setup
		dup     bool
		restart bool
		redis   bool
		grants  bool
	}{
		{name: "drop", faults: setup{drop: 200}},
		{name: "reset", faults: setup{reset: 150}},
		{name: "delay", faults: setup{delay: int64(2 * time.Millisecond)}},
		{name: "duplicate delivery", dup: true},
		{name: "all with grants", faults: setup{drop: 100, reset: 100, delay: int64(time.Millisecond)}, dup: true, grants: true},
		{name: "house restarts over redis", faults: setup{reset: 50}, restart: true, redis: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := entitlementstest.NewClock(epoch())
			keys := []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme, Budget: entitlements.Budget{HardCap: entitlements.Cap(cap)}}}
			var p entitlements.Provider
			if tt.redis {
				p = newLedger(t, redistest.URL(t), clk, keys)
			} else {
				p = newLocal(t, clk, keys)
			}
			newHouse := func() *house.Handler {
				h, err := house.NewHandler(p, append(gateways(), house.WithClock(clk))...)
				if err != nil {
					t.Fatal(err)
				}
				return h
			}
			var sw swappable
			sw.h.Store(newHouse())
			srv := httptest.NewServer(&sw)
			t.Cleanup(srv.Close)
			px := newFaultProxy(t, srv.Listener.Addr().String())
			var doer house.Doer = transport()
			if tt.dup {
				doer = duplicating{doer}
			}
			opts := []house.ClientOption{house.WithDoer(doer), house.WithTimeout(time.Second)}
			gws := []*house.Client{client(t, px.url(), gwToken, opts...)}
			if tt.grants {
				opts = append(opts, house.WithGrants(house.GrantConfig{FlushInterval: 5 * time.Millisecond}))
			}
			gws = append(gws, client(t, px.url(), gwToken, opts...))
			if tt.restart { // three gateways, one house restarted twice
				gws = append(gws, client(t, px.url(), gwToken, opts...))
			}
			px.drop.Store(int32(tt.faults.drop))
			px.reset.Store(int32(tt.faults.reset))
			px.delay.Store(tt.faults.delay)
			var during func(int)
			if tt.restart {
				during = func(i int) {
					if i == 300 || i == 600 {
						sw.h.Store(newHouse())
					}
				}
			}
			served := faultLoad(t, gws, 8, 120, during)
			px.off()
			for _, c := range gws {
				if err := c.Close(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			// Leases of reserves whose answers were lost expire.
			ttl := sw.h.Load().LeaseTTL()
			clk.Advance(max(ttl, house.DefaultGrantTTL) + time.Second)
			sw.h.Load().Expire(t.Context())
			s, err := p.Snapshot(t.Context(), acme)
			if err != nil {
				t.Fatal(err)
			}
			if s.Spent > cap || int64(s.Spent) != served || s.Reserved != 0 {
				t.Errorf("spent %d (cap %d), served %d, reserved %d: want spent = served <= cap, nothing reserved", s.Spent, cap, served, s.Reserved)
			}
			t.Logf("spent %d of %d", s.Spent, cap)
		})
	}
}

// busyReserves is GrantConfig.BusyReserves's default: the reserves in a
// flush interval that make an account busy enough for a grant.
const busyReserves = 4

// TestKilledGatewayJournal: a gateway with grants and a journal is killed
// (never closed) under dropped and reset connections, with spend inside
// its grant that it had not reported; a gateway started on its journal
// reports it. settled = served, nothing reserved once the grant expires.
func TestKilledGatewayJournal(t *testing.T) {
	t.Parallel()
	const cap = 1_000_000
	clk := entitlementstest.NewClock(epoch())
	l := newLocal(t, clk, []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme, Budget: entitlements.Budget{HardCap: entitlements.Cap(cap)}}})
	h, url := serve(t, l, house.WithClock(clk))
	px := newFaultProxy(t, strings.TrimPrefix(url, "http://"))
	path := filepath.Join(t.TempDir(), "grants.journal")
	grants := house.WithGrants(house.GrantConfig{NoFlusher: true, Journal: path})
	killed, err := house.NewClient(px.url(), gwToken, house.WithDoer(transport()), house.WithTimeout(time.Second), house.WithClientClock(clk), grants)
	if err != nil {
		t.Fatal(err)
	}
	px.drop.Store(100)
	px.reset.Store(100)
	ctx := context.WithoutCancel(t.Context())
	served := faultLoad(t, []*house.Client{killed}, 8, 120, func(i int) {
		if i%50 == 0 {
			_ = killed.Flush(ctx, false)
		}
	})
	px.off()
	// Enough pairs to keep the account busy (the flushes under faults may
	// have failed, or found it idle when the others ended before them, and
	// ended its grant), one flush that lands and so holds a grant for it,
	// then one last round of pairs inside that grant: the killed gateway
	// surely dies with spend it never reported.
	served += faultLoad(t, []*house.Client{killed}, 1, 2*busyReserves, nil)
	if err := killed.Flush(ctx, false); err != nil {
		t.Fatalf("the last flush: %v", err)
	}
	served += faultLoad(t, []*house.Client{killed}, 1, 5, nil)
	if s := snap(t, l); int64(s.Spent) >= served {
		t.Fatalf("before the restart: spent %d, served %d: want spend the house has not heard of", s.Spent, served)
	}

	restarted := client(t, url, gwToken, house.WithClientClock(clk), grants)
	if err := restarted.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Before its first grant the killed gateway reserved directly: a
	// reserve whose three attempts all lost their answer is held by a
	// lease, which expires with the grants.
	clk.Advance(max(h.LeaseTTL(), house.DefaultGrantTTL) + time.Second)
	h.Expire(t.Context())
	if s := snap(t, l); int64(s.Spent) != served || s.Spent > cap || s.Reserved != 0 {
		t.Fatalf("spent %d (cap %d), served %d, reserved %d: want spent = served <= cap, nothing reserved", s.Spent, cap, served, s.Reserved)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		b, _ := os.ReadFile(path)
		t.Fatalf("journal after a clean Close: %v, %s; want it empty", err, b)
	}
}
