package redisledger_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
	"github.com/helexa-ai/helexa-go/internal/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// The tests run against real redis-server processes (internal/redistest)
// on free loopback ports. Most tests share one server and keep apart by key
// prefix; tests that kill their server start their own. Without
// redis-server on PATH the tests skip, unless HELEXA_REQUIRE_REDIS=1 (CI),
// where they fail. With HELEXA_TEST_REDIS_URL set, the tests that share a
// server use that one instead of starting one.

// shared is the server most tests share, started by the first test that
// needs it and stopped by TestMain.
var shared redistest.Shared

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // the tests provoke dial failures on purpose
	code := m.Run()
	shared.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// quietLogger discards go-redis's own log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// redisServer is a Redis the tests use.
type redisServer struct {
	addr string
	srv  *redistest.Server // nil for the shared server
}

// stop kills the server; it does nothing for the shared server.
func (s *redisServer) stop() {
	if s.srv != nil {
		s.srv.Stop()
	}
}

// redisPath returns the path of redis-server, or skips (or fails, under
// HELEXA_REQUIRE_REDIS=1) tb when there is none.
func redisPath(tb testing.TB) string {
	tb.Helper()
	return redistest.Path(tb)
}

// sharedRedis returns the shared server: the one HELEXA_TEST_REDIS_URL
// names when it is set (its database number is ignored: the tests keep
// apart by key prefix), else one started on first use.
func sharedRedis(tb testing.TB) *redisServer {
	tb.Helper()
	u := shared.URL(tb)
	o, err := redis.ParseURL(u)
	if err != nil {
		tb.Fatalf("Redis URL %q: %v", u, err)
	}
	return &redisServer{addr: o.Addr}
}

// privateRedis starts a server for tb alone, stopped at cleanup (tests that
// kill their server stop it earlier).
func privateRedis(tb testing.TB) *redisServer {
	tb.Helper()
	s := redistest.Start(tb)
	return &redisServer{addr: s.Addr, srv: s}
}

// newClient returns a client of addr, closed at cleanup. It does not retry
// failed commands, so that tests against a dead server fail fast.
func newClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 2 * time.Second})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

var prefixes atomic.Int64

// uniquePrefix returns a key prefix no other ledger of this test binary uses.
func uniquePrefix(tb testing.TB) string {
	name := strings.NewReplacer("{", "_", "}", "_", " ", "_").Replace(tb.Name())
	return "t" + strconv.FormatInt(prefixes.Add(1), 10) + ":" + name + ":"
}

// newLedger returns a Ledger over client with a fresh key prefix unless opts
// set one.
func newLedger(tb testing.TB, client redis.UniversalClient, opts ...redisledger.Option) *redisledger.Ledger {
	tb.Helper()
	opts = append([]redisledger.Option{redisledger.WithKeyPrefix(uniquePrefix(tb))}, opts...)
	l, err := redisledger.New(client, opts...)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return l
}

// addKey adds a key with secret to l and returns its principal as resolved.
func addKey(tb testing.TB, l *redisledger.Ledger, secret string, p entitlements.Principal, b entitlements.Budget) entitlements.Principal {
	tb.Helper()
	ctx := context.Background()
	if err := l.AddKey(ctx, entitlements.Key{Digest: entitlements.KeyDigest(secret), Principal: p, Budget: b}); err != nil {
		tb.Fatalf("AddKey(%+v): %v", p, err)
	}
	got, err := l.Resolve(ctx, secret)
	if err != nil {
		tb.Fatalf("Resolve(%q): %v", secret, err)
	}
	return got
}
