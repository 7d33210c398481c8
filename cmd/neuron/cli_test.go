//go:build unix

package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// --help and -h print the usage and exit 0.
func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--help", "-h"} {
		t.Run(flag, func(t *testing.T) {
			t.Parallel()
			d := runDaemon(t, flag)
			if err := d.Exit(t); err != nil {
				t.Fatalf("exit %v:\n%s", err, d)
			}
			if out := d.String(); !strings.HasPrefix(out, "usage: neuron") || strings.Contains(out, "help requested") {
				t.Errorf("output:\n%s", out)
			}
		})
	}
}

// An error of package neuron is printed with one "neuron: " prefix.
func TestErrorHasOnePrefix(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "none.toml")
	d := runDaemon(t, "--config", missing)
	var exit *exec.ExitError
	if err := d.Exit(t); !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit %v, want status 1:\n%s", err, d)
	}
	if want := "neuron: open " + missing + ": no such file or directory\n"; !strings.HasPrefix(d.String(), want) {
		t.Errorf("output %q, want it to start with %q", d.String(), want)
	}
}

// A neuron on a port in use fails at once, naming the address, before it
// starts the engines of its default models.
func TestBindsFirst(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	dir := t.TempDir()
	marker := filepath.Join(dir, "engine-started")
	config := `listen = "` + busy.Addr().String() + `"
[discovery]
kind = "static"
[[discovery.devices]]
index = 0
total_mb = 1000
[[engines]]
name = "marker"
command = ["/bin/sh", "-c", "touch ` + marker + `; sleep 60"]
[[default_models]]
model_id = "m"
engine = "marker"
`
	path := filepath.Join(dir, "neuron.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	d := runDaemon(t, "--config", path)
	if err := d.Exit(t); err == nil {
		t.Fatalf("a neuron on a busy port exited 0:\n%s", d)
	}
	if want := "neuron: listen: listen tcp " + busy.Addr().String() + ": bind: address already in use"; !strings.Contains(d.String(), want) {
		t.Errorf("output does not say %q:\n%s", want, d)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an engine started before the bind failed (%v)", err)
	}
}
