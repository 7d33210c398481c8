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
// TestSIGHUPReloads, is cortex serve (main) instead of
// running tests.
const daemonEnv = "HELEXA_CORTEX_TEST_DAEMON_ARGS"

// TestDaemon is cortex serve when the test binary is run with
// daemonEnv set; otherwise it is skipped.
func TestDaemon(t *testing.T) {
	args := os.Getenv(daemonEnv)
	if args == "" {
		t.Skip("the daemon of TestSIGHUPReloads")
	}
	os.Args = append([]string{"cortex"}, strings.Split(args, "\x1f")...)
	main()
}

// SIGHUP reloads cortex.toml into the running daemon: a key added to the
// file is accepted, a settings change that needs a restart is logged as
// such, and an invalid file is refused with its line while the
// configuration in force stays. The daemon keeps serving, and stops on
// SIGTERM as usual.
func TestSIGHUPReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	config := func(extra string) string {
		return `[gateway]
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
` + extra + `
[[neurons]]
name = "gpu-01"
endpoint = "http://127.0.0.1:1"
[entitlements]
require_auth = true
[[entitlements.keys]]
key = "sk-a"
account_id = "a"
`
	}
	path := filepath.Join(dir, "cortex.toml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(config(""))
	logs := runDaemon(t, "serve", "--config", path)
	addr := logs.wait(t, regexp.MustCompile(`msg="cortex: serving" listen=(\S+)`))[1]
	if got := logs.me(t, addr, "sk-b"); got != http.StatusUnauthorized {
		t.Fatalf("GET /v1/me with a key not yet configured: %d, want 401", got)
	}

	write(config(`settle_retry_window = "1h"`) + `[[entitlements.keys]]
key = "sk-b"
account_id = "b"
`)
	hup := func() {
		if err := logs.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	hup()
	logs.wait(t, regexp.MustCompile(`msg="cortex: configuration reloaded"`))
	logs.wait(t, regexp.MustCompile(`take effect only after a restart" settings=\[gateway.settle_retry_window\]`))
	if got := logs.me(t, addr, "sk-b"); got != http.StatusOK {
		t.Errorf("GET /v1/me with the key added by the reload: %d, want 200", got)
	}

	write(config("unknown_setting = 1"))
	hup()
	logs.wait(t, regexp.MustCompile(`msg="cortex: reload refused; the configuration in force is unchanged".*cortex.toml:4: unknown key`))
	if got := logs.me(t, addr, "sk-b"); got != http.StatusOK {
		t.Errorf("GET /v1/me after a refused reload: %d, want 200", got)
	}
	if err := logs.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := logs.exit(t); err != nil {
		t.Errorf("the daemon ended with %v after SIGTERM:\n%s", err, logs)
	}
}

// me returns the status of the daemon's answer to GET /v1/me with key.
func (d *daemon) me(t *testing.T, addr, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/me: %v\n%s", err, d)
	}
	resp.Body.Close()
	return resp.StatusCode
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
