package entitlements

import (
	"context"
	"crypto/sha256"
	"math"
	"strconv"
	"time"
)

// Provider is the budget ledger the gateway calls on every request: Resolve
// the key, Reserve the worst case before routing; the Reservation it
// returns is then settled (or released) on itself. It is what every ledger
// must have; what only some ledgers have is an optional capability the
// gateway finds by type assertion (see the package documentation).
//
// Concurrency: every method is safe for concurrent use by many goroutines,
// and no call waits for another request to finish: a provider serialises only
// the short budget arithmetic of one account. Methods return ctx.Err() without
// changing anything when ctx is already done; a provider that does I/O must
// also stop waiting when ctx ends.
type Provider interface {
	// Resolve returns the principal that owns apiKey. ErrInvalidKey when the
	// key is unknown; *UnavailableError when the provider cannot answer now.
	Resolve(ctx context.Context, apiKey string) (Principal, error)
	// Reserve holds amount (>= 0, in p.Unit) against p's account. It returns
	// a *BudgetError, holding nothing, when spent + reserved + amount would
	// exceed the hard cap; ErrInvalidKey when the provider does not know p's
	// account; ErrInvalidAmount when amount is negative.
	Reserve(ctx context.Context, p Principal, amount Amount) (Reservation, error)
	// Snapshot returns the current state of p's account budget.
	// ErrInvalidKey when the provider does not know p's account.
	Snapshot(ctx context.Context, p Principal) (BudgetSnapshot, error)
}

// Amount is a quantity in a principal's Unit: tokens, or micro-dollars.
type Amount int64

// Unit is what an account's amounts count. The zero value is UnitTokens.
type Unit uint8

// Units.
const (
	// UnitTokens counts tokens (prompt plus completion). The default.
	UnitTokens Unit = iota
	// UnitMicroUSD counts integer micro-dollars (1 USD = 1,000,000). Its
	// configuration name is "usd".
	UnitMicroUSD
)

// String returns the configuration name of u: "tokens" or "usd".
func (u Unit) String() string {
	switch u {
	case UnitTokens:
		return "tokens"
	case UnitMicroUSD:
		return "usd"
	default:
		return "Unit(" + strconv.Itoa(int(u)) + ")"
	}
}

func (u Unit) valid() bool { return u == UnitTokens || u == UnitMicroUSD }

// Limits is the per-key policy the gateway enforces itself; the provider only
// carries it. Zero values mean no limit.
type Limits struct {
	// ClampMaxTokens lowers a request's max_tokens to what the budget has
	// left instead of refusing the request. Default false.
	ClampMaxTokens bool
	// MaxInFlight caps the key's concurrent requests (0: no limit).
	MaxInFlight int
	// RPM caps the key's requests per minute (0: no limit).
	RPM int
	// Models are the models the key may use; the zero value allows every
	// model. The gateway answers any other with 403 model_not_allowed and
	// leaves it out of GET /v1/models.
	Models ModelAllowList
}

// Principal is who is calling and the policy of their key. It holds scalars
// only, so it is comparable and usable as a map key.
type Principal struct {
	// AccountID names the account whose budget the key spends. Empty only
	// for the anonymous principal.
	AccountID string
	// KeyID names the key for logs, metrics and per-key limits; it never
	// contains the secret.
	KeyID string
	// Unit is what the account's amounts count.
	Unit Unit
	// Limits is the key's policy, enforced by the gateway.
	Limits Limits
}

// Anonymous returns the principal of a caller without a valid key when the
// gateway runs with require_auth = false: the zero Principal, which has an
// empty AccountID, counts tokens and has no limits. Providers never return
// it from Resolve and hold no budget for it; the gateway does not reserve for
// it (Reserve returns ErrInvalidKey).
func Anonymous() Principal { return Principal{} }

// IsAnonymous reports whether p is the anonymous principal (empty AccountID).
func (p Principal) IsAnonymous() bool { return p.AccountID == "" }

// WindowKind says how a cap is counted over time.
type WindowKind uint8

// Window kinds.
const (
	// WindowBalance never resets: the cap is a balance. The default.
	WindowBalance WindowKind = iota
	// WindowRolling counts spend in fixed, epoch-aligned windows of
	// CapWindow.Seconds.
	WindowRolling
)

// String returns the configuration name of k: "balance" or "rolling".
func (k WindowKind) String() string {
	switch k {
	case WindowBalance:
		return "balance"
	case WindowRolling:
		return "rolling"
	default:
		return "WindowKind(" + strconv.Itoa(int(k)) + ")"
	}
}

// CapWindow is the period a hard cap is counted over. The zero value is a
// balance. Build one with Balance or Rolling.
type CapWindow struct {
	Kind WindowKind
	// Seconds is the window length of a rolling window; 0 for a balance.
	Seconds int64
}

// Balance returns the window of a cap that never resets.
func Balance() CapWindow { return CapWindow{Kind: WindowBalance} }

// Rolling returns a window of the given length in seconds (> 0). See the
// package documentation for where windows start.
func Rolling(seconds int64) CapWindow { return CapWindow{Kind: WindowRolling, Seconds: seconds} }

// Length returns the length of a rolling window, or 0 for a balance.
func (w CapWindow) Length() time.Duration {
	if w.Kind != WindowRolling {
		return 0
	}
	return time.Duration(w.Seconds) * time.Second
}

// String returns "balance" or "rolling(Ns)".
func (w CapWindow) String() string {
	if w.Kind == WindowRolling {
		return "rolling(" + strconv.FormatInt(w.Seconds, 10) + "s)"
	}
	return w.Kind.String()
}

func (w CapWindow) validate() string {
	switch w.Kind {
	case WindowBalance:
		if w.Seconds != 0 {
			return "a balance window takes no seconds"
		}
	case WindowRolling:
		if w.Seconds <= 0 {
			return "a rolling window needs seconds > 0"
		}
		if w.Seconds > math.MaxInt64/int64(time.Second) {
			return "rolling window seconds too large"
		}
	default:
		return "unknown window kind " + w.Kind.String()
	}
	return ""
}

// Budget is an account's spending policy.
type Budget struct {
	// HardCap is the most the account may spend per window, in its unit;
	// nil means uncapped (reservations always succeed, spend is still
	// metered).
	HardCap *Amount
	// Window is what HardCap is counted over. Default: balance.
	Window CapWindow
}

// Cap returns a pointer to a, for building a Budget or a KeySpec.
func Cap(a Amount) *Amount { return &a }

// BudgetSnapshot is the state of an account's budget at one instant.
type BudgetSnapshot struct {
	// HardCap is the cap per window; nil when uncapped.
	HardCap *Amount
	// Spent is what settled requests cost in the current window (for ever,
	// for a balance). It can exceed HardCap after an overspend.
	Spent Amount
	// Reserved is what in-flight reservations hold.
	Reserved Amount
	// Window is what HardCap is counted over.
	Window CapWindow
	// ResetsAt is when the current rolling window ends; zero for a balance.
	ResetsAt time.Time
}

// Remaining returns what can still be reserved: HardCap - Spent - Reserved,
// never below 0. capped is false, and remaining 0, when there is no cap.
func (s BudgetSnapshot) Remaining() (remaining Amount, capped bool) {
	if s.HardCap == nil {
		return 0, false
	}
	r := *s.HardCap - s.Reserved
	if s.Spent > r {
		return 0, true
	}
	return r - s.Spent, true
}

// Reservation is an amount held by Reserve. It is consumed exactly once,
// by Settle or Release on itself, as a Slot is released on itself: the
// second call returns ErrReservationSettled and changes nothing.
//
// Concurrency: a Reservation is safe to pass between goroutines and its
// methods are safe for concurrent use; of a Settle and a Release racing,
// one wins. Settle and Release return ctx.Err() without changing anything
// when ctx is already done, and a provider that does I/O stops waiting
// when ctx ends (the reservation may then be consumed or not; retrying is
// safe, see Settle).
type Reservation interface {
	// Principal returns the principal the amount was reserved for.
	Principal() Principal
	// Amount returns the amount reserved.
	Amount() Amount
	// Settle consumes the reservation and records actual (>= 0) as spent,
	// even above the amount reserved. ErrReservationSettled when it was
	// already settled or released; ErrInvalidAmount, consuming nothing,
	// when actual is negative. After an *UnavailableError or a ctx error
	// the spend may or may not have landed: a retry that answers
	// ErrReservationSettled means it had.
	Settle(ctx context.Context, actual Amount) error
	// Release consumes the reservation without spending anything; it has
	// Settle's errors.
	Release(ctx context.Context) error
}

// Key is one API key in resolved form: the SHA-256 digest of the secret, the
// principal it resolves to and its account's budget. Config.APIKeys produces
// them from configuration; Local.AddKey accepts them.
type Key struct {
	// Digest is KeyDigest of the secret; the secret itself is never kept.
	Digest [sha256.Size]byte
	// Principal is what Resolve returns for the key.
	Principal Principal
	// Budget is the policy of the principal's account; every key of one
	// account must carry the same Budget and Unit.
	Budget Budget
}

// KeyDigest returns the SHA-256 digest under which a key's secret is stored
// and looked up.
func KeyDigest(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }
