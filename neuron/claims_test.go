package neuron_test

import (
	stdcmp "cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"github.com/helexa-ai/helexa-go/neuron"
)

// claimArbiter starts an Agent on a fake clock, with a token, and returns
// the Client cortex would use to reach it, the clock, the Agent and its
// server.
func claimArbiter(t *testing.T, opts ...neuron.Option) (*neuron.Client, *clocktest.Fake, *neuron.Agent, *httptest.Server) {
	t.Helper()
	clk := clocktest.New(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	_, h := newModelTable(t, "")
	a, srv := startAgent(t, h, nil, append([]neuron.Option{neuron.WithClock(clk), neuron.WithToken("tok")}, opts...)...)
	c, err := neuron.NewClient(srv.URL, neuron.WithToken("tok"), neuron.WithDoer(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	return c, clk, a, srv
}

// claimStep is one call of a claim scenario: a claim (release false) or a
// release of model/neuron, and what it must answer.
type claimStep struct {
	name    string
	advance time.Duration // the fake clock moves this much first
	release bool
	model   string // default "m"
	neuron  string
	holders []string
	max     int
	ttl     time.Duration // default 10 min
	want    neuron.ClaimResult
}

// runClaims runs steps in order against c, moving clk.
func runClaims(t *testing.T, c *neuron.Client, clk *clocktest.Fake, steps []claimStep) {
	t.Helper()
	for _, s := range steps {
		clk.Advance(s.advance)
		model := stdcmp.Or(s.model, "m")
		if s.release {
			if err := c.ReleaseReplica(t.Context(), model, s.neuron); err != nil {
				t.Fatalf("%s: ReleaseReplica(%s, %s): %v", s.name, model, s.neuron, err)
			}
			continue
		}
		got, err := c.ClaimReplica(t.Context(), neuron.ReplicaClaim{Model: model, Neuron: s.neuron,
			Max: s.max, Holders: s.holders, TTL: stdcmp.Or(s.ttl, 10*time.Minute)})
		if err != nil {
			t.Fatalf("%s: ClaimReplica: %v", s.name, err)
		}
		if diff := cmp.Diff(got, s.want); diff != "" {
			t.Errorf("%s: ClaimReplica (-got +want):\n%s", s.name, diff)
		}
	}
}

func granted(holders ...string) neuron.ClaimResult {
	return neuron.ClaimResult{Granted: true, Holders: holders}
}

func refused(holders ...string) neuron.ClaimResult {
	return neuron.ClaimResult{Granted: false, Holders: holders}
}

// TestClaimReplica_GrantRefuseExpire: claims are granted below max and
// refused at it; a neuron already counted is granted again and its claim
// renewed; claims expire after their TTL, freeing their slot, and a
// release frees it at once.
func TestClaimReplica_GrantRefuseExpire(t *testing.T) {
	t.Parallel()
	c, clk, _, _ := claimArbiter(t)
	runClaims(t, c, clk, []claimStep{
		{name: "first claim", neuron: "n1", max: 2, want: granted("n1")},
		{name: "second claim", neuron: "n2", max: 2, want: granted("n1", "n2")},
		{name: "at max", neuron: "n3", max: 2, want: refused("n1", "n2")},
		{name: "refused again: the refusal changed nothing", neuron: "n4", max: 2, want: refused("n1", "n2")},
		{name: "claim of a counted neuron at max renews it", advance: 6 * time.Minute, neuron: "n1", max: 2, want: granted("n1", "n2")},
		{name: "n2 counts until its ttl has passed", advance: 4*time.Minute - time.Nanosecond, neuron: "n3", max: 2, want: refused("n1", "n2")},
		{name: "n2 expired, n1 renewed", advance: time.Nanosecond, neuron: "n3", max: 2, want: granted("n1", "n3")},
		{name: "n1 still counts", neuron: "n4", max: 2, want: refused("n1", "n3")},
		{name: "release n3", release: true, neuron: "n3"},
		{name: "the released slot is free", neuron: "n4", max: 2, want: granted("n1", "n4")},
		{name: "release of a claim not held", release: true, neuron: "n9"},
		{name: "release twice", release: true, neuron: "n3"},
		{name: "release of an unknown model", release: true, model: "nope", neuron: "n1"},
		{name: "other models are apart", model: "other", neuron: "n2", max: 1, want: granted("n2")},
		{name: "all expired", advance: time.Hour, neuron: "n5", max: 1, want: granted("n5")},
		{name: "a short ttl", model: "short", neuron: "n1", max: 1, ttl: time.Millisecond, want: granted("n1")},
		{name: "the short claim is gone after 1 ms", advance: time.Millisecond, model: "short", neuron: "n2", max: 1, want: granted("n2")},
	})
}

// TestClaimReplica_CallerHolders: the holders the caller sees count
// together with the live claims, and a holder is granted without taking
// another slot.
func TestClaimReplica_CallerHolders(t *testing.T) {
	t.Parallel()
	c, clk, _, _ := claimArbiter(t)
	runClaims(t, c, clk, []claimStep{
		{name: "claim n2", neuron: "n2", max: 2, want: granted("n2")},
		{name: "caller sees n1: n1 and n2 count", neuron: "n3", holders: []string{"n1"}, max: 2, want: refused("n1", "n2")},
		{name: "caller sees nothing: one slot left", neuron: "n3", max: 2, want: granted("n2", "n3")},
		{name: "duplicate holders count once", model: "dup", neuron: "n2", holders: []string{"n1", "n1", "n1"}, max: 2, want: granted("n1", "n2")},
		{name: "a holder itself is granted at max", model: "held", neuron: "n1", holders: []string{"n2", "n1"}, max: 2, want: granted("n1", "n2")},
		{name: "its grant made a claim", model: "held", neuron: "n3", holders: []string{"n2"}, max: 2, want: refused("n1", "n2")},
		{name: "holders over max refuse", model: "over", neuron: "n9", holders: []string{"n3", "n1", "n2"}, max: 2, want: refused("n1", "n2", "n3")},
		{name: "holders over max still grant a holder", model: "over", neuron: "n2", holders: []string{"n3", "n1", "n2"}, max: 2, want: granted("n1", "n2", "n3")},
	})
}

// TestClaimReplica_Concurrent: many claims of distinct neurons for one
// model at once, with max 3, grant exactly 3, and the table then counts
// exactly those.
func TestClaimReplica_Concurrent(t *testing.T) {
	t.Parallel()
	c, _, _, _ := claimArbiter(t)
	const n, max = 32, 3
	start := make(chan struct{})
	results := make([]neuron.ClaimResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = c.ClaimReplica(t.Context(), neuron.ReplicaClaim{Model: "m",
				Neuron: fmt.Sprintf("n%02d", i), Max: max, TTL: time.Minute})
		})
	}
	close(start)
	wg.Wait()
	var won []string
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		if len(r.Holders) > max {
			t.Errorf("claim %d: %d holders %v, more than max", i, len(r.Holders), r.Holders)
		}
		if r.Granted {
			won = append(won, fmt.Sprintf("n%02d", i))
		}
	}
	slices.Sort(won)
	if len(won) != max {
		t.Fatalf("granted %v, want exactly %d", won, max)
	}
	got, err := c.ClaimReplica(t.Context(), neuron.ReplicaClaim{Model: "m", Neuron: "late", Max: max, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, refused(won...)); diff != "" {
		t.Errorf("claim after the race (-got +want):\n%s", diff)
	}
}

// TestClaimReplica_BadInput: a claim or release that is not valid is a
// 400 invalid_request_body envelope whose message names the field, and
// changes nothing. Unknown fields are ignored, as on every management
// route.
func TestClaimReplica_BadInput(t *testing.T) {
	t.Parallel()
	c, _, _, srv := claimArbiter(t)
	long := strings.Repeat("x", 257)
	max256 := strings.Repeat("y", 256)
	claimBody := func(fields string) string {
		return `{"model":"m","neuron":"n1","max":1,"ttl_ms":60000,` + fields + `}`
	}
	many := make([]string, 1025)
	for i := range many {
		many[i] = fmt.Sprintf("h%d", i)
	}
	tests := []struct {
		name       string
		path       string // default /replicas/claim
		body       string
		wantStatus int    // default 400
		wantField  string // the 400's message names it
	}{
		{name: "malformed JSON", body: `{"model":`, wantField: "unexpected end"},
		{name: "missing model", body: `{"neuron":"n1","max":1,"ttl_ms":60000}`, wantField: "model"},
		{name: "empty model", body: claimBody(`"model":""`), wantField: "model"},
		{name: "missing neuron", body: `{"model":"m","max":1,"ttl_ms":60000}`, wantField: "neuron"},
		{name: "missing max", body: `{"model":"m","neuron":"n1","ttl_ms":60000}`, wantField: "max"},
		{name: "max 0", body: claimBody(`"max":0`), wantField: "max"},
		{name: "max negative", body: claimBody(`"max":-1`), wantField: "max"},
		{name: "max not a number", body: claimBody(`"max":"3"`), wantField: "max"},
		{name: "missing ttl", body: `{"model":"m","neuron":"n1","max":1}`, wantField: "ttl_ms"},
		{name: "ttl 0", body: claimBody(`"ttl_ms":0`), wantField: "ttl_ms"},
		{name: "ttl negative", body: claimBody(`"ttl_ms":-5`), wantField: "ttl_ms"},
		{name: "ttl over 24h", body: claimBody(`"ttl_ms":86400001`), wantField: "ttl_ms"},
		{name: "ttl past a duration", body: claimBody(`"ttl_ms":9223372036854775807`), wantField: "ttl_ms"},
		{name: "ttl fractional", body: claimBody(`"ttl_ms":1.5`), wantField: "ttl_ms"},
		{name: "too many holders", body: claimBody(`"holders":` + string(mustJSON(t, many))), wantField: "holders"},
		{name: "empty holder", body: claimBody(`"holders":["n2",""]`), wantField: "holders[1]"},
		{name: "oversize holder", body: claimBody(`"holders":["` + long + `"]`), wantField: "holders[0]"},
		{name: "oversize model", body: claimBody(`"model":"` + long + `"`), wantField: "model"},
		{name: "oversize neuron", body: claimBody(`"neuron":"` + long + `"`), wantField: "neuron"},
		{name: "release: missing model", path: "/replicas/release", body: `{"neuron":"n1"}`, wantField: "model"},
		{name: "release: missing neuron", path: "/replicas/release", body: `{"model":"m"}`, wantField: "neuron"},
		{name: "release: oversize neuron", path: "/replicas/release", body: `{"model":"m","neuron":"` + long + `"}`, wantField: "neuron"},
		// Accepted: the limits themselves, and unknown fields.
		{name: "names of 256 bytes", body: `{"model":"` + max256 + `","neuron":"` + max256 + `","max":1,"ttl_ms":86400000,"holders":["` + max256 + `"]}`,
			wantStatus: 200},
		{name: "1024 holders", body: `{"model":"ok","neuron":"h1","max":1,"ttl_ms":1,"holders":` + string(mustJSON(t, many[:1024])) + `}`,
			wantStatus: 200},
		{name: "unknown field", body: `{"model":"ok2","neuron":"n1","max":1,"ttl_ms":1,"priority":7}`, wantStatus: 200},
		{name: "release: unknown field", path: "/replicas/release", body: `{"model":"ok2","neuron":"n1","why":"done"}`, wantStatus: 200},
	}
	for _, tt := range tests {
		path := stdcmp.Or(tt.path, "/replicas/claim")
		got := send(t, t.Context(), srv, "POST", path, tt.body, "Authorization", "Bearer tok", "Content-Type", "application/json")
		if want := stdcmp.Or(tt.wantStatus, http.StatusBadRequest); got.status != want {
			t.Errorf("%s: status %d, want %d; body %s", tt.name, got.status, want, got.body)
			continue
		}
		if got.status != http.StatusBadRequest {
			continue
		}
		var e envelope
		got.decode(t, &e)
		if e.Error.Code != neuron.CodeInvalidBody || e.Error.Type != "invalid_request_error" {
			t.Errorf("%s: envelope %+v, want code %s", tt.name, e.Error, neuron.CodeInvalidBody)
		}
		if !strings.Contains(e.Error.Message, tt.wantField) {
			t.Errorf("%s: message %q does not name %q", tt.name, e.Error.Message, tt.wantField)
		}
	}
	// None of the refused claims took a slot of model m.
	got, err := c.ClaimReplica(t.Context(), neuron.ReplicaClaim{Model: "m", Neuron: "probe", Max: 1, TTL: time.Minute})
	if err != nil || !cmp.Equal(got, granted("probe")) {
		t.Errorf("claim after the bad input = %+v, %v; want granted [probe]", got, err)
	}
	// Through the Client, a bad claim is ErrInvalidRequest.
	_, err = c.ClaimReplica(t.Context(), neuron.ReplicaClaim{Model: "m", Neuron: "n1", Max: 1})
	var ae *neuron.APIError
	if !errors.Is(err, neuron.ErrInvalidRequest) || !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Errorf("claim without ttl: %v, want a 400 ErrInvalidRequest", err)
	}
	if err := c.ReleaseReplica(t.Context(), "", "n1"); !errors.Is(err, neuron.ErrInvalidRequest) {
		t.Errorf("release without model: %v, want ErrInvalidRequest", err)
	}
}

// TestClaimReplica_ShuttingDown: once Shutdown has begun, claims and
// releases are refused with 503 shutting_down, as loads are.
func TestClaimReplica_ShuttingDown(t *testing.T) {
	t.Parallel()
	c, _, a, _ := claimArbiter(t)
	if err := a.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := c.ClaimReplica(t.Context(), neuron.ReplicaClaim{Model: "m", Neuron: "n1", Max: 1, TTL: time.Minute})
	if !errors.Is(err, neuron.ErrShuttingDown) {
		t.Errorf("claim while shutting down: %v, want ErrShuttingDown", err)
	}
	if err := c.ReleaseReplica(t.Context(), "m", "n1"); !errors.Is(err, neuron.ErrShuttingDown) {
		t.Errorf("release while shutting down: %v, want ErrShuttingDown", err)
	}
}

// TestReplicaClaim_JSON: the wire form of a claim, and back.
func TestReplicaClaim_JSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   neuron.ReplicaClaim
		want string
	}{
		{name: "whole ms", in: neuron.ReplicaClaim{Model: "m", Neuron: "n2", Max: 3, Holders: []string{"n1"}, TTL: 10 * time.Minute},
			want: `{"model":"m","neuron":"n2","max":3,"holders":["n1"],"ttl_ms":600000}`},
		{name: "a fraction of a ms is rounded up, no holders is []", in: neuron.ReplicaClaim{Model: "m", Neuron: "n", Max: 1, TTL: 1500 * time.Microsecond},
			want: `{"model":"m","neuron":"n","max":1,"holders":[],"ttl_ms":2}`},
		{name: "a negative ttl stays non-positive", in: neuron.ReplicaClaim{Model: "m", Neuron: "n", Max: 1, TTL: -time.Microsecond},
			want: `{"model":"m","neuron":"n","max":1,"holders":[],"ttl_ms":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("Marshal = %s, want %s", b, tt.want)
			}
			var back neuron.ReplicaClaim
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			var again neuron.ReplicaClaim
			if err := json.Unmarshal([]byte(tt.want), &again); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(back, again); diff != "" {
				t.Errorf("Unmarshal of its own Marshal differs (-got +want):\n%s", diff)
			}
		})
	}
	var c neuron.ReplicaClaim
	if err := json.Unmarshal([]byte(`{"model":"m","neuron":"n2","max":3,"holders":["n1"],"ttl_ms":600000}`), &c); err != nil {
		t.Fatal(err)
	}
	want := neuron.ReplicaClaim{Model: "m", Neuron: "n2", Max: 3, Holders: []string{"n1"}, TTL: 10 * time.Minute}
	if diff := cmp.Diff(c, want); diff != "" {
		t.Errorf("Unmarshal (-got +want):\n%s", diff)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzReplicaClaim: whatever body a caller sends to POST /replicas/claim,
// the arbiter answers 200 with a sorted set of holders that includes the
// claimed neuron when granted, or 400 with the error envelope; never a
// 5xx, never a panic.
func FuzzReplicaClaim(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","neuron":"n1","max":2,"holders":["n2"],"ttl_ms":60000}`,
		`{"model":"m","neuron":"n1","max":1,"holders":["n2","n2","n3"],"ttl_ms":1}`,
		`{"model":"m","neuron":"n1","max":0,"ttl_ms":1}`,
		`{"model":"","neuron":"n1","max":1,"ttl_ms":1}`,
		`{"model":"m","neuron":"n1","max":1,"ttl_ms":9223372036854775807}`,
		`{"Model":"m","NEURON":"n1","max":1,"ttl_ms":5,"max":9}`,
		`{"model":"m","neuron":"n1","max":1,"holders":[""],"ttl_ms":5}`,
		`[]`, `null`, `{"max":"3"}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _, _, srv := claimArbiter(t)
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/replicas/claim", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer tok")
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			var res neuron.ClaimResult
			if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
				t.Fatalf("200 with a body that is no ClaimResult: %v", err)
			}
			if !slices.IsSorted(res.Holders) || len(slices.Compact(slices.Clone(res.Holders))) != len(res.Holders) {
				t.Fatalf("holders %q: not a sorted set", res.Holders)
			}
			var c neuron.ReplicaClaim
			if err := json.Unmarshal(body, &c); err != nil {
				t.Fatalf("200 for a body the client type cannot read: %v", err)
			}
			if res.Granted && !slices.Contains(res.Holders, c.Neuron) {
				t.Fatalf("granted %q, but the holders %q leave it out", c.Neuron, res.Holders)
			}
		case http.StatusBadRequest:
			var env struct {
				Error struct{ Code, Message string }
			}
			if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || env.Error.Code == "" {
				t.Fatalf("400 without the error envelope: %v", err)
			}
		default:
			t.Fatalf("status %d for %q", resp.StatusCode, body)
		}
	})
}
