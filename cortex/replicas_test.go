package cortex_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
	"github.com/helexa-ai/helexa-go/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// The multi-replica tests run three Gateways in this process, each with its
// own redisledger.Ledger (its own Redis client) over one Redis, in front of
// one fleet. Redis is HELEXA_TEST_REDIS_URL when set, else a redis-server
// started on a free loopback port; without either the tests skip, unless
// HELEXA_REQUIRE_REDIS=1 (CI), where they fail.

// testRedisAddr returns the address of a Redis for t (host:port) and its
// database (internal/redistest: HELEXA_TEST_REDIS_URL when set, else a
// throwaway redis-server stopped at cleanup).
func testRedisAddr(t *testing.T) (addr string, db int) {
	t.Helper()
	u := redistest.URL(t)
	o, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("Redis URL %q: %v", u, err)
	}
	return o.Addr, o.DB
}

// replica is one gateway with its own ledger, served by an httptest server.
type replica struct {
	ledger *redisledger.Ledger
	gw     *cortex.Gateway
	srv    *httptest.Server
}

// replicaSets numbers the replica sets, for their key prefixes.
var replicaSets atomic.Int64

// replicaSet is three gateways over one fleet and one Redis.
type replicaSet struct {
	t        *testing.T
	fleet    *cortextest.Fleet
	replicas []*replica
	clock    *clocktest.Fake
	ttl      time.Duration
}

// newReplicaSet starts a fleet of two neurons with chat-a loaded and n
// gateways in front of it, each with its own Redis client and Ledger (one
// key prefix, one manual clock, lease TTL ttl).
func newReplicaSet(t *testing.T, n int, ttl time.Duration) *replicaSet {
	t.Helper()
	addr, db := testRedisAddr(t)
	prefix := "replicas:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":" + strconv.FormatInt(replicaSets.Add(1), 10) + ":"
	rs := &replicaSet{t: t, fleet: cortextest.NewFleet(t, loadedA("n1"), loadedA("n2")), clock: clocktest.New(time.Now()), ttl: ttl}
	for range n {
		client := redis.NewClient(&redis.Options{Addr: addr, DB: db, PoolSize: 32})
		t.Cleanup(func() { _ = client.Close() })
		l, err := redisledger.New(client, redisledger.WithKeyPrefix(prefix), redisledger.WithLeaseTTL(ttl), redisledger.WithClock(rs.clock))
		if err != nil {
			t.Fatalf("redisledger.New: %v", err)
		}
		gw, err := cortex.NewGateway(rs.fleet.Configs(), testCatalogue(t),
			cortex.WithPollerOptions(route.WithFailureThreshold(1), route.WithCallTimeout(30*time.Second)),
			cortex.WithProvider(l), cortex.WithRequireAuth(true))
		if err != nil {
			t.Fatalf("NewGateway: %v", err)
		}
		srv := httptest.NewServer(gw)
		srv.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 64
		t.Cleanup(func() {
			srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := gw.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
		p := gw.Poller().(*route.FleetPoller)
		for _, nn := range rs.fleet.Neurons() {
			if _, err := p.Refresh(t.Context(), nn.Name()); err != nil {
				t.Fatalf("Refresh(%s): %v", nn.Name(), err)
			}
		}
		rs.replicas = append(rs.replicas, &replica{ledger: l, gw: gw, srv: srv})
	}
	return rs
}

// hits is the number of inference requests the fleet received.
func (rs *replicaSet) hits() int {
	n := 0
	for _, nn := range rs.fleet.Neurons() {
		n += nn.Requests()
	}
	return n
}

// snapshot reads account's budget through the first ledger.
func (rs *replicaSet) snapshot(account string) entitlements.BudgetSnapshot {
	rs.t.Helper()
	s, err := rs.replicas[0].ledger.Snapshot(rs.t.Context(), entitlements.Principal{AccountID: account, KeyID: account})
	if err != nil {
		rs.t.Fatalf("Snapshot(%s): %v", account, err)
	}
	return s
}

// loadResult is what a batch of requests did.
type loadResult struct {
	served   int                 // 2xx answers
	refused  int                 // 429 insufficient_quota answers
	spent    entitlements.Amount // the usage (prompt + completion) of the served answers
	failures []string            // anything else
}

// maxInFlight bounds the requests in flight at once: each takes several
// goroutines (client, both servers, two transports), and the race detector
// allows at most 8128 live goroutines.
const maxInFlight = 128

// run sends n chat requests with key, with max_tokens drawn from rng in
// [1, 64], round-robin over the replicas listed in via (indexes), up to
// maxInFlight at once.
func (rs *replicaSet) run(key string, n int, rng *rand.Rand, via ...int) loadResult {
	rs.t.Helper()
	type answer struct {
		status int
		body   string
		err    error
	}
	answers := make([]answer, n)
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	for i := range n {
		r := rs.replicas[via[i%len(via)]]
		body := chatBody("chat-a", `"max_tokens":`+strconv.Itoa(1+rng.IntN(64)))
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			req, err := http.NewRequestWithContext(rs.t.Context(), http.MethodPost, r.srv.URL+"/v1/chat/completions", strings.NewReader(body))
			if err != nil {
				answers[i].err = err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := r.srv.Client().Do(req)
			if err != nil {
				answers[i].err = err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			answers[i] = answer{status: resp.StatusCode, body: string(b), err: err}
		})
	}
	wg.Wait()
	var res loadResult
	for i, a := range answers {
		switch {
		case a.err != nil:
			res.failures = append(res.failures, fmt.Sprintf("request %d: %v", i, a.err))
		case a.status == http.StatusOK:
			var v struct {
				Usage struct {
					PromptTokens     int64 `json:"prompt_tokens"`
					CompletionTokens int64 `json:"completion_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal([]byte(a.body), &v); err != nil {
				res.failures = append(res.failures, fmt.Sprintf("request %d: answer is not JSON: %v", i, err))
				continue
			}
			res.served++
			res.spent += entitlements.Amount(v.Usage.PromptTokens + v.Usage.CompletionTokens)
		case a.status == http.StatusTooManyRequests && strings.Contains(a.body, cortex.CodeInsufficientQuota):
			res.refused++
		default:
			res.failures = append(res.failures, fmt.Sprintf("request %d: status %d: %s", i, a.status, a.body))
		}
	}
	if len(res.failures) > 0 {
		rs.t.Errorf("%d of %d requests failed; first: %s", len(res.failures), n, res.failures[0])
	}
	return res
}

// waitIdle waits until no gateway has a request in flight (each settles
// before its handler returns, so this is belt and braces).
func (rs *replicaSet) waitIdle() {
	rs.t.Helper()
	waitFor(rs.t, "the gateways to finish their requests", func() bool {
		for _, r := range rs.replicas {
			if r.gw.InFlight() != 0 {
				return false
			}
		}
		return true
	})
}

// addAccount stores a balance account with cap and one key; it returns the
// key.
func (rs *replicaSet) addAccount(account string, hardCap entitlements.Amount) string {
	rs.t.Helper()
	secret := "sk-" + account
	err := rs.replicas[0].ledger.AddKey(rs.t.Context(), entitlements.Key{
		Digest:    entitlements.KeyDigest(secret),
		Principal: entitlements.Principal{AccountID: account, KeyID: account, Unit: entitlements.UnitTokens},
		Budget:    entitlements.Budget{HardCap: entitlements.Cap(hardCap), Window: entitlements.Balance()},
	})
	if err != nil {
		rs.t.Fatalf("AddKey(%s): %v", account, err)
	}
	return secret
}

// Three replicas share one account's cap through Redis: 1000 requests of
// random sizes spread over them, far more than the cap covers, never spend
// more than the cap; every request served reached a neuron and every
// refused one did not; the spend is exactly the usage of the answers
// served; no reservation is left.
func TestReplicasShareOneCap(t *testing.T) {
	t.Parallel()
	rs := newReplicaSet(t, 3, redisledger.DefaultLeaseTTL)
	const hardCap = 12000 // about 30% of what 1000 requests of 8..71 tokens ask for
	key := rs.addAccount("shared", hardCap)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	before := rs.hits()
	res := rs.run(key, 1000, rng, 0, 1, 2)
	rs.waitIdle()
	snap := rs.snapshot("shared")
	t.Logf("served %d, refused %d, spent %d of %d", res.served, res.refused, snap.Spent, hardCap)
	if snap.Spent > hardCap {
		t.Errorf("spent %d is over the cap %d", snap.Spent, hardCap)
	}
	if snap.Spent != res.spent {
		t.Errorf("ledger spent %d; the answers served used %d", snap.Spent, res.spent)
	}
	if snap.Reserved != 0 {
		t.Errorf("reserved %d after every request finished; want 0", snap.Reserved)
	}
	if hits := rs.hits() - before; hits != res.served {
		t.Errorf("neurons received %d requests; the gateways served %d", hits, res.served)
	}
	if res.served == 0 || res.refused == 0 {
		t.Errorf("served %d, refused %d: want both, or the cap was not contended", res.served, res.refused)
	}
}

// One replica "crashes" holding reservations (its leases are never settled
// or released): the other replicas are held to what is left, and once the
// lease TTL has passed the held amount returns to the budget and new
// requests through the surviving replicas fit.
func TestReplicaCrashReturnsQuotaAfterLeaseTTL(t *testing.T) {
	t.Parallel()
	const ttl = time.Minute
	rs := newReplicaSet(t, 3, ttl)
	const hardCap = 6000
	key := rs.addAccount("crash", hardCap)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	// Replica 2 has requests in flight holding 80% of the cap when it
	// dies: reserved through its ledger, never settled, handles dropped.
	p := entitlements.Principal{AccountID: "crash", KeyID: "crash", Unit: entitlements.UnitTokens}
	const held = 4 * 1200
	for range 4 {
		if _, err := rs.replicas[2].ledger.Reserve(t.Context(), p, 1200); err != nil {
			t.Fatalf("Reserve through the crashing replica: %v", err)
		}
	}
	rs.replicas[2].srv.Close()

	// The survivors share what is left.
	before := rs.hits()
	res := rs.run(key, 300, rng, 0, 1)
	rs.waitIdle()
	snap := rs.snapshot("crash")
	t.Logf("while held: served %d, refused %d, spent %d, reserved %d", res.served, res.refused, snap.Spent, snap.Reserved)
	if snap.Reserved != held {
		t.Errorf("reserved %d while the crashed replica's leases live; want %d", snap.Reserved, held)
	}
	if snap.Spent > hardCap-held {
		t.Errorf("spent %d while %d was held; over the %d left", snap.Spent, held, hardCap-held)
	}
	if snap.Spent != res.spent {
		t.Errorf("ledger spent %d; the answers served used %d", snap.Spent, res.spent)
	}
	if res.refused == 0 {
		t.Errorf("no request refused while the cap was held: the load did not reach the cap")
	}
	if hits := rs.hits() - before; hits != res.served {
		t.Errorf("neurons received %d requests; the gateways served %d", hits, res.served)
	}
	spentHeld := snap.Spent

	// The leases are still live just before the TTL...
	rs.clock.Advance(ttl - time.Second)
	if s := rs.snapshot("crash"); s.Reserved != held {
		t.Errorf("reserved %d before the lease TTL; want %d", s.Reserved, held)
	}
	// ...and gone after it: the quota is back.
	rs.clock.Advance(2 * time.Second)
	snap = rs.snapshot("crash")
	if snap.Reserved != 0 {
		t.Errorf("reserved %d after the lease TTL; want 0", snap.Reserved)
	}
	if snap.Spent != spentHeld {
		t.Errorf("spent %d after the leases expired; want %d unchanged", snap.Spent, spentHeld)
	}

	before = rs.hits()
	res = rs.run(key, 300, rng, 0, 1)
	rs.waitIdle()
	snap = rs.snapshot("crash")
	t.Logf("after the TTL: served %d, refused %d, spent %d, reserved %d", res.served, res.refused, snap.Spent, snap.Reserved)
	if snap.Spent-spentHeld != res.spent {
		t.Errorf("ledger spent %d more; the answers served used %d", snap.Spent-spentHeld, res.spent)
	}
	if snap.Spent <= hardCap-held {
		t.Errorf("spent %d after the TTL, no more than the %d left while held: the quota did not come back", snap.Spent, hardCap-held)
	}
	if snap.Spent > hardCap {
		t.Errorf("spent %d is over the cap %d", snap.Spent, hardCap)
	}
	if snap.Reserved != 0 {
		t.Errorf("reserved %d after every request finished; want 0", snap.Reserved)
	}
	if hits := rs.hits() - before; hits != res.served {
		t.Errorf("neurons received %d requests; the gateways served %d", hits, res.served)
	}
}

// The per-key limits are counted over every replica when the provider is
// a Limiter: a key of 5 requests per minute gets 5 over three replicas,
// then 429 with the time to the next slot; one of max_in_flight 1 is
// served one request after the other by each replica in turn, since every
// request gives its slot back.
func TestReplicasShareKeyLimits(t *testing.T) {
	t.Parallel()
	rs := newReplicaSet(t, 3, redisledger.DefaultLeaseTTL)
	addKey := func(account string, lim entitlements.Limits) string {
		t.Helper()
		secret := "sk-" + account
		err := rs.replicas[0].ledger.AddKey(t.Context(), entitlements.Key{
			Digest:    entitlements.KeyDigest(secret),
			Principal: entitlements.Principal{AccountID: account, KeyID: account, Limits: lim},
		})
		if err != nil {
			t.Fatalf("AddKey(%s): %v", account, err)
		}
		return secret
	}
	post := func(r *replica, key string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, r.srv.URL+"/v1/chat/completions",
			strings.NewReader(chatBody("chat-a", `"max_tokens":2`)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := r.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}

	rpm := addKey("rpm", entitlements.Limits{RPM: 5})
	for i := range 5 {
		if status, _, body := post(rs.replicas[i%3], rpm); status != http.StatusOK {
			t.Fatalf("request %d: status %d: %s", i, status, body)
		}
	}
	status, hdr, body := post(rs.replicas[2], rpm)
	if status != http.StatusTooManyRequests || envelope(t, body).Code != cortex.CodeRateLimitExceeded || hdr.Get("Retry-After") != "12" {
		t.Errorf("sixth request: status %d, Retry-After %q: %s; want 429 rate_limit_exceeded after 12 s", status, hdr.Get("Retry-After"), body)
	}

	one := addKey("one", entitlements.Limits{MaxInFlight: 1})
	for i := range 6 {
		if status, _, body := post(rs.replicas[i%3], one); status != http.StatusOK {
			t.Fatalf("max_in_flight 1, request %d: status %d: %s", i, status, body)
		}
	}
}
