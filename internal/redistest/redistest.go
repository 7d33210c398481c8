// Package redistest starts throwaway redis-server processes for the tests
// of helexa-go.
//
// A server is started from redis-server on PATH, on a free loopback port,
// with persistence off (--save "" --appendonly no --bind 127.0.0.1), and is
// ready once it answers PING. Without redis-server the caller's test is
// skipped, unless HELEXA_REQUIRE_REDIS=1 (CI), where it fails. URL and
// Shared use the Redis that HELEXA_TEST_REDIS_URL names instead when that is
// set; Start always starts a server of its own, for tests that kill it.
//
// The package keeps no state: a server shared by the tests of a package is
// a Shared value that the package declares and closes in its TestMain.
package redistest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The environment variables the package reads.
const (
	// EnvURL names a Redis that URL and Shared return instead of starting
	// one.
	EnvURL = "HELEXA_TEST_REDIS_URL"
	// EnvRequire, set to "1", turns the skip without redis-server into a
	// failure.
	EnvRequire = "HELEXA_REQUIRE_REDIS"
)

// Path returns the path of redis-server on PATH. When there is none it
// skips tb, or fails it when HELEXA_REQUIRE_REDIS=1.
func Path(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(EnvRequire) == "1" {
			tb.Fatalf("redistest: redis-server not found and %s=1: %v", EnvRequire, err)
		}
		tb.Skipf("SKIPPING: redis-server not found (set %s to use a running Redis): %v", EnvURL, err)
	}
	return path
}

// URL returns the URL of a Redis for tb: HELEXA_TEST_REDIS_URL when set,
// else that of a server started as Start does and stopped at tb's cleanup.
func URL(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return Start(tb).URL()
}

// Start starts a redis-server for tb alone and stops it at tb's cleanup
// (a test may stop it earlier). It ignores HELEXA_TEST_REDIS_URL. Without
// redis-server it skips tb, as Path does; it fails tb when the server
// does not start.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := launch(Path(tb))
	if err != nil {
		tb.Fatalf("redistest: starting redis-server: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Server is a redis-server child process.
type Server struct {
	// Addr is the address it listens on, 127.0.0.1:port.
	Addr string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	out  *bytes.Buffer // its output, for failure messages (read after done)
}

// URL returns the server's URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Stop kills the server and waits until it has exited. It may be called
// more than once, and concurrently.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Done returns a channel closed when the process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// launch starts a redis-server at path on a free loopback port and waits
// until it answers PING. A port taken between choosing and binding it is
// retried.
func launch(path string) (*Server, error) {
	var errs []error
	for range 5 {
		s, err := tryLaunch(path)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func tryLaunch(path string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	if err := ln.Close(); err != nil {
		return nil, err
	}
	s := &Server{Addr: "127.0.0.1:" + port, done: make(chan struct{}), out: new(bytes.Buffer)}
	s.cmd = exec.Command(path, "--port", port, "--save", "", "--appendonly", "no",
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
			return nil, fmt.Errorf("redis-server on port %s exited: %s", port, strings.TrimSpace(s.out.String()))
		default:
		}
		if ping(s.Addr) == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("redis-server on port %s did not answer PING: %s", port, strings.TrimSpace(s.out.String()))
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not synchronisation
	}
}

// ping sends one PING to addr over a fresh connection.
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

// Shared is a Redis shared by the tests of a package: the one
// HELEXA_TEST_REDIS_URL names, else a server started by the first URL call
// and stopped by Close. The zero value is ready to use. URL may be called
// concurrently; Close is called once the tests are done, from TestMain.
type Shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// URL returns the shared Redis's URL, starting the server on first use.
// Without redis-server it skips tb, as Path does; it fails tb when the
// server did not start.
func (s *Shared) URL(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	path := Path(tb)
	s.once.Do(func() { s.srv, s.err = launch(path) })
	if s.err != nil {
		tb.Fatalf("redistest: starting redis-server: %v", s.err)
	}
	return s.srv.URL()
}

// Close stops the server if URL started one.
func (s *Shared) Close() {
	if s.srv != nil {
		s.srv.Stop()
	}
}
