//go:build unix

package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/internal/proctest"
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
	addr := logs.Wait(t, regexp.MustCompile(`msg="cortex: serving" listen=(\S+)`))[1]
	if got := logs.me(t, addr, "sk-b"); got != http.StatusUnauthorized {
		t.Fatalf("GET /v1/me with a key not yet configured: %d, want 401", got)
	}

	write(config(`settle_retry_window = "1h"`) + `[[entitlements.keys]]
key = "sk-b"
account_id = "b"
`)
	hup := func() {
		if err := logs.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	hup()
	logs.Wait(t, regexp.MustCompile(`msg="cortex: configuration reloaded"`))
	logs.Wait(t, regexp.MustCompile(`take effect only after a restart" settings=\[gateway.settle_retry_window\]`))
	if got := logs.me(t, addr, "sk-b"); got != http.StatusOK {
		t.Errorf("GET /v1/me with the key added by the reload: %d, want 200", got)
	}

	write(config("unknown_setting = 1"))
	hup()
	logs.Wait(t, regexp.MustCompile(`msg="cortex: reload refused; the configuration in force is unchanged".*cortex.toml:4: unknown key`))
	if got := logs.me(t, addr, "sk-b"); got != http.StatusOK {
		t.Errorf("GET /v1/me after a refused reload: %d, want 200", got)
	}
	if err := logs.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := logs.Exit(t); err != nil {
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

// daemon is the test binary run as the daemon (proctest.Daemon).
type daemon struct{ *proctest.Daemon }

// runDaemon starts the daemon with args; it is killed when the test ends.
func runDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	return runDaemonIn(t, "", args...)
}

// runDaemonIn is runDaemon in the working directory dir ("": the test's).
func runDaemonIn(t *testing.T, dir string, args ...string) *daemon {
	t.Helper()
	return &daemon{proctest.StartDaemon(t, daemonEnv, dir, args...)}
}
