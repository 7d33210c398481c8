package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
	"github.com/helexa-ai/helexa-go/internal/redistest"
	"github.com/helexa-ai/helexa-go/internal/testout"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// shellWords splits a command line as a POSIX shell does for the subset
// the dev stack prints: words separated by spaces, single-quoted strings.
func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case quoted && r == '\'':
			quoted = false
		case quoted:
			cur.WriteRune(r)
		case r == '\'':
			quoted, inWord = true, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.ContainsRune(`"\$`+"`", r):
			return nil, fmt.Errorf("unquoted %q", r)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// curlRequest turns a curl command line (-sS, -H, -d and a URL) into a
// request.
func curlRequest(t *testing.T, ctx context.Context, line string) *http.Request {
	t.Helper()
	words, err := shellWords(line)
	if err != nil || len(words) == 0 || words[0] != "curl" {
		t.Fatalf("not a curl command (%v): %s", err, line)
	}
	var url, data string
	header := http.Header{}
	method := http.MethodGet
	for i := 1; i < len(words); i++ {
		switch w := words[i]; w {
		case "-sS", "-s", "-S":
		case "-H":
			i++
			k, v, ok := strings.Cut(words[i], ":")
			if !ok {
				t.Fatalf("bad header %q", words[i])
			}
			header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		case "-d":
			i++
			data, method = words[i], http.MethodPost
		default:
			if strings.HasPrefix(w, "-") || url != "" {
				t.Fatalf("unexpected curl argument %q", w)
			}
			url = w
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	return req
}

func TestDevPrintsACurlThatWorks(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr testout.Buffer
	done := make(chan error, 1)
	exited := make(chan struct{})
	ledger := filepath.Join(t.TempDir(), "dev-ledger")
	go func() {
		defer close(exited)
		done <- run(ctx, []string{"dev", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
			"--models", filepath.Join("..", "..", "testdata", "models.toml"), "--ledger", ledger}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	line := stdout.Wait(t, regexp.MustCompile(`(?m)^(curl .*)$`), done, 20*time.Second)[1]
	metrics := stdout.Wait(t, regexp.MustCompile(`metrics +(http://\S+/metrics)`), done, 20*time.Second)[1]

	resp, err := http.DefaultClient.Do(curlRequest(t, t.Context(), line))
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d: %s", line, resp.StatusCode, body)
	}
	var answer struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || len(answer.Choices) != 1 || answer.Choices[0].Message.Content == "" {
		t.Fatalf("answer %s (%v)", body, err)
	}

	// Without the key the same request is refused.
	req := curlRequest(t, t.Context(), line)
	req.Header.Del("Authorization")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the key: status %d, want 401", resp.StatusCode)
	}

	resp, err = http.Get(metrics)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `helexa_requests_total{class="2xx",model="`+answer.Model+`",neuron="gpu-01"} 1`) {
		t.Errorf("metrics after one request:\n%s", b)
	}

	cancel() // Ctrl-C
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("cortex dev: %v (stderr %s)", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("cortex dev did not stop")
	}
	// The demo budget's spend is in the ledger file the intro names.
	if !strings.Contains(stdout.String(), "kept in "+ledger) {
		t.Errorf("the intro does not name the ledger file %s:\n%s", ledger, stdout.String())
	}
	l, err := entitlements.OpenLocal(entitlements.Config{Local: &entitlements.LocalConfig{Path: ledger}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if a, err := l.Account(t.Context(), devAccount); err != nil || a.Budget.Spent == 0 {
		t.Errorf("dev account in the ledger file: %+v, %v; want some spend", a.Budget, err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// startServe runs "cortex serve" over a config of one neuron, the example
// catalogue and the given [entitlements] tables; it returns the API address
// and a function that stops the command and returns its error.
func startServe(t *testing.T, neuronURL, entitlementsTOML string) (addr string, stop func() error) {
	t.Helper()
	dir := t.TempDir()
	models, err := os.ReadFile(filepath.Join("..", "..", "testdata", "models.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "models.toml"), models, 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`models_config = "models.toml"
[gateway]
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
[[neurons]]
name = "gpu-01"
endpoint = %q
`, neuronURL) + entitlementsTOML
	path := filepath.Join(dir, "cortex.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr testout.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path}, &stdout, &stderr) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
			http.DefaultClient.CloseIdleConnections()
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	addr = stderr.Wait(t, regexp.MustCompile(`cortex: serving" listen=(\S+)`), done, 20*time.Second)[1]
	return addr, stop
}

// chatOnce sends one chat request with the key and returns the status and
// body.
func chatOnce(t *testing.T, addr, key string) (int, string) {
	t.Helper()
	body := `{"model":"llama-3.2-1b-instruct","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServe(t *testing.T) {
	fleet := cortextest.NewFleet(t, cortextest.Named("gpu-01")...)
	addr, stop := startServe(t, fleet.Neuron("gpu-01").URL(), `[entitlements]
require_auth = true
[[entitlements.keys]]
key = "sk-test"
account_id = "test"
`)
	// The neurons were polled before the server started: the first
	// request is served.
	status, body := chatOnce(t, addr, "sk-test")
	if status != http.StatusOK {
		t.Errorf("status %d: %s", status, body)
	}
	if status, _ := chatOnce(t, addr, "sk-other"); status != http.StatusUnauthorized {
		t.Errorf("unknown key: status %d", status)
	}
	if n := fleet.Neuron("gpu-01").Loads(); n != 1 {
		t.Errorf("the neuron got %d loads, want 1", n)
	}
	if err := stop(); err != nil {
		t.Errorf("cortex serve: %v", err)
	}
}

// With [entitlements.redis], the keys of the file are seeded into Redis and
// budgets are kept there.
func TestServeWithRedis(t *testing.T) {
	redisAddr := redistest.Start(t).Addr
	fleet := cortextest.NewFleet(t, cortextest.Named("gpu-01")...)
	addr, stop := startServe(t, fleet.Neuron("gpu-01").URL(), fmt.Sprintf(`[entitlements]
require_auth = true
[[entitlements.keys]]
key = "sk-redis"
account_id = "shared"
hard_cap = 1000
[entitlements.redis]
url = "redis://%s/0"
allow_volatile_redis = true
`, redisAddr))
	status, body := chatOnce(t, addr, "sk-redis")
	if err := stop(); err != nil {
		t.Errorf("cortex serve: %v", err)
	}
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var answer struct {
		Usage struct {
			Total int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil {
		t.Fatal(err)
	}
	ledger, err := redisledger.Open(entitlements.RedisConfig{URL: "redis://" + redisAddr + "/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close()
	snap, err := ledger.Snapshot(t.Context(), entitlements.Principal{AccountID: "shared", KeyID: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Spent != entitlements.Amount(answer.Usage.Total) || snap.Reserved != 0 || snap.HardCap == nil || *snap.HardCap != 1000 {
		t.Errorf("redis budget: spent %d reserved %d cap %v; want spent %d", snap.Spent, snap.Reserved, snap.HardCap, answer.Usage.Total)
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	redis := filepath.Join(dir, "redis.toml")
	// Nothing listens on port 1: the ledger cannot reach Redis at start.
	if err := os.WriteFile(redis, []byte("[[neurons]]\nname = \"n\"\nendpoint = \"http://127.0.0.1:1\"\n[entitlements.redis]\nurl = \"redis://127.0.0.1:1/0?dial_timeout=1s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{name: "no command", args: nil, wantErr: "no command"},
		{name: "unknown command", args: []string{"launch"}, wantErr: `unknown command "launch"`},
		{name: "version", args: []string{"version"}, wantOut: "dev\n"},
		{name: "help", args: []string{"help"}, wantOut: usage + "\n"},
		{name: "serve: missing config", args: []string{"serve", "--config", filepath.Join(dir, "none.toml")}, wantErr: "no such file"},
		{name: "serve: bad log format", args: []string{"serve", "--log-format", "xml"}, wantErr: "--log-format"},
		{name: "serve: redis unreachable", args: []string{"serve", "--config", redis}, wantErr: "entitlements.redis"},
		{name: "dev: missing models", args: []string{"dev", "--models", filepath.Join(dir, "none.toml")}, wantErr: "--models"},
		{name: "dev: unknown flag", args: []string{"dev", "--nope"}, wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tt.args, &stdout, &stderr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
			if stdout.String() != tt.wantOut {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.wantOut)
			}
		})
	}
}

// A Redis that persists nothing is refused at start, with the settings to
// change, unless allow_volatile_redis.
func TestServeRefusesVolatileRedis(t *testing.T) {
	redisAddr := redistest.Start(t).Addr
	path := filepath.Join(t.TempDir(), "cortex.toml")
	cfg := fmt.Sprintf("[[neurons]]\nname = \"n\"\nendpoint = \"http://127.0.0.1:1\"\n[entitlements.redis]\nurl = \"redis://%s/0\"\n", redisAddr)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"serve", "--config", path}, &stdout, &stderr)
	if !errors.Is(err, redisledger.ErrVolatile) {
		t.Fatalf("serve = %v, want ErrVolatile", err)
	}
	for _, want := range []string{"appendonly yes", "allow_volatile_redis = true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// With [entitlements.local], spend is in the ledger file once cortex
// stops, for the next cortex (or cortex keys) to read.
func TestServeWithLedgerFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger")
	fleet := cortextest.NewFleet(t, cortextest.Named("gpu-01")...)
	cfg := fmt.Sprintf(`[entitlements]
require_auth = true
[[entitlements.keys]]
key = "sk-file"
account_id = "filed"
hard_cap = 1000
[entitlements.local]
path = %q
`, path)
	// Two runs of cortex on one ledger file, one request each: the spend of
	// the first is still there for the second.
	var served int64
	for run := range 2 {
		addr, stop := startServe(t, fleet.Neuron("gpu-01").URL(), cfg)
		status, body := chatOnce(t, addr, "sk-file")
		if err := stop(); err != nil {
			t.Errorf("cortex serve: %v", err)
		}
		if status != http.StatusOK {
			t.Fatalf("run %d: status %d: %s", run+1, status, body)
		}
		var answer struct {
			Usage struct {
				Total int64 `json:"total_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(body), &answer); err != nil {
			t.Fatal(err)
		}
		if answer.Usage.Total == 0 {
			t.Fatalf("run %d: no usage in %s", run+1, body)
		}
		served += answer.Usage.Total
	}
	l, err := entitlements.OpenLocal(entitlements.Config{Local: &entitlements.LocalConfig{Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := l.Account(t.Context(), "filed")
	if err != nil {
		t.Fatal(err)
	}
	if a.Budget.Spent != entitlements.Amount(served) || a.Budget.Reserved != 0 {
		t.Errorf("spent in the ledger file %d, reserved %d; want the %d tokens served over both runs, 0", a.Budget.Spent, a.Budget.Reserved, served)
	}
}
