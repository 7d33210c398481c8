package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// Store stands for the embedder's own database of customers: API keys and
// account balances, behind one mutex as a database would be behind its
// transactions. Replace it with your tables; the Provider below is what
// adapts it to helexa.
type Store struct {
	now func() time.Time

	mu       sync.Mutex
	keys     map[[sha256.Size]byte]entitlements.Principal
	accounts map[string]*Account
}

// Account is one row of the accounts table.
type Account struct {
	Budget   entitlements.Budget
	Window   int64 // index of the current rolling window
	Spent    entitlements.Amount
	Reserved entitlements.Amount
}

// NewStore returns an empty store reading time from now.
func NewStore(now func() time.Time) *Store {
	return &Store{now: now, keys: map[[sha256.Size]byte]entitlements.Principal{}, accounts: map[string]*Account{}}
}

// AddKey stores an API key of an account; the account's first key sets its
// budget. Only the key's digest is kept.
func (s *Store) AddKey(secret string, p entitlements.Principal, b entitlements.Budget) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[entitlements.KeyDigest(secret)] = p
	if s.accounts[p.AccountID] == nil {
		s.accounts[p.AccountID] = &Account{Budget: b, Window: math.MinInt64}
	}
}

// Provider is an entitlements.Provider over a Store: what a gateway needs
// to resolve keys and hold each account to its budget (reserve before a
// request, settle the reservation after). It has the whole budget model
// and passes entitlementstest.Run with entitlementstest.Budgets. It is no
// entitlements.Limiter: the gateway counts its keys' limits itself.
type Provider struct{ store *Store }

var _ entitlements.Provider = (*Provider)(nil)

// reservation is the handle of an amount held by Reserve.
type reservation struct {
	store  *Store
	p      entitlements.Principal
	amount entitlements.Amount
	done   bool // guarded by the store's mutex
}

// Principal implements entitlements.Reservation.
func (r *reservation) Principal() entitlements.Principal { return r.p }

// Amount implements entitlements.Reservation.
func (r *reservation) Amount() entitlements.Amount { return r.amount }

// Resolve implements entitlements.Provider.
func (pr *Provider) Resolve(ctx context.Context, apiKey string) (entitlements.Principal, error) {
	if err := ctx.Err(); err != nil {
		return entitlements.Principal{}, err
	}
	s := pr.store
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.keys[entitlements.KeyDigest(apiKey)]
	if !ok || apiKey == "" {
		return entitlements.Principal{}, entitlements.ErrInvalidKey
	}
	return p, nil
}

// account returns p's account with its rolling window moved to now. The
// store's mutex must be held.
func (s *Store) account(p entitlements.Principal) (*Account, time.Time, error) {
	a := s.accounts[p.AccountID]
	if a == nil || p.IsAnonymous() {
		return nil, time.Time{}, entitlements.ErrInvalidKey
	}
	now := s.now()
	if w := a.Budget.Window; w.Kind == entitlements.WindowRolling {
		if idx := floorDiv(now.Unix(), w.Seconds); idx > a.Window {
			a.Window, a.Spent = idx, 0
		}
	}
	return a, now, nil
}

// Reserve implements entitlements.Provider.
func (pr *Provider) Reserve(ctx context.Context, p entitlements.Principal, amount entitlements.Amount) (entitlements.Reservation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if amount < 0 {
		return nil, fmt.Errorf("%w: reserve %d", entitlements.ErrInvalidAmount, amount)
	}
	s := pr.store
	s.mu.Lock()
	defer s.mu.Unlock()
	a, now, err := s.account(p)
	if err != nil {
		return nil, err
	}
	if hc := a.Budget.HardCap; hc != nil {
		if avail := *hc - a.Spent - a.Reserved; amount > avail {
			e := &entitlements.BudgetError{Kind: entitlements.InsufficientQuota, Requested: amount, Available: max(avail, 0)}
			if w := a.Budget.Window; w.Kind == entitlements.WindowRolling {
				end := time.Unix((a.Window+1)*w.Seconds, 0)
				e.Kind, e.RetryAfter = entitlements.RateLimited, min(max(end.Sub(now), time.Second), w.Length())
			}
			return nil, e
		}
	}
	a.Reserved += amount
	return &reservation{store: s, p: p, amount: amount}, nil
}

// Settle implements entitlements.Reservation.
func (r *reservation) Settle(ctx context.Context, actual entitlements.Amount) error {
	return r.finish(ctx, actual, true)
}

// Release implements entitlements.Reservation.
func (r *reservation) Release(ctx context.Context) error {
	return r.finish(ctx, 0, false)
}

func (r *reservation) finish(ctx context.Context, actual entitlements.Amount, spend bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if actual < 0 {
		return fmt.Errorf("%w: settle %d", entitlements.ErrInvalidAmount, actual)
	}
	s := r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.done {
		return entitlements.ErrReservationSettled
	}
	a, _, err := s.account(r.p)
	if err != nil {
		return err
	}
	r.done = true
	a.Reserved -= r.amount
	if spend {
		a.Spent += actual
	}
	return nil
}

// Snapshot implements entitlements.Provider.
func (pr *Provider) Snapshot(ctx context.Context, p entitlements.Principal) (entitlements.BudgetSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return entitlements.BudgetSnapshot{}, err
	}
	s := pr.store
	s.mu.Lock()
	defer s.mu.Unlock()
	a, _, err := s.account(p)
	if err != nil {
		return entitlements.BudgetSnapshot{}, err
	}
	snap := entitlements.BudgetSnapshot{Spent: a.Spent, Reserved: a.Reserved, Window: a.Budget.Window}
	if hc := a.Budget.HardCap; hc != nil {
		snap.HardCap = entitlements.Cap(*hc)
	}
	if w := a.Budget.Window; w.Kind == entitlements.WindowRolling {
		snap.ResetsAt = time.Unix((a.Window+1)*w.Seconds, 0).UTC()
	}
	return snap, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
