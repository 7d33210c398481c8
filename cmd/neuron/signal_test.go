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
// TestSIGHUPReloads, is the neuron daemon (main) instead of
// running tests.
const daemonEnv = "HELEXA_NEURON_TEST_DAEMON_ARGS"

// TestDaemon is the neuron daemon when the test binary is run with
// daemonEnv set; otherwise it is skipped.
func TestDaemon(t *testing.T) {
	args := os.Getenv(daemonEnv)
	if args == "" {
		t.Skip("the daemon of TestSIGHUPReloads")
	}
	os.Args = append([]string{"neuron"}, strings.Split(args, "\x1f")...)
	main()
}

// SIGHUP reloads neuron.toml into the running daemon: an engine template
// added to the file can be loaded from then on, new admission limits are
// in force, a settings change that needs a restart is logged as such, and
// an invalid file is refused with its line while the configuration in
// force stays. The daemon keeps serving, and stops on SIGTERM as usual.
func TestSIGHUPReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	config := func(extra string) string {
		return `listen = "127.0.0.1:0"
drain_timeout = "1s"
` + extra + `
[discovery]
kind = "static"
[[discovery.devices]]
index = 0
total_mb = 1000
[[engines]]
name = "sim"
command = ["helexa-sim", "--port", "{port}"]
`
	}
	path := filepath.Join(dir, "neuron.toml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(config(""))
	logs := runDaemon(t, "--config", path)
	addr := logs.Wait(t, regexp.MustCompile(`msg="neuron: serving" listen=(\S+)`))[1]
	if status := logs.load(t, addr, "other"); status != http.StatusBadRequest {
		t.Fatalf("loading with an engine not yet configured: %d, want 400 unknown_engine", status)
	}

	write(strings.Replace(config(""), `drain_timeout = "1s"`, `drain_timeout = "2s"`, 1) + `[admission]
max_in_flight = 7
[[engines]]
name = "other"
command = ["no-such-engine-binary-for-this-test", "{port}"]
`)
	hup := func() {
		if err := logs.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	hup()
	logs.Wait(t, regexp.MustCompile(`msg="neuron: configuration reloaded" engines=2 admission="\{MaxInFlight:7 `))
	logs.Wait(t, regexp.MustCompile(`take effect only after a restart" settings=\[drain_timeout\]`))
	if status := logs.load(t, addr, "other"); status == http.StatusBadRequest {
		t.Errorf("loading with the engine added by the reload: still 400 unknown_engine")
	}

	write(config("unknown_setting = 1"))
	hup()
	logs.Wait(t, regexp.MustCompile(`msg="neuron: reload refused; the configuration in force is unchanged".*neuron.toml:3: unknown key`))
	if after := logs.health(t, addr); after != http.StatusOK {
		t.Errorf("GET /health answered %d after a refused reload", after)
	}
	if err := logs.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := logs.Exit(t); err != nil {
		t.Errorf("the daemon ended with %v after SIGTERM:\n%s", err, logs)
	}
}

// load returns the status of the daemon's answer to a POST /models/load of
// a model with the named engine.
func (d *daemon) load(t *testing.T, addr, engine string) int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	body := `{"model_id":"m","engine":"` + engine + `","vram_mb":10}`
	resp, err := c.Post("http://"+addr+"/models/load", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST /models/load: %v\n%s", err, d)
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
