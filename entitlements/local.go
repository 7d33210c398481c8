package entitlements

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/helexa-ai/helexa-go/clock"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Local is a Provider that keeps keys and budgets in the memory of one
// process: for a single gateway, for development and for tests. Built with
// NewLocal, budgets do not survive a restart; built with OpenLocal, keys,
// budgets and spend are kept in a ledger file and do (see OpenLocal).
// Budgets are not shared between replicas (use entitlements/redisledger for
// that).
//
// Keys are stored and looked up by their SHA-256 digest only; the secret is
// never kept. Budgets are per account: every key of one account spends the
// same cap. Each account's arithmetic is serialised by its own mutex, so
// spent + reserved never exceeds a hard cap whatever the concurrency (short
// of an overspend reported by Settle). Rolling windows reset lazily, on the
// first call that sees a new window, by the clock given with WithClock.
//
// The zero value is not usable; build one with NewLocal or OpenLocal. A
// *Local is safe for concurrent use and never blocks on I/O: a durable
// Local's file is written by a goroutine of its own.
type Local struct {
	now     func() time.Time
	log     *slog.Logger
	compact int64    // least growth of the file before a compaction
	j       *journal // nil: in memory only

	mu       sync.RWMutex
	keys     map[[sha256.Size]byte]*KeyInfo
	accounts map[string]*account
	keyIDs   map[[2]string]Principal // (account, key id) -> principal
}

var _ Provider = (*Local)(nil)

// account is the budget of one account.
type account struct {
	// Immutable after creation.
	id     string
	unit   Unit
	window CapWindow

	mu       sync.Mutex
	capped   bool
	cap      Amount
	win      int64 // index of the current rolling window (start = win*Seconds)
	spent    Amount
	reserved Amount
}

// budget returns a's budget. a.mu must be held.
func (a *account) budget() Budget {
	b := Budget{Window: a.window}
	if a.capped {
		b.HardCap = Cap(a.cap)
	}
	return b
}

// localReservation is the Reservation handle of a Local.
type localReservation struct {
	owner  *Local
	acct   *account
	p      Principal
	amount Amount
	done   bool // guarded by acct.mu
}

// Principal implements Reservation.
func (r *localReservation) Principal() Principal { return r.p }

// Amount implements Reservation.
func (r *localReservation) Amount() Amount { return r.amount }

// Option configures a Local.
type Option interface {
	apply(*Local)
}

type optionFunc func(*Local)

func (f optionFunc) apply(l *Local) { f(l) }

// WithClock sets the clock that places calls in rolling windows. Default
// (and when clk is nil): clock.System. Its Now is called without any lock
// held.
func WithClock(clk clock.Clock) Option {
	return optionFunc(func(l *Local) {
		if clk != nil {
			l.now = clk.Now
		}
	})
}

// WithLogger sets the logger of a durable Local (OpenLocal): a torn record
// dropped at open, keys of the configuration that the ledger file holds
// differently, and write failures. Default (and when l is nil): no
// logging.
func WithLogger(lg *slog.Logger) Option {
	return optionFunc(func(l *Local) {
		if lg != nil {
			l.log = lg
		}
	})
}

// withCompactBytes sets the least growth of the ledger file before a
// compaction (tests).
func withCompactBytes(n int64) Option {
	return optionFunc(func(l *Local) { l.compact = n })
}

func newLocal(opts []Option) *Local {
	l := &Local{
		now:      time.Now,
		log:      slog.New(slog.DiscardHandler),
		compact:  minCompactBytes,
		keys:     make(map[[sha256.Size]byte]*KeyInfo),
		accounts: make(map[string]*account),
		keyIDs:   make(map[[2]string]Principal),
	}
	for _, o := range opts {
		o.apply(l)
	}
	return l
}

// NewLocal returns a Local holding the keys of cfg, in memory only. It
// returns cfg's validation error, if any. cfg.RequireAuth, cfg.StrictCaps
// and cfg.Redis are for the gateway, and cfg.Local for OpenLocal; they are
// not used here. NewLocal does no I/O.
func NewLocal(cfg Config, opts ...Option) (*Local, error) {
	keys, err := cfg.APIKeys()
	if err != nil {
		return nil, err
	}
	l := newLocal(opts)
	for i, k := range keys {
		if err := l.AddKey(k); err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
	}
	return l, nil
}

// OpenLocal returns a durable Local: its keys, accounts, caps and spend
// are kept in the ledger file that cfg.Local names (created when missing)
// and survive a restart. The keys of cfg are added when the file does not
// hold them yet; once a key or an account is in the file, the file is the
// source of truth (a top-up, a new cap or a revocation survives a
// restart), and a configuration that differs is logged (WithLogger) and
// ignored, as redisledger's Seed does. Call Close when done.
//
// Durability: Settle, TopUp, SetCap, AddKey, CreateKey and the revocations
// change memory and queue a record; a goroutine of the Local writes the
// queued records and syncs the file (fsync) at most every
// cfg.Local.SyncInterval (DefaultSyncInterval, 10ms), so a call never waits
// for the disk. A crash (of the process or of the machine) loses at most
// the records of the last interval and of the write in progress; Sync
// waits until everything before it is on disk. Reservations are held in
// memory only: a crash releases the ones in flight, so what they served is
// never charged (a gateway that must charge it keeps its own settle
// outbox). A rolling window's spend is kept with its window, so a restart
// within the window does not reset it.
//
// While the file cannot be written (disk full, I/O errors), Reserve
// returns an *UnavailableError and the writer retries; Settle still
// counts in memory and is written once the file can be.
//
// The file is an append-only journal of CRC-checked records, compacted
// into a snapshot of the state when it has grown; a torn record at its end
// (a crash during a write) is dropped at open, and a file corrupt
// elsewhere is refused with ErrLedgerCorrupt. A lock file beside it
// (path + ".lock", holding the owner's pid) keeps a second process out:
// OpenLocal returns an error wrapping ErrLedgerLocked while another
// process (or another Local of this one) holds the file; the lock goes
// with its holder, however it ends.
func OpenLocal(cfg Config, opts ...Option) (*Local, error) {
	keys, err := cfg.APIKeys()
	if err != nil {
		return nil, err
	}
	if cfg.Local == nil || cfg.Local.Path == "" {
		return nil, errors.New("entitlements: OpenLocal needs a [local] path")
	}
	l := newLocal(opts)
	interval := time.Duration(cfg.Local.SyncInterval)
	if interval == 0 {
		interval = DefaultSyncInterval
	}
	j, err := openJournal(cfg.Local.Path, interval, l.compact, l.log)
	if err != nil {
		return nil, err
	}
	l.load(j.state)
	l.j = j
	for _, c := range l.seed(keys) {
		l.log.Warn("entitlements: the ledger file holds a key differently from the configuration; the file wins", "conflict", c)
	}
	return l, nil
}

// load builds l's keys and accounts from a replayed state.
func (l *Local) load(s *ledgerState) {
	for id, sa := range s.accounts {
		a := &account{id: id, unit: sa.unit, window: sa.window, spent: sa.spent, win: math.MinInt64}
		if sa.window.Kind == WindowRolling {
			a.win = sa.win
		}
		if sa.cap != nil {
			a.capped, a.cap = true, *sa.cap
		}
		l.accounts[id] = a
	}
	for d, k := range s.keys {
		k := k
		l.keys[d] = &k
		l.keyIDs[[2]string{k.Principal.AccountID, k.Principal.KeyID}] = k.Principal
	}
}

// seed adds the keys the ledger does not hold and describes those it
// holds differently.
func (l *Local) seed(keys []Key) []string {
	var conflicts []string
	for _, k := range keys {
		p := k.Principal
		if p.KeyID == "" {
			p.KeyID = p.AccountID
		}
		l.mu.RLock()
		cur, have := l.keys[k.Digest]
		a := l.accounts[p.AccountID]
		l.mu.RUnlock()
		if have {
			switch {
			case cur.Principal != p:
				conflicts = append(conflicts, fmt.Sprintf("key %q of account %q: the ledger has %+v", p.KeyID, p.AccountID, cur.Principal))
			case cur.Revoked():
				conflicts = append(conflicts, fmt.Sprintf("key %q of account %q: revoked at %s", p.KeyID, p.AccountID, cur.RevokedAt.Format(time.RFC3339)))
			}
			continue
		}
		b := &k.Budget
		if a != nil {
			a.mu.Lock()
			ab := a.budget()
			a.mu.Unlock()
			if a.unit != p.Unit || !sameBudget(ab, *b) {
				conflicts = append(conflicts, fmt.Sprintf("account %q: the ledger has unit %s, %s; the configuration has unit %s, %s",
					p.AccountID, a.unit, budgetString(ab), p.Unit, budgetString(*b)))
				b = nil // spend the account's budget as the ledger holds it
			}
		}
		if _, err := l.addKey(k.Digest, p, b); err != nil {
			conflicts = append(conflicts, fmt.Sprintf("key %q of account %q: not added: %v", p.KeyID, p.AccountID, err))
		}
	}
	return conflicts
}

func budgetString(b Budget) string {
	c := "uncapped"
	if b.HardCap != nil {
		c = fmt.Sprintf("cap %d", *b.HardCap)
	}
	return c + " over " + b.Window.String()
}

// Close writes and syncs what is pending and releases the ledger file of
// a durable Local; it does nothing for one built with NewLocal. After
// Close, Reserve fails and nothing more is written.
func (l *Local) Close() error {
	if l.j == nil {
		return nil
	}
	return l.j.close()
}

// Sync returns once everything recorded before it is written and synced to
// the ledger file, or ctx.Err(). It returns nil at once for a Local
// without a file.
func (l *Local) Sync(ctx context.Context) error {
	if l.j == nil {
		return ctx.Err()
	}
	select {
	case err := <-l.j.sync():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

var _ io.Closer = (*Local)(nil)

// AddKey adds an API key; build k.Digest with KeyDigest. An empty KeyID
// defaults to the AccountID. The first key of an account creates the account
// with k.Budget, at zero spend; later keys of the account must carry the same
// Budget and Unit (else an error wrapping ErrAccountMismatch). Keys sharing
// an (account, key id) pair must carry the same Limits. AddKey returns
// ErrDuplicateKey when the digest is already present (revoked or not). It is
// safe to call while the provider serves requests.
func (l *Local) AddKey(k Key) error {
	b := k.Budget
	_, err := l.addKey(k.Digest, k.Principal, &b)
	return err
}

// addKey adds a key; b nil takes the existing account's budget
// (ErrUnknownAccount when there is none).
func (l *Local) addKey(d [sha256.Size]byte, p Principal, b *Budget) (KeyInfo, error) {
	if p.KeyID == "" {
		p.KeyID = p.AccountID
	}
	var bud Budget
	if b != nil {
		bud = *b
	}
	if msg := checkKey(d, p, bud); msg != "" {
		return KeyInfo{}, fmt.Errorf("entitlements: key of account %q: %s", p.AccountID, msg)
	}
	if bud.HardCap != nil {
		bud.HardCap = Cap(*bud.HardCap) // do not share the caller's pointer
	}
	id := [2]string{p.AccountID, p.KeyID}
	now := l.now()

	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.keys[d]; dup {
		return KeyInfo{}, ErrDuplicateKey
	}
	a := l.accounts[p.AccountID]
	if a != nil {
		if a.unit != p.Unit {
			return KeyInfo{}, fmt.Errorf("%w: key of account %q: unit %s differs from the account's %s", ErrAccountMismatch, p.AccountID, p.Unit, a.unit)
		}
		a.mu.Lock()
		same := b == nil || sameBudget(a.budget(), bud)
		a.mu.Unlock()
		if !same {
			return KeyInfo{}, fmt.Errorf("%w: key of account %q: budget differs from the account's", ErrAccountMismatch, p.AccountID)
		}
	} else if b == nil {
		return KeyInfo{}, fmt.Errorf("%w %q: give a budget to create it", ErrUnknownAccount, p.AccountID)
	}
	if prev, ok := l.keyIDs[id]; ok && prev != p {
		return KeyInfo{}, fmt.Errorf("entitlements: key of account %q: limits differ from key id %q's", p.AccountID, p.KeyID)
	}
	if a == nil {
		a = &account{id: p.AccountID, unit: p.Unit, window: bud.Window, win: math.MinInt64}
		if bud.HardCap != nil {
			a.capped, a.cap = true, *bud.HardCap
		}
		l.accounts[p.AccountID] = a
		if l.j != nil {
			l.j.account(a.id, stateAccount{unit: a.unit, window: a.window, cap: bud.HardCap, win: a.win})
		}
	}
	k := &KeyInfo{Digest: d, Principal: p, CreatedAt: time.UnixMilli(now.UnixMilli()).UTC()}
	l.keyIDs[id] = p
	l.keys[d] = k
	if l.j != nil {
		l.j.key(*k)
	}
	return *k, nil
}

// checkKey returns what is wrong with a key, or "".
func checkKey(digest [sha256.Size]byte, p Principal, b Budget) string {
	switch {
	case digest == sha256.Sum256(nil):
		return "empty secret"
	case p.AccountID == "":
		return "empty account id"
	case !p.Unit.valid():
		return "unknown unit " + p.Unit.String()
	case p.Limits.MaxInFlight < 0 || p.Limits.RPM < 0:
		return "negative limit"
	case b.HardCap != nil && *b.HardCap < 0:
		return "negative hard cap"
	case b.HardCap != nil && *b.HardCap == 0 && b.Window.Kind == WindowRolling:
		return "hard cap 0 with a rolling window"
	}
	return b.Window.validate()
}

// Resolve implements Provider.
func (l *Local) Resolve(ctx context.Context, apiKey string) (Principal, error) {
	if err := ctx.Err(); err != nil {
		return Principal{}, err
	}
	if apiKey == "" {
		return Principal{}, ErrInvalidKey
	}
	d := KeyDigest(apiKey)
	l.mu.RLock()
	k, ok := l.keys[d]
	ok = ok && k.RevokedAt.IsZero()
	var p Principal
	if ok {
		p = k.Principal
	}
	l.mu.RUnlock()
	if !ok {
		return Principal{}, ErrInvalidKey
	}
	return p, nil
}

func (l *Local) account(id string) *account {
	l.mu.RLock()
	a := l.accounts[id]
	l.mu.RUnlock()
	return a
}

// clock reads the clock for a, only when a's window needs it.
func (l *Local) clock(a *account) time.Time {
	if a.window.Kind != WindowRolling {
		return time.Time{}
	}
	return l.now()
}

// Reserve implements Provider.
func (l *Local) Reserve(ctx context.Context, p Principal, amount Amount) (Reservation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if amount < 0 {
		return nil, fmt.Errorf("%w: reserve %d", ErrInvalidAmount, amount)
	}
	a := l.account(p.AccountID)
	if a == nil {
		return nil, ErrInvalidKey
	}
	if l.j != nil {
		if err := l.j.failed(); err != nil {
			return nil, &UnavailableError{RetryAfter: time.Second, Err: err}
		}
	}
	now := l.clock(a)
	r := &localReservation{owner: l, acct: a, p: p, amount: amount}

	a.mu.Lock()
	a.roll(now)
	if a.capped {
		// reserved <= cap always holds for a capped account, so neither
		// subtraction overflows.
		if avail := a.cap - a.reserved - a.spent; amount > avail {
			e := &BudgetError{Kind: InsufficientQuota, Requested: amount, Available: max(avail, 0)}
			if a.window.Kind == WindowRolling {
				e.Kind, e.RetryAfter = RateLimited, a.retryAfter(now)
			}
			a.mu.Unlock()
			return nil, e
		}
	} else if amount > math.MaxInt64-a.reserved {
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: reserve %d overflows the ledger", ErrInvalidAmount, amount)
	}
	a.reserved += amount
	a.mu.Unlock()
	return r, nil
}

// Settle implements Reservation. A settle that lands after a rolling
// window rolled over counts in the new window; see the package
// documentation.
func (r *localReservation) Settle(ctx context.Context, actual Amount) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if actual < 0 {
		return fmt.Errorf("%w: settle %d", ErrInvalidAmount, actual)
	}
	return r.owner.finish(r, actual, true)
}

// Release implements Reservation.
func (r *localReservation) Release(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.owner.finish(r, 0, false)
}

func (l *Local) finish(r *localReservation, actual Amount, settle bool) error {
	a := r.acct
	now := l.clock(a)
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.done {
		return ErrReservationSettled
	}
	r.done = true
	a.roll(now)
	a.reserved -= r.amount
	if settle && actual > 0 {
		a.spent = satAdd(a.spent, actual)
		if l.j != nil {
			win := a.win
			if a.window.Kind != WindowRolling {
				win = 0
			}
			l.j.spend(a.id, win, actual)
		}
	}
	return nil
}

// Snapshot implements Provider.
func (l *Local) Snapshot(ctx context.Context, p Principal) (BudgetSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return BudgetSnapshot{}, err
	}
	a := l.account(p.AccountID)
	if a == nil {
		return BudgetSnapshot{}, ErrInvalidKey
	}
	return l.snapshot(a), nil
}

// snapshot returns a's budget now.
func (l *Local) snapshot(a *account) BudgetSnapshot {
	now := l.clock(a)
	a.mu.Lock()
	a.roll(now)
	s := a.snapshotLocked()
	a.mu.Unlock()
	return s
}

// snapshotLocked returns a's budget. a.mu must be held.
func (a *account) snapshotLocked() BudgetSnapshot {
	s := BudgetSnapshot{Window: a.window, Spent: a.spent, Reserved: a.reserved}
	if a.capped {
		s.HardCap = Cap(a.cap)
	}
	if a.window.Kind == WindowRolling {
		s.ResetsAt = time.Unix((a.win+1)*a.window.Seconds, 0).UTC()
	}
	return s
}

// roll moves a rolling window forward to the one holding now, forgetting the
// spend of the past window. It never moves back: a caller whose clock reading
// is older than the current window (it read the clock before another caller
// rolled) is counted in the current window. a.mu must be held.
func (a *account) roll(now time.Time) {
	if a.window.Kind != WindowRolling {
		return
	}
	if w := floorDiv(now.Unix(), a.window.Seconds); w > a.win {
		a.win, a.spent = w, 0
	}
}

// retryAfter is the time from now to the end of the current window, within
// [1s, window length]. a.mu must be held.
func (a *account) retryAfter(now time.Time) time.Duration {
	end := time.Unix((a.win+1)*a.window.Seconds, 0)
	return min(max(end.Sub(now), time.Second), a.window.Length())
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
