package cortex

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/internal/httpx"
)

// accessConfig is what WithAccessLog sets.
type accessConfig struct {
	logger *slog.Logger
	set    bool // WithAccessLog was given: logger is the access log, nil off
}

// WithAccessLog sets where the gateway writes its access log: one line
// per request, "cortex: request", at info. nil turns it off. Default: the
// gateway's logger (WithLogger), so that a gateway that logs anything
// logs its requests.
//
// An inference request's line carries method, route, the model, status,
// outcome (the meter's, metering.Outcome), the prompt, completion and
// cached tokens and where they came from (usage: "engine" or
// "estimated"), whether it streamed and waited for a cold load, its
// duration and time to first token, the neuron, account and key id (the
// configured id, never the key), the request id, and err when it failed.
// A request that failed on the gateway's or the fleet's side (the outcomes
// upstream_error, neuron_crash, timeout and panic) is logged at warn, and
// goes to the gateway's logger even with the access log off. Every other
// route's line carries method, route, status, duration and the request id;
// GET /health's is at debug, for the probes that call it every few
// seconds. The line never holds a key, an Authorization header or prompt
// text. [gateway] access_log = false in cortex.toml turns it off.
func WithAccessLog(l *slog.Logger) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.web.access = accessConfig{logger: l, set: true} })
}

// accessLogger returns the access log of the configuration: nil when off.
func (c *gatewayConfig) accessLogger() *slog.Logger {
	if c.web.access.set {
		return c.web.access.logger
	}
	return c.logger
}

// maxLoggedPath bounds a request path in the access log: an unknown route
// is the client's to choose.
const maxLoggedPath = 256

// loggedPath returns r's path for the access log, cut to maxLoggedPath.
func loggedPath(r *http.Request) string {
	p := r.URL.Path
	if len(p) > maxLoggedPath {
		p = p[:maxLoggedPath]
	}
	return p
}

// logAccess writes the access line of the finished inference request,
// from its meter record: the same numbers as the meter and the metrics.
func (c *exchange) logAccess(rec metering.Record) {
	lvl := slog.LevelInfo
	switch rec.Outcome {
	case metering.OutcomeUpstreamError, metering.OutcomeNeuronCrash, metering.OutcomeTimeout, metering.OutcomePanic:
		lvl = slog.LevelWarn
	}
	l := c.g.access
	if l == nil {
		if lvl < slog.LevelWarn {
			return
		}
		l = c.g.log
	}
	ctx := context.WithoutCancel(c.r.Context())
	if !l.Enabled(ctx, lvl) {
		return
	}
	model := rec.Model
	if model == "" {
		// Not resolved: the name the client asked for.
		model = c.req.Model
		if len(model) > maxLoggedPath {
			model = model[:maxLoggedPath]
		}
	}
	attrs := make([]slog.Attr, 0, 20)
	attrs = append(attrs,
		slog.String("method", c.r.Method),
		slog.String("route", loggedPath(c.r)),
		slog.String("model", model),
		slog.Int("status", rec.Status),
		slog.String("outcome", string(rec.Outcome)),
		slog.Int64("prompt_tokens", rec.PromptTokens),
		slog.Int64("completion_tokens", rec.CompletionTokens),
		slog.Int64("cached_tokens", rec.CachedTokens),
		slog.String("usage", string(rec.UsageSource)),
		slog.Bool("stream", rec.Stream),
		slog.Bool("cold", c.cold),
		slog.Duration("duration", rec.Duration),
		slog.Duration("ttft", rec.TTFT),
		slog.String("neuron", rec.Neuron),
		slog.String("account", rec.AccountID),
		slog.String("key_id", rec.KeyID),
		slog.String("request_id", rec.RequestID),
	)
	if c.err != nil {
		attrs = append(attrs, slog.Any("err", c.err))
	}
	l.LogAttrs(ctx, lvl, "cortex: request", attrs...)
}

// logged wraps the handler of a route other than inference, which logs
// its own line when it finishes (exchange.logAccess), with the route's
// access line at lvl.
func (g *Gateway) logged(lvl slog.Level, h http.HandlerFunc) http.HandlerFunc {
	if g.access == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !g.access.Enabled(r.Context(), lvl) {
			h(w, r)
			return
		}
		sw := &httpx.StatusWriter{ResponseWriter: w}
		start := g.clock.Now()
		defer func() { g.logRoute(lvl, r, sw.Code(), start) }()
		h(sw, r)
	}
}

// logRoute writes the access line of a request outside the inference
// routes.
func (g *Gateway) logRoute(lvl slog.Level, r *http.Request, status int, start time.Time) {
	if g.access == nil {
		return
	}
	g.access.LogAttrs(context.WithoutCancel(r.Context()), lvl, "cortex: request",
		slog.String("method", r.Method),
		slog.String("route", loggedPath(r)),
		slog.Int("status", status),
		slog.Duration("duration", g.clock.Now().Sub(start)),
		slog.String("request_id", r.Header.Get(httpx.HeaderRequestID)),
	)
}
