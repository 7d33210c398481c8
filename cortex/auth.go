package cortex

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// authenticate resolves the caller's API key into a principal.
func (c *exchange) authenticate() error {
	p, err := c.g.principal(c.r)
	c.principal = p
	return err
}

// principal resolves the API key of r: from "Authorization: Bearer" or
// "x-api-key". Without a Provider every caller is anonymous. A missing or
// unknown key is ErrUnauthorized when auth is required, else anonymous.
// Any other failure of the Provider is returned as an
// *entitlements.UnavailableError (503 with Retry-After), also when auth is
// not required: a key that was sent but cannot be checked is never served
// as anonymous, so its owner is never served unbilled. The context's own
// error is returned as it is (the client left).
//
// The key itself goes nowhere else: not to a log, a metric, an error or a
// neuron.
func (g *Gateway) principal(r *http.Request) (entitlements.Principal, error) {
	if g.cfg.provider == nil {
		return entitlements.Anonymous(), nil
	}
	key := apiKey(r)
	if key == "" {
		if g.settings().requireAuth {
			return entitlements.Anonymous(), ErrUnauthorized
		}
		return entitlements.Anonymous(), nil
	}
	p, err := g.cfg.provider.Resolve(r.Context(), key)
	switch {
	case err == nil && p.IsAnonymous():
		// A provider must not resolve a key to the anonymous principal;
		// treat it as unknown rather than serve it without a budget.
		err = entitlements.ErrInvalidKey
	case err == nil:
		return p, nil
	}
	if errors.Is(err, entitlements.ErrInvalidKey) {
		if g.settings().requireAuth {
			return entitlements.Anonymous(), ErrUnauthorized
		}
		return entitlements.Anonymous(), nil
	}
	return entitlements.Anonymous(), providerError(r.Context(), err)
}

// providerError classifies an error of the Provider: the request's own
// cancellation, entitlements.ErrInvalidKey (401) and an
// *entitlements.UnavailableError stay as they are, and anything else
// becomes an *entitlements.UnavailableError, so that the gateway fails
// closed with a 503.
func providerError(ctx context.Context, err error) error {
	var unavail *entitlements.UnavailableError
	switch {
	case errors.As(err, &unavail), errors.Is(err, entitlements.ErrInvalidKey):
		return err
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return err
	}
	return &entitlements.UnavailableError{Err: err}
}

// apiKey returns the key of "Authorization: Bearer <key>", else of
// "x-api-key", else "".
func apiKey(r *http.Request) string {
	const prefix = "Bearer "
	if h := r.Header.Get("Authorization"); len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		if k := strings.TrimSpace(h[len(prefix):]); k != "" {
			return k
		}
	}
	return strings.TrimSpace(r.Header.Get("X-Api-Key"))
}
