package cortex

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// webConfig holds the options of what the gateway adds to every answer:
// the access log (accesslog.go) and CORS.
type webConfig struct {
	access      accessConfig
	corsOrigins []string
}

// WithCORSOrigins lets the scripts of web pages from origins call the
// gateway from a browser (CORS). Each origin is a scheme, host and
// optional port, as a browser sends it ("https://app.example.com",
// "http://localhost:5173"), or "*" alone for any origin. Later calls add
// origins. Default none: the gateway sends no CORS header at all, and a
// browser keeps pages of other origins from reading its answers.
//
// For an allowed origin the gateway answers preflights (OPTIONS with
// Access-Control-Request-Method) with 204, the methods GET and POST, the
// request headers the OpenAI and Anthropic clients send (those of
// corsAllowedHeaders, and X-Stainless-*) and a max age of 10 minutes; and
// every answer carries Access-Control-Allow-Origin (the origin itself, or
// "*" for "*") and exposes the request id, Retry-After, x-should-retry
// and the rate limit headers. Answers vary on Origin. Credentials
// (cookies) are never allowed: the API key travels in a header the page
// sets. The key check is unchanged: CORS only lets a page read what its
// key may read. [gateway] cors_allowed_origins in cortex.toml.
func WithCORSOrigins(origins ...string) GatewayOption {
	return gatewayOptionFunc(func(c *gatewayConfig) { c.web.corsOrigins = append(c.web.corsOrigins, origins...) })
}

// checkOrigin returns the error of an origin WithCORSOrigins cannot take.
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	switch {
	case err != nil:
		return fmt.Errorf("CORS origin %q: %w", o, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("CORS origin %q: want http:// or https:// and a host, or \"*\"", o)
	case u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#"):
		return fmt.Errorf("CORS origin %q: want a scheme, a host and an optional port only, such as https://app.example.com", o)
	}
	return nil
}

// checkOrigins checks the origins of WithCORSOrigins.
func checkOrigins(origins []string) []error {
	var errs []error
	for _, o := range origins {
		if err := checkOrigin(o); err != nil {
			errs = append(errs, err)
		}
	}
	if slices.Contains(origins, "*") && len(origins) > 1 {
		errs = append(errs, fmt.Errorf("CORS origin \"*\" allows every origin: give it alone"))
	}
	return errs
}

// corsAllowedHeaders are the request headers a preflight may ask for, in
// lower case: the credentials and versions of the OpenAI and Anthropic
// APIs and of their official clients, the request id and trace context.
// X-Stainless-* (the clients' own telemetry) are allowed too. A page that
// asks for another header is refused by its browser: it would not reach
// the fleet anyway (see forwardHeaders).
var corsAllowedHeaders = []string{
	"authorization", "content-type", "x-api-key", "x-request-id",
	"anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
	"openai-beta", "openai-organization", "openai-project", "idempotency-key",
	"traceparent", "tracestate",
}

// corsExposed are the answer headers a page may read.
var corsExposed = strings.Join([]string{
	"X-Request-Id", "Retry-After", HeaderShouldRetry,
	HeaderLimitTokens, HeaderRemainingTokens, HeaderResetTokens, HeaderBudgetUnit, HeaderClampedMax,
}, ", ")

// corsMaxAge is how long a browser may keep a preflight's answer: long
// enough to spare most requests one, short enough that a change of the
// allowed origins reaches pages soon.
const corsMaxAge = 600

// corsPolicy answers the CORS side of requests; nil allows no origin.
type corsPolicy struct {
	any     bool            // "*"
	origins map[string]bool // lower case
}

// newCORSPolicy returns the policy of the origins; nil for none.
func newCORSPolicy(origins []string) *corsPolicy {
	if len(origins) == 0 {
		return nil
	}
	p := &corsPolicy{origins: make(map[string]bool, len(origins))}
	for _, o := range origins {
		if o == "*" {
			p.any = true
		}
		p.origins[strings.ToLower(o)] = true
	}
	return p
}

// serve sets the CORS headers of r's answer and answers a preflight. It
// reports whether it answered: then the request is done.
func (p *corsPolicy) serve(w http.ResponseWriter, r *http.Request) bool {
	if p == nil {
		return false
	}
	h := w.Header()
	if !p.any {
		h.Add("Vary", "Origin")
	}
	origin := r.Header.Get("Origin")
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if preflight {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
	}
	// A page's origin is one value; several match nothing.
	if origin == "" || len(r.Header.Values("Origin")) != 1 || !p.allows(origin) {
		return false
	}
	allow := origin
	if p.any {
		allow = "*"
	}
	if !preflight {
		h.Set("Access-Control-Allow-Origin", allow)
		h.Set("Access-Control-Expose-Headers", corsExposed)
		return false
	}
	method := r.Header.Get("Access-Control-Request-Method")
	headers, ok := allowedRequestHeaders(r.Header.Values("Access-Control-Request-Headers"))
	if (method != http.MethodGet && method != http.MethodPost && method != http.MethodHead) || !ok {
		// Answered without CORS headers: the browser refuses the request.
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	h.Set("Access-Control-Allow-Origin", allow)
	h.Set("Access-Control-Allow-Methods", "GET, POST")
	if headers != "" {
		h.Set("Access-Control-Allow-Headers", headers)
	}
	h.Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
	w.WriteHeader(http.StatusNoContent)
	return true
}

// allows reports whether origin may read the gateway's answers: any with
// "*", else those listed. The opaque origin "null" (sandboxed frames, local
// files) is never one of them: checkOrigin refuses it.
func (p *corsPolicy) allows(origin string) bool {
	return p.any || p.origins[strings.ToLower(origin)]
}

// allowedRequestHeaders returns the headers of a preflight's
// Access-Control-Request-Headers, joined, when every one is allowed.
func allowedRequestHeaders(values []string) (string, bool) {
	var names []string
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.ToLower(strings.TrimSpace(f))
			if f == "" {
				continue
			}
			if !slices.Contains(corsAllowedHeaders, f) && !(strings.HasPrefix(f, "x-stainless-") && isToken(f)) {
				return "", false
			}
			names = append(names, f)
		}
	}
	return strings.Join(names, ", "), true
}

// isToken reports whether s holds only lower-case letters, digits and
// hyphens: a header name that is safe to send back.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}
