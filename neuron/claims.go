package neuron

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/helexa-ai/helexa-go/clock"
)

// Limits of POST /replicas/claim and /replicas/release.
const (
	// maxClaimName bounds a claim's model and neuron names, and each holder,
	// in bytes.
	maxClaimName = 256
	// maxClaimHolders bounds the holders of one claim.
	maxClaimHolders = 1024
	// maxClaimTTL bounds a claim's TTL.
	maxClaimTTL = 24 * time.Hour
	// defaultClaimLimit bounds the live claims of a table, over all models.
	defaultClaimLimit = 1 << 16
)

// claimTable is the replica-claim arbiter of one neuron: it makes a
// model's max_replicas hard across several cortex replicas. Each gateway
// scales on its own, so two gateways that each see a model one replica
// short of max_replicas could each load one, on different neurons, and
// overshoot. Instead, every gateway asks the same neuron for the model
// (chosen by rendezvous hashing on the gateway side) to grant a claim
// before it loads a replica; the claims of all the gateways meet in that
// neuron's table, and a claim that would make the model's holders (the
// neurons the caller sees with a replica, and those with a live claim)
// exceed max is refused.
//
// A claim lasts its TTL, long enough for the load it announces to show up
// in the gateways' own view of the fleet, then expires; a gateway that
// gives up on a load releases it earlier. The table is memory only: a
// neuron that restarts forgets its claims, and for that window the bound
// falls back to what each gateway sees (the overshoot of one replica per
// other gateway that the claims are there to prevent).
//
// The table holds at most limit claims over all models, expired ones
// included until they are swept: a claim that would add one past it is
// ErrClaimTableFull, once the expired claims of every model are swept.
//
// A claimTable is safe for concurrent use. Time is read from clk before
// the lock is taken.
type claimTable struct {
	clk   clock.Clock
	limit int

	mu     sync.Mutex
	models map[string]map[string]time.Time // model -> neuron -> expiry
	size   int                             // claims in models
}

func newClaimTable(clk clock.Clock, limit int) *claimTable {
	return &claimTable{clk: clk, limit: limit, models: make(map[string]map[string]time.Time)}
}

// claim decides c: granted when c.Neuron already counts among the model's
// holders (its claim is then set to expire TTL from now) or when fewer
// than c.Max neurons count; refused otherwise, with the table unchanged.
// The holders it returns are the neurons that count, sorted, c.Neuron
// included when granted. A c that is not valid is ErrInvalidRequest; a
// new claim past the table's limit is ErrClaimTableFull. Neither changes
// the live claims.
func (t *claimTable) claim(c ReplicaClaim) (ClaimResult, error) {
	if err := c.validate(); err != nil {
		return ClaimResult{}, err
	}
	now := t.clk.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	claims := t.models[c.Model]
	t.sweepLocked(c.Model, claims, now)
	counted := make(map[string]struct{}, len(c.Holders)+len(claims)+1)
	for _, h := range c.Holders {
		counted[h] = struct{}{}
	}
	for n := range claims {
		counted[n] = struct{}{}
	}
	_, held := counted[c.Neuron]
	if !held && len(counted) >= c.Max {
		return ClaimResult{Granted: false, Holders: slices.Sorted(maps.Keys(counted))}, nil
	}
	if _, ok := claims[c.Neuron]; !ok {
		if t.size >= t.limit {
			t.sweepAllLocked(now)
		}
		if t.size >= t.limit {
			return ClaimResult{}, fmt.Errorf("%w: %d live claims", ErrClaimTableFull, t.size)
		}
		if claims = t.models[c.Model]; claims == nil {
			claims = make(map[string]time.Time)
			t.models[c.Model] = claims
		}
		t.size++
	}
	claims[c.Neuron] = now.Add(c.TTL)
	counted[c.Neuron] = struct{}{}
	return ClaimResult{Granted: true, Holders: slices.Sorted(maps.Keys(counted))}, nil
}

// release drops the claim of neuron for model, if there is one. A release
// that is not valid is ErrInvalidRequest.
func (t *claimTable) release(r ReplicaRelease) error {
	if err := r.validate(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	claims := t.models[r.Model]
	if _, ok := claims[r.Neuron]; !ok {
		return nil
	}
	delete(claims, r.Neuron)
	t.size--
	if len(claims) == 0 {
		delete(t.models, r.Model)
	}
	return nil
}

// sweepLocked drops the claims of model (its map is claims) that expired
// by now, and the model's entry once it has none left.
func (t *claimTable) sweepLocked(model string, claims map[string]time.Time, now time.Time) {
	for n, exp := range claims {
		if !exp.After(now) {
			delete(claims, n)
			t.size--
		}
	}
	if claims != nil && len(claims) == 0 {
		delete(t.models, model)
	}
}

// sweepAllLocked drops every claim that expired by now.
func (t *claimTable) sweepAllLocked(now time.Time) {
	for model, claims := range t.models {
		t.sweepLocked(model, claims, now)
	}
}

// validate checks a claim as POST /replicas/claim receives it.
func (c ReplicaClaim) validate() error {
	if err := checkClaimNames(c.Model, c.Neuron); err != nil {
		return err
	}
	if c.Max < 1 {
		return fmt.Errorf("%w: max must be at least 1, not %d", ErrInvalidRequest, c.Max)
	}
	if c.TTL <= 0 {
		return fmt.Errorf("%w: ttl_ms must be positive", ErrInvalidRequest)
	}
	if c.TTL > maxClaimTTL {
		return fmt.Errorf("%w: ttl_ms %d is over %d (24h)", ErrInvalidRequest, c.TTL.Milliseconds(), maxClaimTTL.Milliseconds())
	}
	if len(c.Holders) > maxClaimHolders {
		return fmt.Errorf("%w: holders has %d entries, at most %d are allowed", ErrInvalidRequest, len(c.Holders), maxClaimHolders)
	}
	for i, h := range c.Holders {
		if h == "" {
			return fmt.Errorf("%w: holders[%d] is empty", ErrInvalidRequest, i)
		}
		if len(h) > maxClaimName {
			return fmt.Errorf("%w: holders[%d] is longer than %d bytes", ErrInvalidRequest, i, maxClaimName)
		}
	}
	return nil
}

// validate checks a release as POST /replicas/release receives it.
func (r ReplicaRelease) validate() error {
	return checkClaimNames(r.Model, r.Neuron)
}

// checkClaimNames checks the model and neuron of a claim or release.
func checkClaimNames(model, neuron string) error {
	for _, f := range []struct{ name, v string }{{"model", model}, {"neuron", neuron}} {
		if f.v == "" {
			return fmt.Errorf("%w: %s is required", ErrInvalidRequest, f.name)
		}
		if len(f.v) > maxClaimName {
			return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalidRequest, f.name, maxClaimName)
		}
	}
	return nil
}

// releaseAnswer is the answer of POST /replicas/release.
type releaseAnswer struct {
	Model  string `json:"model"`
	Neuron string `json:"neuron"`
	Status string `json:"status"`
}

// handleClaim serves POST /replicas/claim. A refusal is a 200 with granted
// false; like the other management POST routes it is refused once
// Shutdown has begun, which the gateways take for an arbiter they cannot
// reach.
func (a *Agent) handleClaim(w http.ResponseWriter, r *http.Request) {
	if !a.enter() {
		writeError(w, ErrShuttingDown)
		return
	}
	defer a.leave()
	var c ReplicaClaim
	if err := decodeBody(w, r, maxManagementBody, a.opts.bodyTimeout, &c); err != nil {
		writeError(w, err)
		return
	}
	res, err := a.claims.claim(c)
	if err != nil {
		if errors.Is(err, ErrClaimTableFull) {
			a.log.WarnContext(r.Context(), "neuron: replica claim refused", "model", c.Model, "neuron", c.Neuron, "err", err)
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// handleRelease serves POST /replicas/release.
func (a *Agent) handleRelease(w http.ResponseWriter, r *http.Request) {
	if !a.enter() {
		writeError(w, ErrShuttingDown)
		return
	}
	defer a.leave()
	var rel ReplicaRelease
	if err := decodeBody(w, r, maxManagementBody, a.opts.bodyTimeout, &rel); err != nil {
		writeError(w, err)
		return
	}
	if err := a.claims.release(rel); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, releaseAnswer{Model: rel.Model, Neuron: rel.Neuron, Status: "released"})
}
