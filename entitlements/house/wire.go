package house

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// This file holds the protocol's wire types and its error codec: the one
// place both the Handler and the Client take them from. PROTOCOL.md
// documents them with examples.

// Version is the protocol version this package speaks: the N of the
// "/vN/" prefix of every call's path.
const Version = 1

// The calls, by path below the version prefix.
const (
	opResolve  = "resolve"
	opReserve  = "reserve"
	opSettle   = "settle"
	opRelease  = "release"
	opRenew    = "renew"
	opSnapshot = "snapshot"
)

// DefaultMaxBody is the largest request body a Handler reads (64 KiB);
// WithMaxBody changes it.
const DefaultMaxBody = 64 << 10

// principalJSON is an entitlements.Principal on the wire.
type principalJSON struct {
	AccountID      string `json:"account_id"`
	KeyID          string `json:"key_id,omitempty"`
	Unit           string `json:"unit,omitempty"`
	ClampMaxTokens bool   `json:"clamp_max_tokens,omitempty"`
	MaxInFlight    int    `json:"max_in_flight,omitempty"`
	RPM            int    `json:"rpm,omitempty"`
	// Models is the key's model allow-list; absent: every model.
	Models []string `json:"models,omitempty"`
}

func principalToWire(p entitlements.Principal) principalJSON {
	return principalJSON{
		AccountID: p.AccountID, KeyID: p.KeyID, Unit: p.Unit.String(),
		ClampMaxTokens: p.Limits.ClampMaxTokens, MaxInFlight: p.Limits.MaxInFlight, RPM: p.Limits.RPM,
		Models: p.Limits.Models.Patterns(),
	}
}

func (w principalJSON) principal() (entitlements.Principal, error) {
	u, err := parseUnit(w.Unit)
	if err != nil {
		return entitlements.Principal{}, err
	}
	if w.AccountID == "" {
		return entitlements.Principal{}, errors.New("principal.account_id is required")
	}
	var models entitlements.ModelAllowList
	if len(w.Models) > 0 {
		if models, err = entitlements.NewModelAllowList(w.Models...); err != nil {
			return entitlements.Principal{}, fmt.Errorf("principal.models: %w", err)
		}
	}
	return entitlements.Principal{
		AccountID: w.AccountID, KeyID: w.KeyID, Unit: u,
		Limits: entitlements.Limits{ClampMaxTokens: w.ClampMaxTokens, MaxInFlight: w.MaxInFlight, RPM: w.RPM, Models: models},
	}, nil
}

func parseUnit(s string) (entitlements.Unit, error) {
	switch s {
	case "", "tokens":
		return entitlements.UnitTokens, nil
	case "usd":
		return entitlements.UnitMicroUSD, nil
	}
	return 0, fmt.Errorf("unknown unit %q", s)
}

// windowJSON is an entitlements.CapWindow on the wire.
type windowJSON struct {
	Kind    string `json:"kind"`
	Seconds int64  `json:"seconds,omitempty"`
}

// snapshotJSON is an entitlements.BudgetSnapshot on the wire.
type snapshotJSON struct {
	HardCap  *int64     `json:"hard_cap,omitempty"`
	Spent    int64      `json:"spent"`
	Reserved int64      `json:"reserved"`
	Window   windowJSON `json:"window"`
	ResetsAt *time.Time `json:"resets_at,omitempty"`
}

func snapshotToWire(s entitlements.BudgetSnapshot) *snapshotJSON {
	w := &snapshotJSON{
		HardCap: (*int64)(s.HardCap), Spent: int64(s.Spent), Reserved: int64(s.Reserved),
		Window: windowJSON{Kind: s.Window.Kind.String(), Seconds: s.Window.Seconds},
	}
	if !s.ResetsAt.IsZero() {
		t := s.ResetsAt.UTC()
		w.ResetsAt = &t
	}
	return w
}

func (w *snapshotJSON) snapshot() (entitlements.BudgetSnapshot, error) {
	s := entitlements.BudgetSnapshot{HardCap: (*entitlements.Amount)(w.HardCap), Spent: entitlements.Amount(w.Spent), Reserved: entitlements.Amount(w.Reserved)}
	switch w.Window.Kind {
	case "balance", "":
		s.Window = entitlements.Balance()
	case "rolling":
		s.Window = entitlements.Rolling(w.Window.Seconds)
	default:
		return s, fmt.Errorf("unknown window kind %q", w.Window.Kind)
	}
	if w.ResetsAt != nil {
		s.ResetsAt = *w.ResetsAt
	}
	return s, nil
}

// Requests and answers, one pair per call. Every call that changes state
// carries an IdempotencyID.

type resolveRequest struct {
	KeySHA256 string `json:"key_sha256"`
}

type resolveResponse struct {
	Principal principalJSON `json:"principal"`
}

type reserveRequest struct {
	IdempotencyID string        `json:"idempotency_id"`
	Principal     principalJSON `json:"principal"`
	Amount        int64         `json:"amount"`
}

type reserveResponse struct {
	ReservationID string        `json:"reservation_id"`
	LeaseTTLMS    int64         `json:"lease_ttl_ms"`
	Budget        *snapshotJSON `json:"budget,omitempty"`
}

// finishRequest is the body of settle, release and renew.
type finishRequest struct {
	IdempotencyID string        `json:"idempotency_id"`
	ReservationID string        `json:"reservation_id"`
	Principal     principalJSON `json:"principal"`
	// Actual is the spend of a settle; absent for release and renew.
	Actual *int64 `json:"actual,omitempty"`
	// TTLMS is the TTL of a renew in milliseconds; 0 for the house's.
	TTLMS int64 `json:"ttl_ms,omitempty"`
}

type okResponse struct {
	OK bool `json:"ok"`
}

type snapshotRequest struct {
	Principal principalJSON `json:"principal"`
}

type snapshotResponse struct {
	Budget snapshotJSON `json:"budget"`
}

// Error codes of the protocol. The first group maps one to one onto
// entitlements' errors; the second is the protocol's own.
const (
	CodeInvalidKey          = "invalid_key"          // entitlements.ErrInvalidKey
	CodeBudgetExceeded      = "budget_exceeded"      // *entitlements.BudgetError
	CodeLimitExceeded       = "limit_exceeded"       // *entitlements.LimitError
	CodeReservationSettled  = "reservation_settled"  // entitlements.ErrReservationSettled
	CodeUnknownReservation  = "unknown_reservation"  // entitlements.ErrUnknownReservation
	CodeInvalidAmount       = "invalid_amount"       // entitlements.ErrInvalidAmount
	CodeUnavailable         = "unavailable"          // *entitlements.UnavailableError
	CodeLeaseExpired        = "lease_expired"        // ErrLeaseExpired
	CodeUnauthenticated     = "unauthenticated"      // 401: no or a wrong gateway credential
	CodeForbidden           = "forbidden"            // 403: an account the gateway may not spend
	CodeBadRequest          = "bad_request"          // 400: malformed JSON or a missing field
	CodeUnsupportedVersion  = "unsupported_version"  // 400: a /vN/ this house does not speak
	CodeTooLarge            = "too_large"            // 413: body over the house's limit
	CodeNotFound            = "not_found"            // 404: no such call
	CodeMethodNotAllowed    = "method_not_allowed"   // 405: not a POST
	CodeIdempotencyConflict = "idempotency_conflict" // 409: an idempotency id reused with another body
	CodeInternal            = "internal"             // 500
)

// ErrLeaseExpired is Renew's answer for a reservation whose lease the
// house already gave back: its amount is back in the budget, and a Settle
// still records the spend.
var ErrLeaseExpired = errors.New("house: the reservation's lease had expired; a Settle still records its spend")

// errorJSON is the body of every answer that is not a 200.
type errorJSON struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Kind, Requested, Available and RetryAfterMS carry a BudgetError
	// (Kind "rate_limited" or "insufficient_quota"); Limit, Max and
	// RetryAfterMS a LimitError; RetryAfterMS an UnavailableError's hint.
	Kind         string `json:"kind,omitempty"`
	Requested    int64  `json:"requested,omitempty"`
	Available    int64  `json:"available,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	Limit        string `json:"limit,omitempty"`
	Max          int    `json:"max,omitempty"`
}

// Error is an answer of the house that is no entitlements error: the
// protocol's own refusals (CodeUnauthenticated, CodeForbidden,
// CodeBadRequest, ...), with the HTTP status they came with. The Client
// returns CodeForbidden wrapped with entitlements.ErrInvalidKey (the
// gateway may not spend the account: to it, the key is not valid), and
// the others wrapped in an *entitlements.UnavailableError (a gateway
// misconfigured or speaking another version cannot serve; it fails
// closed).
type Error struct {
	// Status is the HTTP status of the answer.
	Status int
	// Code is one of the Code constants, or what the house sent.
	Code string
	// Message is the house's explanation.
	Message string
}

// Error implements error.
func (e *Error) Error() string {
	return "house: " + e.Code + " (HTTP " + strconv.Itoa(e.Status) + "): " + e.Message
}

// encodeError maps err to the answer's status and body: the one place
// where errors become statuses and codes on the house's side.
func encodeError(err error) (int, errorBody) {
	b := errorBody{Message: err.Error()}
	var (
		budget  *entitlements.BudgetError
		limit   *entitlements.LimitError
		unavail *entitlements.UnavailableError
		herr    *Error
	)
	switch {
	case errors.As(err, &herr):
		b.Code, b.Message = herr.Code, herr.Message
		return herr.Status, b
	case errors.As(err, &budget):
		b.Code, b.Kind, b.Requested, b.Available = CodeBudgetExceeded, budget.Kind.String(), int64(budget.Requested), int64(budget.Available)
		b.RetryAfterMS = budget.RetryAfter.Milliseconds()
		return http.StatusTooManyRequests, b
	case errors.As(err, &limit):
		b.Code, b.Limit, b.Max, b.RetryAfterMS = CodeLimitExceeded, limit.Limit, limit.Max, limit.RetryAfter.Milliseconds()
		return http.StatusTooManyRequests, b
	case errors.Is(err, entitlements.ErrInvalidKey):
		b.Code = CodeInvalidKey
	case errors.Is(err, entitlements.ErrReservationSettled):
		b.Code = CodeReservationSettled
	case errors.Is(err, entitlements.ErrUnknownReservation):
		b.Code = CodeUnknownReservation
	case errors.Is(err, entitlements.ErrInvalidAmount):
		b.Code = CodeInvalidAmount
	case errors.Is(err, ErrLeaseExpired):
		b.Code = CodeLeaseExpired
	case errors.As(err, &unavail):
		b.Code, b.RetryAfterMS = CodeUnavailable, unavail.RetryAfter.Milliseconds()
		return http.StatusServiceUnavailable, b
	default:
		b.Code = CodeInternal
		return http.StatusInternalServerError, b
	}
	return http.StatusUnprocessableEntity, b
}

// decodeError turns an answer that is not a 200 back into the error the
// house's provider returned: the inverse of encodeError.
func decodeError(status int, body []byte) error {
	var e errorJSON
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
		herr := &Error{Status: status, Code: CodeInternal, Message: "an answer without a protocol error body"}
		if status >= 500 {
			return &entitlements.UnavailableError{RetryAfter: time.Second, Err: herr}
		}
		return &entitlements.UnavailableError{Err: herr}
	}
	b := e.Error
	retry := time.Duration(b.RetryAfterMS) * time.Millisecond
	switch b.Code {
	case CodeBudgetExceeded:
		kind := entitlements.InsufficientQuota
		if b.Kind == entitlements.RateLimited.String() {
			kind = entitlements.RateLimited
		}
		return &entitlements.BudgetError{Kind: kind, Requested: entitlements.Amount(b.Requested), Available: entitlements.Amount(b.Available), RetryAfter: retry}
	case CodeLimitExceeded:
		return &entitlements.LimitError{Limit: b.Limit, Max: b.Max, RetryAfter: retry}
	case CodeInvalidKey:
		return entitlements.ErrInvalidKey
	case CodeReservationSettled:
		return entitlements.ErrReservationSettled
	case CodeUnknownReservation:
		return entitlements.ErrUnknownReservation
	case CodeInvalidAmount:
		return fmt.Errorf("%w: %s", entitlements.ErrInvalidAmount, b.Message)
	case CodeLeaseExpired:
		return ErrLeaseExpired
	case CodeUnavailable:
		return &entitlements.UnavailableError{RetryAfter: max(retry, time.Second), Err: errors.New(b.Message)}
	}
	herr := &Error{Status: status, Code: b.Code, Message: b.Message}
	if b.Code == CodeForbidden {
		return fmt.Errorf("%w: %w", entitlements.ErrInvalidKey, herr)
	}
	retry = 0
	if status >= 500 {
		retry = time.Second
	}
	return &entitlements.UnavailableError{RetryAfter: retry, Err: herr}
}
