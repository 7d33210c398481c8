//go:build linux

package adversarial_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// Caps of the accounts.
const (
	tightCap = 600     // below what a hidden bound makes the engine generate
	roomyCap = 5000    // room for honest multi-prompt requests
	largeCap = 100_000 // for the cases about clients, not bodies
)

// codeAmbiguous is the error code of a body that two reasonable decoders
// could read differently.
const codeAmbiguous = "ambiguous_request"

// Routes.
const (
	chatPath        = "/v1/chat/completions"
	completionsPath = "/v1/completions"
	responsesPath   = "/v1/responses"
)

// chat returns a chat completion body for the model with extra fields.
func chat(extra string) string {
	return `{"model":"adv","messages":[{"role":"user","content":"hi"}],` + extra + `}`
}

// completion returns a completion body for the model with extra fields.
func completion(extra string) string { return `{"model":"adv","prompt":"hi",` + extra + `}` }

// response returns a Responses API body for the model with extra fields.
func response(extra string) string { return `{"model":"adv","input":"hi",` + extra + `}` }

// eight is a prompt array of eight prompts.
const eight = `["a","b","c","d","e","f","g","h"]`

// bodyCase is one hostile body.
type bodyCase struct {
	name string
	path string
	body string
	cap  int64
	// ambiguous: the issue demands 400 ambiguous_request. Otherwise the
	// body may be served (within its reservation) or refused.
	ambiguous bool
}

// ambiguousCases are escape, case and duplicate variants of every field
// the gateway reads; a hidden value asks the engine for about 1000 tokens
// where the gateway, reading the other way, would reserve far less.
var ambiguousCases = []bodyCase{
	{name: "model escaped", path: chatPath, body: `{"\u006dodel":"adv","messages":[{"role":"user","content":"hi"}],"max_tokens":10}`},
	{name: "model case", path: chatPath, body: `{"MODEL":"adv","messages":[{"role":"user","content":"hi"}],"max_tokens":10}`},
	{name: "model duplicate", path: chatPath, body: `{"model":"adv","model":"other","messages":[{"role":"user","content":"hi"}],"max_tokens":10}`},
	{name: "model case duplicate", path: chatPath, body: chat(`"max_tokens":10,"Model":"other"`)},

	{name: "stream escaped", path: chatPath, body: chat(`"max_tokens":10,"\u0073tream":true`)},
	{name: "stream case", path: chatPath, body: chat(`"max_tokens":10,"Stream":true`)},
	{name: "stream long s", path: chatPath, body: chat(`"max_tokens":10,"\u017ftream":true`)},
	{name: "stream long s raw", path: chatPath, body: chat("\"max_tokens\":10,\"\u017ftream\":true")},
	{name: "stream duplicate", path: chatPath, body: chat(`"max_tokens":10,"stream":false,"stream":true`)},

	{name: "stream_options escaped", path: chatPath, body: chat(`"max_tokens":10,"stream":true,"\u0073tream_options":{"include_usage":false}`)},
	{name: "stream_options case", path: chatPath, body: chat(`"max_tokens":10,"stream":true,"Stream_Options":{"include_usage":false}`)},
	{name: "stream_options duplicate", path: chatPath, body: chat(`"max_tokens":10,"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":false}`)},
	{name: "include_usage escaped", path: chatPath, body: chat(`"max_tokens":10,"stream":true,"stream_options":{"\u0069nclude_usage":false}`)},
	{name: "include_usage case", path: chatPath, body: chat(`"max_tokens":10,"stream":true,"stream_options":{"Include_Usage":false}`)},
	{name: "include_usage duplicate", path: chatPath, body: chat(`"max_tokens":10,"stream":true,"stream_options":{"include_usage":true,"include_usage":false}`)},

	{name: "n escaped", path: chatPath, body: chat(`"max_tokens":100,"\u006e":8`)},
	{name: "n case", path: chatPath, body: chat(`"max_tokens":100,"N":8`)},
	{name: "n duplicate", path: chatPath, body: chat(`"max_tokens":100,"n":1,"n":8`)},
	{name: "n_cmpl escaped", path: completionsPath, body: completion(`"max_tokens":100,"\u006e_cmpl":8`)},
	{name: "n_cmpl case", path: completionsPath, body: completion(`"max_tokens":100,"N_Cmpl":8`)},
	{name: "n_cmpl duplicate", path: completionsPath, body: completion(`"max_tokens":100,"n_cmpl":1,"n_cmpl":8`)},

	{name: "best_of escaped", path: completionsPath, body: completion(`"max_tokens":100,"best_\u006ff":8`)},
	{name: "best_of case", path: completionsPath, body: completion(`"max_tokens":100,"Best_Of":8`)},
	{name: "best_of duplicate", path: completionsPath, body: completion(`"max_tokens":100,"best_of":1,"best_of":8`)},

	{name: "prompt escaped", path: completionsPath, body: `{"model":"adv","\u0070rompt":` + eight + `,"max_tokens":100}`},
	{name: "prompt case", path: completionsPath, body: `{"model":"adv","Prompt":` + eight + `,"max_tokens":100}`},
	{name: "prompt duplicate", path: completionsPath, body: `{"model":"adv","prompt":"a","prompt":` + eight + `,"max_tokens":100}`},

	{name: "max_tokens escaped", path: chatPath, body: chat(`"\u006dax_tokens":1000`)},
	{name: "max_tokens case", path: chatPath, body: chat(`"Max_Tokens":1000`)},
	{name: "max_tokens Kelvin sign", path: chatPath, body: chat(`"max_to\u212Aens":1000`)},
	{name: "max_tokens duplicate", path: chatPath, body: chat(`"max_tokens":10,"max_tokens":1000`)},
	{name: "max_tokens escaped duplicate", path: chatPath, body: chat(`"max_tokens":10,"\u006dax_tokens":1000`)},
	{name: "max_tokens case duplicate", path: chatPath, body: chat(`"max_tokens":10,"MAX_TOKENS":1000`)},
	{name: "max_tokens completions case", path: completionsPath, body: completion(`"max_tokens":10,"Max_tokens":1000`)},

	{name: "max_completion_tokens escaped", path: chatPath, body: chat(`"\u006dax_completion_tokens":1000`)},
	{name: "max_completion_tokens case", path: chatPath, body: chat(`"Max_Completion_Tokens":1000`)},
	{name: "max_completion_tokens duplicate", path: chatPath, body: chat(`"max_completion_tokens":10,"max_completion_tokens":1000`)},

	{name: "max_output_tokens escaped", path: responsesPath, body: response(`"\u006dax_output_tokens":1000`)},
	{name: "max_output_tokens case", path: responsesPath, body: response(`"Max_Output_Tokens":1000`)},
	{name: "max_output_tokens duplicate", path: responsesPath, body: response(`"max_output_tokens":10,"max_output_tokens":1000`)},

	{name: "n_predict escaped", path: chatPath, body: chat(`"max_tokens":10,"\u006e_predict":1000`)},
	{name: "n_predict case", path: chatPath, body: chat(`"max_tokens":10,"N_Predict":1000`)},
	{name: "n_predict duplicate", path: chatPath, body: chat(`"max_tokens":10,"n_predict":10,"n_predict":1000`)},

	{name: "max_new_tokens escaped", path: completionsPath, body: completion(`"\u006dax_new_tokens":1000`)},
	{name: "max_new_tokens case", path: completionsPath, body: completion(`"Max_New_Tokens":1000`)},
	{name: "max_new_tokens duplicate", path: completionsPath, body: completion(`"max_new_tokens":10,"max_new_tokens":1000`)},
}

// boundCases are bodies that are not ambiguous but that an engine reads
// with its own output bounds and answer counts: the gateway must reserve
// what the engine will generate, rewrite the bound, or refuse.
var boundCases = []bodyCase{
	{name: "n_predict huge beside a small max_tokens", path: chatPath, body: chat(`"max_tokens":10,"n_predict":1000`)},
	{name: "n_predict huge before a small max_tokens", path: completionsPath, body: completion(`"n_predict":1000,"max_tokens":10`)},
	{name: "n_predict unbounded", path: chatPath, body: chat(`"max_tokens":10,"n_predict":-1`)},
	{name: "n_predict huge alone", path: chatPath, body: chat(`"n_predict":1000`)},
	{name: "n_predict streamed", path: chatPath, body: chat(`"max_tokens":10,"n_predict":1000,"stream":true`)},
	{name: "n_predict on responses", path: responsesPath, body: response(`"max_output_tokens":10,"n_predict":1000`)},
	{name: "max_new_tokens alone", path: chatPath, body: chat(`"max_new_tokens":1000`)},
	{name: "n_cmpl beside n", path: completionsPath, body: completion(`"max_tokens":50,"n":1,"n_cmpl":8`)},
	{name: "best_of candidates", path: completionsPath, body: completion(`"max_tokens":50,"n":1,"best_of":6`), cap: roomyCap},
	{name: "prompt array with n and best_of", path: completionsPath, body: `{"model":"adv","prompt":["a","b","c","d"],"n":2,"best_of":3,"max_tokens":40}`, cap: roomyCap},
	{name: "token arrays with n", path: completionsPath, body: `{"model":"adv","prompt":[[1,2],[3,4],[5],[6]],"n":2,"max_tokens":40}`, cap: roomyCap},
	{name: "prompt array streamed", path: completionsPath, body: `{"model":"adv","prompt":["a","b","c"],"n":2,"max_tokens":40,"stream":true,"stream_options":{"include_usage":true}}`, cap: roomyCap},
	{name: "prompt array of eight hidden by no max", path: completionsPath, body: `{"model":"adv","prompt":` + eight + `,"n":2}`, cap: roomyCap},
}

// suite holds the accounts the cases use, made before the gateway.
type suite struct {
	accounts []account
}

func (s *suite) add(name string, cap int64, maxInFlight int) account {
	a := account{key: fmt.Sprintf("sk-adv-%03d-0123456789", len(s.accounts)), id: name, cap: cap}
	a.limits.MaxInFlight = maxInFlight
	s.accounts = append(s.accounts, a)
	return a
}

// TestBudgets runs every case, one after another, against one gateway,
// neuron and engine: the engine's counters are per process, so a case
// measures what it generated as the difference of the counters around it.
func TestBudgets(t *testing.T) {
	if testing.Short() {
		t.Skip("adversarial: the suite runs real neuron and engine processes; skipped under -short")
	}
	binaries(t)

	var su suite
	type run struct {
		bodyCase
		a account
	}
	var bodies []run
	for _, group := range []struct {
		prefix string
		cases  []bodyCase
		amb    bool
	}{{"ambiguous/", ambiguousCases, true}, {"bounds/", boundCases, false}} {
		for _, c := range group.cases {
			c.name = group.prefix + c.name
			c.ambiguous = group.amb
			if c.cap == 0 {
				c.cap = tightCap
			}
			bodies = append(bodies, run{c, su.add(c.name, c.cap, 0)})
		}
	}
	partial := su.add("partial read", largeCap, 0)
	stalled := su.add("stalled stream", largeCap, 1)
	concurrent := su.add("concurrent", 1000, 0)
	query := su.add("query string", tightCap, 0)
	headers := su.add("engine headers", tightCap, 0)

	s := newStack(t, su.accounts)

	for _, r := range bodies {
		t.Run(r.name, func(t *testing.T) {
			before := s.n.stats(t)
			ans := s.post(t, r.a, r.path, r.body)
			if ans.err != nil {
				t.Errorf("%s: %v (status %d)", r.path, ans.err, ans.status)
			}
			if r.ambiguous {
				if code := errorCode(ans.body); ans.status != http.StatusBadRequest || code != codeAmbiguous {
					t.Errorf("status %d code %q, want 400 %s; body %.200s", ans.status, code, codeAmbiguous, ans.body)
				}
			} else if ans.status != http.StatusOK && ans.status != http.StatusBadRequest && ans.status != http.StatusTooManyRequests {
				t.Errorf("status %d, want 200 within the reservation, or a refusal; body %.200s", ans.status, ans.body)
			}
			if ans.status == http.StatusOK {
				if m := answerModel(ans.body); m != "" && m != model {
					t.Errorf("the answer is from model %q, the gateway priced %q", m, model)
				}
			}
			served := s.check(t, r.a, before, 1)
			t.Logf("status %d, engine generated %d tokens", ans.status, served)
		})
	}

	t.Run("partial read of a large answer", func(t *testing.T) {
		before := s.n.stats(t)
		conn := s.dial(t, 0)
		s.send(t, conn, partial, chatPath, chat(`"max_tokens":1500,"n":4`))
		buf := make([]byte, 16)
		if _, err := io.ReadFull(conn, buf); err != nil {
			t.Fatalf("reading the first bytes of the answer: %v", err)
		}
		conn.Close()
		served := s.check(t, partial, before, 1)
		t.Logf("read %q, then closed; the engine generated %d tokens", buf, served)
	})

	t.Run("client stops reading a stream", func(t *testing.T) {
		before := s.n.stats(t)
		conn := s.dial(t, 2048)
		defer conn.Close()
		s.send(t, conn, stalled, chatPath, chat(`"max_tokens":1500,"n":4,"stream":true`))
		// The gateway blocks on the client's full buffers; it must cut the
		// stream after the idle timeout, settle it and free the slot.
		within := idleTimeout + 4*time.Second
		deadline := time.Now().Add(within)
		for len(s.meter.of(stalled.id)) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		requests := 1
		if len(s.meter.of(stalled.id)) == 0 {
			t.Errorf("the stream of a client that stopped reading was not cut within %v (idle timeout %v)", within, idleTimeout)
			conn.Close() // lets the gateway's write fail, so the case can end
		} else {
			// The key allows one request in flight: the next one is served
			// only if the cut freed the slot.
			requests++
			if ans := s.post(t, stalled, chatPath, chat(`"max_tokens":5`)); ans.status != http.StatusOK {
				t.Errorf("a request after the cut: status %d, body %.200s; want 200 (the in-flight slot freed)", ans.status, ans.body)
			}
			conn.Close()
		}
		served := s.check(t, stalled, before, requests)
		t.Logf("the engine generated %d tokens", served)
	})

	t.Run("40 concurrent requests on a small cap", func(t *testing.T) {
		before := s.n.stats(t)
		const requests = 40
		statuses := make([]int, requests)
		var wg sync.WaitGroup
		for i := range requests {
			wg.Go(func() {
				body := chat(`"max_tokens":100`)
				if i%2 == 1 {
					body = chat(`"max_tokens":100,"stream":true`)
				}
				statuses[i] = s.post(t, concurrent, chatPath, body).status
			})
		}
		wg.Wait()
		count := map[int]int{}
		for _, st := range statuses {
			count[st]++
		}
		served := s.check(t, concurrent, before, requests)
		if served > uint64(concurrent.cap) {
			t.Errorf("the engine generated %d tokens for a key capped at %d", served, concurrent.cap)
		}
		if count[http.StatusOK] == 0 {
			t.Errorf("statuses %v: none served", count)
		}
		t.Logf("statuses %v; the engine generated %d tokens", count, served)
	})

	t.Run("query string does not reach the engine", func(t *testing.T) {
		before := s.n.stats(t)
		ans := s.post(t, query, chatPath+"?api_key=secret&x=1", chat(`"max_tokens":5`))
		if ans.status != http.StatusOK {
			t.Errorf("status %d, body %.200s", ans.status, ans.body)
		}
		s.check(t, query, before, 1)
		after := s.n.stats(t)
		if after.Requests == before.Requests {
			t.Fatal("the request did not reach the engine")
		}
		if uri := after.LastRequestURI; uri != chatPath {
			t.Errorf("the engine was asked for %q, want %q: the client's query string was forwarded", uri, chatPath)
		}
	})

	t.Run("engine headers do not reach the client", func(t *testing.T) {
		// The engine does send them: the check below means something.
		resp, err := s.n.hc.Get(s.n.sim + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Server") != "helexa-sim" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("the engine's own headers: %v", resp.Header)
		}
		before := s.n.stats(t)
		for _, body := range []string{chat(`"max_tokens":5`), chat(`"max_tokens":5,"stream":true`)} {
			ans := s.post(t, headers, chatPath, body)
			if ans.status != http.StatusOK {
				t.Errorf("status %d, body %.200s", ans.status, ans.body)
			}
			for _, h := range []string{"Server", "Access-Control-Allow-Origin"} {
				if v := ans.header.Values(h); len(v) > 0 {
					t.Errorf("the engine's %s header reached the client: %q", h, v)
				}
			}
		}
		s.check(t, headers, before, 2)
	})
}

// check waits until the case is over (the engine idle, nothing reserved,
// a meter record per request) and checks the invariants: what the engine
// generated was reserved and settled, the spend is within the cap and is
// what the records say. It returns the tokens the engine generated.
func (s *stack) check(t *testing.T, a account, before sim.Stats, requests int) uint64 {
	t.Helper()
	after := s.n.stats(t)
	served := after.GeneratedTokens - before.GeneratedTokens
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
	var reserved, settled int64
	for _, r := range recs {
		reserved += int64(r.Reserved)
		settled += int64(r.Settled)
	}
	snap := s.snapshot(a)
	t.Logf("served %d, reserved %d, charged %d (spent %d of cap %d)", served, reserved, settled, snap.Spent, a.cap)
	if served > uint64(max(reserved, 0)) {
		t.Errorf("served > reserved: the engine generated %d tokens, %d were reserved (records %s)", served, reserved, summary(recs))
	}
	if uint64(max(settled, 0)) < served {
		t.Errorf("settled < served: the engine generated %d tokens, %d were settled (records %s)", served, settled, summary(recs))
	}
	if int64(snap.Spent) > a.cap {
		t.Errorf("spent %d is over the hard cap %d", snap.Spent, a.cap)
	}
	if int64(snap.Spent) != settled {
		t.Errorf("the ledger says %d spent, the meter records %d settled", snap.Spent, settled)
	}
	if snap.Reserved != 0 {
		t.Errorf("%d still reserved", snap.Reserved)
	}
	return served
}

// summary is a short form of records for a failure message.
func summary(recs []metering.Record) string {
	var b strings.Builder
	for i, r := range recs {
		if i == 8 {
			fmt.Fprintf(&b, " ... (%d in all)", len(recs))
			break
		}
		fmt.Fprintf(&b, "[status %d %s reserved %d settled %d completion %d %s] ", r.Status, r.Outcome, r.Reserved, r.Settled, r.CompletionTokens, r.UsageSource)
	}
	return b.String()
}

// errorCode returns the code of an OpenAI error envelope, or "".
func errorCode(body []byte) string {
	b, ok := oaierr.Read(bytes.NewReader(body))
	if !ok {
		return ""
	}
	return b.Code
}

// answerModel returns the "model" of a JSON answer, or "" for anything
// else (a stream, an error).
func answerModel(body []byte) string {
	var v struct {
		Model string `json:"model"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	return v.Model
}

// dial connects a raw TCP client to the gateway; rcvbuf, when positive, is
// its socket receive buffer, set before the connection so that the window
// it advertises is small.
func (s *stack) dial(t *testing.T, rcvbuf int) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.DialContext(t.Context(), "tcp", s.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// send writes a POST of body to path with a's key on conn.
func (s *stack) send(t *testing.T, conn net.Conn, a account, path, body string) {
	t.Helper()
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: adversarial\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		path, a.key, len(body), body)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
}
