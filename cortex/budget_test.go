package cortex_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// helloEstimate is the gateway's prompt estimate of chatBody's one message,
// "Hello there": ceil(11/4) = 3 tokens plus 4 for the message. The
// simulated engine counts the prompt the same way.
const helloEstimate = 7

// newLocal builds a Local provider of the given keys or fails the test.
func newLocal(t *testing.T, keys ...entitlements.KeyConfig) *entitlements.Local {
	t.Helper()
	l, err := entitlements.NewLocal(entitlements.Config{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// budgetOf returns account's budget once the gateway has finished every
// request (finish settles before the handler returns).
func (s *stack) budgetOf(p entitlements.Provider, account string) entitlements.BudgetSnapshot {
	s.t.Helper()
	waitFor(s.t, "the gateway to finish its requests", func() bool { return s.gw.InFlight() == 0 })
	snap, err := p.Snapshot(s.t.Context(), entitlements.Principal{AccountID: account, KeyID: account})
	if err != nil {
		s.t.Fatalf("Snapshot(%s): %v", account, err)
	}
	return snap
}

// checkBudget fails the test unless account has spent want and holds no
// reservation.
func (s *stack) checkBudget(p entitlements.Provider, account string, want entitlements.Amount) {
	s.t.Helper()
	snap := s.budgetOf(p, account)
	if snap.Spent != want || snap.Reserved != 0 {
		s.t.Errorf("budget of %s: spent %d, reserved %d; want spent %d, reserved 0", account, snap.Spent, snap.Reserved, want)
	}
}

// recorder is a Meter that keeps every record.
type recorder struct {
	mu   sync.Mutex
	recs []metering.Record
}

func (r *recorder) Record(rec metering.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *recorder) records() []metering.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]metering.Record(nil), r.recs...)
}

// last returns the last record, failing the test when there is none.
func (r *recorder) last(t *testing.T) metering.Record {
	t.Helper()
	recs := r.records()
	if len(recs) == 0 {
		t.Fatal("no meter record")
	}
	return recs[len(recs)-1]
}

// usageOf decodes the usage of a non-streaming answer.
func usageOf(t *testing.T, body string) (prompt, completion int64) {
	t.Helper()
	var v struct {
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, body)
	}
	return v.Usage.PromptTokens, v.Usage.CompletionTokens
}

// loadedA is a neuron with chat-a loaded.
func loadedA(name string) cortextest.Spec {
	return cortextest.Spec{Name: name, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}
}

// An over-budget request is refused before routing: it never reaches a
// neuron and never causes a cold load (chat-b is loaded nowhere), and it
// leaves nothing spent or reserved.
func TestOverBudgetIsNeverDispatched(t *testing.T) {
	t.Parallel()
	local := newLocal(t,
		entitlements.KeyConfig{Key: "sk-balance", AccountID: "balance", HardCap: ptr(int64(100))},
		entitlements.KeyConfig{Key: "sk-rolling", AccountID: "rolling", HardCap: ptr(int64(100)), Window: entitlements.WindowConfig{Kind: "rolling", Seconds: 3600}},
	)
	s := newStack(t, cortextest.Named("n1"), testCatalogue(t), cortex.WithProvider(local), cortex.WithRequireAuth(true))
	n := s.fleet.Neuron("n1")
	tests := []struct {
		name      string
		key       string
		held      entitlements.Amount // reserved by someone else first
		maxTokens int
		wantCode  string
		wantRetry bool
	}{
		{name: "balance spent", key: "sk-balance", held: 90, maxTokens: 20, wantCode: cortex.CodeInsufficientQuota},
		{name: "balance smaller than the request", key: "sk-balance", maxTokens: 500, wantCode: cortex.CodeInsufficientQuota},
		{name: "rolling window spent", key: "sk-rolling", held: 90, maxTokens: 20, wantCode: cortex.CodeRateLimitExceeded, wantRetry: true},
		{name: "rolling cap smaller than the request", key: "sk-rolling", maxTokens: 500, wantCode: cortex.CodeExceedsBudgetCap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			account := strings.TrimPrefix(tt.key, "sk-")
			p := entitlements.Principal{AccountID: account, KeyID: account}
			if tt.held > 0 {
				r, err := local.Reserve(t.Context(), p, tt.held)
				if err != nil {
					t.Fatal(err)
				}
				defer func() {
					if err := r.Release(context.Background()); err != nil {
						t.Error(err)
					}
				}()
			}
			status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-b", fmt.Sprintf(`"max_tokens":%d`, tt.maxTokens)),
				"Authorization", "Bearer "+tt.key)
			wantStatus := http.StatusTooManyRequests
			if tt.wantCode == cortex.CodeExceedsBudgetCap {
				wantStatus = http.StatusBadRequest
			}
			if status != wantStatus || envelope(t, body).Code != tt.wantCode {
				t.Fatalf("status %d: %s; want %d %s", status, body, wantStatus, tt.wantCode)
			}
			if got := hdr.Get("Retry-After") != ""; got != tt.wantRetry {
				t.Errorf("Retry-After %q, want one: %v", hdr.Get("Retry-After"), tt.wantRetry)
			}
			if hdr.Get(cortex.HeaderLimitTokens) != "100" {
				t.Errorf("%s = %q, want 100", cortex.HeaderLimitTokens, hdr.Get(cortex.HeaderLimitTokens))
			}
			if n.Requests() != 0 || n.Loads() != 0 {
				t.Errorf("the neuron got %d requests and %d loads, want none", n.Requests(), n.Loads())
			}
			snap := s.budgetOf(local, account)
			if snap.Spent != 0 || snap.Reserved != tt.held {
				t.Errorf("budget: spent %d, reserved %d; want 0 and %d (what the test holds)", snap.Spent, snap.Reserved, tt.held)
			}
		})
	}
}

// Twenty concurrent requests of up to 7+20 tokens against a cap of 100:
// the budget admits at most three, each admitted request reaches the
// neuron, and the spend stays within the cap.
func TestFanOutNeverOverspends(t *testing.T) {
	t.Parallel()
	local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", HardCap: ptr(int64(100))})
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local))
	const requests = 20
	statuses := make(chan int, requests)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() {
			<-start
			status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":20`), "x-api-key", "k")
			if status != http.StatusOK && (status != http.StatusTooManyRequests || envelope(t, body).Code != cortex.CodeInsufficientQuota) {
				t.Errorf("status %d: %s", status, body)
			}
			statuses <- status
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	served := 0
	for st := range statuses {
		if st == http.StatusOK {
			served++
		}
	}
	snap := s.budgetOf(local, "acct")
	if hits := s.fleet.Neuron("n1").Requests(); served != hits {
		t.Errorf("%d requests served, the neuron got %d", served, hits)
	}
	if served == 0 || served > 3 {
		t.Errorf("%d requests served, want 1 to 3", served)
	}
	if want := entitlements.Amount(served * (helloEstimate + 20)); snap.Spent != want || snap.Spent > 100 || snap.Reserved != 0 {
		t.Errorf("spent %d, reserved %d; want spent %d <= 100, reserved 0", snap.Spent, snap.Reserved, want)
	}
}

// A thousand requests of random sizes, streamed or not, some abandoned by
// their client at random points: the account never spends or holds more
// than its cap, every reservation is consumed, the requests served are
// the neuron's hits, and the meter records add up to the spend.
func TestRandomLoadNeverOverspends(t *testing.T) {
	t.Parallel()
	const (
		requests = 1000
		workers  = 16
		budget   = 20000
	)
	local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", HardCap: ptr(int64(budget))})
	rec := &recorder{}
	// A token a millisecond after the first: streams last long enough to be
	// abandoned midway.
	spec := loadedA("n1")
	spec.Sim = sim.Config{TokensPerSecond: 1000}
	s := newStack(t, []cortextest.Spec{spec}, testCatalogue(t), cortex.WithProvider(local), cortex.WithMeter(rec))

	type job struct {
		body       string
		stream     bool
		disconnect int // events read before the client leaves; -1: reads everything
	}
	rng := rand.New(rand.NewPCG(5, 1000))
	jobs := make(chan job, requests)
	for range requests {
		j := job{stream: rng.IntN(2) == 0, disconnect: -1}
		if rng.IntN(4) == 0 {
			j.disconnect = rng.IntN(6)
		}
		prompt := strings.Repeat("x", 1+rng.IntN(200))
		j.body = fmt.Sprintf(`{"model":"chat-a","messages":[{"role":"user","content":%q}],"max_tokens":%d,"stream":%v}`,
			prompt, 1+rng.IntN(30), j.stream)
		jobs <- j
	}
	close(jobs)

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := range jobs {
				ctx, cancel := context.WithCancel(t.Context())
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.srv.URL+"/v1/chat/completions", strings.NewReader(j.body))
				req.Header.Set("Authorization", "Bearer k")
				req.Header.Set("Content-Type", "application/json")
				resp, err := s.srv.Client().Do(req)
				if err != nil {
					cancel()
					t.Errorf("worker %d: %v", w, err)
					return
				}
				switch resp.StatusCode {
				case http.StatusOK:
					if j.disconnect >= 0 {
						if j.stream {
							er := newEventReader(resp.Body)
							for range j.disconnect {
								if _, err := er.next(); err != nil {
									break
								}
							}
						}
						cancel()
					}
					_, _ = io.Copy(io.Discard, resp.Body)
				case http.StatusTooManyRequests:
					_, _ = io.Copy(io.Discard, resp.Body)
				default:
					b, _ := io.ReadAll(resp.Body)
					t.Errorf("status %d: %s", resp.StatusCode, b)
				}
				resp.Body.Close()
				cancel()
			}
		})
	}
	wg.Wait()

	snap := s.budgetOf(local, "acct")
	if snap.Reserved != 0 || snap.Spent+snap.Reserved > budget {
		t.Errorf("spent %d + reserved %d: want reserved 0 and at most %d in all", snap.Spent, snap.Reserved, budget)
	}
	recs := rec.records()
	var settled entitlements.Amount
	nServed, nRefused := 0, 0
	for _, r := range recs {
		settled += r.Settled
		switch r.Outcome {
		case metering.OutcomeRejected:
			nRefused++
		case metering.OutcomeOK, metering.OutcomeClientGone:
			nServed++
		default:
			t.Errorf("record %+v: unexpected outcome", r)
		}
	}
	if len(recs) != requests || settled != snap.Spent {
		t.Errorf("%d records settling %d in all; want %d records settling the spend, %d", len(recs), settled, requests, snap.Spent)
	}
	if hits := s.fleet.Neuron("n1").Requests(); nServed != hits || nRefused+nServed != requests {
		t.Errorf("%d served and %d refused by the records, the neuron got %d requests", nServed, nRefused, hits)
	}
	gone := 0
	for _, r := range recs {
		if r.Outcome == metering.OutcomeClientGone {
			gone++
		}
	}
	t.Logf("served %d (%d abandoned by their client), refused %d, spent %d", nServed, gone, nRefused, snap.Spent)
	if nRefused == 0 || nServed == 0 || gone == 0 {
		t.Errorf("%d served (%d abandoned), %d refused: want some of each (the budget should run out midway)", nServed, gone, nRefused)
	}
}

// Every exit path consumes the reservation exactly once: what was served
// is settled (the engine's usage, else the prompt estimate and the content
// events streamed, never zero), and a request that served nothing is
// released.
func TestSettlePaths(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// spec is the neuron n1, which has chat-a loaded.
		spec        cortextest.Spec
		opts        []cortex.GatewayOption
		run         func(t *testing.T, s *stack) (wantSpent entitlements.Amount)
		wantOutcome metering.Outcome
	}{
		{
			name: "success",
			spec: loadedA("n1"),
			run: func(t *testing.T, s *stack) entitlements.Amount {
				status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":5`), "x-api-key", "k")
				if status != http.StatusOK {
					t.Fatalf("status %d: %s", status, body)
				}
				p, c := usageOf(t, body)
				if p != helloEstimate || c != 5 {
					t.Errorf("usage %d+%d, want %d+5", p, c, helloEstimate)
				}
				return entitlements.Amount(p + c)
			},
			wantOutcome: metering.OutcomeOK,
		},
		{
			name: "success, streamed",
			spec: loadedA("n1"),
			run: func(t *testing.T, s *stack) entitlements.Amount {
				resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"max_tokens":5`, `"stream":true`), "x-api-key", "k")
				defer resp.Body.Close()
				events, err := newEventReader(resp.Body).all()
				if err != nil || len(events) == 0 || events[len(events)-1] != "[DONE]" {
					t.Fatalf("events %q, %v", events, err)
				}
				return helloEstimate + 5 // the usage chunk the gateway asked for
			},
			wantOutcome: metering.OutcomeOK,
		},
		{
			name: "upstream error before any output",
			spec: cortextest.Spec{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)},
				Engine: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					http.Error(w, `{"error":{"message":"engine overloaded","type":"server_error"}}`, http.StatusInternalServerError)
				})},
			run: func(t *testing.T, s *stack) entitlements.Amount {
				status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":5`), "x-api-key", "k")
				if status != http.StatusInternalServerError {
					t.Fatalf("status %d: %s", status, body)
				}
				return 0
			},
			wantOutcome: metering.OutcomeUpstreamError,
		},
		{
			name: "neuron unreachable",
			spec: loadedA("n1"),
			run: func(t *testing.T, s *stack) entitlements.Amount {
				s.fleet.Neuron("n1").Stop()
				status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":5`), "x-api-key", "k")
				if status != http.StatusBadGateway {
					t.Fatalf("status %d: %s", status, body)
				}
				return 0
			},
			wantOutcome: metering.OutcomeUpstreamError,
		},
		{
			name: "client disconnect mid-stream",
			spec: cortextest.Spec{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}, Engine: newStepEngine(3)},
			run: func(t *testing.T, s *stack) entitlements.Amount {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				resp := s.doCtx(ctx, http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"stream":true`), "x-api-key", "k")
				defer resp.Body.Close()
				nextWithin(t, newEventReader(resp.Body), 10*time.Second, "first chunk")
				cancel() // the engine holds the second chunk until the test steps it: it never will
				// No usage came: the whole reservation (the model's 64
				// output tokens) is settled.
				return helloEstimate + 64
			},
			wantOutcome: metering.OutcomeClientGone,
		},
		{
			name: "neuron crash mid-stream",
			spec: cortextest.Spec{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}, Sim: sim.Config{CrashAfterTokens: 3}},
			run: func(t *testing.T, s *stack) entitlements.Amount {
				resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"max_tokens":10`, `"stream":true`), "x-api-key", "k")
				defer resp.Body.Close()
				events, err := newEventReader(resp.Body).all()
				if err == nil {
					t.Fatalf("the stream of a crashed engine ended cleanly: %q", events)
				}
				if len(events) < 2 {
					t.Fatal("no event before the crash")
				}
				// Without the engine's usage the whole reservation is
				// settled: the estimate and the 10 output tokens.
				return helloEstimate + 10
			},
			wantOutcome: metering.OutcomeNeuronCrash,
		},
		{
			name: "panic",
			spec: loadedA("n1"),
			opts: []cortex.GatewayOption{cortex.WithRouter(panicRouter{})},
			run: func(t *testing.T, s *stack) entitlements.Amount {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.srv.URL+"/v1/chat/completions",
					strings.NewReader(chatBody("chat-a", `"max_tokens":5`)))
				req.Header.Set("X-Api-Key", "k")
				req.Header.Set("Content-Type", "application/json")
				if resp, err := s.srv.Client().Do(req); err == nil {
					resp.Body.Close()
					t.Fatalf("status %d: want the connection aborted", resp.StatusCode)
				}
				return 0
			},
			wantOutcome: metering.OutcomePanic,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", HardCap: ptr(int64(1000))})
			rec := &recorder{}
			opts := append([]cortex.GatewayOption{cortex.WithProvider(local), cortex.WithMeter(rec)}, tt.opts...)
			s := newStack(t, []cortextest.Spec{tt.spec}, testCatalogue(t), opts...)
			want := tt.run(t, s)
			s.checkBudget(local, "acct", want)
			r := rec.last(t)
			if r.Outcome != tt.wantOutcome || r.Settled != want || r.Reserved == 0 {
				t.Errorf("meter record: outcome %s, reserved %d, settled %d; want %s, a reservation, %d", r.Outcome, r.Reserved, r.Settled, tt.wantOutcome, want)
			}
		})
	}
}

// With clamp_max_tokens, a request whose worst case does not fit is sent
// with max_tokens lowered to what the budget has left, and refused only
// when not even the prompt and one output token fit. Without it, the same
// request is refused.
func TestClampMaxTokens(t *testing.T) {
	t.Parallel()
	local := newLocal(t,
		entitlements.KeyConfig{Key: "sk-clamp", AccountID: "clamp", HardCap: ptr(int64(30)), ClampMaxTokens: true},
		entitlements.KeyConfig{Key: "sk-strict", AccountID: "strict", HardCap: ptr(int64(30))},
		entitlements.KeyConfig{Key: "sk-window", AccountID: "window", HardCap: ptr(int64(7)), ClampMaxTokens: true,
			Window: entitlements.WindowConfig{Kind: "rolling", Seconds: 3600}},
	)
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local))
	n := s.fleet.Neuron("n1")
	sentMax := func() int64 {
		t.Helper()
		_, body := n.LastRequest()
		var v struct {
			MaxTokens *int64 `json:"max_tokens"`
		}
		if err := json.Unmarshal(body, &v); err != nil || v.MaxTokens == nil {
			t.Fatalf("the neuron got %s (%v): want a max_tokens", body, err)
		}
		return *v.MaxTokens
	}

	// 30 - 7 = 23 output tokens fit; the client asked for 50.
	status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":50`), "x-api-key", "sk-clamp")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if got := sentMax(); got != 23 {
		t.Errorf("the neuron got max_tokens %d, want 23", got)
	}
	if got := hdr.Get(cortex.HeaderClampedMax); got != "23" {
		t.Errorf("%s = %q, want 23", cortex.HeaderClampedMax, got)
	}
	s.checkBudget(local, "clamp", 30)

	// Nothing is left: not even the prompt fits.
	status, _, body = s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":50`), "x-api-key", "sk-clamp")
	if status != http.StatusTooManyRequests || envelope(t, body).Code != cortex.CodeInsufficientQuota {
		t.Errorf("nothing left: status %d: %s", status, body)
	}

	// A request that sets no maximum gets one (chat-a's output limit, 64,
	// does not fit either).
	status, _, body = s.post("/v1/chat/completions", chatBody("chat-a"), "x-api-key", "sk-strict")
	if status != http.StatusTooManyRequests {
		t.Errorf("strict key, worst case 7+64 over a cap of 30: status %d: %s", status, body)
	}
	s.checkBudget(local, "strict", 0)

	// A rolling cap of 7 never holds the prompt and one token.
	status, _, body = s.post("/v1/chat/completions", chatBody("chat-a"), "x-api-key", "sk-window")
	if status != http.StatusBadRequest || envelope(t, body).Code != cortex.CodeExceedsBudgetCap {
		t.Errorf("rolling cap of 7: status %d: %s", status, body)
	}

	before := n.Requests()
	status, _, body = s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":50`), "x-api-key", "sk-strict")
	if status != http.StatusTooManyRequests || n.Requests() != before {
		t.Errorf("strict key: status %d: %s; want 429 and nothing dispatched", status, body)
	}
}

// A clamped request without any max field is sent with one added.
func TestClampAddsMaxTokens(t *testing.T) {
	t.Parallel()
	local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", HardCap: ptr(int64(20)), ClampMaxTokens: true})
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local))
	status, _, body := s.post("/v1/chat/completions", chatBody("chat-a"), "x-api-key", "k")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if p, c := usageOf(t, body); p+c != 20 {
		t.Errorf("usage %d+%d, want 20 in all", p, c)
	}
	_, sent := s.fleet.Neuron("n1").LastRequest()
	if !strings.Contains(string(sent), `"max_tokens":13`) {
		t.Errorf("the neuron got %s, want max_tokens 13", sent)
	}
	s.checkBudget(local, "acct", 20)
}

// A budgeted request that sets no maximum output is sent with the one
// reserved for it, so the engine cannot generate past the reservation:
// the model's output limit for a chat completion, OpenAI's default 16 for
// a completion. A maximum the client set is sent as it came, and an
// anonymous request without one is sent without one; no clamp is
// announced.
func TestReservedMaxIsSent(t *testing.T) {
	t.Parallel()
	local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", HardCap: ptr(int64(1000))})
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local))
	n := s.fleet.Neuron("n1")
	sentMax := func() *int64 {
		t.Helper()
		_, body := n.LastRequest()
		var v struct {
			MaxTokens *int64 `json:"max_tokens"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("the neuron got %s: %v", body, err)
		}
		return v.MaxTokens
	}
	tests := []struct {
		name, path, body string
		key              []string
		want             *int64
	}{
		{name: "chat without a maximum", path: "/v1/chat/completions", body: chatBody("chat-a"), key: []string{"x-api-key", "k"}, want: ptr(int64(64))},
		{name: "chat with a maximum", path: "/v1/chat/completions", body: chatBody("chat-a", `"max_tokens":9`), key: []string{"x-api-key", "k"}, want: ptr(int64(9))},
		{name: "completion without a maximum", path: "/v1/completions", body: `{"model":"chat-a","prompt":"Hello there"}`, key: []string{"x-api-key", "k"}, want: ptr(int64(16))},
		{name: "anonymous chat", path: "/v1/chat/completions", body: chatBody("chat-a"), want: nil},
	}
	for _, tt := range tests {
		status, hdr, body := s.post(tt.path, tt.body, tt.key...)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", tt.name, status, body)
		}
		got := sentMax()
		if (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
			t.Errorf("%s: the neuron got max_tokens %v, want %v", tt.name, deref(got), deref(tt.want))
		}
		if c := hdr.Get(cortex.HeaderClampedMax); c != "" {
			t.Errorf("%s: %s = %q, want none", tt.name, cortex.HeaderClampedMax, c)
		}
	}
	if r := s.budgetOf(local, "acct").Reserved; r != 0 {
		t.Errorf("reserved %d after the requests, want 0", r)
	}
}

// A completion's best_of candidates are all generated, so all are
// reserved: best_of 4 times 10 tokens does not fit a balance that one
// candidate fits.
func TestBestOfIsReserved(t *testing.T) {
	t.Parallel()
	local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", HardCap: ptr(int64(40))})
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local))
	const body = `{"model":"chat-a","prompt":"Hello there","max_tokens":10%s}`
	status, _, answer := s.post("/v1/completions", fmt.Sprintf(body, `,"best_of":4`), "x-api-key", "k")
	if status != http.StatusTooManyRequests || envelope(t, answer).Code != cortex.CodeInsufficientQuota {
		t.Errorf("best_of 4: status %d: %s; want 429 insufficient_quota", status, answer)
	}
	if status, _, answer := s.post("/v1/completions", fmt.Sprintf(body, ""), "x-api-key", "k"); status != http.StatusOK {
		t.Errorf("one candidate: status %d: %s; want 200", status, answer)
	}
}

// With strict caps the prompt's upper bound (its body's bytes) is
// reserved instead of its estimate: a request that the estimate lets
// through a cap of 40 is refused, and one that fits is charged its usage.
func TestStrictCaps(t *testing.T) {
	t.Parallel()
	body := chatBody("chat-a", `"max_tokens":5`)
	for _, strict := range []bool{false, true} {
		local := newLocal(t,
			entitlements.KeyConfig{Key: "small", AccountID: "small", HardCap: ptr(int64(40))},
			entitlements.KeyConfig{Key: "big", AccountID: "big", HardCap: ptr(int64(1000))})
		s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local), cortex.WithStrictCaps(strict))
		status, _, answer := s.post("/v1/chat/completions", body, "x-api-key", "small")
		if want := map[bool]int{false: http.StatusOK, true: http.StatusTooManyRequests}[strict]; status != want {
			t.Errorf("strict %v: a worst case of %d (estimate) or %d (bound) against a cap of 40: status %d, want %d: %s",
				strict, helloEstimate+5, len(body)+8+16+5, status, want, answer)
		}
		if status, _, answer := s.post("/v1/chat/completions", body, "x-api-key", "big"); status != http.StatusOK {
			t.Fatalf("strict %v, cap 1000: status %d: %s", strict, status, answer)
		}
		s.checkBudget(local, "big", helloEstimate+5)
	}
}

func deref(p *int64) any {
	if p == nil {
		return "none"
	}
	return *p
}

// A USD key is charged the catalogue price of the resolved model in
// micro-dollars, rounded up, and refused (nothing reserved, nothing sent)
// for a model without a price.
func TestUSDKeys(t *testing.T) {
	t.Parallel()
	cat := newCatalogue(t, []catalogue.Model{
		{ID: "priced", VRAMMB: 1000, Cost: &catalogue.Cost{Input: 0.3, Output: 1.5}},
		{ID: "free", VRAMMB: 1000},
	}, map[string]string{"cheap": "priced"})
	local := newLocal(t,
		entitlements.KeyConfig{Key: "sk-usd", AccountID: "usd", Unit: "usd", HardCapUSD: ptr(1.0)},
		entitlements.KeyConfig{Key: "sk-tiny", AccountID: "tiny", Unit: "usd", HardCapUSD: ptr(0.000020), ClampMaxTokens: true},
	)
	rec := &recorder{}
	s := newStack(t, []cortextest.Spec{{Name: "n1", Models: []neuron.LoadSpec{loadedSpec("priced", 1000), loadedSpec("free", 1000)}}}, cat,
		cortex.WithProvider(local), cortex.WithMeter(rec))
	n := s.fleet.Neuron("n1")

	// 7 prompt tokens at $0.3/1M and 5 output tokens at $1.5/1M: 2.1 + 7.5
	// = 9.6 micro-dollars, charged 10.
	status, hdr, body := s.post("/v1/chat/completions", chatBody("cheap", `"max_tokens":5`), "x-api-key", "sk-usd")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if p, c := usageOf(t, body); p != helloEstimate || c != 5 {
		t.Fatalf("usage %d+%d", p, c)
	}
	if hdr.Get(cortex.HeaderBudgetUnit) != "usd" || hdr.Get(cortex.HeaderLimitTokens) != "1000000" {
		t.Errorf("headers: unit %q, limit %q; want usd, 1000000", hdr.Get(cortex.HeaderBudgetUnit), hdr.Get(cortex.HeaderLimitTokens))
	}
	s.checkBudget(local, "usd", 10)
	if r := rec.last(t); r.Unit != entitlements.UnitMicroUSD || r.Settled != 10 || r.Reserved != 10 || r.Model != "priced" {
		t.Errorf("meter record %+v: want model priced, unit usd, reserved and settled 10", r)
	}

	// An unpriced model: 400 before anything is reserved or sent.
	before := n.Requests()
	status, _, body = s.post("/v1/chat/completions", chatBody("free", `"max_tokens":5`), "x-api-key", "sk-usd")
	if status != http.StatusBadRequest || envelope(t, body).Code != cortex.CodeModelNotPriced {
		t.Errorf("unpriced model: status %d: %s", status, body)
	}
	if n.Requests() != before {
		t.Error("the request for an unpriced model reached the neuron")
	}
	s.checkBudget(local, "usd", 10)

	// Clamped in dollars: 20 micro-dollars cover the prompt (2.1, rounded
	// up to 3 on its own) and 11 output tokens (16.5): 18.6, charged 19.
	status, _, body = s.post("/v1/chat/completions", chatBody("cheap", `"max_tokens":100`), "x-api-key", "sk-tiny")
	if status != http.StatusOK {
		t.Fatalf("tiny: status %d: %s", status, body)
	}
	if _, c := usageOf(t, body); c != 11 {
		t.Errorf("tiny: %d output tokens, want 11", c)
	}
	s.checkBudget(local, "tiny", 19)
}

// The rate limit headers of every authenticated answer, successes and
// errors alike, from the budget: cap, what is left after this request's
// reservation, and for a rolling window the time to its reset.
func TestRateLimitHeaders(t *testing.T) {
	t.Parallel()
	local := newLocal(t,
		entitlements.KeyConfig{Key: "sk-balance", AccountID: "balance", HardCap: ptr(int64(1000))},
		entitlements.KeyConfig{Key: "sk-rolling", AccountID: "rolling", HardCap: ptr(int64(500)), Window: entitlements.WindowConfig{Kind: "rolling", Seconds: 60}},
		entitlements.KeyConfig{Key: "sk-uncapped", AccountID: "uncapped"},
	)
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local))
	tests := []struct {
		name, key, body string
		wantStatus      int
		wantLimit       string
		wantRemaining   string
		wantReset       bool
	}{
		{name: "success", key: "sk-balance", body: chatBody("chat-a", `"max_tokens":3`), wantStatus: http.StatusOK,
			wantLimit: "1000", wantRemaining: strconv.Itoa(1000 - helloEstimate - 3)},
		{name: "error after auth", key: "sk-balance", body: chatBody("no-such-model"), wantStatus: http.StatusNotFound,
			wantLimit: "1000", wantRemaining: strconv.Itoa(1000 - helloEstimate - 3)},
		{name: "rolling", key: "sk-rolling", body: chatBody("chat-a", `"max_tokens":3`), wantStatus: http.StatusOK,
			wantLimit: "500", wantRemaining: strconv.Itoa(500 - helloEstimate - 3), wantReset: true},
		{name: "uncapped", key: "sk-uncapped", body: chatBody("chat-a", `"max_tokens":3`), wantStatus: http.StatusOK},
		{name: "anonymous", body: chatBody("chat-a", `"max_tokens":3`), wantStatus: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.key != "" {
				hdr = []string{"Authorization", "Bearer " + tt.key}
			}
			status, h, body := s.post("/v1/chat/completions", tt.body, hdr...)
			if status != tt.wantStatus {
				t.Fatalf("status %d: %s", status, body)
			}
			if got := h.Get(cortex.HeaderLimitTokens); got != tt.wantLimit {
				t.Errorf("limit %q, want %q", got, tt.wantLimit)
			}
			if got := h.Get(cortex.HeaderRemainingTokens); got != tt.wantRemaining {
				t.Errorf("remaining %q, want %q", got, tt.wantRemaining)
			}
			reset := h.Get(cortex.HeaderResetTokens)
			if tt.wantReset {
				if d, err := time.ParseDuration(reset); err != nil || d <= 0 || d > time.Minute {
					t.Errorf("reset %q, want a duration within the 60 s window", reset)
				}
			} else if reset != "" {
				t.Errorf("reset %q, want none", reset)
			}
		})
	}
}

// leasingProvider is a Local whose reservations are leases, as in
// entitlements/redisledger: it counts renewals and notices one that comes
// after its reservation was consumed.
type leasingProvider struct {
	*entitlements.Local
	ttl      time.Duration
	renewals chan time.Duration // the ttl of each renewal

	mu        sync.Mutex
	lateRenew int // renewals of a consumed reservation
}

var _ entitlements.Leaser = (*leasingProvider)(nil)

func newLeasingProvider(t *testing.T, ttl time.Duration) *leasingProvider {
	return &leasingProvider{
		Local:    newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", HardCap: ptr(int64(1000))}),
		ttl:      ttl,
		renewals: make(chan time.Duration, 1000),
	}
}

func (p *leasingProvider) LeaseTTL() time.Duration { return p.ttl }

func (p *leasingProvider) Reserve(ctx context.Context, pr entitlements.Principal, a entitlements.Amount) (entitlements.Reservation, error) {
	r, err := p.Local.Reserve(ctx, pr, a)
	if err != nil {
		return nil, err
	}
	return &leasedReservation{Reservation: r, p: p}, nil
}

// leasedReservation is a reservation of a leasingProvider.
type leasedReservation struct {
	entitlements.Reservation
	p        *leasingProvider
	consumed bool // guarded by p.mu
}

var _ entitlements.Renewer = (*leasedReservation)(nil)

func (r *leasedReservation) Renew(_ context.Context, ttl time.Duration) error {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	if r.consumed {
		r.p.lateRenew++
		return entitlements.ErrReservationSettled
	}
	select {
	case r.p.renewals <- ttl:
	default:
	}
	return nil
}

func (r *leasedReservation) consume() {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	r.consumed = true
}

func (r *leasedReservation) Settle(ctx context.Context, actual entitlements.Amount) error {
	r.consume()
	return r.Reservation.Settle(ctx, actual)
}

func (r *leasedReservation) Release(ctx context.Context) error {
	r.consume()
	return r.Reservation.Release(ctx)
}

// A provider whose reservations are leases has them renewed while a long
// stream runs, with its TTL, and never after the request finished; also
// behind an entitlements.Chain.
func TestLeaseRenewal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    []cortex.GatewayOption
		chain   bool
		wantTTL time.Duration
	}{
		{name: "the provider's TTL", wantTTL: 30 * time.Millisecond},
		{name: "WithLeaseTTL", opts: []cortex.GatewayOption{cortex.WithLeaseTTL(60 * time.Millisecond)}, wantTTL: 60 * time.Millisecond},
		{name: "behind a Chain", chain: true, wantTTL: 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newLeasingProvider(t, 30*time.Millisecond)
			var provider entitlements.Provider = p
			if tt.chain {
				c, err := entitlements.NewChain(newLocal(t), p)
				if err != nil {
					t.Fatal(err)
				}
				provider = c
			}
			eng := newStepEngine(2)
			opts := append([]cortex.GatewayOption{cortex.WithProvider(provider)}, tt.opts...)
			s := newStack(t, []cortextest.Spec{{Name: "n1", Engine: eng, Models: []neuron.LoadSpec{loadedSpec("chat-a", 4000)}}}, testCatalogue(t), opts...)
			resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"stream":true`, `"max_tokens":5`), "x-api-key", "k")
			defer resp.Body.Close()
			er := newEventReader(resp.Body)
			nextWithin(t, er, 10*time.Second, "first chunk")
			for i := range 3 {
				select {
				case ttl := <-p.renewals:
					if ttl != tt.wantTTL {
						t.Errorf("renewal %d for %v, want %v", i, ttl, tt.wantTTL)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("renewal %d never came", i)
				}
			}
			step(t, eng)
			if _, err := er.all(); err != nil {
				t.Fatal(err)
			}
			s.checkBudget(p, "acct", helloEstimate+2)
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.lateRenew != 0 {
				t.Errorf("%d renewals after the reservation was consumed", p.lateRenew)
			}
		})
	}
}

// A provider that fails in an undocumented way is unavailable: 503, never
// anonymous access.
func TestReserveFailureIsUnavailable(t *testing.T) {
	t.Parallel()
	p := &failingReserve{Local: newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct"})}
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(p))
	status, hdr, body := s.post("/v1/chat/completions", chatBody("chat-a"), "x-api-key", "k")
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || strings.Contains(body, "disk on fire") {
		t.Errorf("status %d, Retry-After %q: %s", status, hdr.Get("Retry-After"), body)
	}
	if s.fleet.Neuron("n1").Requests() != 0 {
		t.Error("dispatched without a reservation")
	}
}

type failingReserve struct{ *entitlements.Local }

func (failingReserve) Reserve(context.Context, entitlements.Principal, entitlements.Amount) (entitlements.Reservation, error) {
	return nil, errors.New("disk on fire")
}

// A maximum output so large that the ledger cannot hold it is the client's
// mistake (400), not an outage.
func TestAbsurdMaxTokens(t *testing.T) {
	t.Parallel()
	local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct"})
	held, err := local.Reserve(t.Context(), entitlements.Principal{AccountID: "acct"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local))
	status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":9223372036854775807`), "x-api-key", "k")
	if status != http.StatusBadRequest || envelope(t, body).Code != cortex.CodeInvalidBody {
		t.Errorf("status %d: %s; want 400 %s", status, body, cortex.CodeInvalidBody)
	}
	if err := held.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.checkBudget(local, "acct", 0)
}

// reportingProvider is a Local whose reservations report the budget their
// Reserve left (entitlements.BudgetReporter), as redisledger's do; it
// counts the Snapshot calls it gets.
type reportingProvider struct {
	*entitlements.Local
	snapshots atomic.Int64
}

type reportingReservation struct {
	entitlements.Reservation
	s entitlements.BudgetSnapshot
}

func (r *reportingReservation) Budget() (entitlements.BudgetSnapshot, bool) { return r.s, true }

func (p *reportingProvider) Reserve(ctx context.Context, pr entitlements.Principal, a entitlements.Amount) (entitlements.Reservation, error) {
	r, err := p.Local.Reserve(ctx, pr, a)
	if err != nil {
		return nil, err
	}
	s, err := p.Local.Snapshot(ctx, pr)
	if err != nil {
		return nil, err
	}
	return &reportingReservation{Reservation: r, s: s}, nil
}

func (p *reportingProvider) Snapshot(ctx context.Context, pr entitlements.Principal) (entitlements.BudgetSnapshot, error) {
	p.snapshots.Add(1)
	return p.Local.Snapshot(ctx, pr)
}

// A reservation that reports its budget spares the Snapshot call of the
// rate limit headers, which show the same numbers.
func TestRateLimitHeadersFromReservation(t *testing.T) {
	t.Parallel()
	p := &reportingProvider{Local: newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct", HardCap: ptr(int64(1000))})}
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(p))
	status, h, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":3`), "x-api-key", "k")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if got, want := h.Get(cortex.HeaderRemainingTokens), strconv.Itoa(1000-helloEstimate-3); got != want || h.Get(cortex.HeaderLimitTokens) != "1000" {
		t.Errorf("limit %q, remaining %q; want 1000, %s", h.Get(cortex.HeaderLimitTokens), got, want)
	}
	if n := p.snapshots.Load(); n != 0 {
		t.Errorf("%d Snapshot calls, want none", n)
	}
}
