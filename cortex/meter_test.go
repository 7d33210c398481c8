package cortex_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/cortex/metering"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// The meter file holds one JSON line per finished request: a non-streamed
// and a streamed request of a key, a refused one, and an anonymous one.
func TestMeterFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "meter.jsonl")
	sink, err := metering.NewFileSink(path, metering.WithFlushInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	local := newLocal(t, entitlements.KeyConfig{Key: "sk-meter-secret", AccountID: "acct", KeyID: "ci", HardCap: ptr(int64(1000))})
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local), cortex.WithMeter(sink))

	if status, _, body := s.post("/v1/chat/completions", chatBody("fast", `"max_tokens":3`), "x-api-key", "sk-meter-secret"); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	s.budgetOf(local, "acct")
	resp := s.do(http.MethodPost, "/v1/chat/completions", chatBody("chat-a", `"max_tokens":4`, `"stream":true`), "x-api-key", "sk-meter-secret")
	if _, err := newEventReader(resp.Body).all(); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s.budgetOf(local, "acct")
	if status, _, body := s.post("/v1/chat/completions", chatBody("nope"), "x-api-key", "sk-meter-secret"); status != http.StatusNotFound {
		t.Fatalf("status %d: %s", status, body)
	}
	s.budgetOf(local, "acct")
	if status, _, body := s.post("/v1/completions", `{"model":"chat-a","prompt":"Hi","max_tokens":2}`); status != http.StatusOK {
		t.Fatalf("anonymous: status %d: %s", status, body)
	}
	s.budgetOf(local, "acct")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "sk-meter-secret") {
		t.Errorf("the API key is in the meter file:\n%s", data)
	}
	var got []metering.Record
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		var r metering.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if r.Time.IsZero() || r.Duration <= 0 || (r.Status == http.StatusOK) != (r.TTFT > 0) {
			t.Errorf("record %+v: want a time, a duration, and a TTFT when served", r)
		}
		if !strings.HasPrefix(r.RequestID, "req_") {
			t.Errorf("record %+v: want the request id the gateway made", r)
		}
		got = append(got, r)
	}
	const prompt = helloEstimate
	want := []metering.Record{
		{AccountID: "acct", KeyID: "ci", Model: "chat-a", Neuron: "n1", Route: "chat.completions",
			PromptTokens: prompt, CompletionTokens: 3, Reserved: prompt + 3, Settled: prompt + 3,
			Status: 200, Outcome: metering.OutcomeOK, UsageSource: metering.UsageEngine, SettleState: metering.SettleSettled},
		{AccountID: "acct", KeyID: "ci", Model: "chat-a", Neuron: "n1", Route: "chat.completions", Stream: true,
			PromptTokens: prompt, CompletionTokens: 4, Reserved: prompt + 4, Settled: prompt + 4,
			Status: 200, Outcome: metering.OutcomeOK, UsageSource: metering.UsageEngine, SettleState: metering.SettleSettled},
		{AccountID: "acct", KeyID: "ci", Route: "chat.completions", Status: 404, Outcome: metering.OutcomeRejected},
		// "Hi" is one token; a completion prompt has no message overhead.
		{Model: "chat-a", Neuron: "n1", Route: "completions", PromptTokens: 1, CompletionTokens: 2,
			Status: 200, Outcome: metering.OutcomeOK, UsageSource: metering.UsageEngine},
	}
	if diff := cmp.Diff(got, want, cmpopts.IgnoreFields(metering.Record{}, "Time", "Duration", "TTFT", "RequestID")); diff != "" {
		t.Errorf("meter file (-got +want):\n%s", diff)
	}
}

// A Meter that panics breaks its contract, but not the request path: the
// request is served and settled, and the gateway serves the next one.
func TestPanickingMeter(t *testing.T) {
	t.Parallel()
	local := newLocal(t, entitlements.KeyConfig{Key: "k", AccountID: "acct"})
	meter := metering.Func(func(metering.Record) { panic("meter bug") })
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithProvider(local), cortex.WithMeter(meter))
	for i := range 2 {
		status, _, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`), "x-api-key", "k")
		if status != http.StatusOK {
			t.Fatalf("request %d: status %d: %s", i, status, body)
		}
	}
	s.checkBudget(local, "acct", 2*(helloEstimate+2))
}

// A record carries the request id (the client's X-Request-Id, cut to 128
// bytes, or the one the gateway made for a request without one) and the
// neuron that served the request: an embedder's Meter learns in process
// where each request went.
func TestMeterRecordNamesTheRequest(t *testing.T) {
	t.Parallel()
	records := make(chan metering.Record, 4)
	meter := metering.Func(func(r metering.Record) { records <- r })
	s := newStack(t, []cortextest.Spec{loadedA("n1")}, testCatalogue(t), cortex.WithMeter(meter))
	long := strings.Repeat("x", 300)
	for _, tt := range []struct{ sent, want string }{
		{"req-1", "req-1"},
		{long, long[:128]},
		{"", ""}, // a new one: the answer's X-Request-Id
	} {
		var header []string
		if tt.sent != "" {
			header = []string{"X-Request-Id", tt.sent}
		}
		status, h, body := s.post("/v1/chat/completions", chatBody("chat-a", `"max_tokens":2`), header...)
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		if tt.want == "" {
			tt.want = h.Get("X-Request-Id")
			if !strings.HasPrefix(tt.want, "req_") {
				t.Errorf("X-Request-Id of a request without one = %q, want a new req_ id", tt.want)
			}
		}
		var r metering.Record
		select {
		case r = <-records:
		case <-t.Context().Done():
			t.Fatal("no record")
		}
		if r.RequestID != tt.want || r.Neuron != "n1" {
			t.Errorf("X-Request-Id %.10q...: record RequestID %.10q..., Neuron %q; want %.10q..., n1", tt.sent, r.RequestID, r.Neuron, tt.want)
		}
	}
}
