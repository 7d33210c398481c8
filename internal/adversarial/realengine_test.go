//go:build linux

package adversarial_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/helexa-ai/helexa-go/internal/proctest"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/neuron"
)

// The real engine: llama.cpp's llama-server with a tiny random model, in
// shared/realengine beside the module root (see its README.md). Every
// answer runs to its output bound with finish_reason "length", so what
// the engine generated is choices × the bound it obeyed, and its own
// counter (/metrics, llamacpp:tokens_predicted_total) says so too.
const (
	// requireRealEngine, set to 1, fails the real-engine tests where the
	// engine is missing instead of skipping them (for CI).
	requireRealEngine = "HELEXA_REQUIRE_REALENGINE"
	realModel         = "tiny"
	// bound is the max_tokens of the cases: prompt and output stay well
	// inside the model's 256-token context.
	bound = 16
)

// realEngine returns the paths of llama-server and its model, skipping
// the test when they are missing (failing under HELEXA_REQUIRE_REALENGINE=1).
func realEngine(t *testing.T) (server, gguf string) {
	t.Helper()
	if testing.Short() {
		t.Skip("adversarial: the real-engine tests run real neuron and llama-server processes; skipped under -short")
	}
	root, err := moduleRoot()
	if err == nil {
		dir := filepath.Join(filepath.Dir(root), "shared", "realengine")
		server, gguf = filepath.Join(dir, "llama-server"), filepath.Join(dir, "tiny.gguf")
		if _, err = os.Stat(gguf); err == nil {
			var fi os.FileInfo
			if fi, err = os.Stat(server); err == nil && fi.Mode()&0o111 == 0 {
				err = fmt.Errorf("%s is not executable", server)
			}
		}
	}
	if err != nil {
		if os.Getenv(requireRealEngine) == "1" {
			t.Fatalf("the real engine is missing (%s=1): %v", requireRealEngine, err)
		}
		t.Skipf("the real engine is missing, skipped (set %s=1 to fail instead): %v", requireRealEngine, err)
	}
	return server, gguf
}

// moduleRoot returns the directory of the module's go.mod, found upward
// from the package directory go test runs in.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the package directory")
		}
		dir = parent
	}
}

// llamaArgs are the flags of every llama-server of the tests.
// One compute thread: on a small, busy machine more threads spin against
// each other and an answer of 16 tokens takes seconds instead of 10 ms.
var llamaArgs = []string{"--parallel", "4", "--metrics", "--threads", "1"}

// llamaEngine is llama-server run by the neuron.
func llamaEngine(server, gguf string) engineSpec {
	argv := append([]string{server, "--model", "{model}", "--alias", "{id}", "--host", "{host}", "--port", "{port}"}, llamaArgs...)
	return engineSpec{name: "llama-server", argv: argv, model: realModel, source: gguf}
}

func realChat(extra string) string {
	return `{"model":"tiny","messages":[{"role":"user","content":"hi"}],` + extra + `}`
}

func realCompletion(extra string) string { return `{"model":"tiny","prompt":"hi",` + extra + `}` }

// llamaCounters are llama-server's own counters (GET /metrics).
type llamaCounters struct {
	predicted, prompt, processing int64
}

// llamaMetrics returns the counters of the llama-server at url once it
// processes no request (or after 10 s, reporting it).
func llamaMetrics(t *testing.T, hc *http.Client, url string) llamaCounters {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get(url + "/metrics")
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		var c llamaCounters
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			name, v, ok := strings.Cut(sc.Text(), " ")
			if !ok || strings.HasPrefix(name, "#") {
				continue
			}
			f, _ := strconv.ParseFloat(v, 64)
			switch name {
			case "llamacpp:tokens_predicted_total":
				c.predicted = int64(f)
			case "llamacpp:prompt_tokens_total":
				c.prompt = int64(f)
			case "llamacpp:requests_processing":
				c.processing = int64(f)
			}
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: status %d", resp.StatusCode)
		}
		if c.processing == 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Errorf("llama-server still processes %d requests 10 s after the case ended", c.processing)
			return c
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// figures are a case's numbers: what the engine generated (served), what
// the gateway reserved and charged (settled), and the completion and
// prompt tokens of its records.
type figures struct {
	served, reserved, charged, completion, prompt int64
	sources                                       []metering.UsageSource
}

// checkReal waits until the case is over and checks the invariants
// against llama-server's own count: it generated exactly want tokens (the
// choices × the bound), no more than was reserved, and no more than was
// charged; the spend is within the cap and is what the records say;
// nothing stays reserved.
func (s *stack) checkReal(t *testing.T, a account, before llamaCounters, requests int, want int64) figures {
	t.Helper()
	after := llamaMetrics(t, s.n.hc, s.n.sim)
	var f figures
	f.served = after.predicted - before.predicted
	deadline := time.Now().Add(5 * time.Second)
	for {
		snap := s.snapshot(a)
		if snap.Reserved == 0 && len(s.meter.of(a.id)) >= requests {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("5 s after the case: %d still reserved, %d meter records for %d requests",
				snap.Reserved, len(s.meter.of(a.id)), requests)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	recs := s.meter.of(a.id)
	for _, r := range recs {
		f.reserved += int64(r.Reserved)
		f.charged += int64(r.Settled)
		f.completion += r.CompletionTokens
		f.prompt += r.PromptTokens
		f.sources = append(f.sources, r.UsageSource)
	}
	snap := s.snapshot(a)
	t.Logf("served %d (want %d), reserved %d, charged %d = prompt %d + completion %d (spent %d of cap %d)",
		f.served, want, f.reserved, f.charged, f.prompt, f.completion, snap.Spent, a.cap)
	if f.served != want {
		t.Errorf("llama-server generated %d tokens, want %d (choices × the bound)", f.served, want)
	}
	if f.served > f.reserved {
		t.Errorf("served > reserved: llama-server generated %d tokens, %d were reserved (records %s)", f.served, f.reserved, summary(recs))
	}
	if f.completion < f.served || f.charged < f.served {
		t.Errorf("charged < served: llama-server generated %d tokens, %d completion tokens were charged (%d in all; records %s)",
			f.served, f.completion, f.charged, summary(recs))
	}
	if int64(snap.Spent) > a.cap {
		t.Errorf("spent %d is over the hard cap %d", snap.Spent, a.cap)
	}
	if int64(snap.Spent) != f.charged {
		t.Errorf("the ledger says %d spent, the meter records %d settled", snap.Spent, f.charged)
	}
	if snap.Reserved != 0 {
		t.Errorf("%d still reserved", snap.Reserved)
	}
	return f
}

// oaiAnswer is the part of a non-streamed answer the tests read.
type oaiAnswer struct {
	Choices []struct {
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
	} `json:"usage"`
	Timings *struct {
		PredictedN int64 `json:"predicted_n"`
	} `json:"timings"`
}

// streamed is what a client read of a streamed answer.
type streamed struct {
	tokens  int64 // events whose choice carries content: llama-server sends a token per event
	events  int
	finish  []string
	usage   *oaiAnswer // the chunk with usage, if any
	done    bool       // data: [DONE] seen
	badJSON int
}

func readStream(body []byte) streamed {
	var st streamed
	for ev := range strings.SplitSeq(string(body), "\n\n") {
		for line := range strings.SplitSeq(ev, "\n") {
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				continue
			}
			if data == "[DONE]" {
				st.done = true
				continue
			}
			st.events++
			var c struct {
				Choices []struct {
					FinishReason *string `json:"finish_reason"`
					Text         string  `json:"text"`
					Delta        struct {
						Content *string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
				Usage json.RawMessage `json:"usage"`
			}
			if json.Unmarshal([]byte(data), &c) != nil {
				st.badJSON++
				continue
			}
			for _, ch := range c.Choices {
				if ch.Text != "" || ch.Delta.Content != nil && *ch.Delta.Content != "" {
					st.tokens++
				}
				if ch.FinishReason != nil {
					st.finish = append(st.finish, *ch.FinishReason)
				}
			}
			if len(c.Usage) > 0 && string(c.Usage) != "null" {
				var u oaiAnswer
				if json.Unmarshal([]byte(data), &u) == nil {
					st.usage = &u
				}
			}
		}
	}
	return st
}

// TestRealEngineBudgets runs the budget cases against llama-server run by
// a neuron, behind a gateway with capped keys: llama-server honours
// n_predict over max_tokens and n_cmpl over n, counts one choice in its
// usage when it generates several, and closes the connection after every
// streamed answer.
func TestRealEngineBudgets(t *testing.T) {
	server, gguf := realEngine(t)
	binaries(t)

	var su suite
	type bodyRun struct {
		name, path, body string
		cap              int64
		choices          int   // in the answer
		want             int64 // tokens the engine generates: choices × bound
		// mayRefuse: the gateway may refuse the body (400, nothing
		// generated) instead of serving it within the bound.
		mayRefuse bool
	}
	bodies := []bodyRun{
		{name: "chat n_predict huge beside max_tokens", path: chatPath, cap: 150, choices: 1, want: bound,
			body: realChat(`"max_tokens":16,"n_predict":200`)},
		{name: "completions n_predict huge before max_tokens", path: completionsPath, cap: 150, choices: 1, want: bound,
			body: realCompletion(`"n_predict":200,"max_tokens":16`)},
		{name: "chat n_predict unbounded", path: chatPath, cap: 150, choices: 1, want: bound, mayRefuse: true,
			body: realChat(`"max_tokens":16,"n_predict":-1`)},
		{name: "chat n=3", path: chatPath, cap: 400, choices: 3, want: 3 * bound,
			body: realChat(`"max_tokens":16,"n":3`)},
		{name: "completions prompt array of 2 with n=2", path: completionsPath, cap: 400, choices: 4, want: 4 * bound,
			body: `{"model":"tiny","prompt":["hi","there"],"n":2,"max_tokens":16}`},
		{name: "completions n_cmpl=3 beside n=1", path: completionsPath, cap: 400, choices: 3, want: 3 * bound,
			body: realCompletion(`"max_tokens":16,"n":1,"n_cmpl":3`)},
	}
	accts := make([]account, len(bodies))
	for i, b := range bodies {
		accts[i] = su.add(b.name, b.cap, 0)
	}
	plain := su.add("stream without include_usage", 1000, 0)
	withUsage := su.add("stream with include_usage", 1000, 0)
	sequential := su.add("sequential streams", 100_000, 0)
	headers := su.add("engine headers", 1000, 0)

	s := newStackFor(t, su.accounts, llamaEngine(server, gguf))

	// chatPrompt is llama-server's prompt count of realChat, from its usage.
	var chatPrompt int64
	for i, b := range bodies {
		t.Run(b.name, func(t *testing.T) {
			before := llamaMetrics(t, s.n.hc, s.n.sim)
			ans := s.post(t, accts[i], b.path, b.body)
			if b.mayRefuse && ans.status == http.StatusBadRequest {
				s.checkReal(t, accts[i], before, 1, 0)
				t.Logf("refused: %.200s", ans.body)
				return
			}
			if ans.err != nil || ans.status != http.StatusOK {
				t.Fatalf("status %d, %v; body %.300s", ans.status, ans.err, ans.body)
			}
			var got oaiAnswer
			if err := json.Unmarshal(ans.body, &got); err != nil {
				t.Fatalf("the answer: %v; %.300s", err, ans.body)
			}
			if len(got.Choices) != b.choices {
				t.Errorf("%d choices, want %d", len(got.Choices), b.choices)
			}
			for _, c := range got.Choices {
				if c.FinishReason != "length" {
					t.Errorf("finish_reason %q, want length (the model cannot end an answer)", c.FinishReason)
				}
			}
			if got.Usage == nil {
				t.Fatalf("no usage in the answer: %.300s", ans.body)
			}
			// llama-server's usage counts one choice however many it made.
			if got.Usage.CompletionTokens != bound {
				t.Errorf("usage.completion_tokens %d, want %d (one choice's)", got.Usage.CompletionTokens, bound)
			}
			if got.Timings != nil && got.Timings.PredictedN != bound {
				t.Errorf("timings.predicted_n %d, want %d", got.Timings.PredictedN, bound)
			}
			if b.path == chatPath && chatPrompt == 0 {
				chatPrompt = got.Usage.PromptTokens
			}
			f := s.checkReal(t, accts[i], before, 1, b.want)
			t.Logf("engine usage: prompt %d, completion %d; usage source %v", got.Usage.PromptTokens, got.Usage.CompletionTokens, f.sources)
		})
	}

	for _, c := range []struct {
		name  string
		a     account
		extra string
	}{
		{"stream without include_usage", plain, `"max_tokens":16,"stream":true`},
		{"stream with include_usage", withUsage, `"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := llamaMetrics(t, s.n.hc, s.n.sim)
			ans := s.post(t, c.a, chatPath, realChat(c.extra))
			if ans.err != nil || ans.status != http.StatusOK {
				t.Fatalf("status %d, %v; body %.300s", ans.status, ans.err, ans.body)
			}
			st := readStream(ans.body)
			if st.tokens != bound || st.badJSON > 0 || !st.done || len(st.finish) != 1 || st.finish[0] != "length" {
				t.Errorf("the client read %d tokens in %d events (%d not JSON), finish %q, [DONE] %v; want %d tokens, one finish \"length\", [DONE]",
					st.tokens, st.events, st.badJSON, st.finish, st.done, bound)
			}
			wantUsage := strings.Contains(c.extra, "include_usage")
			if (st.usage != nil) != wantUsage {
				t.Errorf("usage chunk reached the client: %v, want %v", st.usage != nil, wantUsage)
			}
			if st.usage != nil && (st.usage.Usage.CompletionTokens != bound || st.usage.Usage.PromptTokens != chatPrompt) {
				t.Errorf("streamed usage %+v, want prompt %d completion %d", *st.usage.Usage, chatPrompt, bound)
			}
			f := s.checkReal(t, c.a, before, 1, bound)
			if chatPrompt > 0 && f.charged != chatPrompt+bound {
				t.Errorf("charged %d, want prompt %d + bound %d", f.charged, chatPrompt, bound)
			}
			t.Logf("%d events, %d tokens, usage chunk %v; usage source %v", st.events, st.tokens, st.usage != nil, f.sources)
		})
	}

	t.Run("sequential streams over closed connections", func(t *testing.T) {
		// llama-server closes the connection after every streamed answer:
		// the next request must not fail on it (the neuron sends it again
		// on a new connection). Every fifth stream is followed by a
		// non-streamed request on the same pooled transport.
		const streams, short = 20, 8
		before := llamaMetrics(t, s.n.hc, s.n.sim)
		statuses := map[int]int{}
		requests := 0
		var wrong []string
		for i := range streams {
			bodies := []string{realChat(`"max_tokens":8,"stream":true`)}
			if i%5 == 4 {
				bodies = append(bodies, realChat(`"max_tokens":8`))
			}
			for _, body := range bodies {
				requests++
				ans := s.post(t, sequential, chatPath, body)
				statuses[ans.status]++
				if ans.status != http.StatusOK || ans.err != nil {
					wrong = append(wrong, fmt.Sprintf("request %d: status %d, %v, %.200s", requests, ans.status, ans.err, ans.body))
					continue
				}
				if strings.Contains(body, `"stream"`) {
					if st := readStream(ans.body); st.tokens != short || !st.done {
						wrong = append(wrong, fmt.Sprintf("request %d: %d tokens, [DONE] %v", requests, st.tokens, st.done))
					}
				}
			}
		}
		if len(wrong) > 0 {
			t.Errorf("statuses %v; %d of %d requests went wrong:\n%s", statuses, len(wrong), requests, strings.Join(wrong, "\n"))
		}
		f := s.checkReal(t, sequential, before, requests, int64(statuses[http.StatusOK]*short))
		if want := int64(statuses[http.StatusOK]) * (chatPrompt + short); chatPrompt > 0 && f.charged != want {
			t.Errorf("charged %d, want %d (prompt %d + %d, %d times)", f.charged, want, chatPrompt, short, statuses[http.StatusOK])
		}
		t.Logf("statuses %v over %d requests", statuses, requests)
	})

	t.Run("neuron trailers over llama-server streams", func(t *testing.T) {
		// Straight to the neuron, as cortex sends it: the neuron counts
		// llama-server's stream, cuts it past the allowance and reports
		// the count in trailers, although llama-server then closes the
		// connection.
		for _, c := range []struct {
			allow, tokens int64
			cut           string
		}{{bound, bound, "false"}, {5, 5, "true"}, {bound, bound, "false"}} {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.n.url+chatPath,
				strings.NewReader(realChat(`"max_tokens":16,"stream":true`)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+neuronToken)
			req.Header.Set(neuron.HeaderMaxOutputTokens, strconv.FormatInt(c.allow, 10))
			resp, body, err := s.n.send(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("allowance %d: status %d; %.200s", c.allow, resp.StatusCode, body)
			}
			st := readStream(body)
			got, cut := resp.Trailer.Get(neuron.TrailerOutputTokens), resp.Trailer.Get(neuron.TrailerOutputCut)
			if st.tokens != c.tokens || got != strconv.FormatInt(c.tokens, 10) || cut != c.cut {
				t.Errorf("allowance %d: relayed %d tokens, trailers %s=%q %s=%q; want %d tokens, cut %s",
					c.allow, st.tokens, neuron.TrailerOutputTokens, got, neuron.TrailerOutputCut, cut, c.tokens, c.cut)
			}
		}
		llamaMetrics(t, s.n.hc, s.n.sim) // the cut request ended there too
	})

	t.Run("engine headers do not reach the client", func(t *testing.T) {
		resp, err := s.n.hc.Get(s.n.sim + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Server") == "" {
			t.Fatalf("llama-server sends no Server header: the check means nothing (%v)", resp.Header)
		}
		engineHeaders := resp.Header
		before := llamaMetrics(t, s.n.hc, s.n.sim)
		requests := 0
		for _, body := range []string{realChat(`"max_tokens":16`), realChat(`"max_tokens":16,"stream":true`)} {
			ans := s.post(t, headers, chatPath, body)
			requests++
			if ans.status != http.StatusOK {
				t.Errorf("status %d, body %.200s", ans.status, ans.body)
			}
			for _, h := range []string{"Server", "Access-Control-Allow-Origin", "Keep-Alive"} {
				if v := ans.header.Values(h); len(v) > 0 {
					t.Errorf("llama-server's %s header reached the client: %q (llama-server sent %q)", h, v, engineHeaders.Values(h))
				}
			}
		}
		s.checkReal(t, headers, before, requests, 2*bound)
	})
}

// TestRealEngineNeverSees runs a neuron whose engine is a relay to
// llama-server that records every byte it forwards: ambiguous bodies are
// refused before llama-server sees them, and the client's query string
// never reaches it.
func TestRealEngineNeverSees(t *testing.T) {
	server, gguf := realEngine(t)
	binaries(t)
	upstream := startLlama(t, server, gguf)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	relay := engineSpec{name: "relay", model: realModel, argv: []string{exe, "-test.run=^TestHelperRelay$", "--",
		"--host", "{host}", "--port", "{port}", "--upstream", upstream, "--log", logDir}}

	var su suite
	amb := su.add("ambiguous", 1000, 0)
	query := su.add("query string", 1000, 0)
	s := newStackFor(t, su.accounts, relay)
	hc := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)

	t.Run("ambiguous bodies", func(t *testing.T) {
		before := llamaMetrics(t, hc, "http://"+upstream)
		for _, c := range []struct{ path, body string }{
			{chatPath, realChat(`"max_tokens":8,"max_tokens":200`)},
			{chatPath, realChat(`"Max_Tokens":200`)},
			{chatPath, realChat(`"max_tokens":8,"n_predict":8,"n_predict":200`)},
			{chatPath, realChat(`"max_tokens":8,"N_Predict":200`)},
			{chatPath, realChat(`"max_tokens":8,"n_pr\u0065dict":200`)},
			{chatPath, realChat(`"max_tokens":8,"n":1,"n":3`)},
			{chatPath, realChat(`"max_tokens":8,"Stream":true`)},
			{completionsPath, realCompletion(`"max_tokens":8,"N_Cmpl":3`)},
			{completionsPath, `{"model":"tiny","prompt":"a","prompt":["a","b","c"],"max_tokens":8}`},
		} {
			ans := s.post(t, amb, c.path, c.body)
			if code := errorCode(ans.body); ans.status != http.StatusBadRequest || code != codeAmbiguous {
				t.Errorf("%s: status %d code %q, want 400 %s; body %.200s", c.body, ans.status, code, codeAmbiguous, ans.body)
			}
		}
		if seen := relayed(t, logDir); bytes.Contains(seen, []byte("POST ")) {
			t.Errorf("llama-server was sent a POST:\n%.2000s", seen)
		}
		after := llamaMetrics(t, hc, "http://"+upstream)
		if after != before {
			t.Errorf("llama-server's counters moved from %+v to %+v", before, after)
		}
		if snap := s.snapshot(amb); snap.Spent != 0 || snap.Reserved != 0 {
			t.Errorf("the refused requests left %d spent, %d reserved", snap.Spent, snap.Reserved)
		}
	})

	t.Run("query string", func(t *testing.T) {
		before := llamaMetrics(t, hc, "http://"+upstream)
		ans := s.post(t, query, chatPath+"?api_key=secret-in-query&x=1", realChat(`"max_tokens":8`))
		if ans.status != http.StatusOK {
			t.Errorf("status %d, body %.200s", ans.status, ans.body)
		}
		seen := relayed(t, logDir)
		if !bytes.Contains(seen, []byte("POST "+chatPath+" HTTP/1.1\r\n")) {
			t.Errorf("llama-server was not sent POST %s:\n%.2000s", chatPath, seen)
		}
		if bytes.Contains(seen, []byte("secret-in-query")) || bytes.Contains(seen, []byte(chatPath+"?")) {
			t.Errorf("the client's query string reached llama-server:\n%.2000s", seen)
		}
		after := llamaMetrics(t, hc, "http://"+upstream)
		if got := after.predicted - before.predicted; got != 8 {
			t.Errorf("llama-server generated %d tokens, want 8", got)
		}
	})
}

// send sends req (whose body is a strings.Reader, so it can be sent
// again) to the neuron and reads the whole answer.
func (n *neuronProc) send(req *http.Request) (*http.Response, []byte, error) {
	r := req.Clone(req.Context())
	if req.GetBody != nil {
		r.Body, _ = req.GetBody()
	}
	resp, err := n.hc.Do(r)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// relayed returns what the relay forwarded to llama-server, connection by
// connection.
func relayed(t *testing.T, dir string) []byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// startLlama starts a llama-server on a free loopback port, waits until
// it has loaded the model and registers the cleanup that stops it. It
// returns its host:port.
func startLlama(t *testing.T, server, gguf string) string {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	for range 3 { // a port taken between the pick and llama-server's bind
		addr := proctest.FreeAddr(t)
		host, port, _ := net.SplitHostPort(addr)
		logs := &proctest.LockedBuffer{}
		cmd := exec.Command(server, append([]string{"--model", gguf, "--host", host, "--port", port}, llamaArgs...)...)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		stop := func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if isClosed(done) {
				t.Logf("llama-server exited before serving; logs:\n%s", logs)
				break
			}
			if resp, err := hc.Get("http://" + addr + "/health"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Cleanup(stop)
					return addr
				}
			}
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("llama-server did not load the model in 30 s; logs:\n%s", logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Fatal("llama-server did not start")
	return ""
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestHelperRelay is no test: it is the engine process of
// TestRealEngineNeverSees, run by that test's neuron as this test binary
// with -test.run=^TestHelperRelay$ -- --host H --port P --upstream ADDR
// --log DIR. It relays every connection to ADDR byte for byte, closing
// each side when the other closes (so llama-server's own connection
// closing reaches the neuron), and writes what each connection sent to
// its own file in DIR. It runs until the neuron stops it.
func TestHelperRelay(t *testing.T) {
	args := flag.Args()
	if len(args) == 0 {
		t.Skip("the relay engine of TestRealEngineNeverSees: runs only as its neuron's engine process")
	}
	opt := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		opt[args[i]] = args[i+1]
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(opt["--host"], opt["--port"]))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		go relayConn(c, opt["--upstream"], filepath.Join(opt["--log"], fmt.Sprintf("conn-%04d", i)))
	}
}

func relayConn(down net.Conn, upstream, logPath string) {
	defer down.Close()
	f, err := os.Create(logPath)
	if err != nil {
		return
	}
	defer f.Close()
	up, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		_, _ = io.Copy(down, up)
		_ = down.Close()
		_ = up.Close()
	}()
	// The log is written before llama-server is sent the bytes.
	_, _ = io.Copy(io.MultiWriter(f, up), down)
}
