package metering

import (
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// Outcome is how a request ended, a small closed set of strings that is
// stable in the file format.
type Outcome string

// Outcomes.
const (
	// OutcomeOK: the engine's answer reached the client in full (whatever
	// its HTTP status: a neuron's own 4xx passes through as "ok").
	OutcomeOK Outcome = "ok"
	// OutcomeUpstreamError: the neuron could not be reached or failed
	// before or while answering (HTTP 502/503 to the client).
	OutcomeUpstreamError Outcome = "upstream_error"
	// OutcomeClientGone: the client disconnected before the answer ended.
	OutcomeClientGone Outcome = "client_gone"
	// OutcomeNeuronCrash: the neuron or its engine died mid-answer.
	OutcomeNeuronCrash Outcome = "neuron_crash"
	// OutcomeRejected: the gateway refused the request before routing it
	// (authentication, budget, validation, rate limits).
	OutcomeRejected Outcome = "rejected"
	// OutcomeTimeout: a gateway deadline ended the request.
	OutcomeTimeout Outcome = "timeout"
	// OutcomePanic: the gateway recovered a panic while serving it.
	OutcomePanic Outcome = "panic"
	// OutcomeInterrupted: the gateway stopped (a crash, a kill) while
	// serving it; the next gateway on the settle outbox settled its whole
	// reservation, since what it served is unknown.
	OutcomeInterrupted Outcome = "interrupted"
)

// UsageSource says where a record's token counts came from.
type UsageSource string

// Usage sources.
const (
	// UsageEngine: the engine reported usage.
	UsageEngine UsageSource = "engine"
	// UsageEstimated: the engine never reported usage, so the gateway
	// counted what it observed (prompt estimate plus tokens streamed).
	UsageEstimated UsageSource = "estimated"
)

// SettleState says what the ledger had recorded of a request's
// reservation when its record was written: a closed set of strings, stable
// in the file format.
type SettleState string

// Settle states. A record without a reservation (an anonymous caller, a
// request refused before reserving, a gateway without a Provider) has
// none: the empty SettleState, left out of the JSON form.
const (
	// SettleSettled: Settle landed; Settled is what the ledger recorded
	// as spent.
	SettleSettled SettleState = "settled"
	// SettleReleased: Release landed (nothing was served); nothing spent.
	SettleReleased SettleState = "released"
	// SettlePending: the ledger could not be reached when the request
	// ended, so nothing is recorded yet (Settled is 0) and the gateway
	// retries in the background. One follow-up record (Kind "settle",
	// the same SettleID) tells how it ended.
	SettlePending SettleState = "pending"
	// SettleFailed: the ledger recorded nothing and the gateway gave up:
	// the provider refused the reservation for good, or the retries ran
	// out of time. Settled is 0; the gateway logs the amount.
	SettleFailed SettleState = "failed"
)

// Kind is what a record is about.
type Kind string

// Record kinds.
const (
	// KindRequest: a finished request, one per request (the empty Kind,
	// left out of the JSON form).
	KindRequest Kind = ""
	// KindSettle: how a settle that was pending when its request's record
	// was written ended: SettleState is settled, released or failed, and
	// Settled what the ledger recorded. It names the request as its
	// record did (account, key, model, neuron, route, reserved, status,
	// outcome, SettleID) and carries no token counts, durations or usage
	// source, so that sums over all records count every token once and
	// every spend once.
	KindSettle Kind = "settle"
)

// Record is what one finished request used and cost. The gateway fills it
// and hands it to Meter.Record by value; a meter may keep it.
//
// Its JSON form (MarshalJSON) is one object with these fields, in this
// order: time, request_id (omitted when empty), account_id, key_id, model,
// neuron, route, stream, prompt_tokens, completion_tokens, cached_tokens,
// reserved, settled, unit, duration_ms, ttft_ms, status, outcome,
// usage_source, settle_state, kind and settle_id (the last three omitted
// when empty).
//
// The sum of Settled over every record of an account (its request records
// and its settle records) is what the ledger recorded as its spend.
type Record struct {
	// Time is when the request finished. FileSink stamps a zero Time with
	// its clock when Record is called.
	Time time.Time
	// RequestID correlates the record with the request, its logs and the
	// neuron's: the gateway sets the client's X-Request-Id header (which it
	// also forwards to the neuron), cut to 128 bytes; empty when the
	// request had none.
	RequestID string
	// AccountID is the account that pays; empty for an anonymous caller.
	AccountID string
	// KeyID is the operator's name for the API key used (never the key).
	KeyID string
	// Model is the model id served, after alias resolution.
	Model string
	// Neuron names the neuron that served the request; empty when none did.
	Neuron string
	// Route is the API called, for example "chat.completions",
	// "completions", "embeddings", "responses" or "messages".
	Route string
	// Stream reports whether the answer was streamed.
	Stream bool
	// PromptTokens, CompletionTokens and CachedTokens are the usage counts.
	// CachedTokens are the part of PromptTokens the engine read from its
	// prompt (KV) cache, as its usage reported them (clamped to
	// PromptTokens); 0 when the engine reported none or the usage was
	// estimated. They are what a "usd" key was charged at the model's
	// cache_read price.
	PromptTokens, CompletionTokens, CachedTokens int64
	// Reserved is what was held before routing and Settled what the
	// ledger recorded as spent with this record (see SettleState), both
	// in Unit.
	Reserved, Settled entitlements.Amount
	// Unit is what Reserved and Settled count: tokens, or micro-dollars
	// ("usd" in JSON).
	Unit entitlements.Unit
	// Duration is the time from arrival to the end of the answer.
	Duration time.Duration
	// TTFT is the time from arrival to the first token sent to the client;
	// 0 when none was sent.
	TTFT time.Duration
	// Status is the HTTP status sent to the client.
	Status int
	// Outcome is how the request ended.
	Outcome Outcome
	// UsageSource says where the token counts came from.
	UsageSource UsageSource
	// SettleState says what the ledger had recorded of the request's
	// reservation; empty when there was none.
	SettleState SettleState
	// Kind is what the record is about: a request (empty) or a settle.
	Kind Kind
	// SettleID names a settle that was pending, in the request's record
	// and in the settle record that follows it; empty otherwise.
	SettleID string
}

// wireRecord is the JSON form of a Record; its field order is the file
// format's.
type wireRecord struct {
	Time             time.Time   `json:"time"`
	RequestID        string      `json:"request_id,omitempty"`
	AccountID        string      `json:"account_id"`
	KeyID            string      `json:"key_id"`
	Model            string      `json:"model"`
	Neuron           string      `json:"neuron"`
	Route            string      `json:"route"`
	Stream           bool        `json:"stream"`
	PromptTokens     int64       `json:"prompt_tokens"`
	CompletionTokens int64       `json:"completion_tokens"`
	CachedTokens     int64       `json:"cached_tokens"`
	Reserved         int64       `json:"reserved"`
	Settled          int64       `json:"settled"`
	Unit             string      `json:"unit"`
	DurationMS       float64     `json:"duration_ms"`
	TTFTMS           float64     `json:"ttft_ms"`
	Status           int         `json:"status"`
	Outcome          Outcome     `json:"outcome"`
	UsageSource      UsageSource `json:"usage_source"`
	SettleState      SettleState `json:"settle_state,omitempty"`
	Kind             Kind        `json:"kind,omitempty"`
	SettleID         string      `json:"settle_id,omitempty"`
}

func (r *Record) wire() wireRecord {
	return wireRecord{
		Time:             r.Time.UTC(),
		RequestID:        r.RequestID,
		AccountID:        r.AccountID,
		KeyID:            r.KeyID,
		Model:            r.Model,
		Neuron:           r.Neuron,
		Route:            r.Route,
		Stream:           r.Stream,
		PromptTokens:     r.PromptTokens,
		CompletionTokens: r.CompletionTokens,
		CachedTokens:     r.CachedTokens,
		Reserved:         int64(r.Reserved),
		Settled:          int64(r.Settled),
		Unit:             r.Unit.String(),
		DurationMS:       millis(r.Duration),
		TTFTMS:           millis(r.TTFT),
		Status:           r.Status,
		Outcome:          r.Outcome,
		UsageSource:      r.UsageSource,
		SettleState:      r.SettleState,
		Kind:             r.Kind,
		SettleID:         r.SettleID,
	}
}

// millis returns d in milliseconds, rounded to the microsecond.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// fromMillis is the inverse of millis; it saturates instead of overflowing.
func fromMillis(ms float64) time.Duration {
	us := math.Round(ms * 1000)
	switch {
	case math.IsNaN(us):
		return 0
	case us >= math.MaxInt64/float64(time.Microsecond):
		return math.MaxInt64
	case us <= math.MinInt64/float64(time.Microsecond):
		return math.MinInt64
	}
	return time.Duration(us) * time.Microsecond
}

// errUnknownUnit is returned by UnmarshalJSON for a unit other than
// "tokens" or "usd".
var errUnknownUnit = errors.New(`metering: unknown unit (want "tokens" or "usd")`)

// MarshalJSON returns the record in the file format: see Record.
func (r Record) MarshalJSON() ([]byte, error) {
	return json.Marshal(r.wire())
}

// UnmarshalJSON parses a record in the file format. Durations are read to
// the microsecond; an empty unit reads as tokens and an unknown one is an
// error. Outcome, usage source, settle state and kind are taken as
// written, so a reader accepts values added by later versions.
func (r *Record) UnmarshalJSON(b []byte) error {
	var w wireRecord
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	var unit entitlements.Unit
	switch w.Unit {
	case "", entitlements.UnitTokens.String():
		unit = entitlements.UnitTokens
	case entitlements.UnitMicroUSD.String():
		unit = entitlements.UnitMicroUSD
	default:
		return errUnknownUnit
	}
	*r = Record{
		Time:             w.Time,
		RequestID:        w.RequestID,
		AccountID:        w.AccountID,
		KeyID:            w.KeyID,
		Model:            w.Model,
		Neuron:           w.Neuron,
		Route:            w.Route,
		Stream:           w.Stream,
		PromptTokens:     w.PromptTokens,
		CompletionTokens: w.CompletionTokens,
		CachedTokens:     w.CachedTokens,
		Reserved:         entitlements.Amount(w.Reserved),
		Settled:          entitlements.Amount(w.Settled),
		Unit:             unit,
		Duration:         fromMillis(w.DurationMS),
		TTFT:             fromMillis(w.TTFTMS),
		Status:           w.Status,
		Outcome:          w.Outcome,
		UsageSource:      w.UsageSource,
		SettleState:      w.SettleState,
		Kind:             w.Kind,
		SettleID:         w.SettleID,
	}
	return nil
}
