package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements"
)

// keysLocal runs "cortex keys CMD ARGS..." and returns its output.
func keysLocal(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), append([]string{"keys"}, args...), &out, &errOut)
	return out.String(), err
}

// The keys commands work on a ledger file as they do on Redis, named by
// --ledger or by cortex.toml's [entitlements.local] (relative to the file),
// and what they do is in the file for the next Local that opens it.
func TestKeysLedgerFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	config := filepath.Join(dir, "cortex.toml")
	if err := os.WriteFile(config, []byte("[entitlements.local]\npath = \"ledger\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ledger")
	must := func(args ...string) string {
		t.Helper()
		out, err := keysLocal(t, args...)
		if err != nil {
			t.Fatalf("cortex keys %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := must("add", "--config", config, "--account", "acme", "--cap", "1000")
	m, dm := keyLine.FindStringSubmatch(out), digestLine.FindStringSubmatch(out)
	if m == nil || dm == nil {
		t.Fatalf("add printed no key or digest:\n%s", out)
	}
	secret, digest := m[1], dm[1]
	out = must("add", "--ledger", path, "--account", "acme", "--key-id", "acme-ci")
	ci := keyLine.FindStringSubmatch(out)
	must("topup", "--config", config, "--account", "acme", "--amount", "500")
	must("add", "--ledger", path, "--account", "roll", "--cap", "100", "--window", "rolling", "--seconds", "60")
	must("set-cap", "--ledger", path, "--account", "roll", "--cap", "200")
	must("revoke", "--config", config, "--account", "acme", "--key-id", "acme-ci")
	for _, s := range []string{"acme", "acme-ci", "roll", digest[:digestPrefixLen]} {
		if out := must("list", "--config", config); !strings.Contains(out, s) {
			t.Errorf("list lacks %q:\n%s", s, out)
		}
	}
	if out := must("show", "--ledger", path, digest[:10]); !strings.Contains(out, "1500") {
		t.Errorf("show after the top-up lacks the cap 1500:\n%s", out)
	}

	l, err := entitlements.OpenLocal(entitlements.Config{Local: &entitlements.LocalConfig{Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := t.Context()
	p, err := l.Resolve(ctx, secret)
	if err != nil {
		t.Fatalf("Resolve(the added key): %v", err)
	}
	if s, _ := l.Snapshot(ctx, p); s.HardCap == nil || *s.HardCap != 1500 {
		t.Errorf("cap after the top-up: %v, want 1500", s.HardCap)
	}
	if _, err := l.Resolve(ctx, ci[1]); !errors.Is(err, entitlements.ErrInvalidKey) {
		t.Errorf("revoked key: Resolve = %v, want ErrInvalidKey", err)
	}
	if a, err := l.Account(ctx, "roll"); err != nil || a.Budget.HardCap == nil || *a.Budget.HardCap != 200 || a.Budget.Window != entitlements.Rolling(60) {
		t.Errorf("account roll: %+v, %v; want cap 200 over rolling(60s)", a.Budget, err)
	}

	// While a Local (a running cortex) holds the file, keys refuses.
	_, err = keysLocal(t, "list", "--ledger", path)
	if !errors.Is(err, entitlements.ErrLedgerLocked) || !strings.Contains(err.Error(), "stop cortex") {
		t.Errorf("keys list while the ledger is held = %v, want ErrLedgerLocked telling to stop cortex", err)
	}
}
