package redistest_test

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/helexa-ai/helexa-go/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// pingURL sends one PING to the server of a redis://host:port/db URL.
func pingURL(u string) error {
	addr, _, _ := strings.Cut(strings.TrimPrefix(u, "redis://"), "/")
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
	if got := string(buf[:n]); got != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", got)
	}
	return nil
}

func TestStart(t *testing.T) {
	t.Setenv(redistest.EnvURL, "redis://127.0.0.1:1/3") // ignored by Start
	s := redistest.Start(t)
	if want := "redis://" + s.Addr + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	if err := pingURL(s.URL()); err != nil {
		t.Fatalf("PING: %v", err)
	}
	select {
	case <-s.Done():
		t.Fatal("Done closed while the server runs")
	default:
	}
	s.Stop()
	<-s.Done()
	s.Stop() // again, as the cleanup does
	if err := pingURL(s.URL()); err == nil {
		t.Error("PING after Stop succeeded")
	}
}

func TestURL(t *testing.T) {
	t.Setenv(redistest.EnvURL, "")
	u := redistest.URL(t)
	if err := pingURL(u); err != nil {
		t.Fatalf("PING %s: %v", u, err)
	}

	t.Setenv(redistest.EnvURL, "redis://example.invalid:6379/2")
	if got := redistest.URL(t); got != "redis://example.invalid:6379/2" {
		t.Errorf("URL with %s set = %q", redistest.EnvURL, got)
	}
}

func TestShared(t *testing.T) {
	t.Setenv(redistest.EnvURL, "")
	var s redistest.Shared
	u := s.URL(t)
	if again := s.URL(t); again != u {
		t.Errorf("second URL = %q, want the first, %q", again, u)
	}
	if err := pingURL(u); err != nil {
		t.Fatalf("PING %s: %v", u, err)
	}
	s.Close()
	if err := pingURL(u); err == nil {
		t.Error("PING after Close succeeded")
	}

	t.Setenv(redistest.EnvURL, "redis://example.invalid:6379/2")
	var other redistest.Shared
	if got := other.URL(t); got != "redis://example.invalid:6379/2" {
		t.Errorf("Shared.URL with %s set = %q", redistest.EnvURL, got)
	}
	other.Close() // started nothing
}

// recorder is a testing.TB that records Skipf and Fatalf and, like the
// real ones, ends the goroutine that called them.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestNoRedisServer: without redis-server on PATH, the test skips, or
// fails under HELEXA_REQUIRE_REDIS=1; with HELEXA_TEST_REDIS_URL set, URL
// and Shared need no redis-server.
func TestNoRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	calls := []struct {
		name string
		call func(testing.TB)
	}{
		{"Path", func(tb testing.TB) { redistest.Path(tb) }},
		{"URL", func(tb testing.TB) { redistest.URL(tb) }},
		{"Start", func(tb testing.TB) { redistest.Start(tb) }},
		{"Shared", func(tb testing.TB) { new(redistest.Shared).URL(tb) }},
	}
	tests := []struct {
		name        string
		url, req    string
		wantSkip    bool
		wantFail    bool
		wantURLOnly bool // URL and Shared succeed; Path and Start do not
	}{
		{name: "skip", wantSkip: true},
		{name: "require", req: "1", wantFail: true},
		{name: "url set", url: "redis://127.0.0.1:1/0", wantSkip: true, wantURLOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(redistest.EnvURL, tt.url)
			t.Setenv(redistest.EnvRequire, tt.req)
			for _, c := range calls {
				r := &recorder{TB: t}
				done := make(chan struct{})
				go func() {
					defer close(done)
					c.call(r)
				}()
				<-done
				wantSkip, wantFail := tt.wantSkip, tt.wantFail
				if tt.wantURLOnly && (c.name == "URL" || c.name == "Shared") {
					wantSkip, wantFail = false, false
				}
				if (r.skipped != "") != wantSkip || (r.failed != "") != wantFail {
					t.Errorf("%s: skipped %q, failed %q; want skip %v, fail %v", c.name, r.skipped, r.failed, wantSkip, wantFail)
				}
				if msg := r.skipped + r.failed; msg != "" && !strings.Contains(msg, "redis-server not found") {
					t.Errorf("%s: message %q does not say redis-server was not found", c.name, msg)
				}
			}
		})
	}
}
