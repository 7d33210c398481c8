package neuron

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/helexa-ai/helexa-go/internal/httpx"
)

// WithAccessLog sets where the agent writes its access log: one line per
// request, "neuron: request". nil turns it off. Default: the agent's
// logger (WithLogger).
//
// A line carries method, route, status, outcome ("ok", "client_error",
// "server_error", "client_gone", or "cut" for a stream cut at its output
// allowance), duration, the request id (X-Request-Id: cortex's, so that
// one request can be followed from the gateway's log to the neuron's and
// to the engine's, which receives it too; or one the agent made), and the
// account and key id cortex named (never a key or a token). An inference
// request's line adds the model and, for a stream, the output tokens the
// agent counted, the time to the first of them, and the engine's usage
// (prompt, completion and cached tokens) when the stream carried it.
// Inference, loads, unloads and every refused request are logged at info;
// GET requests that succeed (cortex's polls, probes) at debug. neuron.toml
// access_log = false turns it off.
func WithAccessLog(l *slog.Logger) Option {
	return agentOptionFunc(func(o *agentOptions) { o.accessLog, o.accessLogSet = l, true })
}

// accessEntry is what the request path learns of a request for its
// access line; it rides in the request's context.
type accessEntry struct {
	now   func() time.Time
	model string
	// Of a stream, counted by outputCounter.
	streamed    bool
	output      int64
	firstOutput time.Time
	cut         bool
	hasUsage    bool
	prompt      int64
	completion  int64
	cached      int64
}

type accessKey struct{}

// accessOf returns the access entry of a request's context; nil without
// one (the access log is off).
func accessOf(ctx context.Context) *accessEntry {
	e, _ := ctx.Value(accessKey{}).(*accessEntry)
	return e
}

// serveLogged serves r and writes its access line.
func (a *Agent) serveLogged(w http.ResponseWriter, r *http.Request) {
	e := &accessEntry{now: a.opts.clock.Now}
	r = r.WithContext(context.WithValue(r.Context(), accessKey{}, e))
	sw := &httpx.StatusWriter{ResponseWriter: w}
	start := e.now()
	defer func() { a.logAccess(r, e, sw.Code(), start) }()
	a.serve(sw, r)
}

// logAccess writes r's access line.
func (a *Agent) logAccess(r *http.Request, e *accessEntry, status int, start time.Time) {
	lvl := slog.LevelInfo
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && status < 400 {
		lvl = slog.LevelDebug
	}
	ctx := context.WithoutCancel(r.Context())
	if !a.access.Enabled(ctx, lvl) {
		return
	}
	outcome := "ok"
	switch {
	case r.Context().Err() != nil:
		outcome = "client_gone"
	case e.cut:
		outcome = "cut"
	case status >= 500:
		outcome = "server_error"
	case status >= 400:
		outcome = "client_error"
	}
	path := r.URL.Path
	if len(path) > maxLoggedPath {
		path = path[:maxLoggedPath]
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("route", path),
		slog.Int("status", status),
		slog.String("outcome", outcome),
		slog.Duration("duration", e.now().Sub(start)),
		slog.String("request_id", r.Header.Get(httpx.HeaderRequestID)),
	)
	if acc := r.Header.Get(HeaderAccountID); acc != "" {
		attrs = append(attrs, slog.String("account", acc), slog.String("key_id", r.Header.Get(HeaderKeyID)))
	}
	if e.model != "" {
		attrs = append(attrs, slog.String("model", e.model))
	}
	if e.streamed {
		attrs = append(attrs, slog.Int64("output_tokens", e.output))
		if !e.firstOutput.IsZero() {
			attrs = append(attrs, slog.Duration("ttft", e.firstOutput.Sub(start)))
		}
	}
	if e.hasUsage {
		attrs = append(attrs, slog.Int64("prompt_tokens", e.prompt), slog.Int64("completion_tokens", e.completion),
			slog.Int64("cached_tokens", e.cached))
	}
	a.access.LogAttrs(ctx, lvl, "neuron: request", attrs...)
}

// maxLoggedPath bounds a request path in the access log: an unknown route
// is the client's to choose.
const maxLoggedPath = 256
