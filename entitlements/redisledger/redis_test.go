package redisledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// The tests run against real redis-server processes that they start on free
// loopback ports. Most tests share one server and keep apart by key prefix;
// tests that kill their server start their own. Without redis-server on
// PATH the tests skip, unless HELEXA_REQUIRE_REDIS=1 (CI), where they fail.
// With HELEXA_TEST_REDIS_URL set, the tests that share a server use that one
// instead of starting one.

// shared is the server most tests share, started by the first test that
// needs it and stopped by TestMain.
var shared struct {
	once sync.Once
	srv  *redisServer
	err  error
}

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // the tests provoke dial failures on purpose
	code := m.Run()
	if shared.srv != nil {
		shared.srv.stop()
	}
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

// redisServer is a redis-server child process.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	out  *bytes.Buffer // its output, for failure messages (read after done)
}

// redisPath returns the path of redis-server, or skips (or fails, under
// HELEXA_REQUIRE_REDIS=1) tb when there is none.
func redisPath(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("HELEXA_REQUIRE_REDIS") == "1" {
			tb.Fatalf("redis-server not found and HELEXA_REQUIRE_REDIS=1: %v", err)
		}
		tb.Skipf("redis-server not found: %v", err)
	}
	return path
}

// startRedis starts a redis-server on a free loopback port and waits until
// it answers PING. A port taken between choosing and binding it is retried.
func startRedis(path string) (*redisServer, error) {
	var errs []error
	for range 5 {
		s, err := tryStartRedis(path)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func tryStartRedis(path string) (*redisServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return nil, err
	}
	s := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{}), out: new(bytes.Buffer)}
	s.cmd = exec.Command(path, "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--bind", "127.0.0.1", "--loglevel", "warning")
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-s.done:
			return nil, fmt.Errorf("redis-server on port %d exited: %s", port, s.out.String())
		default:
		}
		if ping(s.addr) == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on port %d did not answer PING", port)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not synchronisation
	}
}

// ping sends one PING over a fresh connection.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "+PONG") {
		return fmt.Errorf("PING answered %q", buf[:n])
	}
	return nil
}

// stop kills the server and waits for it to exit; it does nothing for a
// server the tests did not start.
func (s *redisServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// sharedRedis returns the shared server: the one HELEXA_TEST_REDIS_URL
// names when it is set (its database number is ignored: the tests keep
// apart by key prefix), else one started on first use.
func sharedRedis(tb testing.TB) *redisServer {
	tb.Helper()
	if u := os.Getenv("HELEXA_TEST_REDIS_URL"); u != "" {
		o, err := redis.ParseURL(u)
		if err != nil {
			tb.Fatalf("HELEXA_TEST_REDIS_URL: %v", err)
		}
		return &redisServer{addr: o.Addr}
	}
	path := redisPath(tb)
	shared.once.Do(func() { shared.srv, shared.err = startRedis(path) })
	if shared.err != nil {
		tb.Fatalf("starting redis-server: %v", shared.err)
	}
	return shared.srv
}

// privateRedis starts a server for tb alone, stopped at cleanup (tests that
// kill their server stop it earlier).
func privateRedis(tb testing.TB) *redisServer {
	tb.Helper()
	s, err := startRedis(redisPath(tb))
	if err != nil {
		tb.Fatalf("starting redis-server: %v", err)
	}
	tb.Cleanup(s.stop)
	return s
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
