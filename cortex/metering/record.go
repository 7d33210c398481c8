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

// Record is what one finished request used and cost. The gateway fills it
// and hands it to Meter.Record by value; a meter may keep it.
//
// Its JSON form (MarshalJSON) is one object with these fields, in this
// order: time, request_id (omitted when empty), account_id, key_id, model,
// neuron, route, stream, prompt_tokens, completion_tokens, cached_tokens,
// reserved, settled, unit, duration_ms, ttft_ms, status, outcome,
// usage_source.
type Record struct {
	// Time is when the request finished. FileSink stamps a zero Time with
	// its clock when Record is called.
	Time time.Time
	// RequestID correlates the record with logs; optional.
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
	// PromptTokens, CompletionTokens and CachedTokens are the usage counts;
	// cached tokens are the part of the prompt served from a cache.
	PromptTokens, CompletionTokens, CachedTokens int64
	// Reserved is what was held before routing and Settled what was
	// charged, both in Unit.
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
// error. Outcome and usage source are taken as written, so a reader accepts
// values added by later versions.
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
	}
	return nil
}
