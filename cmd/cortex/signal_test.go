//go:build unix

package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// daemonEnv names the arguments with which the test binary, run again by
// TestSIGHUPIsLoggedAndIgnored, is cortex serve (main) instead of
// running tests.
const daemonEnv = "HELEXA_CORTEX_TEST_DAEMON_ARGS"

// TestDaemon is cortex serve when the test binary is run with
// daemonEnv set; otherwise it is skipped.
func TestDaemon(t *testing.T) {
	args := os.Getenv(daemonEnv)
	if args == "" {
		t.Skip("the daemon of TestSIGHUPIsLoggedAndIgnored")
	}
	os.Args = append([]string{"cortex"}, strings.Split(args, "\x1f")...)
	main()
}

// SIGHUP, whose default action ends a process, is logged and ignored by
// the running daemon: it keeps serving, and stops on SIGTERM as usual.
func TestSIGHUPIsLoggedAndIgnored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	config := `[gateway]
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
[[neurons]]
name = "gpu-01"
endpoint = "http://127.0.0.1:1"
`
	path := filepath.Join(dir, "cortex.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := runDaemon(t, "serve", "--config", path)
	addr := logs.wait(t, regexp.MustCompile(`msg="cortex: serving" listen=(\S+)`))[1]
	before := logs.health(t, addr)
	for i := range 2 {
		if err := logs.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		// The line of this SIGHUP, not the one of the first again: a
		// second signal sent while the first is still pending is
		// coalesced with it.
		logs.wait(t, regexp.MustCompile(fmt.Sprintf(`(?s)(?:SIGHUP ignored.*?){%d}`, i+1)))
	}
	if after := logs.health(t, addr); after != before {
		t.Errorf("GET /health answered %d after SIGHUP, %d before", after, before)
	}
	if n := strings.Count(logs.String(), "SIGHUP ignored"); n != 2 {
		t.Errorf("%d SIGHUP lines for two SIGHUPs:\n%s", n, logs)
	}
	if err := logs.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := logs.exit(t); err != nil {
		t.Errorf("the daemon ended with %v after SIGTERM:\n%s", err, logs)
	}
}

// daemon is the test binary run as the daemon, and its output.
type daemon struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	mu   sync.Mutex
	out  bytes.Buffer
}

func (d *daemon) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.Write(p)
}

func (d *daemon) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

// runDaemon starts the daemon with args; it is killed when the test ends.
func runDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	return runDaemonIn(t, "", args...)
}

// runDaemonIn is runDaemon in the working directory dir ("": the test's).
func runDaemonIn(t *testing.T, dir string, args ...string) *daemon {
	t.Helper()
	d := &daemon{done: make(chan struct{})}
	d.cmd = exec.Command(os.Args[0], "-test.run=^TestDaemon$")
	d.cmd.Dir = dir
	d.cmd.Env = append(os.Environ(), daemonEnv+"="+strings.Join(args, "\x1f"))
	d.cmd.Stdout, d.cmd.Stderr = d, d
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.done
	})
	return d
}

// wait waits for a line of output matching re and returns its submatches.
func (d *daemon) wait(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(d.String()); m != nil {
			return m
		}
		select {
		case <-d.done:
			t.Fatalf("the daemon exited (%v) before %q:\n%s", d.err, re, d)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the daemon's output:\n%s", re, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// health returns the status of the daemon's answer to GET /health.
func (d *daemon) health(t *testing.T, addr string) int {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatalf("GET /health: %v\n%s", err, d)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// exit waits for the daemon to exit and returns its exit error.
func (d *daemon) exit(t *testing.T) error {
	t.Helper()
	select {
	case <-d.done:
		return d.err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("still running 30 s later")
	}
}
