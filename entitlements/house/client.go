package house

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// Doer sends one HTTP request: *http.Client is one.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Client defaults; the ClientOptions change them.
const (
	// DefaultTimeout bounds each attempt of a call (2 s).
	DefaultTimeout = 2 * time.Second
	// DefaultResolveTTL is how long a resolved key is cached (30 s): a
	// key revoked at the house keeps working on a gateway for up to
	// this long.
	DefaultResolveTTL = 30 * time.Second
	// DefaultUnknownKeyTTL is how long an unknown key is cached (5 s): a
	// key created at the house works on a gateway within this long.
	DefaultUnknownKeyTTL = 5 * time.Second
	// maxCached bounds the resolve cache.
	maxCached = 100_000
	// attempts is how many times a call is sent when the house cannot be
	// reached, with the same idempotency id.
	attempts = 3
)

// Client is an entitlements.Provider that asks a clearing house (a
// Handler) over HTTP. It is an entitlements.Leaser, its reservations are
// entitlements.Renewers and entitlements.BudgetReporters, and it is an
// entitlements.Resumer, so that cortex's settle outbox can settle after a
// gateway restart. It is no entitlements.Limiter: a gateway counts the
// per-key limits of its principals itself, so that N gateways allow a key
// N times its limits.
//
// Reserve fails closed: when the house cannot be reached, every call
// returns an *entitlements.UnavailableError (HTTP 503 with Retry-After at
// the gateway), and nothing is served.
//
// Concurrency: every method is safe for concurrent use.
type Client struct {
	base       string
	authHeader []string // "Bearer <token>", capacity 1 (see jsonType)
	doer       Doer
	timeout    time.Duration
	clock      clock.Clock
	resolveTTL time.Duration
	unknownTTL time.Duration
	leaseTTL   atomic.Int64 // ns; the house's, as its last answer said

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedKey

	grants *grantClient // nil without WithGrants
}

type cachedKey struct {
	p       entitlements.Principal
	known   bool
	expires time.Time
}

var (
	_ entitlements.Provider = (*Client)(nil)
	_ entitlements.Leaser   = (*Client)(nil)
	_ entitlements.Resumer  = (*Client)(nil)
)

// ClientOption configures a Client.
type ClientOption interface{ apply(*clientConfig) }

type clientOptionFunc func(*clientConfig)

func (f clientOptionFunc) apply(c *clientConfig) { f(c) }

type clientConfig struct {
	doer       Doer
	timeout    time.Duration
	clock      clock.Clock
	resolveTTL time.Duration
	unknownTTL time.Duration
	grants     *GrantConfig
}

// WithDoer sets what sends the requests. Default: an *http.Client over a
// pooled keep-alive transport (http.DefaultTransport's settings with 64
// idle connections per host), which speaks HTTP/2 to an https house.
func WithDoer(d Doer) ClientOption { return clientOptionFunc(func(c *clientConfig) { c.doer = d }) }

// WithTimeout bounds each attempt of a call (> 0). Default DefaultTimeout.
func WithTimeout(d time.Duration) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.timeout = d })
}

// WithResolveCache sets how long resolved keys, and unknown keys, are
// cached (both > 0). Defaults DefaultResolveTTL and DefaultUnknownKeyTTL.
// known is the revocation latency: a key revoked at the house still
// resolves on the gateway until its cache entry expires.
func WithResolveCache(known, unknown time.Duration) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.resolveTTL, c.unknownTTL = known, unknown })
}

// WithClientClock sets the clock of the resolve cache and of grants.
// Default the system clock.
func WithClientClock(clk clock.Clock) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.clock = clk })
}

// NewClient returns a Client of the house at baseURL ("https://house:7400")
// that authenticates as a gateway with token. It does no I/O.
func NewClient(baseURL, token string, opts ...ClientOption) (*Client, error) {
	c := clientConfig{timeout: DefaultTimeout, clock: clock.System{}, resolveTTL: DefaultResolveTTL, unknownTTL: DefaultUnknownKeyTTL}
	for _, o := range opts {
		o.apply(&c)
	}
	if !strings.HasPrefix(baseURL, "http://") && !strings.HasPrefix(baseURL, "https://") {
		return nil, fmt.Errorf("house: the house's URL %q must start with http:// or https://", baseURL)
	}
	if token == "" {
		return nil, errors.New("house: a gateway needs a token to authenticate to the house")
	}
	if c.timeout <= 0 || c.resolveTTL <= 0 || c.unknownTTL <= 0 {
		return nil, errors.New("house: timeout and cache TTLs must be > 0")
	}
	if c.doer == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns, t.MaxIdleConnsPerHost = 256, 64
		c.doer = &http.Client{Transport: t}
	}
	cl := &Client{
		base: strings.TrimSuffix(baseURL, "/") + "/v" + strconv.Itoa(Version) + "/", authHeader: []string{"Bearer " + token}[:1:1],
		doer: c.doer, timeout: c.timeout, clock: c.clock, resolveTTL: c.resolveTTL, unknownTTL: c.unknownTTL,
		cache: make(map[[sha256.Size]byte]cachedKey),
	}
	cl.leaseTTL.Store(int64(DefaultLeaseTTL))
	if c.grants != nil {
		g, err := newGrantClient(cl, *c.grants)
		if err != nil {
			return nil, err
		}
		cl.grants = g
	}
	return cl, nil
}

// call sends one call and decodes its answer into out. A call the house
// cannot be reached for is sent again, up to attempts times, with the same
// body (so the same idempotency id).
func (c *Client) call(ctx context.Context, op string, in, out any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var last error
	for i := range attempts {
		if i > 0 {
			// Real time, not c.clock: the pause paces I/O.
			t := time.NewTimer(time.Duration(i*i) * 5 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		buf := bodyPool.Get().(*bytes.Buffer)
		status, err := c.send(ctx, op, body, buf)
		if err == nil {
			err := c.decodeAnswer(op, status, buf.Bytes(), out)
			putBuffer(buf)
			return err
		}
		putBuffer(buf)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
	}
	return &entitlements.UnavailableError{RetryAfter: time.Second, Err: last}
}

// decodeAnswer decodes the answer of op into out (nil: none wanted), or
// returns the error it carries.
func (c *Client) decodeAnswer(op string, status int, answer []byte, out any) error {
	if status != http.StatusOK {
		return decodeError(status, answer)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return &entitlements.UnavailableError{RetryAfter: time.Second, Err: fmt.Errorf("house: decoding the answer of %s: %w", op, err)}
	}
	return nil
}

// send sends one attempt of a call and reads its answer into buf.
func (c *Client) send(ctx context.Context, op string, body []byte, buf *bytes.Buffer) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+op, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	// The value slices are shared, read-only, by every request (the map
	// is each request's own).
	req.Header["Authorization"] = c.authHeader
	req.Header["Content-Type"] = jsonType
	resp, err := c.doer.Do(req)
	if err != nil {
		return 0, fmt.Errorf("house: %s: %w", op, redactURL(err))
	}
	defer resp.Body.Close()
	if _, err := readBody(buf, io.LimitReader(resp.Body, 1<<20), resp.ContentLength, 1<<20); err != nil {
		return 0, fmt.Errorf("house: reading the answer of %s: %w", op, err)
	}
	return resp.StatusCode, nil
}

// redactURL keeps a transport error's cause and drops its URL, which holds
// nothing secret but is noise in the gateway's answers and logs.
func redactURL(err error) error {
	var ue interface{ Unwrap() error }
	var ne net.Error
	if errors.As(err, &ne) {
		return ne
	}
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// Resolve implements entitlements.Provider: it sends the key's digest,
// never the key, and caches the answer (see WithResolveCache).
func (c *Client) Resolve(ctx context.Context, apiKey string) (entitlements.Principal, error) {
	if err := ctx.Err(); err != nil {
		return entitlements.Principal{}, err
	}
	if apiKey == "" {
		return entitlements.Principal{}, entitlements.ErrInvalidKey
	}
	d := entitlements.KeyDigest(apiKey)
	now := c.clock.Now()
	c.mu.Lock()
	k, ok := c.cache[d]
	c.mu.Unlock()
	if ok && now.Before(k.expires) {
		if !k.known {
			return entitlements.Principal{}, entitlements.ErrInvalidKey
		}
		return k.p, nil
	}
	var out resolveResponse
	err := c.call(ctx, opResolve, resolveRequest{KeySHA256: hex.EncodeToString(d[:])}, &out)
	switch {
	case errors.Is(err, entitlements.ErrInvalidKey):
		c.remember(d, cachedKey{expires: now.Add(c.unknownTTL)}, now)
		return entitlements.Principal{}, err
	case err != nil:
		return entitlements.Principal{}, err
	}
	p, err := out.Principal.principal()
	if err != nil {
		return p, &entitlements.UnavailableError{Err: fmt.Errorf("house: resolve answered a bad principal: %w", err)}
	}
	c.remember(d, cachedKey{p: p, known: true, expires: now.Add(c.resolveTTL)}, now)
	return p, nil
}

func (c *Client) remember(d [sha256.Size]byte, k cachedKey, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cache) >= maxCached {
		for d, k := range c.cache {
			if !now.Before(k.expires) {
				delete(c.cache, d)
			}
		}
		if len(c.cache) >= maxCached {
			clear(c.cache)
		}
	}
	c.cache[d] = k
}

// Reserve implements entitlements.Provider. With grants (WithGrants), a
// reserve that a grant of p's account covers is decided locally.
func (c *Client) Reserve(ctx context.Context, p entitlements.Principal, amount entitlements.Amount) (entitlements.Reservation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if amount < 0 {
		return nil, fmt.Errorf("%w: reserve %d", entitlements.ErrInvalidAmount, amount)
	}
	if p.IsAnonymous() {
		return nil, entitlements.ErrInvalidKey
	}
	if c.grants != nil {
		if r := c.grants.reserve(p, amount); r != nil {
			return r, nil
		}
	}
	var out reserveResponse
	err := c.call(ctx, opReserve, reserveRequest{IdempotencyID: randomID(), Principal: principalToWire(p), Amount: int64(amount)}, &out)
	if err != nil {
		return nil, err
	}
	if out.LeaseTTLMS > 0 {
		c.leaseTTL.Store(int64(time.Duration(out.LeaseTTLMS) * time.Millisecond))
	}
	r := &reservation{c: c, id: out.ReservationID, p: p, amount: amount}
	if out.Budget != nil {
		if s, err := out.Budget.snapshot(); err == nil {
			r.budget, r.hasBudget = s, true
		}
	}
	return r, nil
}

// Snapshot implements entitlements.Provider. Spend inside grants reaches
// the house in batches: a snapshot lags it by up to the grants' flush
// interval, and counts the unspent credit of grants as reserved.
func (c *Client) Snapshot(ctx context.Context, p entitlements.Principal) (entitlements.BudgetSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return entitlements.BudgetSnapshot{}, err
	}
	if p.IsAnonymous() {
		return entitlements.BudgetSnapshot{}, entitlements.ErrInvalidKey
	}
	var out snapshotResponse
	if err := c.call(ctx, opSnapshot, snapshotRequest{Principal: principalToWire(p)}, &out); err != nil {
		return entitlements.BudgetSnapshot{}, err
	}
	s, err := out.Budget.snapshot()
	if err != nil {
		return s, &entitlements.UnavailableError{Err: fmt.Errorf("house: snapshot: %w", err)}
	}
	return s, nil
}

// LeaseTTL implements entitlements.Leaser: the TTL of the house's leases,
// as its last reserve answered (DefaultLeaseTTL before the first).
func (c *Client) LeaseTTL() time.Duration { return time.Duration(c.leaseTTL.Load()) }

// ReservationToken implements entitlements.Resumer: the id the house gave
// a direct reservation. A reservation inside a grant has none (its spend
// reaches the house with the grant's reports).
func (c *Client) ReservationToken(r entitlements.Reservation) (string, bool) {
	rr, ok := r.(*reservation)
	if !ok || rr.c != c {
		return "", false
	}
	return rr.id, true
}

// ResumeReservation implements entitlements.Resumer. The handle's Amount
// is 0: the token does not carry it.
func (c *Client) ResumeReservation(p entitlements.Principal, token string) (entitlements.Reservation, error) {
	if token == "" || p.IsAnonymous() || strings.IndexFunc(token, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return nil, entitlements.ErrUnknownReservation
	}
	return &reservation{c: c, id: token, p: p}, nil
}

// reservation is a reservation held at the house.
type reservation struct {
	c         *Client
	id        string
	p         entitlements.Principal
	amount    entitlements.Amount
	budget    entitlements.BudgetSnapshot
	hasBudget bool
}

var (
	_ entitlements.Renewer        = (*reservation)(nil)
	_ entitlements.BudgetReporter = (*reservation)(nil)
)

func (r *reservation) Principal() entitlements.Principal { return r.p }
func (r *reservation) Amount() entitlements.Amount       { return r.amount }

// Budget implements entitlements.BudgetReporter.
func (r *reservation) Budget() (entitlements.BudgetSnapshot, bool) { return r.budget, r.hasBudget }

// Settle implements entitlements.Reservation. Each call has an
// idempotency id of its own, which its resends share: a resend changes
// nothing a second time, and a later call answers
// entitlements.ErrReservationSettled once one landed, as the contract
// asks.
func (r *reservation) Settle(ctx context.Context, actual entitlements.Amount) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if actual < 0 {
		return fmt.Errorf("%w: settle %d", entitlements.ErrInvalidAmount, actual)
	}
	a := int64(actual)
	return r.c.call(ctx, opSettle, finishRequest{IdempotencyID: randomID(), ReservationID: r.id, Principal: principalToWire(r.p), Actual: &a}, nil)
}

// Release implements entitlements.Reservation.
func (r *reservation) Release(ctx context.Context) error {
	return r.c.call(ctx, opRelease, finishRequest{IdempotencyID: randomID(), ReservationID: r.id, Principal: principalToWire(r.p)}, nil)
}

// Renew implements entitlements.Renewer.
func (r *reservation) Renew(ctx context.Context, ttl time.Duration) error {
	return r.c.call(ctx, opRenew, finishRequest{IdempotencyID: randomID(), ReservationID: r.id, Principal: principalToWire(r.p), TTLMS: max(ttl, 0).Milliseconds()}, nil)
}
