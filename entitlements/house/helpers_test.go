package house_test

import (
	"bytes"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
	"github.com/helexa-ai/helexa-go/entitlements/house"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
)

// The gateways of the tests: "gw" may spend every account, "narrow" only
// "acme".
const (
	gwToken     = "gw-secret-token"
	narrowToken = "narrow-secret-token"
)

func gateways() []house.Option {
	return []house.Option{
		house.WithGateway(house.Gateway{Name: "gw", TokenSHA256: entitlements.KeyDigest(gwToken)}),
		house.WithGateway(house.Gateway{Name: "narrow", TokenSHA256: entitlements.KeyDigest(narrowToken), Accounts: []string{"acme"}}),
	}
}

// newLocal returns a Local on clk holding keys.
func newLocal(t testing.TB, clk clock.Clock, keys []entitlementstest.KeySpec) *entitlements.Local {
	t.Helper()
	l, err := entitlements.NewLocal(entitlements.Config{}, entitlements.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := l.AddKey(entitlements.Key{Digest: entitlements.KeyDigest(k.Secret), Principal: k.Principal, Budget: k.Budget}); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// serve starts a house over p and returns its URL.
func serve(t testing.TB, p entitlements.Provider, opts ...house.Option) (*house.Handler, string) {
	t.Helper()
	h, err := house.NewHandler(p, append(gateways(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL
}

// client returns a client of the house at url as gateway token.
func client(t testing.TB, url, token string, opts ...house.ClientOption) *house.Client {
	t.Helper()
	c, err := house.NewClient(url, token, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(t.Context()) })
	return c
}

var acme = entitlements.Principal{AccountID: "acme", KeyID: "acme-1"}

var prefixes atomic.Int64

// newLedger returns a Ledger on the Redis at url, under a key prefix of
// its own, holding keys.
func newLedger(t testing.TB, url string, clk clock.Clock, keys []entitlementstest.KeySpec) *redisledger.Ledger {
	t.Helper()
	prefix := "house" + strconv.FormatInt(prefixes.Add(1), 10) + ":"
	l, err := redisledger.Open(entitlements.RedisConfig{URL: url, KeyPrefix: prefix}, redisledger.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	for _, k := range keys {
		if err := l.AddKey(t.Context(), entitlements.Key{Digest: entitlements.KeyDigest(k.Secret), Principal: k.Principal, Budget: k.Budget}); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func epoch() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

func clockSystem() clock.Clock { return clock.System{} }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
