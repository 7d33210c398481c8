package house

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// KeyLookup finds an API key by the digest of its secret: what the house
// needs of its provider beyond entitlements.Provider, since the secret
// never reaches it. entitlements.Local and entitlements/redisledger's
// Ledger have it. Key returns entitlements.ErrUnknownKey for a digest it
// does not hold.
type KeyLookup interface {
	Key(ctx context.Context, digest [sha256.Size]byte) (entitlements.KeyInfo, error)
}

// Gateway is a gateway the house serves.
type Gateway struct {
	// Name names the gateway in the house's logs and metrics. Required,
	// unique.
	Name string
	// TokenSHA256 is the SHA-256 digest of the gateway's bearer token
	// (entitlements.KeyDigest of it): the house keeps no token.
	TokenSHA256 [sha256.Size]byte
	// Accounts are the accounts the gateway may spend; empty means every
	// account. Any other answers 403 forbidden.
	Accounts []string
}

// Handler is the house: an http.Handler that serves the protocol of
// PROTOCOL.md over an entitlements.Provider. Build it with NewHandler.
//
// It keeps no store of its own beyond the answers of recent calls (for
// idempotent retries) and, over a provider whose reservations have no
// durable token (entitlements.Local), the reservations in flight and their
// leases. Over entitlements/redisledger a reservation id carries the
// ledger's token, so that a restarted house settles what its predecessor
// reserved.
//
// Concurrency: ServeHTTP is safe for concurrent use.
type Handler struct {
	provider  entitlements.Provider
	lookup    KeyLookup
	resumer   entitlements.Resumer // nil: reservations are held in leases
	leaser    entitlements.Leaser  // nil: the house leases
	gateways  map[[sha256.Size]byte]*gatewayEntry
	maxBody   int64
	leaseTTL  time.Duration
	idem      *idemTable
	leases    *leaseTable
	clock     clock.Clock
	log       *slog.Logger
	metrics   *handlerMetrics
	grants    *grantTable
	grantOpts grantPolicy
	table     map[string]call // by name
}

type gatewayEntry struct {
	name     string
	accounts map[string]bool // nil: every account
}

var _ http.Handler = (*Handler)(nil)

// Option configures a Handler.
type Option interface{ apply(*handlerConfig) }

type optionFunc func(*handlerConfig)

func (f optionFunc) apply(c *handlerConfig) { f(c) }

type handlerConfig struct {
	gateways   []Gateway
	maxBody    int64
	leaseTTL   time.Duration
	idemTTL    time.Duration
	idemMax    int
	clock      clock.Clock
	log        *slog.Logger
	registerer prometheus.Registerer
	grants     grantPolicy
}

// WithGateway adds a gateway the house serves; a Handler needs at least
// one.
func WithGateway(g Gateway) Option {
	return optionFunc(func(c *handlerConfig) { c.gateways = append(c.gateways, g) })
}

// WithMaxBody sets the largest request body read, in bytes (> 0);
// larger ones answer 413. Default DefaultMaxBody.
func WithMaxBody(n int64) Option { return optionFunc(func(c *handlerConfig) { c.maxBody = n }) }

// WithLeaseTTL sets the TTL of the leases the house keeps over a provider
// that is no entitlements.Leaser. Default DefaultLeaseTTL.
func WithLeaseTTL(d time.Duration) Option {
	return optionFunc(func(c *handlerConfig) { c.leaseTTL = d })
}

// WithIdempotency sets how long the answers of calls that changed state
// are kept for retries, and how many at most. Defaults
// DefaultIdempotencyTTL and DefaultIdempotencyEntries. A retry later than
// that runs again: harmless for settle, release and renew (a consumed
// reservation answers reservation_settled), a second reservation for
// reserve (which its lease returns).
func WithIdempotency(ttl time.Duration, entries int) Option {
	return optionFunc(func(c *handlerConfig) { c.idemTTL, c.idemMax = ttl, entries })
}

// WithClock sets the clock of the house's leases, grants and answer
// table. Default the system clock.
func WithClock(clk clock.Clock) Option { return optionFunc(func(c *handlerConfig) { c.clock = clk }) }

// WithLogger sets the logger of refused calls and expired leases. It
// never logs a credential or a key digest. Default: no logs.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(c *handlerConfig) { c.log = l }) }

// WithRegisterer registers the house's Prometheus metrics with r.
// Default: none.
func WithRegisterer(r prometheus.Registerer) Option {
	return optionFunc(func(c *handlerConfig) { c.registerer = r })
}

// NewHandler returns the house over provider, which must also be a
// KeyLookup (Resolve over the wire gets a digest, never a secret). It
// returns an error, rather than a Handler that would refuse everything,
// when provider is no KeyLookup, when no gateway is configured, or when
// two gateways share a name or a token.
func NewHandler(provider entitlements.Provider, opts ...Option) (*Handler, error) {
	c := handlerConfig{maxBody: DefaultMaxBody, leaseTTL: DefaultLeaseTTL, idemTTL: DefaultIdempotencyTTL, idemMax: DefaultIdempotencyEntries, clock: clock.System{}, grants: defaultGrantPolicy()}
	for _, o := range opts {
		o.apply(&c)
	}
	lookup, ok := provider.(KeyLookup)
	if !ok {
		return nil, fmt.Errorf("house: the provider (%T) cannot look keys up by digest (no Key method)", provider)
	}
	if len(c.gateways) == 0 {
		return nil, errors.New("house: no gateway configured: the house would refuse every call")
	}
	if c.maxBody <= 0 || c.leaseTTL <= 0 || c.idemTTL <= 0 || c.idemMax <= 0 {
		return nil, errors.New("house: max body, lease TTL, idempotency TTL and entries must be > 0")
	}
	if err := c.grants.validate(); err != nil {
		return nil, err
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		provider: provider, lookup: lookup, gateways: make(map[[sha256.Size]byte]*gatewayEntry),
		maxBody: c.maxBody, leaseTTL: c.leaseTTL, idem: newIdemTable(c.idemTTL, c.idemMax),
		leases: newLeaseTable(), clock: c.clock, log: c.log, grantOpts: c.grants,
	}
	h.grants = newGrantTable()
	h.table = h.calls()
	h.resumer, _ = provider.(entitlements.Resumer)
	if l, ok := provider.(entitlements.Leaser); ok {
		h.leaser, h.leaseTTL = l, l.LeaseTTL()
	}
	names := map[string]bool{}
	for _, g := range c.gateways {
		if g.Name == "" || names[g.Name] {
			return nil, fmt.Errorf("house: gateway name %q empty or repeated", g.Name)
		}
		if _, dup := h.gateways[g.TokenSHA256]; dup {
			return nil, fmt.Errorf("house: gateway %q shares its token with another", g.Name)
		}
		names[g.Name] = true
		e := &gatewayEntry{name: g.Name}
		if len(g.Accounts) > 0 {
			e.accounts = make(map[string]bool, len(g.Accounts))
			for _, a := range g.Accounts {
				e.accounts[a] = true
			}
		}
		h.gateways[g.TokenSHA256] = e
	}
	h.metrics = newHandlerMetrics()
	if c.registerer != nil {
		if err := h.metrics.register(c.registerer); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// LeaseTTL returns the TTL of the reservations the house hands out: its
// provider's when that is an entitlements.Leaser, else its own.
func (h *Handler) LeaseTTL() time.Duration { return h.leaseTTL }

// ServeHTTP implements http.Handler: POST /v1/{call} with a JSON body and
// "Authorization: Bearer <gateway token>". See PROTOCOL.md.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	op, status := h.serve(w, r)
	h.metrics.observe(op, status, time.Since(start))
}

// serve answers r and returns the call's name and status, for metrics.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (string, int) {
	gw := h.authenticate(r)
	if gw == nil {
		return "", h.refuse(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "missing or unknown gateway credential: send \"Authorization: Bearer <token>\""})
	}
	version, op, ok := splitPath(r.URL.Path)
	if !ok {
		return "", h.refuse(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such call: " + r.URL.Path})
	}
	if version != "v"+strconv.Itoa(Version) {
		return "", h.refuse(w, &Error{Status: http.StatusBadRequest, Code: CodeUnsupportedVersion, Message: fmt.Sprintf("protocol version %q is not supported; this house speaks v%d", version, Version)})
	}
	call, ok := h.table[op]
	if !ok {
		return "", h.refuse(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such call: " + op})
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return op, h.refuse(w, &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed, Message: "calls are POSTs"})
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	defer putBuffer(buf)
	body, err := readBody(buf, http.MaxBytesReader(w, r.Body, h.maxBody), r.ContentLength, h.maxBody)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return op, h.refuse(w, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("request body over %d bytes", h.maxBody)})
		}
		return op, h.refuse(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "reading the body: " + err.Error()})
	}
	h.expireLeases(r.Context())
	id, run, err := call.parse(body)
	if err != nil {
		return op, h.refuse(w, err)
	}
	if !call.mutates {
		status, out := h.run(r.Context(), gw, run)
		writeRaw(w, status, out)
		return op, status
	}
	if id == "" || len(id) > 128 {
		return op, h.refuse(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "idempotency_id is required (1 to 128 bytes)"})
	}
	e, first, conflict, err := h.idem.begin(r.Context(), idemKey{gw.name, id}, bodySum(op, body), h.clock.Now())
	switch {
	case err != nil:
		return op, h.refuse(w, &entitlements.UnavailableError{Err: err})
	case conflict:
		return op, h.refuse(w, &Error{Status: http.StatusConflict, Code: CodeIdempotencyConflict, Message: "idempotency_id " + strconv.Quote(id) + " was used for another call"})
	case !first:
		h.metrics.replays.Inc()
		writeRaw(w, e.status, e.body)
		return op, e.status
	}
	// The first delivery runs to its end even when its caller leaves, so
	// that the answer a retry reads is the one of what happened.
	status, out := h.run(context.WithoutCancel(r.Context()), gw, run)
	if status >= 500 {
		h.idem.forget(e, status, out)
	} else {
		h.idem.finish(e, status, out)
	}
	writeRaw(w, status, out)
	return op, status
}

// bodySum is the digest of a call's name and body, which the answer table
// keeps to tell a resend from a reuse of its id with another call.
func bodySum(op string, body []byte) [sha256.Size]byte {
	var small [512]byte
	b := append(append(append(small[:0], op...), '\n'), body...)
	return sha256.Sum256(b)
}

// bodyPool holds the buffers request bodies are read into, which serve
// returns once the answer is written (a decoded request copies what it
// keeps).
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBuffer returns buf to bodyPool, unless a rare large body grew it.
func putBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 {
		buf.Reset()
		bodyPool.Put(buf)
	}
}

// readBody reads r into buf, in one read of its length when known
// (n >= 0, up to limit).
func readBody(buf *bytes.Buffer, r io.Reader, n, limit int64) ([]byte, error) {
	if n > 0 && n <= limit {
		buf.Grow(int(n) + bytes.MinRead) // ReadFrom wants MinRead free to read the EOF
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// call is one call of the protocol.
type call struct {
	mutates bool
	// parse decodes a body and returns its idempotency id ("" for a call
	// that changes nothing) and what answers it.
	parse func(body []byte) (id string, run func(context.Context, *gatewayEntry) (any, error), err error)
}

// idempotent is a request of a call that changes state.
type idempotent interface{ idempotencyID() string }

func (r *reserveRequest) idempotencyID() string     { return r.IdempotencyID }
func (r *finishRequest) idempotencyID() string      { return r.IdempotencyID }
func (r *grantRequest) idempotencyID() string       { return r.IdempotencyID }
func (r *grantReportRequest) idempotencyID() string { return r.IdempotencyID }

// callOf is the call that decodes a body into a T and answers it with fn.
func callOf[T any](mutates bool, fn func(context.Context, *gatewayEntry, *T) (any, error)) call {
	return call{mutates: mutates, parse: func(body []byte) (string, func(context.Context, *gatewayEntry) (any, error), error) {
		req := new(T)
		if err := decode(body, req); err != nil {
			return "", nil, err
		}
		var id string
		if i, ok := any(req).(idempotent); ok {
			id = i.idempotencyID()
		}
		return id, func(ctx context.Context, gw *gatewayEntry) (any, error) { return fn(ctx, gw, req) }, nil
	}}
}

func (h *Handler) calls() map[string]call {
	return map[string]call{
		opResolve:     callOf(false, h.resolve),
		opSnapshot:    callOf(false, h.snapshot),
		opReserve:     callOf(true, h.reserve),
		opSettle:      callOf(true, h.settle),
		opRelease:     callOf(true, h.release),
		opRenew:       callOf(true, h.renew),
		opGrant:       callOf(true, h.grant),
		opGrantReport: callOf(true, h.grantReport),
	}
}

// run decodes and answers one call; it returns the status and body.
func (h *Handler) run(ctx context.Context, gw *gatewayEntry, run func(context.Context, *gatewayEntry) (any, error)) (int, []byte) {
	v, err := run(ctx, gw)
	if err != nil {
		status, b := encodeError(err)
		if status >= 500 || status == http.StatusForbidden {
			h.log.Warn("house: call refused", "gateway", gw.name, "status", status, "code", b.Code, "err", b.Message)
		}
		out, _ := json.Marshal(errorJSON{Error: b})
		return status, out
	}
	out, err := json.Marshal(v)
	if err != nil {
		return http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encoding the answer"}}`)
	}
	return http.StatusOK, out
}

func (h *Handler) authenticate(r *http.Request) *gatewayEntry {
	a := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(a, "Bearer ")
	if !ok || tok == "" {
		return nil
	}
	return h.gateways[entitlements.KeyDigest(tok)]
}

// splitPath splits "/v1/reserve" into "v1" and "reserve".
func splitPath(p string) (version, op string, ok bool) {
	version, op, ok = strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if !ok || len(version) < 2 || version[0] != 'v' || op == "" {
		return "", "", false
	}
	if _, err := strconv.Atoi(version[1:]); err != nil {
		return "", "", false
	}
	return version, op, true
}

func (h *Handler) refuse(w http.ResponseWriter, err error) int {
	status, b := encodeError(err)
	out, _ := json.Marshal(errorJSON{Error: b})
	writeRaw(w, status, out)
	return status
}

// jsonType is the Content-Type of every answer and request. Headers share
// it, read-only: its capacity is its length, so that an Add to a header
// copies it rather than writing into it.
var jsonType = []string{"application/json"}[:1:1]

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = jsonType
	if status == http.StatusServiceUnavailable {
		var e errorJSON
		if json.Unmarshal(body, &e) == nil {
			w.Header().Set("Retry-After", strconv.FormatInt(max(1, (e.Error.RetryAfterMS+999)/1000), 10))
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func badJSON(err error) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "malformed JSON: " + err.Error()}
}

// decode unmarshals body into v, refusing trailing data.
func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return badJSON(err)
	}
	return nil
}

// principal decodes w and checks that gw may spend its account.
func (gw *gatewayEntry) principal(w principalJSON) (entitlements.Principal, error) {
	p, err := w.principal()
	if err != nil {
		return p, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: err.Error()}
	}
	if !gw.may(p.AccountID) {
		return p, &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: fmt.Sprintf("gateway %q may not spend account %q", gw.name, p.AccountID)}
	}
	return p, nil
}

func (gw *gatewayEntry) may(account string) bool { return gw.accounts == nil || gw.accounts[account] }

func (h *Handler) resolve(ctx context.Context, gw *gatewayEntry, req *resolveRequest) (any, error) {
	d, err := entitlements.ParseDigest(req.KeySHA256)
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "key_sha256: want 64 hex digits"}
	}
	info, err := h.lookup.Key(ctx, d)
	switch {
	case errors.Is(err, entitlements.ErrUnknownKey):
		return nil, entitlements.ErrInvalidKey
	case err != nil:
		return nil, err
	case info.Revoked(), !gw.may(info.Principal.AccountID):
		// A key of an account the gateway may not spend is, to the
		// gateway, no key: the house does not tell it the account exists.
		return nil, entitlements.ErrInvalidKey
	}
	return resolveResponse{Principal: principalToWire(info.Principal)}, nil
}

func (h *Handler) snapshot(ctx context.Context, gw *gatewayEntry, req *snapshotRequest) (any, error) {
	p, err := gw.principal(req.Principal)
	if err != nil {
		return nil, err
	}
	s, err := h.provider.Snapshot(ctx, p)
	if err != nil {
		return nil, err
	}
	return snapshotResponse{Budget: *snapshotToWire(s)}, nil
}

func (h *Handler) reserve(ctx context.Context, gw *gatewayEntry, req *reserveRequest) (any, error) {
	p, err := gw.principal(req.Principal)
	if err != nil {
		return nil, err
	}
	l := h.grants.lock(p.AccountID)
	l.RLock()
	res, err := h.provider.Reserve(ctx, p, entitlements.Amount(req.Amount))
	l.RUnlock()
	if err != nil {
		return nil, err
	}
	out := reserveResponse{LeaseTTLMS: h.leaseTTL.Milliseconds()}
	if br, ok := res.(entitlements.BudgetReporter); ok {
		if s, ok := br.Budget(); ok {
			out.Budget = snapshotToWire(s)
		}
	}
	if h.resumer != nil {
		if tok, ok := h.resumer.ReservationToken(res); ok {
			out.ReservationID = tokenPrefix + tok
			return out, nil
		}
	}
	out.ReservationID = heldPrefix + randomID()
	h.leases.add(&held{id: out.ReservationID, gateway: gw.name, res: res, p: p, expires: h.clock.Now().Add(h.leaseTTL)})
	return out, nil
}

// Reservation ids: a provider's token, which any house over the same
// ledger resumes, or an id of a reservation this house holds.
const (
	tokenPrefix = "t."
	heldPrefix  = "h."
)

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// finishing is a reservation a settle, release or renew names.
type finishing struct {
	res  entitlements.Reservation // nil for a held one that expired or was consumed
	held *held                    // nil for a resumed one
	p    entitlements.Principal
}

func (h *Handler) find(gw *gatewayEntry, req *finishRequest) (finishing, error) {
	p, err := gw.principal(req.Principal)
	if err != nil {
		return finishing{}, err
	}
	if tok, ok := strings.CutPrefix(req.ReservationID, tokenPrefix); ok && h.resumer != nil {
		res, err := h.resumer.ResumeReservation(p, tok)
		return finishing{res: res, p: p}, err
	}
	hd := h.leases.lookup(req.ReservationID, gw.name)
	if hd == nil || hd.p.AccountID != p.AccountID {
		return finishing{}, entitlements.ErrUnknownReservation
	}
	return finishing{res: hd.res, held: hd, p: hd.p}, nil
}

func (h *Handler) settle(ctx context.Context, gw *gatewayEntry, req *finishRequest) (any, error) {
	if req.Actual == nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "actual is required"}
	}
	return h.finish(ctx, gw, req, true)
}

func (h *Handler) release(ctx context.Context, gw *gatewayEntry, req *finishRequest) (any, error) {
	return h.finish(ctx, gw, req, false)
}

func (h *Handler) finish(ctx context.Context, gw *gatewayEntry, req *finishRequest, settle bool) (any, error) {
	f, err := h.find(gw, req)
	if err != nil {
		return nil, err
	}
	var actual entitlements.Amount
	if settle {
		actual = entitlements.Amount(*req.Actual)
		if actual < 0 {
			return nil, fmt.Errorf("%w: settle %d", entitlements.ErrInvalidAmount, actual)
		}
	}
	end := func(r entitlements.Reservation) error {
		if settle {
			return r.Settle(ctx, actual)
		}
		return r.Release(ctx)
	}
	if f.held == nil {
		return okResponse{OK: true}, end(f.res)
	}
	retention := h.leaseTTL
	was := h.leases.take(f.held, retention, h.clock.Now())
	switch was {
	case heldConsumed:
		return nil, entitlements.ErrReservationSettled
	case heldExpired:
		if !settle || actual == 0 {
			return okResponse{OK: true}, nil
		}
		if err := lateSettle(ctx, h.provider, f.p, actual); err != nil {
			h.leases.untake(f.held, was)
			return nil, err
		}
		return okResponse{OK: true}, nil
	}
	if err := end(f.res); err != nil && !errors.Is(err, entitlements.ErrReservationSettled) {
		h.leases.untake(f.held, was)
		return nil, err
	} else if err != nil {
		return nil, err
	}
	return okResponse{OK: true}, nil
}

func (h *Handler) renew(ctx context.Context, gw *gatewayEntry, req *finishRequest) (any, error) {
	f, err := h.find(gw, req)
	if err != nil {
		return nil, err
	}
	ttl := time.Duration(req.TTLMS) * time.Millisecond
	if ttl <= 0 {
		ttl = h.leaseTTL
	}
	if rn, ok := f.res.(entitlements.Renewer); ok {
		if err := rn.Renew(ctx, ttl); err != nil {
			return nil, err
		}
	} else if f.held == nil {
		return nil, entitlements.ErrUnknownReservation
	}
	if f.held != nil {
		switch h.leases.renew(f.held, h.clock.Now().Add(ttl)) {
		case heldConsumed:
			return nil, entitlements.ErrReservationSettled
		case heldExpired:
			return nil, ErrLeaseExpired
		}
	}
	return reserveResponse{ReservationID: req.ReservationID, LeaseTTLMS: h.leaseTTL.Milliseconds()}, nil
}

// Expire releases the reservations the house holds whose leases expired,
// and the grants whose TTL passed without a report. Every call runs it
// first, so that a busy house needs no goroutine (and a test clock drives
// it exactly); a daemon calls it every second too, so that an idle house
// gives credit back.
func (h *Handler) Expire(ctx context.Context) { h.expireLeases(ctx) }

func (h *Handler) expireLeases(ctx context.Context) {
	now := h.clock.Now()
	for _, hd := range h.leases.due(now, h.leaseTTL) {
		if err := hd.res.Release(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, entitlements.ErrReservationSettled) {
			h.log.Warn("house: releasing an expired lease failed", "gateway", hd.gateway, "account", hd.p.AccountID, "err", err)
		}
		h.metrics.expired.Inc()
	}
	h.expireGrants(ctx, now)
}
