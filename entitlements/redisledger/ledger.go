package redisledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/redis/go-redis/v9"
)

// MaxAmount is the largest amount, cap, balance or spend the ledger holds:
// 2^53 - 1, the largest integer Redis's Lua numbers represent exactly
// (9e15 tokens, or 9 billion dollars in micro-dollars). Reserve refuses a
// larger amount with entitlements.ErrInvalidAmount; Settle counts a larger
// actual spend as MaxAmount, and spend saturates there.
const MaxAmount entitlements.Amount = 1<<53 - 1

// Ledger is an entitlements.Provider whose keys and budgets live in Redis,
// shared by every gateway replica that uses the same Redis and key prefix.
// See the package documentation for the data layout and the guarantees.
//
// Build one with New or Open. A *Ledger is safe for concurrent use. Every
// method that talks to Redis stops waiting when its ctx ends.
type Ledger struct {
	client   redis.UniversalClient
	owned    bool // Close closes client
	prefix   string
	ttl      time.Duration
	now      func() time.Time // nil: the server's clock
	failOpen bool
	log      *slog.Logger // nil: no logging
	sc       scripts
	b        *batcher // runs sc's scripts over client

	down  atomic.Bool // fail-open service is under way (for logging once)
	stats struct {
		failOpenReserves, failOpenResolves, failOpenAcquires, lateSettles, lateReleases atomic.Uint64
	}

	mu    sync.Mutex                                   // guards known
	known map[[sha256.Size]byte]entitlements.Principal // resolved keys, kept only when failing open
}

var _ entitlements.Provider = (*Ledger)(nil)

// New returns a Ledger over client, which the caller keeps owning (Close
// does not close it). client may be a single-node client, a failover client
// or a cluster client: every script touches keys of one hash slot. It
// returns an error for a nil client or an invalid option. New does not
// contact Redis; use Ping to check the connection.
func New(client redis.UniversalClient, opts ...Option) (*Ledger, error) {
	if client == nil {
		return nil, errors.New("redisledger: New needs a Redis client")
	}
	o := options{leaseTTL: DefaultLeaseTTL, keyPrefix: DefaultKeyPrefix, pipelines: DefaultPipelines}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.leaseTTL < MinLeaseTTL {
		return nil, fmt.Errorf("redisledger: lease TTL %v is under the minimum %v", o.leaseTTL, MinLeaseTTL)
	}
	if o.pipelines < 0 {
		return nil, fmt.Errorf("redisledger: %d pipelines: WithPipelines takes 0 (no batching) or more", o.pipelines)
	}
	if strings.ContainsAny(o.keyPrefix, "{}") {
		return nil, fmt.Errorf("redisledger: key prefix %q contains '{' or '}'", o.keyPrefix)
	}
	l := &Ledger{
		client:   client,
		prefix:   o.keyPrefix,
		ttl:      o.leaseTTL,
		now:      o.now,
		failOpen: o.failOpen,
		log:      o.logger,
		sc:       newScripts(),
		b:        &batcher{client: client, max: o.pipelines},
	}
	if l.failOpen {
		l.known = make(map[[sha256.Size]byte]entitlements.Principal)
	}
	return l, nil
}

// Open returns a Ledger configured by cfg (the [entitlements.redis] table),
// over a client it creates from cfg.URL (redis://[user:pass@]host:port/db,
// rediss:// for TLS or unix://; client options such as dial_timeout,
// read_timeout and max_retries may be given as URL query parameters; a
// gateway wants them short, such as ?dial_timeout=1s&read_timeout=1s, so that
// an outage fails requests fast). Each attempt dials once. An
// empty cfg.KeyPrefix and a zero cfg.LeaseTTL mean the defaults; opts are
// applied after cfg and override it. Close closes the client. Open does not
// contact Redis.
func Open(cfg entitlements.RedisConfig, opts ...Option) (*Ledger, error) {
	if cfg.URL == "" {
		return nil, errors.New("redisledger: Open needs a Redis URL")
	}
	if cfg.LeaseTTL < 0 {
		return nil, errors.New("redisledger: negative lease TTL")
	}
	ro, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redisledger: %w", err)
	}
	base := []Option{WithFailOpen(cfg.FailOpen)}
	if cfg.LeaseTTL > 0 {
		base = append(base, WithLeaseTTL(time.Duration(cfg.LeaseTTL)))
	}
	if cfg.KeyPrefix != "" {
		base = append(base, WithKeyPrefix(cfg.KeyPrefix))
	}
	ro.DialerRetries = 1
	client := redis.NewClient(ro)
	l, err := New(client, append(base, opts...)...)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	l.owned = true
	return l, nil
}

// Close closes the Redis client when Open created it; it does nothing for a
// Ledger built with New.
func (l *Ledger) Close() error {
	if l.owned {
		return l.client.Close()
	}
	return nil
}

// Ping checks that Redis answers. It returns ctx.Err() or an
// *entitlements.UnavailableError.
func (l *Ledger) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := l.client.Ping(ctx).Err(); err != nil {
		return fail(ctx, err)
	}
	return nil
}

// LeaseTTL implements entitlements.Leaser: the TTL of new leases (and
// slots) and of renewals without a TTL.
func (l *Ledger) LeaseTTL() time.Duration { return l.ttl }

// Stats are counters of a Ledger since it was built, for metrics.
type Stats struct {
	// FailOpenReserves counts reservations granted unrecorded because
	// Redis was unreachable (WithFailOpen).
	FailOpenReserves uint64
	// FailOpenResolves counts keys resolved from memory because Redis was
	// unreachable (WithFailOpen).
	FailOpenResolves uint64
	// FailOpenAcquires counts requests admitted without checking their
	// key's limits because Redis was unreachable (WithFailOpen).
	FailOpenAcquires uint64
	// LateSettles counts Settles of leases that had expired; their spend
	// was recorded.
	LateSettles uint64
	// LateReleases counts Releases of leases that had expired.
	LateReleases uint64
}

// Stats returns the ledger's counters.
func (l *Ledger) Stats() Stats {
	return Stats{
		FailOpenReserves: l.stats.failOpenReserves.Load(),
		FailOpenResolves: l.stats.failOpenResolves.Load(),
		FailOpenAcquires: l.stats.failOpenAcquires.Load(),
		LateSettles:      l.stats.lateSettles.Load(),
		LateReleases:     l.stats.lateReleases.Load(),
	}
}

// Resolve implements entitlements.Provider. It reads the key's record by
// the SHA-256 digest of apiKey; a revoked key is ErrInvalidKey.
func (l *Ledger) Resolve(ctx context.Context, apiKey string) (entitlements.Principal, error) {
	if err := ctx.Err(); err != nil {
		return entitlements.Principal{}, err
	}
	if apiKey == "" {
		return entitlements.Principal{}, entitlements.ErrInvalidKey
	}
	d := entitlements.KeyDigest(apiKey)
	fields, err := l.b.run(ctx, l.sc.resolve, []string{l.keyRecord(hex.EncodeToString(d[:]))}).StringSlice()
	if err != nil {
		err = fail(ctx, err)
		if l.failOpen && unavailable(err) {
			l.mu.Lock()
			p, ok := l.known[d]
			l.mu.Unlock()
			if ok {
				l.stats.failOpenResolves.Add(1)
				l.outage(err)
				return p, nil
			}
		}
		return entitlements.Principal{}, err
	}
	l.reachable()
	m := make(map[string]string, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		m[fields[i]] = fields[i+1]
	}
	if len(m) == 0 || m["revoked"] != "" {
		l.remember(d, entitlements.Principal{}, false)
		return entitlements.Principal{}, entitlements.ErrInvalidKey
	}
	k, err := parseKey(d, m)
	if err != nil {
		return entitlements.Principal{}, err
	}
	l.remember(d, k.Principal, true)
	return k.Principal, nil
}

// remember keeps (or forgets) a resolved key for fail-open service.
func (l *Ledger) remember(d [sha256.Size]byte, p entitlements.Principal, ok bool) {
	if !l.failOpen {
		return
	}
	l.mu.Lock()
	if ok {
		l.known[d] = p
	} else {
		delete(l.known, d)
	}
	l.mu.Unlock()
}

// outage notes fail-open service, logging the first of an outage.
func (l *Ledger) outage(err error) {
	if l.down.CompareAndSwap(false, true) && l.log != nil {
		l.log.Warn("redisledger: Redis unreachable; serving without budget checks (fail_open)", "err", err)
	}
}

// reachable notes a successful call, logging the end of an outage.
func (l *Ledger) reachable() {
	if l.down.Load() && l.down.CompareAndSwap(true, false) && l.log != nil {
		l.log.Info("redisledger: Redis reachable again; budget checks resumed")
	}
}

// Reserve implements entitlements.Provider: one script reclaims the
// account's expired leases, rolls its window, checks the cap and stores a
// lease of amount that expires after the lease TTL. amount must be at most
// MaxAmount. When ctx ends while the script runs, Reserve releases the lease
// it may have created before returning ctx.Err() (should that release not
// get through, the lease expires after its TTL).
func (l *Ledger) Reserve(ctx context.Context, p entitlements.Principal, amount entitlements.Amount) (entitlements.Reservation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if amount < 0 {
		return nil, fmt.Errorf("%w: reserve %d", entitlements.ErrInvalidAmount, amount)
	}
	if amount > MaxAmount {
		return nil, fmt.Errorf("%w: reserve %d is over the ledger's maximum %d", entitlements.ErrInvalidAmount, amount, MaxAmount)
	}
	if p.IsAnonymous() {
		return nil, entitlements.ErrInvalidKey
	}
	id := rand.Text()
	keys := l.budgetKeys(p.AccountID)
	v, err := l.b.run(ctx, l.sc.reserve, keys, l.nowArg(), retentionMS, id, int64(amount), l.ttl.Milliseconds()).Int64Slice()
	if err != nil {
		if ctx.Err() != nil {
			if !errors.Is(err, errUnsent) { // it may have run
				l.abandon(ctx, keys, id, amount)
			}
			return nil, ctx.Err()
		}
		err = fail(ctx, err)
		if l.failOpen {
			l.stats.failOpenReserves.Add(1)
			l.outage(err)
			return &lease{ledger: l, p: p, amount: amount, unrecorded: true}, nil
		}
		return nil, err
	}
	l.reachable()
	r, err := parseBudget(v)
	if err != nil {
		return nil, err
	}
	switch r.code {
	case codeOK, codeRetried:
		return &lease{ledger: l, id: id, keys: keys, p: p, amount: amount, budget: r}, nil
	case codeNoAccount:
		return nil, entitlements.ErrInvalidKey
	case codeOverCap:
		e := &entitlements.BudgetError{Kind: entitlements.InsufficientQuota, Requested: amount, Available: entitlements.Amount(r.x)}
		if r.ws > 0 {
			e.Kind, e.RetryAfter = entitlements.RateLimited, r.retryAfter()
		}
		return nil, e
	case codeOverflow:
		return nil, fmt.Errorf("%w: reserve %d overflows the ledger", entitlements.ErrInvalidAmount, amount)
	}
	return nil, r.unexpected("reserve")
}

// abandon releases lease id after its Reserve was cancelled, in case the
// script ran. Best effort: the lease TTL bounds what a failure here holds.
func (l *Ledger) abandon(ctx context.Context, keys []string, id string, amount entitlements.Amount) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	_ = l.b.run(ctx, l.sc.finish, keys, l.nowArg(), retentionMS, id, int64(amount), 0, "r").Err()
}

// abandonTimeout bounds the release that follows a cancelled Reserve.
const abandonTimeout = 2 * time.Second

// retentionMS is ExpiredLeaseRetention in milliseconds.
const retentionMS = int64(ExpiredLeaseRetention / time.Millisecond)

// own returns r as one of l's handles.
func (l *Ledger) own(r entitlements.Reservation) (*lease, error) {
	lr, ok := r.(*lease)
	if !ok || lr == nil || lr.ledger != l {
		return nil, entitlements.ErrUnknownReservation
	}
	return lr, nil
}

// finish settles (or releases) lr in one script.
func (l *Ledger) finish(ctx context.Context, lr *lease, actual entitlements.Amount, settle bool) error {
	if lr.unrecorded {
		if !lr.done.CompareAndSwap(false, true) {
			return entitlements.ErrReservationSettled
		}
		return nil
	}
	mode := "r"
	if settle {
		mode = "s"
	}
	v, err := l.b.run(ctx, l.sc.finish, lr.keys, l.nowArg(), retentionMS, lr.id, int64(lr.amount), int64(actual), mode).Int64Slice()
	if err != nil {
		return fail(ctx, err)
	}
	l.reachable()
	r, err := parseBudget(v)
	if err != nil {
		return err
	}
	switch r.code {
	case codeOK:
		return nil
	case codeExpired:
		if settle {
			l.stats.lateSettles.Add(1)
			if l.log != nil {
				l.log.Warn("redisledger: settled a reservation whose lease had expired; renew long requests",
					"account", lr.p.AccountID, "key_id", lr.p.KeyID, "lease", lr.id, "actual", int64(actual))
			}
			return nil
		}
		l.stats.lateReleases.Add(1)
		return ErrLeaseExpired
	case codeGone:
		return entitlements.ErrReservationSettled
	case codeNoAccount:
		return fmt.Errorf("%w: account %q is no longer in the ledger", entitlements.ErrUnknownReservation, lr.p.AccountID)
	}
	return r.unexpected("settle")
}

// Snapshot implements entitlements.Provider. It reclaims expired leases and
// rolls the window first, so Reserved counts only live leases.
func (l *Ledger) Snapshot(ctx context.Context, p entitlements.Principal) (entitlements.BudgetSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return entitlements.BudgetSnapshot{}, err
	}
	if p.IsAnonymous() {
		return entitlements.BudgetSnapshot{}, entitlements.ErrInvalidKey
	}
	r, err := l.budget(ctx, l.sc.snapshot, p.AccountID)
	if err != nil {
		return entitlements.BudgetSnapshot{}, err
	}
	if r.code == codeNoAccount {
		return entitlements.BudgetSnapshot{}, entitlements.ErrInvalidKey
	}
	return r.snapshot(), nil
}

// budget runs a budget script with the common arguments and extra ones.
func (l *Ledger) budget(ctx context.Context, s *redis.Script, account string, extra ...any) (budgetReply, error) {
	args := append([]any{l.nowArg(), retentionMS}, extra...)
	v, err := l.b.run(ctx, s, l.budgetKeys(account), args...).Int64Slice()
	if err != nil {
		return budgetReply{}, fail(ctx, err)
	}
	l.reachable()
	return parseBudget(v)
}

// nowArg is the time argument of the scripts: "" for the server's clock.
func (l *Ledger) nowArg() string {
	if l.now == nil {
		return ""
	}
	return strconv.FormatInt(l.now().UnixMilli(), 10)
}

// budgetReply is the answer of a budget script.
type budgetReply struct {
	code, x, win, nowMS, ws int64
	capped                  bool
	cap, spent, reserved    int64
}

func parseBudget(v []int64) (budgetReply, error) {
	if len(v) == 1 { // a brief answer: the code alone
		return budgetReply{code: v[0]}, nil
	}
	if len(v) != 9 {
		return budgetReply{}, fmt.Errorf("redisledger: unexpected script reply %v", v)
	}
	return budgetReply{
		code: v[0], x: v[1], win: v[2], nowMS: v[3], ws: v[4],
		capped: v[5] == 1, cap: v[6], spent: v[7], reserved: v[8],
	}, nil
}

func (r budgetReply) unexpected(op string) error {
	return fmt.Errorf("redisledger: %s: unexpected script reply code %d", op, r.code)
}

func (r budgetReply) snapshot() entitlements.BudgetSnapshot {
	s := entitlements.BudgetSnapshot{
		Spent:    entitlements.Amount(r.spent),
		Reserved: entitlements.Amount(r.reserved),
		Window:   entitlements.Balance(),
	}
	if r.capped {
		s.HardCap = entitlements.Cap(entitlements.Amount(r.cap))
	}
	if r.ws > 0 {
		s.Window = entitlements.Rolling(r.ws)
		s.ResetsAt = time.Unix((r.win+1)*r.ws, 0).UTC()
	}
	return s
}

// retryAfter is the time from the script's now to the end of the current
// window, within [1s, window length].
func (r budgetReply) retryAfter() time.Duration {
	end := time.Unix((r.win+1)*r.ws, 0)
	now := time.UnixMilli(r.nowMS)
	return min(max(end.Sub(now), time.Second), time.Duration(r.ws)*time.Second)
}
