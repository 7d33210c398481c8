package entitlements

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"sync"
	"time"
)

// Local is a Provider that keeps keys and budgets in the memory of one
// process: for a single gateway, for development and for tests. Budgets do
// not survive a restart and are not shared between replicas (use
// entitlements/redisledger for that).
//
// Keys are stored and looked up by their SHA-256 digest only; the secret is
// never kept. Budgets are per account: every key of one account spends the
// same cap. Each account's arithmetic is serialised by its own mutex, so
// spent + reserved never exceeds a hard cap whatever the concurrency (short
// of an overspend reported by Settle). Rolling windows reset lazily, on the
// first call that sees a new window, by the clock given with WithClock.
//
// The zero value is not usable; build one with NewLocal. A *Local is safe for
// concurrent use and never blocks on I/O.
type Local struct {
	now func() time.Time

	mu       sync.RWMutex
	keys     map[[sha256.Size]byte]Principal
	accounts map[string]*account
	keyIDs   map[[2]string]Principal // (account, key id) -> principal
}

var _ Provider = (*Local)(nil)

// account is the budget of one account.
type account struct {
	// Immutable after creation.
	unit   Unit
	budget Budget
	capped bool
	cap    Amount
	window CapWindow

	mu       sync.Mutex
	win      int64 // index of the current rolling window (start = win*Seconds)
	spent    Amount
	reserved Amount
}

// localReservation is the Reservation handle of a Local.
type localReservation struct {
	owner  *Local
	acct   *account
	p      Principal
	amount Amount
	done   bool // guarded by acct.mu
}

func (r *localReservation) Principal() Principal { return r.p }
func (r *localReservation) Amount() Amount       { return r.amount }

// Option configures a Local.
type Option interface {
	apply(*Local)
}

type optionFunc func(*Local)

func (f optionFunc) apply(l *Local) { f(l) }

// WithClock sets the clock that places calls in rolling windows. Default
// (and when now is nil): time.Now. The clock is called without any lock held
// and must be safe for concurrent use.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(l *Local) {
		if now != nil {
			l.now = now
		}
	})
}

// NewLocal returns a Local holding the keys of cfg. It returns cfg's
// validation error, if any. cfg.RequireAuth and cfg.Redis are for the gateway
// and are not used here.
func NewLocal(cfg Config, opts ...Option) (*Local, error) {
	keys, err := cfg.APIKeys()
	if err != nil {
		return nil, err
	}
	l := &Local{
		now:      time.Now,
		keys:     make(map[[sha256.Size]byte]Principal, len(keys)),
		accounts: make(map[string]*account),
		keyIDs:   make(map[[2]string]Principal, len(keys)),
	}
	for _, o := range opts {
		o.apply(l)
	}
	for i, k := range keys {
		if err := l.AddKey(k); err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
	}
	return l, nil
}

// AddKey adds an API key; build k.Digest with KeyDigest. An empty KeyID
// defaults to the AccountID. The first key of an account creates the account
// with k.Budget, at zero spend; later keys of the account must carry the same
// Budget and Unit. Keys sharing an (account, key id) pair must carry the same
// Limits. AddKey returns ErrDuplicateKey when the digest is already present.
// It is safe to call while the provider serves requests.
func (l *Local) AddKey(k Key) error {
	p := k.Principal
	if p.KeyID == "" {
		p.KeyID = p.AccountID
	}
	if msg := checkKey(k.Digest, p, k.Budget); msg != "" {
		return fmt.Errorf("entitlements: key of account %q: %s", p.AccountID, msg)
	}
	b := k.Budget
	if b.HardCap != nil {
		b.HardCap = Cap(*b.HardCap) // do not share the caller's pointer
	}
	id := [2]string{p.AccountID, p.KeyID}

	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.keys[k.Digest]; dup {
		return ErrDuplicateKey
	}
	a := l.accounts[p.AccountID]
	if a != nil {
		if a.unit != p.Unit {
			return fmt.Errorf("entitlements: key of account %q: unit %s differs from the account's %s", p.AccountID, p.Unit, a.unit)
		}
		if !sameBudget(a.budget, b) {
			return fmt.Errorf("entitlements: key of account %q: budget differs from the account's", p.AccountID)
		}
	}
	if prev, ok := l.keyIDs[id]; ok && prev != p {
		return fmt.Errorf("entitlements: key of account %q: limits differ from key id %q's", p.AccountID, p.KeyID)
	}
	if a == nil {
		a = &account{unit: p.Unit, budget: b, window: b.Window, win: math.MinInt64}
		if b.HardCap != nil {
			a.capped, a.cap = true, *b.HardCap
		}
		l.accounts[p.AccountID] = a
	}
	l.keyIDs[id] = p
	l.keys[k.Digest] = p
	return nil
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
	p, ok := l.keys[d]
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

// Settle implements Provider. A settle that lands after a rolling window
// rolled over counts in the new window; see the package documentation.
func (l *Local) Settle(ctx context.Context, r Reservation, actual Amount) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	lr, err := l.own(r)
	if err != nil {
		return err
	}
	if actual < 0 {
		return fmt.Errorf("%w: settle %d", ErrInvalidAmount, actual)
	}
	return l.finish(lr, actual, true)
}

// Release implements Provider.
func (l *Local) Release(ctx context.Context, r Reservation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	lr, err := l.own(r)
	if err != nil {
		return err
	}
	return l.finish(lr, 0, false)
}

// own returns r as one of l's handles.
func (l *Local) own(r Reservation) (*localReservation, error) {
	lr, ok := r.(*localReservation)
	if !ok || lr == nil || lr.owner != l {
		return nil, ErrUnknownReservation
	}
	return lr, nil
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
	if settle {
		if actual > math.MaxInt64-a.spent {
			a.spent = math.MaxInt64
		} else {
			a.spent += actual
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
	now := l.clock(a)
	s := BudgetSnapshot{Window: a.window}
	if a.capped {
		s.HardCap = Cap(a.cap)
	}
	a.mu.Lock()
	a.roll(now)
	s.Spent, s.Reserved = a.spent, a.reserved
	win := a.win
	a.mu.Unlock()
	if a.window.Kind == WindowRolling {
		s.ResetsAt = time.Unix((win+1)*a.window.Seconds, 0).UTC()
	}
	return s, nil
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
