package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The browser test opens the status page of a dev stack in headless
// Chromium (Debian's chromium; .ci/run installs it). It is skipped when no
// Chromium is found, unless HELEXA_REQUIRE_CHROMIUM=1 (as in CI), and
// saves a screenshot under $HELEXA_ARTIFACTS (else a temporary
// directory, logged); HELEXA_SAVE_SCREENSHOT=1 also copies it to
// testdata/artifacts/, which is not committed.

// chromiumTimeout bounds each run of Chromium.
const chromiumTimeout = 60 * time.Second

// findChromium returns the Chromium binary: $HELEXA_CHROMIUM, else the
// first of chromium, chromium-browser, google-chrome on the PATH.
func findChromium() string {
	if p := os.Getenv("HELEXA_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// chromium runs headless Chromium with args and returns its stdout. It
// runs in a process group of its own, killed whole when ctx ends.
func chromium(ctx context.Context, t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(),
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, stderr.Bytes())
	}
	// Chromium may leave helpers behind in its group: end them.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	return stdout.Bytes()
}

// artifactDir is where the test saves what a person may want to look at.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HELEXA_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestStatusPageInChromium(t *testing.T) {
	bin := findChromium()
	if bin == "" {
		if os.Getenv("HELEXA_REQUIRE_CHROMIUM") == "1" {
			t.Fatal("no chromium found and HELEXA_REQUIRE_CHROMIUM=1 (apt-get install chromium)")
		}
		t.Skip("no chromium found (apt-get install chromium, or set HELEXA_CHROMIUM)")
	}
	d := startTestDev(t)
	loadDevModel(t, d)
	page := "http://" + d.host() + "/status?refresh=0"
	ctx, cancel := context.WithTimeout(t.Context(), chromiumTimeout)
	defer cancel()

	dom := string(chromium(ctx, t, bin, "--dump-dom", page))
	for _, want := range []string{
		`<title>helexa cortex: ok</title>`,
		`data-neuron="` + devNeuron + `"`,
		`data-gpu="0"`, `data-gpu="1"`,
		`class="bar vram"`,
		`data-model="` + d.model + `"`,
		`<span class="badge s-loaded">loaded</span>`,
		`<span class="badge s-load">load</span>`, // the event of the cold load
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if strings.Contains(dom, `id="budgets"`) {
		t.Error("the public page shows budgets")
	}
	if t.Failed() {
		t.Logf("rendered DOM:\n%s", dom)
	}

	// The admin view, with the key as the password of Basic auth as a
	// browser sends it, shows the demo account's budget.
	admin := "http://any:" + devKey + "@" + d.host() + "/status?refresh=0&admin=1"
	dom = string(chromium(ctx, t, bin, "--dump-dom", admin))
	for _, want := range []string{`<span class="badge s-ok">admin view</span>`, `id="budgets"`, `<td>` + devAccount + `</td>`} {
		if !strings.Contains(dom, want) {
			t.Errorf("the admin view lacks %q", want)
		}
	}

	png := filepath.Join(artifactDir(t), "status.png")
	chromium(ctx, t, bin, "--screenshot="+png, "--window-size=1280,900", page)
	shot, err := os.ReadFile(png)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if !bytes.HasPrefix(shot, []byte("\x89PNG\r\n\x1a\n")) || len(shot) < 10<<10 {
		t.Errorf("the screenshot (%d bytes) is not a PNG of a page", len(shot))
	}
	t.Logf("screenshot of the status page: %s", png)
	if os.Getenv("HELEXA_SAVE_SCREENSHOT") == "1" {
		dst := filepath.Join("..", "..", "testdata", "artifacts", "status.png")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("copied to %s", dst)
	}
}
