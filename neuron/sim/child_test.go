//go:build unix

package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// syncBuffer collects a child's stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// child is a running helexa-sim process.
type child struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error // of Wait, once exited is closed
	url    string
}

var addrRE = regexp.MustCompile(`addr=(\S+)`)

// startChild runs the binary with args and waits for its start line.
func startChild(t *testing.T, bin string, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(bin, append([]string{"--port", "0"}, args...)...), stderr: &syncBuffer{}, exited: make(chan struct{})}
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.exited
		if t.Failed() {
			t.Logf("helexa-sim stderr:\n%s", c.stderr)
		}
	})
	waitFor(t, "the start line", func() bool { return addrRE.MatchString(c.stderr.String()) || c.done() })
	m := addrRE.FindStringSubmatch(c.stderr.String())
	if m == nil {
		t.Fatalf("no start line; stderr:\n%s", c.stderr)
	}
	c.url = "http://" + m[1]
	return c
}

func (c *child) done() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

// exitCode waits (at most 10 s) for the process to end and returns its
// exit status.
func (c *child) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("helexa-sim did not exit")
	}
	if c.err == nil {
		return 0
	}
	if ee, ok := errors.AsType[*exec.ExitError](c.err); ok {
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", c.err)
	return -1
}

// getStats returns the child's GET /sim/stats once no request is in
// flight.
func getStats(t *testing.T, client *http.Client, url string) sim.Stats {
	t.Helper()
	var s sim.Stats
	waitFor(t, "no request in flight at the engine", func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/sim/stats", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET /sim/stats: %v", err)
		}
		defer resp.Body.Close()
		s = sim.Stats{}
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /sim/stats: status %d, %v", resp.StatusCode, err)
		}
		return s.InFlight == 0
	})
	return s
}

// healthStatus returns the status of GET /health, or 0 when it fails.
func healthStatus(ctx context.Context, client *http.Client, url string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return 0
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestChildProcess(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a binary")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	bin := filepath.Join(t.TempDir(), "helexa-sim")
	build := exec.CommandContext(t.Context(), gobin, "build", "-o", bin, "./cmd/helexa-sim")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("serves, streams, exits 0 on SIGTERM", func(t *testing.T) {
		t.Parallel()
		client := &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		c := startChild(t, bin, "--model", "demo", "--load-time", "20ms")
		waitFor(t, "/health 200", func() bool { return healthStatus(t.Context(), client, c.url) == http.StatusOK })
		resp := send(t.Context(), t, client, c.url+"/v1/chat/completions", chatBodyFor("demo", "hi", `"max_tokens":5,"stream":true`))
		events, done, err := readSSE(resp.Body)
		if err != nil || !done || len(events) != 7 { // role, 5 tokens, finish
			t.Errorf("stream: %d events, done %v, err %v", len(events), done, err)
		}
		resp.Body.Close()
		waitFor(t, "the request line", func() bool { return strings.Contains(c.stderr.String(), "path=/v1/chat/completions") })
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := c.exitCode(t); code != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0", code)
		}
	})

	t.Run("stats and response headers", func(t *testing.T) {
		t.Parallel()
		client := &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		c := startChild(t, bin, "--load-time", "1h", "--header", "Server: llama.cpp", "--header", "Access-Control-Allow-Origin:*")
		// /sim/stats answers while the model loads.
		if got := getStats(t, client, c.url); got != (sim.Stats{}) {
			t.Errorf("stats before any request: %+v", got)
		}
		resp := send(t.Context(), t, client, c.url+"/v1/chat/completions?k=v", chatBody("hi", ""))
		resp.Body.Close()
		if got := resp.Header.Get("Server"); got != "llama.cpp" {
			t.Errorf("Server %q, want llama.cpp", got)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("Access-Control-Allow-Origin %q, want *", got)
		}
		// A request refused while loading never reached the engine.
		if got := getStats(t, client, c.url); got != (sim.Stats{}) {
			t.Errorf("stats after a request refused while loading: %+v", got)
		}
		resp = send(t.Context(), t, client, c.url+"/sim/stats", "{}")
		if e := errorCode(t, resp, http.StatusMethodNotAllowed); e.Code != "method_not_allowed" {
			t.Errorf("POST /sim/stats: %+v", e)
		}
		resp.Body.Close()

		c = startChild(t, bin, "--tps", "0")
		waitFor(t, "/health 200", func() bool { return healthStatus(t.Context(), client, c.url) == http.StatusOK })
		resp = send(t.Context(), t, client, c.url+"/v1/completions?api_key=secret", `{"prompt":["a","b"],"max_tokens":3,"best_of":2}`)
		resp.Body.Close()
		want := sim.Stats{GeneratedTokens: 12, PromptTokens: 2, Requests: 1, LastRequestURI: "/v1/completions?api_key=secret"}
		if got := getStats(t, client, c.url); got != want {
			t.Errorf("stats %+v, want %+v", got, want)
		}
		for _, bad := range []string{"no-colon", ": empty name"} {
			if err := exec.Command(bin, "--port", "0", "--header", bad).Run(); err == nil {
				t.Errorf("--header %q accepted", bad)
			}
		}
	})

	t.Run("503 while loading", func(t *testing.T) {
		t.Parallel()
		client := &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		c := startChild(t, bin, "--load-time", "1h")
		if got := healthStatus(t.Context(), client, c.url); got != http.StatusServiceUnavailable {
			t.Errorf("/health while loading: %d, want 503", got)
		}
		resp := send(t.Context(), t, client, c.url+"/v1/chat/completions", chatBody("hi", ""))
		if e := errorCode(t, resp, http.StatusServiceUnavailable); e.Code != "model_not_ready" {
			t.Errorf("inference while loading: %+v", e)
		}
		resp.Body.Close()
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		if code := c.exitCode(t); code != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0", code)
		}
	})

	t.Run("crash-after exits 1 mid-stream", func(t *testing.T) {
		t.Parallel()
		client := &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		c := startChild(t, bin, "--crash-after", "3")
		waitFor(t, "/health 200", func() bool { return healthStatus(t.Context(), client, c.url) == http.StatusOK })
		resp := send(t.Context(), t, client, c.url+"/v1/chat/completions", chatBody("hi", `"max_tokens":10,"stream":true`))
		events, done, err := readSSE(resp.Body)
		if !isAbort(err) || done || len(events) != 4 { // role, 3 tokens
			t.Errorf("stream: %d events, done %v, err %v; want 4 events and an abort", len(events), done, err)
		}
		if code := c.exitCode(t); code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
	})

	t.Run("fail-load exits 3", func(t *testing.T) {
		t.Parallel()
		c := startChild(t, bin, "--fail-load", "--load-time", "10ms")
		if code := c.exitCode(t); code != 3 {
			t.Errorf("exit status %d, want 3", code)
		}
		if !strings.Contains(c.stderr.String(), "model load failed") {
			t.Errorf("no error line in stderr:\n%s", c.stderr)
		}
	})

	t.Run("the GPU model", func(t *testing.T) {
		t.Parallel()
		client := &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		c := startChild(t, bin, "--time-scale", "0.000001", "--gpu-block-tokens", "8")
		waitFor(t, "/health 200", func() bool { return healthStatus(t.Context(), client, c.url) == http.StatusOK })
		body := chatBody(strings.Repeat("g", 400), "") // 406 bytes of text, 104 tokens: 12 blocks of 32 bytes
		var cached []int
		for range 2 {
			resp := send(t.Context(), t, client, c.url+"/v1/chat/completions", body)
			u := decodeOK[chatResponse](t, resp).Usage
			resp.Body.Close()
			if u == nil || u.PromptTokensDetails == nil {
				t.Fatalf("usage %+v", u)
			}
			cached = append(cached, u.PromptTokensDetails.CachedTokens)
		}
		if cached[0] != 0 || cached[1] != 96 {
			t.Errorf("cached tokens %v, want [0 96]", cached)
		}
		if got := getStats(t, client, c.url); got.CachedTokens != 96 || got.PromptTokens != 208 {
			t.Errorf("stats %+v", got)
		}
		if !strings.Contains(c.stderr.String(), "block_tokens=8") {
			t.Errorf("no GPU model line in stderr:\n%s", c.stderr)
		}
		for _, bad := range [][]string{{"--gpu", "--ttft", "1s"}, {"--gpu-max-batch", "-1"}} {
			err := exec.Command(bin, append([]string{"--port", "0"}, bad...)...).Run()
			if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 2 {
				t.Errorf("%v: %v, want exit status 2", bad, err)
			}
		}
	})

	t.Run("missing port exits 2", func(t *testing.T) {
		t.Parallel()
		err := exec.Command(bin).Run()
		if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 2 {
			t.Errorf("run without --port: %v, want exit status 2", err)
		}
	})
}
