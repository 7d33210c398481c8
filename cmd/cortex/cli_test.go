//go:build unix

package main

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHelpExitsZero runs cortex with --help or -h on every command and
// subcommand: each prints its usage and exits 0.
func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"serve", "--help"}, {"dev", "-h"}, {"status", "--help"},
		{"keys", "--help"}, {"keys", "add", "--help"}, {"keys", "list", "-h"}, {"keys", "show", "--help"},
		{"keys", "revoke", "--help"}, {"keys", "topup", "-h"}, {"keys", "set-cap", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			d := runDaemon(t, args...)
			if err := d.Exit(t); err != nil {
				t.Fatalf("exit %v:\n%s", err, d)
			}
			if out := d.String(); !strings.Contains(strings.ToLower(out), "usage") || strings.Contains(out, "help requested") {
				t.Errorf("no usage, or an error:\n%s", out)
			}
		})
	}
}

// TestErrorHasOnePrefix runs cortex into errors of its own and of package
// cortex: each is printed once, with one "cortex: " prefix, and exits 1.
func TestErrorHasOnePrefix(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "none.toml")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--config", missing}, "cortex: open " + missing + ": no such file or directory\n"},
		{[]string{"status", "-o", "yaml"}, `cortex: status: -o "yaml": want table or json` + "\n"},
	} {
		t.Run(tt.args[0], func(t *testing.T) {
			t.Parallel()
			d := runDaemon(t, tt.args...)
			var exit *exec.ExitError
			if err := d.Exit(t); !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1:\n%s", err, d)
			}
			if out := d.String(); !strings.HasPrefix(out, tt.want) {
				t.Errorf("output %q, want it to start with %q", out, tt.want)
			}
		})
	}
}

// TestServeBindsFirst starts cortex serve on a port in use: it fails at
// once, naming the address, and has not polled its neuron.
func TestServeBindsFirst(t *testing.T) {
	t.Parallel()
	var polled atomic.Int64
	neuron := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polled.Add(1)
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	t.Cleanup(neuron.Close)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	dir := t.TempDir()
	config := "[gateway]\nlisten = \"" + busy.Addr().String() + "\"\nmetrics_listen = \"127.0.0.1:0\"\n" +
		"[[neurons]]\nname = \"gpu-01\"\nendpoint = \"" + neuron.URL + "\"\n" +
		"[entitlements.local]\npath = \"ledger\"\n"
	path := filepath.Join(dir, "cortex.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	d := runDaemon(t, "serve", "--config", path)
	if err := d.Exit(t); err == nil {
		t.Fatalf("cortex serve on a busy port exited 0:\n%s", d)
	}
	want := "cortex: listen: listen tcp " + busy.Addr().String() + ": bind: address already in use"
	if !strings.Contains(d.String(), want) {
		t.Errorf("output does not say %q:\n%s", want, d)
	}
	if n := polled.Load(); n != 0 {
		t.Errorf("the neuron was polled %d times before the bind failed", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "ledger")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the ledger file was opened before the bind failed (%v)", err)
	}
}

// TestStatusSaysTheKeyIsRefused runs cortex status against dev mode with a
// wrong key: it says the key was refused, then shows the public view.
func TestStatusSaysTheKeyIsRefused(t *testing.T) {
	t.Parallel()
	d := startTestDev(t)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"status", "--endpoint", "http://" + d.host(), "--api-key", "sk-wrong"}, &stdout, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "the gateway refused the key (401 invalid_api_key") {
		t.Errorf("stderr does not say the key was refused:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "NEURON") || strings.Contains(stdout.String(), "ACCOUNT") {
		t.Errorf("want the public view, without budgets:\n%s", stdout.String())
	}
	stdout.Reset()
	stderr.Reset()
	if err := run(t.Context(), []string{"status", "--endpoint", "http://" + d.host(), "--api-key", devKey}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if stderr.Len() != 0 || !strings.Contains(stdout.String(), "ACCOUNT") {
		t.Errorf("the admin key: stderr %q, stdout:\n%s", stderr.String(), stdout.String())
	}
}
