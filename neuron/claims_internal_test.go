package neuron

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/clock/clocktest"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
)

// noModels is a Harness without models, for an Agent that only arbitrates.
type noModels struct{}

func (noModels) Load(context.Context, LoadSpec) (ModelInfo, error) {
	return ModelInfo{}, ErrLoadFailed
}
func (noModels) Unload(_ context.Context, id string) error { return ErrModelNotFound }
func (noModels) Models() []ModelInfo                       { return nil }
func (noModels) Endpoint(string) (*url.URL, error)         { return nil, ErrModelNotFound }

var _ Harness = noModels{}

// TestClaimTable_Bound: with the table at its bound, a claim that would
// add one is 503 claim_table_full through the Agent and the Client, and
// changes nothing; renewing a claim and refusing one still answer; the
// expired claims of every model are swept before a claim is refused, and
// a release frees room.
func TestClaimTable_Bound(t *testing.T) {
	t.Parallel()
	clk := clocktest.New(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	a, err := NewAgent(noModels{}, NewStaticDiscoverer(Discovery{}), WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	a.claims.limit = 2
	srv := httptest.NewServer(a)
	t.Cleanup(func() {
		if err := a.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		srv.Close()
	})
	c, err := NewClient(srv.URL, WithDoer(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	claim := func(model, neuron string, max int, ttl time.Duration) (ClaimResult, error) {
		return c.ClaimReplica(ctx, ReplicaClaim{Model: model, Neuron: neuron, Max: max, TTL: ttl})
	}
	mustGrant := func(model, neuron string, max int, ttl time.Duration, want ...string) {
		t.Helper()
		got, err := claim(model, neuron, max, ttl)
		if err != nil {
			t.Fatalf("claim %s/%s: %v", model, neuron, err)
		}
		if diff := cmp.Diff(got, ClaimResult{Granted: true, Holders: want}); diff != "" {
			t.Errorf("claim %s/%s (-got +want):\n%s", model, neuron, diff)
		}
	}
	mustGrant("m1", "n1", 5, time.Minute, "n1")
	mustGrant("m2", "n1", 5, 2*time.Minute, "n1")

	_, err = claim("m3", "n1", 5, time.Minute)
	var ae *APIError
	if !errors.Is(err, ErrClaimTableFull) || !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("claim past the bound: %v, want a 503 ErrClaimTableFull", err)
	}
	// The raw answer is the usual envelope.
	resp, err := srv.Client().Post(srv.URL+"/replicas/claim", "application/json",
		strings.NewReader(`{"model":"m1","neuron":"n2","max":5,"ttl_ms":1000}`))
	if err != nil {
		t.Fatal(err)
	}
	body, ok := oaierr.Read(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !ok || body.Code != CodeClaimTableFull {
		t.Errorf("answer %d %+v (an envelope: %v), want 503 %s", resp.StatusCode, body, ok, CodeClaimTableFull)
	}

	mustGrant("m1", "n1", 5, time.Minute, "n1") // a renewal adds nothing
	if got, err := claim("m1", "n2", 1, time.Minute); err != nil || got.Granted {
		t.Errorf("claim at max with the table full = %+v, %v; want a refusal", got, err)
	}

	// m1/n1 expires at 1 min: the sweep of every model makes room.
	clk.Advance(time.Minute)
	mustGrant("m3", "n1", 5, time.Minute, "n1")
	if _, err := claim("m4", "n1", 5, time.Minute); !errors.Is(err, ErrClaimTableFull) {
		t.Errorf("claim past the bound again: %v, want ErrClaimTableFull", err)
	}
	if err := c.ReleaseReplica(ctx, "m2", "n1"); err != nil {
		t.Fatal(err)
	}
	mustGrant("m4", "n1", 5, time.Minute, "n1")

	a.claims.mu.Lock()
	defer a.claims.mu.Unlock()
	want := map[string]map[string]time.Time{
		"m3": {"n1": clk.Now().Add(time.Minute)},
		"m4": {"n1": clk.Now().Add(time.Minute)},
	}
	if diff := cmp.Diff(a.claims.models, want); diff != "" || a.claims.size != 2 {
		t.Errorf("table (-got +want):\n%s\nsize %d, want 2", diff, a.claims.size)
	}
}

// TestClaimTable_Concurrent: claims of distinct neurons for one model,
// made at once on the table itself, grant exactly max, and the count the
// table keeps matches its claims.
func TestClaimTable_Concurrent(t *testing.T) {
	t.Parallel()
	clk := clocktest.New(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	tab := newClaimTable(clk, defaultClaimLimit)
	const n, max = 64, 3
	start := make(chan struct{})
	granted := make(chan string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			neuron := fmt.Sprintf("n%02d", i)
			res, err := tab.claim(ReplicaClaim{Model: "m", Neuron: neuron, Max: max, TTL: time.Minute})
			if err != nil {
				t.Errorf("claim %s: %v", neuron, err)
				return
			}
			if res.Granted {
				granted <- neuron
			}
			// A release of a neuron never granted changes nothing.
			if !res.Granted {
				if err := tab.release(ReplicaRelease{Model: "m", Neuron: neuron}); err != nil {
					t.Errorf("release %s: %v", neuron, err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(granted)
	var won []string
	for g := range granted {
		won = append(won, g)
	}
	if len(won) != max {
		t.Errorf("granted %v, want exactly %d", won, max)
	}
	tab.mu.Lock()
	defer tab.mu.Unlock()
	if got := len(tab.models["m"]); got != max || tab.size != max {
		t.Errorf("table holds %d claims and counts %d, want %d", got, tab.size, max)
	}
}
