package house_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
	"github.com/helexa-ai/helexa-go/entitlements/house"
)

// twoAccounts: "acme" and "other", a balance of 1000 each.
func twoAccounts(t *testing.T) (*entitlements.Local, string) {
	t.Helper()
	l := newLocal(t, clock.System{}, []entitlementstest.KeySpec{
		{Secret: "sk-acme", Principal: acme, Budget: entitlements.Budget{HardCap: entitlements.Cap(1000)}},
		{Secret: "sk-other", Principal: entitlements.Principal{AccountID: "other", KeyID: "other"}, Budget: entitlements.Budget{HardCap: entitlements.Cap(1000)}},
	})
	_, url := serve(t, l)
	return l, url
}

// post sends body to path as token and returns the status and error code.
func post(t *testing.T, url, path, token, body string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(out, &e)
	return resp.StatusCode, e.Error.Code, out
}

const reserveAcme = `{"idempotency_id":"r1","principal":{"account_id":"acme","key_id":"acme-1"},"amount":100}`

// TestRefusals: wrong credentials, accounts a gateway may not spend,
// malformed JSON, oversized bodies and unknown versions are refused with
// clear codes, and change nothing.
func TestRefusals(t *testing.T) {
	t.Parallel()
	l, url := twoAccounts(t)
	reserveOther := strings.ReplaceAll(reserveAcme, `"acme"`, `"other"`)
	tests := []struct {
		name, path, token, body string
		status                  int
		code                    string
	}{
		{"no credential", "/v1/reserve", "", reserveAcme, 401, house.CodeUnauthenticated},
		{"wrong credential", "/v1/reserve", "nope", reserveAcme, 401, house.CodeUnauthenticated},
		{"account not allowed", "/v1/reserve", narrowToken, reserveOther, 403, house.CodeForbidden},
		{"snapshot not allowed", "/v1/snapshot", narrowToken, `{"principal":{"account_id":"other"}}`, 403, house.CodeForbidden},
		{"settle not allowed", "/v1/settle", narrowToken, `{"idempotency_id":"x","reservation_id":"h.1","principal":{"account_id":"other"},"actual":1}`, 403, house.CodeForbidden},
		{"malformed JSON", "/v1/reserve", gwToken, `{"idempotency_id":"r2",`, 400, house.CodeBadRequest},
		{"trailing data", "/v1/reserve", gwToken, reserveAcme + `{}`, 400, house.CodeBadRequest},
		{"no idempotency id", "/v1/reserve", gwToken, `{"principal":{"account_id":"acme"},"amount":1}`, 400, house.CodeBadRequest},
		{"no account", "/v1/reserve", gwToken, `{"idempotency_id":"r3","amount":1}`, 400, house.CodeBadRequest},
		{"oversized", "/v1/reserve", gwToken, `{"idempotency_id":"r4","pad":"` + strings.Repeat("x", house.DefaultMaxBody) + `"}`, 413, house.CodeTooLarge},
		{"unknown version", "/v2/reserve", gwToken, reserveAcme, 400, house.CodeUnsupportedVersion},
		{"unknown call", "/v1/mint", gwToken, reserveAcme, 404, house.CodeNotFound},
		{"negative amount", "/v1/reserve", gwToken, strings.Replace(reserveAcme, "100", "-1", 1), 422, house.CodeInvalidAmount},
	}
	for _, tt := range tests {
		status, code, body := post(t, url, tt.path, tt.token, tt.body)
		if status != tt.status || code != tt.code {
			t.Errorf("%s: %d %s (%s), want %d %s", tt.name, status, code, body, tt.status, tt.code)
		}
	}
	for _, p := range []entitlements.Principal{acme, {AccountID: "other"}} {
		s, err := l.Snapshot(t.Context(), p)
		if err != nil || s.Reserved != 0 || s.Spent != 0 {
			t.Errorf("%s after the refusals: %+v, %v; want nothing reserved or spent", p.AccountID, s, err)
		}
	}
	// A key of an account the gateway may not spend does not resolve.
	if _, err := client(t, url, narrowToken).Resolve(t.Context(), "sk-other"); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("narrow gateway resolving another account's key = %v, want ErrInvalidKey", err)
	}
	// And the Client maps a 403 to ErrInvalidKey.
	if _, err := client(t, url, narrowToken).Reserve(t.Context(), entitlements.Principal{AccountID: "other"}, 1); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("narrow gateway reserving for another account = %v, want ErrInvalidKey", err)
	}
	// A wrong credential fails closed.
	if _, err := client(t, url, "nope").Reserve(t.Context(), acme, 1); !isUnavailable(err) {
		t.Errorf("Reserve with a wrong credential = %v, want an UnavailableError", err)
	}
}

func isUnavailable(err error) bool {
	_, ok := errors.AsType[*entitlements.UnavailableError](err)
	return ok
}

// TestIdempotentRetry: a call delivered twice changes state once and
// answers the same twice; an id reused for another call is refused.
func TestIdempotentRetry(t *testing.T) {
	t.Parallel()
	l, url := twoAccounts(t)
	_, _, first := post(t, url, "/v1/reserve", gwToken, reserveAcme)
	_, _, again := post(t, url, "/v1/reserve", gwToken, reserveAcme)
	if string(first) != string(again) {
		t.Fatalf("a reserve delivered twice answered %s then %s", first, again)
	}
	var r struct {
		ReservationID string `json:"reservation_id"`
	}
	if err := json.Unmarshal(first, &r); err != nil {
		t.Fatal(err)
	}
	settle := `{"idempotency_id":"s1","reservation_id":"` + r.ReservationID + `","principal":{"account_id":"acme"},"actual":60}`
	for range 3 {
		if status, code, body := post(t, url, "/v1/settle", gwToken, settle); status != 200 {
			t.Fatalf("settle: %d %s %s", status, code, body)
		}
	}
	s, _ := l.Snapshot(t.Context(), acme)
	if s.Spent != 60 || s.Reserved != 0 {
		t.Errorf("after a reserve sent twice and a settle sent three times: %+v, want spent 60, reserved 0", s)
	}
	// A new settle of the same reservation is a second settle.
	if _, code, _ := post(t, url, "/v1/settle", gwToken, strings.Replace(settle, `"s1"`, `"s2"`, 1)); code != house.CodeReservationSettled {
		t.Errorf("a second settle answered %q, want %q", code, house.CodeReservationSettled)
	}
	// The same id for another body.
	if status, code, _ := post(t, url, "/v1/reserve", gwToken, strings.Replace(reserveAcme, "100", "5", 1)); status != 409 || code != house.CodeIdempotencyConflict {
		t.Errorf("an id reused for another reserve answered %d %q, want 409 %q", status, code, house.CodeIdempotencyConflict)
	}
	// Ids are per gateway: the narrow gateway's "r1" is its own.
	if status, _, body := post(t, url, "/v1/reserve", narrowToken, reserveAcme); status != 200 || string(body) == string(first) {
		t.Errorf("another gateway's r1 answered %d %s, want a reservation of its own", status, body)
	}
}

// TestFailClosed: with the house unreachable, every call is an
// UnavailableError (a 503 with Retry-After at the gateway).
func TestFailClosed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := client(t, url, gwToken)
	if _, err := c.Resolve(t.Context(), "sk-acme"); !isUnavailable(err) {
		t.Errorf("Resolve = %v, want an UnavailableError", err)
	}
	_, err := c.Reserve(t.Context(), acme, 1)
	if ue, ok := errors.AsType[*entitlements.UnavailableError](err); !ok || ue.RetryAfter <= 0 {
		t.Errorf("Reserve = %v, want an UnavailableError with a RetryAfter", err)
	}
	if _, err := c.Snapshot(t.Context(), acme); !isUnavailable(err) {
		t.Errorf("Snapshot = %v, want an UnavailableError", err)
	}
}

// TestResolveCache: answers are cached, unknown keys too; a revoked key
// keeps resolving until its entry expires.
func TestResolveCache(t *testing.T) {
	t.Parallel()
	clk := entitlementstest.NewClock(epoch())
	l := newLocal(t, clk, []entitlementstest.KeySpec{{Secret: "sk-acme", Principal: acme, Budget: entitlements.Budget{HardCap: entitlements.Cap(10)}}})
	_, url := serve(t, l, house.WithClock(clk))
	c := client(t, url, gwToken, house.WithClientClock(clk), house.WithResolveCache(30*time.Second, 5*time.Second))
	if _, err := c.Resolve(t.Context(), "sk-acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RevokeKey(t.Context(), entitlements.KeyDigest("sk-acme")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resolve(t.Context(), "sk-acme"); err != nil {
		t.Errorf("a revoked key within the cache TTL = %v, want it still cached", err)
	}
	clk.Advance(30 * 1e9)
	if _, err := c.Resolve(t.Context(), "sk-acme"); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("a revoked key after the cache TTL = %v, want ErrInvalidKey", err)
	}
}
