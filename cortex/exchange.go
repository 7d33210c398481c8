package cortex

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"mime"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/internal/httpx"
	"github.com/helexa-ai/helexa-go/internal/reqscan"
	"github.com/helexa-ai/helexa-go/internal/sse"
)

// exchange is one inference request on its way through the gateway: what each
// stage of the request path learned, and what finish needs to close the
// request exactly once on every exit path.
type exchange struct {
	g     *Gateway
	w     http.ResponseWriter
	r     *http.Request
	kind  routeKind
	start time.Time
	tr    translator // the route's translation to the neuron's API; nil: none (messages.go)

	// Stage results, in the order of the request path.
	principal   entitlements.Principal
	body        []byte // as received, then as sent (edited)
	req         reqscan.Request
	model       catalogue.Model // resolved profile
	estimate    int64           // prompt tokens, estimated
	promptRes   int64           // prompt tokens reserved: the estimate, or with strict caps its bound
	maxOutput   int64           // output tokens reserved per choice
	reservation entitlements.Reservation
	authed      bool                         // auth passed: the request is metered
	slot        entitlements.Slot            // the request's slot of its key's limits; nil: none
	clampTo     int64                        // max_tokens sent after clamping; 0: not clamped
	settleID    string                       // the settle's outbox id, written when it reserved; "": none
	snap        *entitlements.BudgetSnapshot // the budget, for the rate limit headers
	snapTried   bool                         // a Snapshot was asked for (snap may be nil)
	renewal     *renewal                     // renews the reservation's lease; nil: none
	settled     entitlements.Amount          // what Settle was given
	route       route.Request                // what the Router sees
	decision    route.Decision
	neuron      string // where the request was sent last
	cold        bool   // it waited for a load

	// Observed.
	status        int  // status sent to the client; 0 while none
	served        bool // a 2xx answer from a neuron began to reach the client
	clientUsage   bool // the client asked for the usage chunk
	firstToken    time.Time
	engineUsage   sse.Usage // the engine's, when hasUsage
	hasUsage      bool
	chunks        int64 // content events streamed
	outputs       int64 // choices that carried output, summed over the events (a floor of the tokens)
	lengthChoices int64 // choices that ran to their bound
	neuronOutput  int64 // the output the neuron counted (its trailer)
	cut           bool  // the neuron cut the stream at the allowance
	outcome       outcome
	err           error
	abort         bool // end the client's connection abruptly
	done          bool
}

// outcome is how a request ended, as the metrics count it.
type outcome uint8

const (
	outcomeOK          outcome = iota
	outcomeRejected            // the gateway refused it (4xx of its own)
	outcomeUnavailable         // the gateway could not serve it (its own 5xx)
	outcomeUpstream            // the neuron answered with an error status
	outcomeBroken              // the neuron's answer broke off
	outcomeTimeout             // the stream idle timeout cut it
	outcomeCanceled            // the client went away
	outcomePanic               // a bug
)

// kind is the value of the errors counter's "kind" label; "" for a success.
func (o outcome) kind() string {
	switch o {
	case outcomeRejected:
		return "rejected"
	case outcomeUnavailable:
		return "unavailable"
	case outcomeUpstream:
		return "upstream_status"
	case outcomeBroken:
		return "upstream_broken"
	case outcomeTimeout:
		return "idle_timeout"
	case outcomeCanceled:
		return "canceled"
	case outcomePanic:
		return "internal"
	}
	return ""
}

// serveInference runs the request path of an inference route (see the
// package documentation).
func (g *Gateway) serveInference(w http.ResponseWriter, r *http.Request, kind routeKind) {
	c := &exchange{g: g, w: w, r: r, kind: kind, start: g.clock.Now()}
	c.tr, _ = w.(translator)
	if !g.enter() {
		c.fail(ErrShuttingDown)
		c.finish(c.observed())
		return
	}
	defer g.leave()
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				g.log.Error("cortex: panic serving a request", "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				c.outcome = outcomePanic
			}
			c.finish(c.observed())
			panic(http.ErrAbortHandler)
		}
		c.finish(c.observed())
		if c.abort {
			panic(http.ErrAbortHandler)
		}
	}()
	c.serve()
}

// serve runs the stages of the request path; each failure answers the
// client and returns.
func (c *exchange) serve() {
	if err := c.authenticate(); err != nil {
		c.fail(err)
		return
	}
	c.authed = true
	if err := c.limit(); err != nil {
		c.fail(err)
		return
	}
	if err := c.readBody(); err != nil {
		c.fail(err)
		return
	}
	if err := c.resolve(); err != nil {
		c.fail(err)
		return
	}
	if err := c.admit(); err != nil {
		c.fail(err)
		return
	}
	c.dispatch()
}

// readBody reads r's body under the size limit and the read timeout. A
// body that is too large is an *http.MaxBytesError (413), one too slow
// wraps httpx.ErrBodyTimeout (408), and any other read failure is a
// *reqscan.Error (400).
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := httpx.ReadBody(w, r, g.settings().maxBodyBytes, g.settings().bodyTimeout)
	var mbe *http.MaxBytesError
	if err != nil && !errors.As(err, &mbe) && !errors.Is(err, httpx.ErrBodyTimeout) {
		return nil, &reqscan.Error{Msg: err.Error()}
	}
	return body, err
}

// readBody reads the body under the size limit and scans it.
func (c *exchange) readBody() error {
	if err := checkJSON(c.r.Header); err != nil {
		return err
	}
	body, err := c.g.readBody(c.w, c.r)
	if err != nil {
		return err
	}
	c.body = body
	if c.tr != nil {
		// The translation builds a new body, which alone reaches the
		// engine; the client's must still have one reading.
		var raw reqscan.Request
		if err := reqscan.Scan(c.body, &raw); isAmbiguous(err) {
			return err
		}
		body, err := c.tr.translateRequest(c.body)
		if err != nil {
			return err
		}
		c.body = body
	}
	if err := reqscan.Scan(c.body, &c.req); err != nil {
		return err
	}
	if c.req.Model == "" {
		return ErrMissingModel
	}
	if c.kind == routeChat && c.req.Messages == 0 {
		// Caught here, so that it cannot cause a cold load.
		return &reqscan.Error{Field: "messages", Msg: "must be a non-empty array"}
	}
	return nil
}

// checkJSON refuses a request body whose Content-Type is not JSON
// (ErrUnsupportedMediaType): application/json or application/*+json, with
// any parameters. A request without a Content-Type is taken as JSON.
// Refusing the form and text types also keeps a browser page from using
// the API through a "simple" cross-site request, which needs no CORS
// preflight.
func checkJSON(h http.Header) error {
	v := h.Get("Content-Type")
	if v == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(v)
	if err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return fmt.Errorf("%w, not %q", ErrUnsupportedMediaType, v)
}

// resolve resolves the model name through the catalogue's aliases (or the
// fleet, for a resident model the catalogue does not know), checks the
// key's allow-list and the model's capabilities (allow.go), and checks the
// prompt estimate against the model's limit.
func (c *exchange) resolve() error {
	p, err := modelFor(c.g.Fleet(), c.principal, c.req.Model)
	if err != nil {
		return err
	}
	if err := checkCapability(p, c.kind, c.r.URL.Path); err != nil {
		return err
	}
	c.model = p
	c.estimate = c.req.PromptEstimate(len(c.body))
	if c.tr != nil {
		c.estimate = c.tr.promptEstimate()
	}
	c.promptRes = c.estimate
	if c.g.settings().strictCaps {
		c.promptRes = max(c.req.PromptBound(len(c.body)), c.estimate)
	}
	limit := int64(p.Limit.Input)
	if limit == 0 {
		limit = int64(p.Limit.Context)
	}
	if limit > 0 && c.estimate > limit {
		return &ContextLengthError{Model: p.ID, Limit: limit, Estimate: c.estimate}
	}
	if lim := int64(p.Limit.Output); lim > 0 && c.req.MaxTokens > lim {
		return &reqscan.Error{Field: "max_tokens", Msg: fmt.Sprintf("%d output tokens asked for, over the %d that model %s generates at most",
			c.req.MaxTokens, lim, p.ID)}
	}
	c.maxOutput = c.req.MaxTokens
	if c.maxOutput == 0 && c.kind == routeCompletions {
		c.maxOutput = completionsDefaultMaxTokens
	}
	if c.maxOutput == 0 {
		c.maxOutput = int64(p.Limit.Output)
	}
	if c.maxOutput == 0 {
		c.maxOutput = c.g.cfg.defaultOutput
	}
	if c.kind == routeEmbeddings {
		c.maxOutput = 0 // an embedding generates no tokens
	}
	return nil
}

// dispatch routes the request and proxies it. An attempt that failed
// before anything reached the client, in a way that is safe to retry (see
// retryable), is routed again with the attempt in Request.Tried, up to
// maxAttempts neurons in all and within the client's request; the
// reservation covers them all, and is settled once.
func (c *exchange) dispatch() {
	c.prepareBody()
	c.route = route.Request{
		Model:   c.model.ID,
		Account: c.principal.AccountID,
		Key:     c.principal.KeyID,
		Header:  c.r.Header,
		Prefix:  route.NewPrefix(c.req.Prefix.Sums[:c.req.Prefix.N]),
		Seed:    c.g.routeSeed(),
	}
	for attempt := 1; ; attempt++ {
		name, err := c.place()
		if err != nil {
			c.failWith(err)
			return
		}
		err = c.proxy(name)
		if err == nil {
			return
		}
		how := retryable(err)
		if how == 0 || attempt == maxAttempts || c.r.Context().Err() != nil || c.status != 0 {
			c.failWith(err)
			return
		}
		c.g.log.Warn("cortex: retrying on another replica", "neuron", name, "model", c.model.ID, "attempt", attempt, "err", err)
		c.err = err
		if how == route.FailedGone || how == route.FailedNotReady {
			// The snapshot said the model was ready there: let the Router
			// see the neuron as it is now.
			if up := c.g.upstream(name); up != nil {
				up.forget(c.model.ID)
			}
			c.g.refresh(c.r.Context(), name)
		}
		c.route.Tried = append(c.route.Tried, route.Attempt{Neuron: name, Failure: how})
	}
}

// routeSeed draws a request's route.Request.Seed (WithRouteSeeds).
func (g *Gateway) routeSeed() uint64 {
	if g.cfg.seed != nil {
		return g.cfg.seed()
	}
	return rand.Uint64() | 1 // never 0: ties spread
}

// failWith ends the request with err: a kept neuron answer is relayed as it
// came, anything else answered by fail.
func (c *exchange) failWith(err error) {
	var a *neuronAnswer
	if errors.As(err, &a) && c.status == 0 && c.r.Context().Err() == nil {
		c.relayAnswer(a)
		return
	}
	c.fail(err)
}

// prepareBody rewrites the model name to the resolved id and every output
// bound to the one reserved and, for a stream that can carry one, asks the
// engine for the usage chunk.
func (c *exchange) prepareBody() {
	var edits []reqscan.Edit
	if c.req.Model != c.model.ID {
		edits = append(edits, c.req.SetModel(c.model.ID))
	}
	if c.maxOutput > 0 && (c.budgeted() || c.req.MaxTokens > 0) {
		// Every output bound an engine obeys says what was reserved
		// (and the neuron holds the engine to it: allowance()). A caller
		// without a budget that set no bound is sent as it came: the
		// engine's default applies, and nothing is charged.
		edits = append(edits, c.req.SetMaxTokens(c.maxOutput, c.kind.maxTokensField())...)
	}
	c.clientUsage = c.req.IncludeUsage
	if c.req.Stream && c.kind.asksUsage() {
		if e, ok := c.req.RequestUsage(); ok {
			edits = append(edits, e)
		}
	}
	c.body = reqscan.Apply(c.body, edits...)
}

// place asks the Router where to send the request, with the loads in
// progress and the load backoffs as they are now, and carries the
// Decision out: it waits for the load a Join or Load decision names
// (starting it unless it is in progress) or for the model's engine to
// restart there. On a retry, a routing error other than a *route.Refusal
// is answered with the failure of the last attempt, which says more.
func (c *exchange) place() (string, error) {
	g := c.g
	c.route.Loads = g.loads.Loads()
	c.route.Backoff = g.backoff.active(c.model.ID, g.clock.Now(), c.route.Backoff[:0])
	d, err := g.router.Route(g.Fleet(), &c.route)
	if err != nil {
		var ref *route.Refusal
		if len(c.route.Tried) > 0 && c.err != nil && !errors.As(err, &ref) {
			return "", c.err
		}
		return "", err
	}
	c.decision = d
	switch d.Action {
	case route.ActionServe:
		return d.Neuron, nil
	case route.ActionJoin:
		c.cold = true
		if f := g.loads.lookup(d.Model.ID, d.Neuron); f != nil {
			return c.waitLoad(f)
		}
		if n := g.Fleet().Neuron(d.Neuron); n != nil {
			if m := n.Model(d.Model.ID); m != nil && m.Restarting() {
				return c.waitLoad(g.awaitRecovery(d.Model.ID, d.Neuron))
			}
		}
		// Loading there, by another gateway or by a load of this one that
		// ended since: the neuron joins the load in progress, or answers
		// that the model is loaded.
		return c.waitLoad(g.startLoad(d))
	case route.ActionLoad:
		c.cold = true
		return c.waitLoad(g.startLoad(d))
	}
	return "", fmt.Errorf("cortex: the router returned %v", d.Action)
}

// fail answers the client with err, unless the client is gone or an answer
// has begun.
func (c *exchange) fail(err error) {
	c.err = err
	// A cancelled request is a client that left, so nothing is written;
	// except a body that timed out, which cancels it too (net/http does
	// on any failed read) while its client is still there for the 408.
	if c.r.Context().Err() != nil && !errors.Is(err, ErrShuttingDown) && !errors.Is(err, httpx.ErrBodyTimeout) {
		c.outcome = outcomeCanceled
		return
	}
	if c.status != 0 {
		return
	}
	c.budgetHeaders()
	h := writeError(c.w, err, c.g.cfg.retryAfter)
	c.status = h.status
	switch {
	case errors.Is(err, errStreamIdle):
		c.outcome = outcomeTimeout
	case h.status >= 500:
		c.outcome = outcomeUnavailable
	default:
		c.outcome = outcomeRejected
	}
}

// usage is what a request consumed, as the gateway observed it.
type usage struct {
	// Served is true when a 2xx answer from a neuron began to reach the
	// client; the counts are zero otherwise.
	Served bool
	// Prompt, Completion and Cached are tokens.
	Prompt, Completion, Cached int64
	// Reported is true when the counts are the engine's own (a usage object
	// or chunk), raised to what the gateway and the neuron counted; false
	// when the engine's usage never came.
	Reported bool
}

// observed returns the usage of the request, never below what was served:
//
//   - the engine's usage, its output raised to the outputs the gateway and
//     the neuron counted (at least a token for each choice that carried
//     output in an event) and to the bound of each choice that ran to it
//     (llama-server counts one choice of several);
//   - and to the whole output reserved when the request has best_of
//     candidates it does not return (vLLM counts only those returned);
//   - without it (a stream the client left or stopped reading, that ended
//     or broke without usage, that the neuron cut at the allowance; a
//     non-streaming answer with none or too large to scan): the whole
//     reservation. What the engine generated past what reached the gateway
//     (in the neuron's and the sockets' buffers, or before it noticed the
//     cancellation) cannot be known, and the reservation bounds it. A
//     client that leaves a stream early pays for what it reserved: set
//     max_tokens to what is needed.
//
// Never zero for a request served.
func (c *exchange) observed() usage {
	if !c.served {
		return usage{}
	}
	counted := max(c.outputs, c.neuronOutput, satMul(c.lengthChoices, c.maxOutput))
	if c.hasUsage && !c.cut {
		u := c.engineUsage
		if c.req.BestOf > c.req.N {
			// The candidates not returned are generated but not counted
			// by every engine (vLLM counts the n returned).
			counted = max(counted, c.allowance())
		}
		return usage{Served: true, Prompt: u.Prompt, Completion: max(u.Completion, counted), Cached: u.Cached, Reported: true}
	}
	return usage{Served: true, Prompt: c.promptRes, Completion: max(c.allowance(), counted, 1)}
}

// finish closes the request with the usage observed, exactly once on
// every exit path: it settles or releases the reservation, frees the
// key's in-flight slot, records the metrics, the meter record and the
// access line (the line from the record: accesslog.go). It runs before the
// handler returns.
func (c *exchange) finish(u usage) {
	if c.done {
		return
	}
	c.done = true
	end := c.g.clock.Now()
	c.settle(u)
	c.releaseSlot()
	c.g.metrics.observe(c, end, u)
	rec := c.record(end, u)
	c.meter(rec)
	c.logAccess(rec)
}

// isAmbiguous reports whether err is a body that decoders could read
// differently (400 ambiguous_request).
func isAmbiguous(err error) bool {
	var se *reqscan.Error
	return errors.As(err, &se) && se.Ambiguous
}

// allowance is the most output tokens the request may generate over all
// its sequences: what was reserved for its output. 0 for a route that
// generates none.
func (c *exchange) allowance() int64 {
	if c.maxOutput <= 0 {
		return 0
	}
	return satMul(c.req.Sequences(), c.maxOutput)
}
