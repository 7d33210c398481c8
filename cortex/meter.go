package cortex

import (
	"net/http"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/internal/httpx"
)

// meter hands the request's record to the gateway's Meter (WithMeter):
// one record per finished inference request that got past auth, anonymous
// callers included. Requests refused before (401, an unavailable budget
// authority, shutting down) are not metered: they name no one who could
// be billed.
func (c *exchange) meter(rec metering.Record) {
	defer c.renewal.recordDone() // a pending settle's record comes after this one
	if c.g.meter == nil || !c.authed {
		return
	}
	c.g.record(rec)
}

// record returns the meter record of the finished request.
//
// Reserved is what was held before routing and Settled what the ledger
// recorded as spent: what Settle was given when it landed (SettleState
// "settled"); 0 when the reservation was released, when the settle is
// still pending (a settle record follows, see metering.KindSettle) or
// failed, and when there was no reservation (anonymous callers and
// refused requests). The token counts are the engine's (UsageSource
// "engine") or the gateway's observation (prompt estimate plus content
// events streamed, "estimated"); both are 0, and UsageSource empty, when
// nothing was served.
func (c *exchange) record(end time.Time, u usage) metering.Record {
	r := c.settleRecord()
	r.Time = end
	r.PromptTokens, r.CompletionTokens, r.CachedTokens = u.Prompt, u.Completion, u.Cached
	r.Duration = end.Sub(c.start)
	r.SettleState, r.SettleID = c.renewal.settleState()
	if r.SettleState == metering.SettleSettled {
		r.Settled = c.settled
	}
	if !c.firstToken.IsZero() {
		r.TTFT = c.firstToken.Sub(c.start)
	}
	switch {
	case u.Served && u.Reported:
		r.UsageSource = metering.UsageEngine
	case u.Served:
		r.UsageSource = metering.UsageEstimated
	}
	return r
}

// settleRecord returns the fields of the request's record that name it,
// which its settle record repeats: who, what, where, how it ended.
func (c *exchange) settleRecord() metering.Record {
	r := metering.Record{
		RequestID: c.r.Header.Get(httpx.HeaderRequestID),
		AccountID: c.principal.AccountID,
		KeyID:     c.principal.KeyID,
		Model:     c.model.ID,
		Neuron:    c.neuron,
		Route:     meterRoute(c.r),
		Stream:    c.req.Stream,
		Unit:      c.principal.Unit,
		Status:    c.status,
		Outcome:   c.meterOutcome(),
	}
	if c.reservation != nil {
		r.Reserved = c.reservation.Amount()
	}
	return r
}

// meterRoute names the API of a request path: "/v1/chat/completions" is
// "chat.completions", "/v1/messages" is "messages".
func meterRoute(r *http.Request) string {
	return strings.ReplaceAll(strings.TrimPrefix(r.URL.Path, "/v1/"), "/", ".")
}

// meterOutcome maps how the request ended to the meter's outcomes. A
// neuron's own error answer is "ok" when it is a 4xx (the engine answered
// in full) and "upstream_error" when it is a 5xx, as are the gateway's own
// 5xx answers.
func (c *exchange) meterOutcome() metering.Outcome {
	switch c.outcome {
	case outcomeRejected:
		return metering.OutcomeRejected
	case outcomeUnavailable:
		return metering.OutcomeUpstreamError
	case outcomeUpstream:
		if c.status >= 500 {
			return metering.OutcomeUpstreamError
		}
		return metering.OutcomeOK
	case outcomeBroken:
		return metering.OutcomeNeuronCrash
	case outcomeTimeout:
		return metering.OutcomeTimeout
	case outcomeCanceled:
		return metering.OutcomeClientGone
	case outcomePanic:
		return metering.OutcomePanic
	}
	return metering.OutcomeOK
}

// record passes r to the Meter. A Meter that panics breaks its contract;
// the panic is logged and the request path goes on.
func (g *Gateway) record(r metering.Record) {
	defer func() {
		if p := recover(); p != nil {
			g.log.Error("cortex: the meter panicked; a record is lost", "panic", p, "account", r.AccountID, "model", r.Model)
		}
	}()
	g.meter.Record(r)
}
